//! The authorization filter (k8s.io/apiserver `WithAuthorization`): the authorizer union decides whether the
//! user may do what the [`RequestInfo`] says; a denial is upstream's 403, an authorizer that cannot decide 500.
//!
//! request info → metrics → authentication → **authorization** → endpoints.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};

use super::Next;
use crate::auth::authn::UserInfo;
use crate::auth::authz::{Authorizer, Decision, forbidden};
use crate::error::ApiError;
use crate::request::info::RequestInfo;

pub async fn authorize(authorizer: &dyn Authorizer, req: Request, next: impl Next) -> Response {
    let (Some(info), Some(user)) =
        (req.extensions().get::<Arc<RequestInfo>>().cloned(), req.extensions().get::<Arc<UserInfo>>().cloned())
    else {
        return ApiError::internal("request info or user missing").into_response();
    };
    let decision = authorizer.authorize(&user, &info).await;
    if let Some(audit) = crate::audit::context(req.extensions()) {
        let (verdict, reason) = match &decision {
            Decision::Allow => ("allow", ""),
            Decision::Deny(r) | Decision::NoOpinion(r) => ("forbid", r.as_str()),
            Decision::Error(e) => ("forbid", e.as_str()),
        };
        audit.annotate("authorization.k8s.io/decision", verdict);
        audit.annotate("authorization.k8s.io/reason", reason);
    }
    match decision {
        Decision::Allow => next(req).await,
        Decision::Deny(reason) | Decision::NoOpinion(reason) => {
            tracing::debug!(user = %user.name, verb = %info.verb, path = %info.path, "forbidden");
            forbidden(&user, &info, &reason).into_response()
        }
        Decision::Error(e) => {
            tracing::warn!(user = %user.name, path = %info.path, error = %e, "authorization failed");
            ApiError::internal(e).into_response()
        }
    }
}
