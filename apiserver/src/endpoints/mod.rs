//! The endpoints of resource requests (k8s.io/apiserver `endpoints/handlers`): [`serve`] finds the resource's
//! store and checks the path's shape, then hands the request to the file of its verb — [`get`], [`list`],
//! [`watch`], [`create`], [`update`], [`patch`], [`delete`], [`delete_collection`] — which decodes its options and
//! body, calls the registry store, and renders the result through [`output`].
//!
//! TLS → filters (request info → authn → authz) → **endpoints** → registry store → strategy → storage.

pub mod create;
pub mod delete;
pub mod delete_collection;
pub mod get;
pub mod list;
pub mod output;
pub mod patch;
pub mod update;
pub mod watch;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use backup_storage::cacher::WakeGroup;

use crate::admission::RequestContext;
use crate::auth::authn::UserInfo;
use crate::auth::authz::Authorizer;
use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;
use crate::registry::store::Store;
use crate::request::info::{RequestInfo, Subresource, Verb};
use crate::request::query::Query;

/// A resource request routed to its store: what every verb's endpoint works from.
pub struct ResourceRequest<'a> {
    pub store: &'a Arc<Store>,
    pub info: &'a RequestInfo,
    pub query: &'a Query,
    pub headers: &'a HeaderMap,
    pub body: Body,
    /// The watchers a watch is woken with: its HTTP/2 connection's.
    pub wake_group: WakeGroup,
    /// Who is asking (authenticated by the filters).
    pub user: &'a UserInfo,
    /// For permissions a request needs beyond its verb (e.g. an unsafe delete).
    pub authorizer: &'a dyn Authorizer,
    /// The user, audit context and warnings, for admission.
    pub request: &'a RequestContext,
}

/// The request's context beside its store: what [`serve`] receives from the routes.
pub struct Context<'a> {
    pub info: &'a RequestInfo,
    pub query: &'a Query,
    pub headers: &'a HeaderMap,
    pub wake_group: WakeGroup,
    pub user: &'a UserInfo,
    pub authorizer: &'a dyn Authorizer,
    pub request: &'a RequestContext,
}

impl ResourceRequest<'_> {
    /// The `Accept` header.
    pub fn accept(&self) -> Option<&str> {
        self.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
    }

    /// The `User-Agent` header ("" when absent or not text).
    pub fn user_agent(&self) -> &str {
        self.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The request's namespace (None for a cluster-wide list or watch).
    pub fn namespace(&self) -> Option<&str> {
        Some(self.info.namespace.as_str()).filter(|ns| !ns.is_empty())
    }
}

/// Serve one resource request; what admission warned about goes in `Warning` headers, whatever the answer.
pub async fn serve(registry: &Registry, cx: Context<'_>, body: Body) -> Response {
    let request = cx.request;
    let mut response = match route(registry, cx, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    output::warning::append_warnings(response.headers_mut(), &request.take_warnings());
    response
}

async fn route(registry: &Registry, cx: Context<'_>, body: Body) -> ApiResult<Response> {
    let info = cx.info;
    if info.api_group != backup_apis::GROUP || info.api_version != backup_apis::VERSION {
        return Err(ApiError::path_not_found());
    }
    let store = registry.store(&info.resource).ok_or_else(ApiError::path_not_found)?;
    let r = store.info();
    let ns_ok = if r.namespaced {
        !info.namespace.is_empty() || matches!(info.verb, Verb::List | Verb::Watch)
    } else {
        info.namespace.is_empty()
    };
    if !ns_ok {
        return Err(ApiError::path_not_found());
    }
    match &info.subresource {
        Subresource::Main => {}
        Subresource::Status if r.status_subresource => {}
        _ => return Err(ApiError::path_not_found()),
    }
    for segment in [&info.name, &info.namespace] {
        if segment.contains('%') || segment == "." || segment == ".." {
            return Err(ApiError::bad_request(format!(
                "Name parameter invalid: {segment:?}: may not be '.' or '..' or contain '%'"
            )));
        }
    }
    // Collections take POST, items take PUT and PATCH; `/status` takes GET, PUT and PATCH: anything else is 405,
    // as upstream's routes.
    let on_status = info.subresource == Subresource::Status;
    let allowed = match info.verb {
        Verb::Create => info.name.is_empty() && !on_status,
        Verb::Update | Verb::Patch => !info.name.is_empty(),
        Verb::Get => true,
        Verb::List | Verb::Watch | Verb::Delete | Verb::DeleteCollection => !on_status,
        Verb::Post
        | Verb::Put
        | Verb::Head
        | Verb::Options
        | Verb::UnsafeDeleteIgnoreReadErrors
        | Verb::Impersonate => false,
    };
    if !allowed {
        return Err(ApiError::method_not_allowed(info.verb.as_str(), r.kind));
    }
    let Context { info, query, headers, wake_group, user, authorizer, request } = cx;
    let req = ResourceRequest { store, info, query, headers, body, wake_group, user, authorizer, request };
    match info.verb {
        Verb::Get => get::serve(req).await,
        Verb::List => list::serve(req).await,
        Verb::Watch => watch::serve(req).await,
        Verb::Create => create::serve(req).await,
        Verb::Update => update::serve(req).await,
        Verb::Patch => patch::serve(req).await,
        Verb::Delete => delete::serve(req).await,
        Verb::DeleteCollection => delete_collection::serve(req).await,
        Verb::Post
        | Verb::Put
        | Verb::Head
        | Verb::Options
        | Verb::UnsafeDeleteIgnoreReadErrors
        | Verb::Impersonate => Err(ApiError::method_not_allowed(info.verb.as_str(), r.kind)),
    }
}
