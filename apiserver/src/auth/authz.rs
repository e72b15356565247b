//! May they do it: the authorizer interface and the decisions every setup shares (always-allow paths, the
//! `system:masters` group). The authorization filter asks the [`Union`].

use std::sync::Arc;

use crate::auth::authn::{MASTERS_GROUP, UserInfo};
use crate::request::info::RequestInfo;

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
