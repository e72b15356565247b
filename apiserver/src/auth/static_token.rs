//! One fixed bearer token for one user: the standalone admin.

use axum::http::request::Parts;

use rand::Rng;

use super::authn::{Authenticator, AuthnError, MASTERS_GROUP, UserInfo, bearer_token};

/// Authenticates requests carrying `token` as `user`.
pub struct StaticToken {
    pub token: String,
    pub user: UserInfo,
}

impl StaticToken {
    /// Standalone mode's admin (group `system:masters`) with a random token (32 bytes, hex).
    pub fn standalone_admin() -> Self {
        let bytes: [u8; 32] = rand::rng().random();
        let user = UserInfo {
            name: "admin".into(),
            uid: "standalone-admin".into(),
            groups: vec![MASTERS_GROUP.into()],
            ..UserInfo::default()
        };
        Self { token: hex::encode(bytes), user }
    }
}

#[async_trait::async_trait]
impl Authenticator for StaticToken {
    async fn authenticate(&self, parts: &mut Parts) -> Result<Option<UserInfo>, AuthnError> {
        match bearer_token(parts) {
            Some(t) if t == self.token => Ok(Some(self.user.clone())),
            _ => Ok(None),
        }
    }
}
