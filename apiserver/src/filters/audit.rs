//! The audit filters (k8s.io/apiserver `WithAuditInit` and `WithAudit`). [`init`], outermost but for compression,
//! gives every request its `Audit-ID` — the one kube-apiserver's aggregator sent, else a new one — and puts it on
//! every response, a panic's 500 included. [`audit`]: when auditing is on, the request's body is kept as the endpoint
//! reads it (up to the body limit), and once the response is known the policy decides, for the user the
//! authentication filter found, what is written: RequestReceived, then ResponseComplete (for a watch
//! ResponseStarted, and ResponseComplete when its stream ends), or Panic when a handler panics. It sits outside the
//! timeout filter, so a request cut off at its deadline is audited with its 504.
//!
//! compression → **audit init** → panic recovery → request info → **audit** → metrics → timeout → authentication → ….

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::Next;
use crate::audit::event::{Event, Stamp, micro_time};
use crate::audit::policy::{Decision, Level, Stage};
use crate::audit::{AUDIT_ID_HEADER, AuditContext, Auditor};
use crate::request::body::MAX_BODY_BYTES;
use crate::request::info::{RequestInfo, Verb};
use crate::tls::PeerAddr;

/// Audit-ID values longer than this are replaced by a new one.
const MAX_AUDIT_ID: usize = 128;

/// The request's audit ID, in its extensions from [`init`] on.
#[derive(Debug, Clone)]
pub struct AuditId(pub Arc<str>);

/// Give the request its audit ID and its response the `Audit-ID` header.
pub async fn init(mut req: Request, next: impl Next) -> Response {
    let id = AuditId(audit_id(req.headers()).into());
    req.extensions_mut().insert(id.clone());
    let mut resp = next(req).await;
    if let Ok(v) = HeaderValue::from_str(&id.0) {
        resp.headers_mut().insert(AUDIT_ID_HEADER, v);
    }
    resp
}

pub async fn audit(auditor: Option<&Arc<Auditor>>, mut req: Request, next: impl Next) -> Response {
    let Some(auditor) = auditor else {
        return next(req).await;
    };
    let audit_id = req.extensions().get::<AuditId>().map_or_else(|| audit_id(req.headers()), |id| id.0.to_string());
    let Some(info) = req.extensions().get::<Arc<RequestInfo>>().cloned() else {
        return next(req).await;
    };
    let context = Arc::new(AuditContext::default());
    req.extensions_mut().insert(context.clone());
    let request = RequestFacts {
        received: jiff::Timestamp::now(),
        uri: req.uri().to_string(),
        user_agent: req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string(),
        source_ips: source_ips(req.headers(), req.extensions().get::<PeerAddr>()),
        audit_id: audit_id.clone(),
        info,
    };
    let body_copy = Arc::new(Mutex::new(BytesMut::new()));
    if auditor.policy.may_record_bodies() {
        let (parts, body) = req.into_parts();
        let copy = body_copy.clone();
        let teed = body.map_frame(move |frame| {
            if let (Some(data), Ok(mut copy)) = (frame.data_ref(), copy.lock())
                && copy.len() + data.len() <= MAX_BODY_BYTES
            {
                copy.extend_from_slice(data);
            }
            frame
        });
        req = Request::from_parts(parts, Body::new(teed));
    }
    let mut panic_guard =
        PanicGuard { auditor: auditor.clone(), request: Some(request.clone()), context: context.clone() };
    let resp = next(req).await;
    panic_guard.request = None;
    let user = context.user();
    let decision = auditor.policy.decide(&request.info, user.as_ref());
    if decision.level == Level::None {
        return resp;
    }
    let request_body = body_copy.lock().map(|b| b.clone().freeze()).unwrap_or_default();
    record(auditor, &request, &context, &decision, request_body, resp).await
}

/// What is known of a request when it arrives.
#[derive(Clone)]
struct RequestFacts {
    received: jiff::Timestamp,
    uri: String,
    user_agent: String,
    source_ips: Vec<String>,
    audit_id: String,
    info: Arc<RequestInfo>,
}

impl RequestFacts {
    fn stamp(&self, decision: &Decision, stage: Stage, context: &AuditContext) -> Event {
        let (user, impersonated_user) = (context.user(), context.impersonated_user());
        let mut event = Stamp {
            level: decision.level,
            stage,
            audit_id: &self.audit_id,
            info: &self.info,
            request_uri: &self.uri,
            user: user.as_ref(),
            impersonated_user: impersonated_user.as_ref(),
            source_ips: &self.source_ips,
            user_agent: &self.user_agent,
            received: self.received,
        }
        .event();
        event.annotations = context.annotations(decision.level);
        event
    }
}

