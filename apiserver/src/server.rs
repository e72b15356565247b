//! The HTTP server's routes, from the top of the request flow: [`router`] wraps them in the filters; resource
//! requests go to the endpoints, and discovery, OpenAPI, health, metrics and version are served from memory.
//!
//! TLS → filters (request info → metrics → authn → authz) → **routes** → endpoints → registry → storage.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use backup_storage::cacher::WakeGroup;
use http_body_util::BodyExt;
use serde_json::json;

use crate::admission::RequestContext;
use crate::audit;
use crate::auth::authn::UserInfo;
use crate::auth::authz::Authorizer;
use crate::discovery::Discovery;
use crate::endpoints;
use crate::error::ApiError;
use crate::filters::{self, FilterDeps};
use crate::health::{Endpoint, Health};
use crate::metrics::Metrics;
use crate::openapi::OpenApi;
use crate::registry::Registry;
use crate::request::info::RequestInfo;
use crate::request::query::Query;
use crate::tls::Http2Connection;

/// What the routes serve; built once at start.
pub struct Routes {
    pub registry: Registry,
    pub discovery: Discovery,
    pub openapi: OpenApi,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    pub version: serde_json::Value,
    /// For the permissions an endpoint checks beyond the request's verb.
    pub authorizer: Arc<dyn Authorizer>,
    /// Serve `/debug/flags/v` (`--profiling`, as upstream installs its debug routes).
    pub debug_flags: bool,
}

/// The whole router: the routes in their filters.
pub fn router(routes: Arc<Routes>, filters: FilterDeps) -> Router {
    filters::apply(Router::new().fallback(route).with_state(routes), filters)
}

/// Route a request that passed authn and authz.
async fn route(State(state): State<Arc<Routes>>, req: Request) -> Response {
    let ext = req.extensions();
    let (Some(info), Some(query), Some(user)) =
        (ext.get::<Arc<RequestInfo>>().cloned(), ext.get::<Arc<Query>>().cloned(), ext.get::<Arc<UserInfo>>().cloned())
    else {
        return ApiError::internal("request info missing").into_response();
    };
    let (parts, body) = req.into_parts();
    if info.is_resource_request {
        let request = RequestContext::new(user.clone(), audit::context(&parts.extensions));
        let cx = endpoints::Context {
            info: &info,
            query: &query,
            headers: &parts.headers,
            wake_group: parts.extensions.get::<Http2Connection>().map_or_else(WakeGroup::default, |c| WakeGroup(c.0)),
            user: &user,
            authorizer: state.authorizer.as_ref(),
            request: &request,
        };
        return endpoints::serve(&state.registry, cx, body).await;
    }
    let req = Request::from_parts(parts, body);
    let path = req.uri().path().to_string();
    if path == "/debug/flags/v" && state.debug_flags {
        return debug_flag_v(req).await;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return ApiError::method_not_allowed(req.method().as_str(), "path").into_response();
    }
    if let Some(resp) = state.discovery.serve(&path, req.headers()) {
        return resp;
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [""] => json_response(json!({"paths": index_paths(state.debug_flags)})),
        ["healthz", rest @ ..] => health(&state, Endpoint::Healthz, rest, &query).await,
        ["livez", rest @ ..] => health(&state, Endpoint::Livez, rest, &query).await,
        ["readyz", rest @ ..] => health(&state, Endpoint::Readyz, rest, &query).await,
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
            state.openapi.serve_v3_group_version(rest, query.get("hash"), req.headers())
        }
        _ => ApiError::path_not_found().into_response(),
    }
}

/// `PUT /debug/flags/v` (upstream's `routes.DebugFlags`): the log verbosity from the body, answered in plain text
/// as upstream answers.
async fn debug_flag_v(req: Request) -> Response {
    if req.method() != Method::PUT {
        return (StatusCode::METHOD_NOT_ALLOWED, "method not allowed").into_response();
    }
    let body = match http_body_util::Limited::new(req.into_body(), 1024).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return (StatusCode::BAD_REQUEST, "the level must be a number of at most 1 KiB").into_response(),
    };
    match crate::logging::set_verbosity(&body) {
        Ok(done) => done.into_response(),
        Err(why) => (StatusCode::BAD_REQUEST, why).into_response(),
    }
}

async fn health(state: &Routes, endpoint: Endpoint, rest: &[&str], query: &Query) -> Response {
    match rest {
        [] => state.health.serve(endpoint, None, query).await,
        [check] => state.health.serve(endpoint, Some(check), query).await,
        _ => ApiError::path_not_found().into_response(),
    }
}

/// The index's paths, sorted as upstream's.
fn index_paths(debug_flags: bool) -> Vec<String> {
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
    .into_iter()
    .chain(debug_flags.then(|| "/debug/flags/v".to_string()))
    .collect::<std::collections::BTreeSet<_>>()
    .into_iter()
    .collect()
}

fn json_response(v: serde_json::Value) -> Response {
    let mut r = serde_json::to_vec(&v).unwrap_or_default().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
