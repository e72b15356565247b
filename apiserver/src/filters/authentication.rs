//! The authentication filter (k8s.io/apiserver `WithAuthentication`): the authenticator chain decides who is
//! calling; the user goes into the request's extensions. Invalid credentials are 401; no credentials make
//! `system:anonymous`, which passes only on the always-allow paths (health endpoints, for kubelet probes).
//!
//! request info → metrics → **authentication** → authorization → endpoints.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};

use super::Next;
use crate::auth::authn::{Authenticator, UserInfo};
use crate::auth::authz::AlwaysAllowPaths;
use crate::error::ApiError;
use crate::request::info::RequestInfo;

/// `authenticator` decides who calls; `always_allow` are the paths anonymous users may reach.
pub async fn authenticate(
    authenticator: &dyn Authenticator,
    always_allow: &AlwaysAllowPaths,
    req: Request,
    next: impl Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let Some(info) = parts.extensions.get::<Arc<RequestInfo>>().cloned() else {
        return ApiError::internal("request info missing").into_response();
    };
    let user = match authenticator.authenticate(&mut parts).await {
        Ok(Some(u)) => u,
        Ok(None) => UserInfo::anonymous(),
        Err(e) => {
            tracing::debug!(error = %e, path = %info.path, "authentication failed");
            return ApiError::unauthorized().into_response();
        }
    };
    if let Some(audit) = crate::audit::context(&parts.extensions) {
        audit.set_user(&user);
    }
    let always_allowed = !info.is_resource_request && always_allow.contains(&info.path);
    if user.is_anonymous() && !always_allowed {
        return ApiError::unauthorized().into_response();
    }
    parts.extensions.insert(Arc::new(user));
    next(Request::from_parts(parts, body)).await
}
