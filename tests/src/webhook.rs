//! A small admission webhook server on loopback for the admission tests: HTTPS (HTTP/1.1) with a serving
//! certificate from a throw-away CA, for `<service>.<namespace>.svc` (a webhook reached through a Service) and
//! `127.0.0.1` (one reached by `url`). What it answers depends on the request path ([`Behaviour`]); every
//! AdmissionReview it receives is recorded, so tests can check what the server sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use crate::pki::base64;

/// The label the denying webhook requires and the mutating webhook adds.
pub const TEAM_LABEL: &str = "team";
/// The message of the denying webhook.
pub const DENIAL: &str = "every backup needs a team label";
/// The warning every answer carries.
pub const WARNING: &str = "checked by the test webhook";

/// What the webhook does, by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// `/deny-unlabelled`: denies (403, reason Forbidden) an object without the team label.
    DenyUnlabelled,
    /// `/add-label`: adds the team label with a JSON patch.
    AddLabel,
    /// `/allow`: allows.
    Allow,
    /// `/slow`: allows after 3 s.
    Slow,
}

impl Behaviour {
    pub fn path(self) -> &'static str {
        match self {
            Self::DenyUnlabelled => "/deny-unlabelled",
            Self::AddLabel => "/add-label",
            Self::Allow => "/allow",
            Self::Slow => "/slow",
        }
    }

    fn from_path(path: &str) -> Option<Self> {
        [Self::DenyUnlabelled, Self::AddLabel, Self::Allow, Self::Slow].into_iter().find(|b| b.path() == path)
    }
}

/// A running webhook server; it stops when dropped.
pub struct WebhookServer {
    pub port: u16,
    /// The CA of its serving certificate (a configuration's `caBundle`, base64).
    pub ca_bundle: String,
    received: Arc<Mutex<Vec<(Behaviour, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WebhookServer {
    /// Start on a free loopback port, serving for Service `service` in `namespace` and for 127.0.0.1.
    pub async fn start(namespace: &str, service: &str) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let names = [format!("{service}.{namespace}.svc"), "127.0.0.1".to_string()];
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let server = crate::https::serve("test-webhook-ca", &names, move |req| answer(req, log.clone())).await;
        Self { port: server.port, ca_bundle: base64(&server.ca_pem), received, task: server.task }
    }

    /// The reviews received so far by `behaviour`.
    pub fn reviews(&self, behaviour: Behaviour) -> Vec<Value> {
        self.received.lock().unwrap().iter().filter(|(b, _)| *b == behaviour).map(|(_, r)| r.clone()).collect()
    }
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    log: Arc<Mutex<Vec<(Behaviour, Value)>>>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let behaviour = Behaviour::from_path(req.uri().path());
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(behaviour) = behaviour else {
        return Ok(hyper::Response::builder().status(404).body(Full::new(Bytes::new())).unwrap());
    };
    log.lock().unwrap().push((behaviour, review.clone()));
    let request = &review["request"];
    let object = &request["object"];
    let labelled = object["metadata"]["labels"][TEAM_LABEL].is_string();
    let mut response = json!({
        "uid": request["uid"],
        "allowed": true,
        "warnings": [WARNING],
        "auditAnnotations": {"behaviour": behaviour.path().trim_start_matches('/')},
    });
    match behaviour {
        Behaviour::DenyUnlabelled if !labelled => {
            response["allowed"] = json!(false);
            response["status"] = json!({"code": 403, "reason": "Forbidden", "message": DENIAL});
        }
        Behaviour::AddLabel if object.is_object() && !labelled => {
            let patch = if object["metadata"]["labels"].is_object() {
                json!([{"op": "add", "path": format!("/metadata/labels/{TEAM_LABEL}"), "value": "platform"}])
            } else {
                json!([{"op": "add", "path": "/metadata/labels", "value": {TEAM_LABEL: "platform"}}])
            };
            response["patchType"] = json!("JSONPatch");
            response["patch"] = json!(base64(&patch.to_string()));
        }
        Behaviour::Slow => tokio::time::sleep(Duration::from_secs(3)).await,
        _ => {}
    }
    let answer = json!({"apiVersion": review["apiVersion"], "kind": "AdmissionReview", "response": response});
    Ok(hyper::Response::builder()
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(answer.to_string())))
        .unwrap())
}
