//! Who is calling: the authenticator interface, the chain, and the user it yields.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::request::Parts;

/// An authenticated (or anonymous) user, as `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

pub const ANONYMOUS_USER: &str = "system:anonymous";
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
pub const MASTERS_GROUP: &str = "system:masters";

impl UserInfo {
    pub fn anonymous() -> Self {
        Self { name: ANONYMOUS_USER.into(), groups: vec![UNAUTHENTICATED_GROUP.into()], ..Self::default() }
    }

    pub fn is_anonymous(&self) -> bool {
        self.name == ANONYMOUS_USER
    }

    /// Add `system:authenticated` unless present (authenticated users always carry it).
    pub fn with_authenticated_group(mut self) -> Self {
        if !self.groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
            self.groups.push(AUTHENTICATED_GROUP.into());
        }
        self
    }
}

/// Why authentication failed outright (as opposed to "not my kind of credential").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthnError(pub String);

/// One way to authenticate a request.
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// `Ok(Some(user))` when this authenticator recognises the request's credentials, `Ok(None)` when the request
    /// carries none of its kind, `Err` when it carries them but they are invalid.
    async fn authenticate(&self, parts: &mut Parts) -> Result<Option<UserInfo>, AuthnError>;
}

/// Authenticators tried in order; the first that recognises the request decides.
#[derive(Default, Clone)]
pub struct Chain(pub Vec<Arc<dyn Authenticator>>);

#[async_trait::async_trait]
impl Authenticator for Chain {
    async fn authenticate(&self, parts: &mut Parts) -> Result<Option<UserInfo>, AuthnError> {
        let mut last_err = None;
        for a in &self.0 {
            match a.authenticate(parts).await {
                Ok(Some(u)) => return Ok(Some(u.with_authenticated_group())),
                Ok(None) => {}
                Err(e) => last_err = Some(e),
            }
        }
        last_err.map_or(Ok(None), Err)
    }
}

/// The bearer token of a request, if any.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}
