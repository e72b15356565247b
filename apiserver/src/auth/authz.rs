//! May they do it: the authorizer interface and the decisions every setup shares (always-allow paths, the
//! `system:masters` group), and upstream's Forbidden wording. The authorization filter asks the [`Union`].

use std::sync::Arc;

use crate::auth::authn::{MASTERS_GROUP, UserInfo};
use crate::error::ApiError;
use crate::request::info::{RequestInfo, Subresource};

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Denied, with a reason to show.
    Deny(String),
    /// No opinion: the next authorizer decides; at the end of the union it is a denial.
    NoOpinion(String),
    /// The authorizer could not decide (e.g. kube-apiserver unreachable): 500.
    Error(String),
}

#[async_trait::async_trait]
pub trait Authorizer: Send + Sync + 'static {
    async fn authorize(&self, user: &UserInfo, info: &RequestInfo) -> Decision;
}

/// Allows every authenticated user (standalone mode).
pub struct AllowAll;

#[async_trait::async_trait]
impl Authorizer for AllowAll {
    async fn authorize(&self, _: &UserInfo, _: &RequestInfo) -> Decision {
        Decision::Allow
    }
}

/// `--authorization-always-allow-paths`: non-resource paths anyone may GET, even without credentials.
#[derive(Debug, Clone, Default)]
pub struct AlwaysAllowPaths(pub Vec<String>);

impl AlwaysAllowPaths {
    /// Whether `path` is on the list (entries ending in `*` are prefixes).
    pub fn contains(&self, path: &str) -> bool {
        self.0.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == p,
        })
    }
}

/// The union every server runs: always-allow paths, then `system:masters`, then the configured authorizer.
pub struct Union {
    pub always_allow: Arc<AlwaysAllowPaths>,
    pub inner: Box<dyn Authorizer>,
}

#[async_trait::async_trait]
impl Authorizer for Union {
    async fn authorize(&self, user: &UserInfo, info: &RequestInfo) -> Decision {
        if !info.is_resource_request && self.always_allow.contains(&info.path) {
            return Decision::Allow;
        }
        if user.groups.iter().any(|g| g == MASTERS_GROUP) {
            return Decision::Allow;
        }
        self.inner.authorize(user, info).await
    }
}

/// The 403 for a denied request, worded as upstream's `forbiddenMessage`.
pub fn forbidden(user: &UserInfo, info: &RequestInfo, reason: &str) -> ApiError {
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
