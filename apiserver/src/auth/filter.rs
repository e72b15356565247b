//! The authentication and authorization filter in front of every handler (after [`crate::server`]'s request-info
//! filter has parsed the request).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::authn::{Authenticator, UserInfo};
use crate::auth::authz::{Authorizer, Decision, forbidden};
use crate::error::ApiError;
use crate::request_info::RequestInfo;
use crate::server::AppState;

/// Parse the request's [`RequestInfo`], authenticate, authorize; on success the handler sees both as request
/// extensions.
pub async fn authenticate_and_authorize(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let Some(info) = parts.extensions.get::<Arc<RequestInfo>>().cloned() else {
        return ApiError::internal("request info missing").into_response();
    };
    let user = match state.authn.authenticate(&mut parts).await {
        Ok(Some(u)) => u,
        Ok(None) => UserInfo::anonymous(),
        Err(e) => {
            tracing::debug!(error = %e, path = %info.path, "authentication failed");
            return ApiError::unauthorized().into_response();
        }
    };
    let always_allowed = !info.is_resource_request && state.authz.is_always_allowed(&info.path);
    if user.is_anonymous() && !always_allowed {
        return ApiError::unauthorized().into_response();
    }
    match state.authz.authorize(&user, &info).await {
        Decision::Allow => {}
        Decision::Deny(reason) | Decision::NoOpinion(reason) => {
            tracing::debug!(user = %user.name, verb = %info.verb, path = %info.path, "forbidden");
            return forbidden(&user, &info, &reason).into_response();
        }
        Decision::Error(e) => {
            tracing::warn!(user = %user.name, path = %info.path, error = %e, "authorization failed");
            return ApiError::internal(e).into_response();
        }
    }
    parts.extensions.insert(Arc::new(user));
    next.run(Request::from_parts(parts, body)).await
}
