//! The HTTP server: the filter chain and the routes, from the top of the request flow.
//!
//! **HTTP (request info, metrics, headers)** → authn → authz → routes: discovery, OpenAPI, health, metrics,
//! version, and resource requests (the generic REST handlers).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::json;

use crate::auth::authn::Chain;
use crate::auth::authz::Union;
use crate::auth::filter::authenticate_and_authorize;
use crate::discovery::Discovery;
use crate::error::ApiError;
use crate::health::{Endpoint, Health};
use crate::metrics::{DurationLabels, Metrics, RequestLabels, WatchLabels};
use crate::openapi::OpenApi;
use crate::request_info::RequestInfo;
use crate::rest::Registry;
use crate::rest::handlers;
use crate::rest::params::Params;

/// Everything the handlers share; built once at start.
pub struct AppState {
    pub registry: Registry,
    pub discovery: Discovery,
    pub openapi: OpenApi,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    pub authn: Chain,
    pub authz: Union,
    pub version: serde_json::Value,
}

/// The whole router with its filters.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .fallback(route)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate_and_authorize))
        .layer(middleware::from_fn_with_state(state.clone(), request_info_and_metrics))
        .with_state(state)
}

/// Parse the RequestInfo, then record the request's metrics and set the common headers on the way out.
async fn request_info_and_metrics(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let params = Params::parse(req.uri().query());
    let name_selector = params
        .get("fieldSelector")
        .and_then(|s| s.split(',').find_map(|t| t.trim().strip_prefix("metadata.name=")))
        .map(str::to_string);
    let info =
        Arc::new(RequestInfo::parse(req.method(), req.uri().path(), params.flag("watch"), name_selector.as_deref()));
    let is_apply = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/apply-patch"));
    let dry_run = params.get("dryRun").unwrap_or("").to_string();
    req.extensions_mut().insert(info.clone());
    let mut resp = next.run(req).await;
    tracing::debug!(verb = %info.verb, path = %info.path, code = resp.status().as_u16(), "request");
    let h = resp.headers_mut();
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    }
    let verb = metrics_verb(&info, is_apply);
    let scope = if !info.is_resource_request {
        ""
    } else if !info.name.is_empty() {
        "resource"
    } else if !info.namespace.is_empty() {
        "namespace"
    } else {
        "cluster"
    };
    let (resource, group, version) = if info.is_resource_request {
        (info.resource.clone(), info.api_group.clone(), info.api_version.clone())
    } else {
        (String::new(), String::new(), String::new())
    };
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            verb: verb.clone(),
            dry_run,
            group: group.clone(),
            version: version.clone(),
            resource: resource.clone(),
            subresource: info.subresource.clone(),
            scope: scope.into(),
            component: "apiserver".into(),
            code: resp.status().as_u16().to_string(),
        })
        .inc();
    let durations = DurationLabels {
        verb: verb.clone(),
        group: group.clone(),
        version: version.clone(),
        resource: resource.clone(),
        subresource: info.subresource.clone(),
        scope: scope.into(),
    };
    if verb == "WATCH" && resp.status().is_success() {
        // Count the watch as open until its body is dropped.
        let gauge = state.metrics.watchers.get_or_create(&WatchLabels { group, version, resource }).clone();
        gauge.inc();
        let guard = WatchGuard(gauge);
        let (parts, body) = resp.into_parts();
        let body = body.map_frame(move |f| {
            let _ = &guard;
            f
        });
        return Response::from_parts(parts, Body::new(body));
    }
    state.metrics.durations.get_or_create(&durations).observe(start.elapsed().as_secs_f64());
    resp
}

struct WatchGuard(prometheus_client::metrics::gauge::Gauge);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Upstream's verb label: GET, LIST, WATCH, POST, PUT, PATCH, APPLY, DELETE, DELETECOLLECTION.
fn metrics_verb(info: &RequestInfo, is_apply: bool) -> String {
    if !info.is_resource_request {
        return info.verb.to_ascii_uppercase();
    }
    match info.verb.as_str() {
        "create" => "POST".into(),
        "update" => "PUT".into(),
        "patch" if is_apply => "APPLY".into(),
        other => other.to_ascii_uppercase(),
    }
}

/// Route a request that passed authn and authz.
async fn route(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let Some(info) = req.extensions().get::<Arc<RequestInfo>>().cloned() else {
        return ApiError::internal("request info missing").into_response();
    };
    if info.is_resource_request {
        return handlers::handle(&state.registry, &info, req).await;
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return ApiError::method_not_allowed(req.method().as_str(), "path").into_response();
    }
    if let Some(resp) = state.discovery.serve(&path, req.headers()) {
        return resp;
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [""] => json_response(json!({"paths": index_paths()})),
        ["healthz", rest @ ..] => health(&state, Endpoint::Healthz, rest, query.as_deref()).await,
        ["livez", rest @ ..] => health(&state, Endpoint::Livez, rest, query.as_deref()).await,
        ["readyz", rest @ ..] => health(&state, Endpoint::Readyz, rest, query.as_deref()).await,
        ["metrics"] => {
            let mut r = state.metrics.encode().into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            r
        }
        ["version"] => json_response(state.version.clone()),
        ["openapi", "v2"] => state.openapi.serve_v2(req.headers()),
        ["openapi", "v3"] => state.openapi.serve_v3_index(req.headers()),
        ["openapi", "v3", ..] => {
            let rest = path.trim_start_matches("/openapi/v3/");
            state.openapi.serve_v3_group_version(rest, query.as_deref(), req.headers())
        }
        _ => ApiError::path_not_found().into_response(),
    }
}

async fn health(state: &AppState, endpoint: Endpoint, rest: &[&str], query: Option<&str>) -> Response {
    match rest {
        [] => state.health.serve(endpoint, None, query).await,
        [check] => state.health.serve(endpoint, Some(check), query).await,
        _ => ApiError::path_not_found().into_response(),
    }
}

fn index_paths() -> Vec<String> {
    let g = backup_apis::GROUP;
    let v = backup_apis::VERSION;
    [
        "/api".to_string(),
        "/api/v1".into(),
        "/apis".into(),
        format!("/apis/{g}"),
        format!("/apis/{g}/{v}"),
        "/healthz".into(),
        "/livez".into(),
        "/metrics".into(),
        "/openapi/v2".into(),
        "/openapi/v3".into(),
        "/readyz".into(),
        "/version".into(),
    ]
    .into()
}

fn json_response(v: serde_json::Value) -> Response {
    let mut r = serde_json::to_vec(&v).unwrap_or_default().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
