//! The authorization filter (k8s.io/apiserver `WithAuthorization`): the authorizer union decides whether the
//! user may do what the [`RequestInfo`] says; a denial is upstream's 403, an authorizer that cannot decide 500.
//!
//! request info → metrics → authentication → **authorization** → endpoints.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::authn::UserInfo;
use crate::auth::authz::{Authorizer, Decision};
use crate::error::ApiError;
use crate::request::info::{RequestInfo, Subresource};

pub async fn authorize(State(authorizer): State<Arc<dyn Authorizer>>, req: Request, next: Next) -> Response {
    let (Some(info), Some(user)) =
        (req.extensions().get::<Arc<RequestInfo>>().cloned(), req.extensions().get::<Arc<UserInfo>>().cloned())
    else {
        return ApiError::internal("request info or user missing").into_response();
    };
    match authorizer.authorize(&user, &info).await {
        Decision::Allow => next.run(req).await,
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

/// The 403 for a denied request, worded as upstream's `forbiddenMessage`.
fn forbidden(user: &UserInfo, info: &RequestInfo, reason: &str) -> ApiError {
    let suffix = if reason.is_empty() { String::new() } else { format!(": {reason}") };
    if !info.is_resource_request {
        let msg = format!("User \"{}\" cannot {} path \"{}\"{suffix}", user.name, info.verb, info.path);
        return ApiError::forbidden("", "", msg);
    }
    let mut resource = info.resource.clone();
    if info.subresource != Subresource::Main {
        resource = format!("{resource}/{}", info.subresource.as_str());
    }
    let scope = if info.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", info.namespace)
    };
    let msg = format!(
        "User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}{suffix}",
        user.name, info.verb, info.api_group
    );
    let qualified = if info.api_group.is_empty() { resource.clone() } else { format!("{resource}.{}", info.api_group) };
    ApiError::forbidden(&qualified, &info.name, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn forbidden_matches_upstream() {
        let user = UserInfo { name: "bob".into(), ..UserInfo::default() };
        let info = RequestInfo::parse(
            &Method::GET,
            "/apis/backup.extend-k8s.io/v1/namespaces/default/timeseriesdbbackups/x",
            false,
            None,
        )
        .unwrap();
        let e = forbidden(&user, &info, "");
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "timeseriesdbbackups.backup.extend-k8s.io \"x\" is forbidden: User \"bob\" cannot get resource \"timeseriesdbbackups\" in API group \"backup.extend-k8s.io\" in the namespace \"default\""
        );
        let info = RequestInfo::parse(&Method::GET, "/metrics", false, None).unwrap();
        assert_eq!(forbidden(&user, &info, "").message, "forbidden: User \"bob\" cannot get path \"/metrics\"");
    }
}