/// Write the request's events; returns the response (its body collected when it had to be read, and for a watch
/// wrapped so that its end is recorded).
async fn record(
    auditor: &Arc<Auditor>,
    request: &RequestFacts,
    context: &Arc<AuditContext>,
    decision: &Decision,
    request_body: Bytes,
    resp: Response,
) -> Response {
    if decision.records(Stage::RequestReceived) {
        let mut ev = request.stamp(decision, Stage::RequestReceived, context);
        ev.stage_timestamp = ev.request_received_timestamp.clone();
        auditor.record(ev);
    }
    let code = resp.status();
    let watch = request.info.verb == Verb::Watch && code.is_success();
    if watch {
        if decision.records(Stage::ResponseStarted) {
            let mut ev = request.stamp(decision, Stage::ResponseStarted, context);
            ev.response_status = Some(success_status(code));
            auditor.record(ev);
        }
        if !decision.records(Stage::ResponseComplete) {
            return resp;
        }
        let mut ev = request.stamp(decision, Stage::ResponseComplete, context);
        ev.response_status = Some(success_status(code));
        let done = StreamEnd { auditor: auditor.clone(), event: Some(ev) };
        let (parts, body) = resp.into_parts();
        let body = body.map_frame(move |f| {
            let _ = &done;
            f
        });
        return Response::from_parts(parts, Body::new(body));
    }
    let (parts, body) = resp.into_parts();
    let needs_body = !code.is_success() || decision.level == Level::RequestResponse;
    let (body, response_body) = if needs_body {
        let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        (Body::from(bytes.clone()), Some(bytes))
    } else {
        (body, None)
    };
    if decision.records(Stage::ResponseComplete) {
        let mut ev = request.stamp(decision, Stage::ResponseComplete, context);
        let response_json = response_body.as_deref().and_then(|b| serde_json::from_slice::<Value>(b).ok());
        ev.response_status =
            Some(if code.is_success() { success_status(code) } else { failure_status(code, response_json.as_ref()) });
        if decision.level >= Level::Request && !request_body.is_empty() {
            ev.request_object = as_json(&request_body);
        }
        if decision.level == Level::RequestResponse && code.is_success() {
            ev.response_object = response_json;
        }
        if decision.omit_managed_fields {
            for object in [&mut ev.request_object, &mut ev.response_object].into_iter().flatten() {
                without_managed_fields(object);
            }
        }
        auditor.record(ev);
    }
    Response::from_parts(parts, body)
}

/// Remove `metadata.managedFields` from `object`, or from each item of a list (upstream's
/// `copyWithoutManagedFields`); anything else (a Status, DeleteOptions) stays as it is.
fn without_managed_fields(object: &mut Value) {
    let strip = |o: &mut Value| {
        if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
    };
    match object.get_mut("items").and_then(Value::as_array_mut) {
        Some(items) => items.iter_mut().for_each(strip),
        None => strip(object),
    }
}

/// A JSON (or YAML, as apply bodies are) request body as a JSON value for `requestObject`.
fn as_json(body: &[u8]) -> Option<Value> {
    serde_json::from_slice(body)
        .ok()
        .or_else(|| std::str::from_utf8(body).ok().and_then(|t| serde_saphyr::from_str::<Value>(t).ok()))
}

fn success_status(code: StatusCode) -> Value {
    json!({"metadata": {}, "code": code.as_u16()})
}

/// The failure `Status` the client got, without its type fields.
fn failure_status(code: StatusCode, body: Option<&Value>) -> Value {
    match body {
        Some(Value::Object(m)) if m.get("kind").and_then(Value::as_str) == Some("Status") => {
            let mut m = m.clone();
            m.remove("kind");
            m.remove("apiVersion");
            Value::Object(m)
        }
        _ => json!({"metadata": {}, "status": "Failure", "code": code.as_u16()}),
    }
}

/// Records a watch's ResponseComplete when its stream is dropped (ended, or the client went away).
struct StreamEnd {
    auditor: Arc<Auditor>,
    event: Option<Event>,
}

impl Drop for StreamEnd {
    fn drop(&mut self) {
        if let Some(mut ev) = self.event.take() {
            ev.stage_timestamp = micro_time(jiff::Timestamp::now());
            self.auditor.record(ev);
        }
    }
}

/// Records the Panic stage when a handler panics (the panic-recovery filter, outside, answers 500).
struct PanicGuard {
    auditor: Arc<Auditor>,
    request: Option<RequestFacts>,
    context: Arc<AuditContext>,
}

impl Drop for PanicGuard {
    fn drop(&mut self) {
        let Some(request) = self.request.take() else { return };
        if !std::thread::panicking() {
            return;
        }
        let decision = self.auditor.policy.decide(&request.info, self.context.user().as_ref());
        if decision.level == Level::None {
            return;
        }
        let mut ev = request.stamp(&decision, Stage::Panic, &self.context);
        ev.response_status =
            Some(json!({"metadata": {}, "status": "Failure", "message": "APIServer panic'd", "code": 500}));
        self.auditor.record(ev);
    }
}

/// The request's `Audit-ID` when usable, else a new UUID.
fn audit_id(headers: &HeaderMap) -> String {
    headers
        .get(AUDIT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= MAX_AUDIT_ID)
        .map_or_else(crate::registry::meta::new_uuid, str::to_string)
}

/// `X-Forwarded-For`, then `X-Real-Ip`, then the peer's address, as upstream's `SourceIPs`.
fn source_ips(headers: &HeaderMap, peer: Option<&PeerAddr>) -> Vec<String> {
    let mut ips: Vec<String> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        .map(str::to_string)
        .take(16)
        .collect();
    if let Some(real) = headers.get("x-real-ip").and_then(|v| v.to_str().ok()).map(str::trim)
        && real.parse::<std::net::IpAddr>().is_ok()
        && !ips.iter().any(|ip| ip == real)
    {
        ips.push(real.to_string());
    }
    if let Some(PeerAddr(addr)) = peer {
        let ip = addr.ip().to_string();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}
