//! Delegation to kube-apiserver: bearer tokens checked with a TokenReview, requests authorized with a
//! SubjectAccessReview, both cached with TTLs as k8s.io/apiserver's delegating authenticator and authorizer do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::request::Parts;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

use super::authn::{Authenticator, AuthnError, UserInfo, bearer_token};
use super::authz::{Authorizer, Decision};
use crate::health::Diagnosis;
use crate::request::info::RequestInfo;

/// Upstream caches at most this many authorization decisions; authentication likewise here.
const MAX_CACHE_ENTRIES: usize = 8192;
/// Decisions whose attributes are this long or longer are not cached (upstream's `shouldCache`).
const MAX_CACHED_ATTRIBUTE_BYTES: usize = 10_000;

pub const CHECK_TOKENREVIEW: &str = "delegated-authentication";
pub const CHECK_SAR: &str = "delegated-authorization";

/// A TTL cache bounded in size.
struct TtlCache<V> {
    entries: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> TtlCache<V> {
    fn new() -> Self {
        Self { entries: Mutex::new(HashMap::new()) }
    }

    fn get(&self, key: &str) -> Option<V> {
        let now = Instant::now();
        let entries = self.entries.lock().ok()?;
        entries.get(key).filter(|(exp, _)| *exp > now).map(|(_, v)| v.clone())
    }

    fn put(&self, key: String, value: V, expires: Instant) {
        let Ok(mut entries) = self.entries.lock() else { return };
        if entries.len() >= MAX_CACHE_ENTRIES {
            let now = Instant::now();
            entries.retain(|_, (exp, _)| *exp > now);
            if entries.len() >= MAX_CACHE_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (expires, value));
    }
}

/// What a kube API error means for the setup, in plain words.
pub(crate) fn explain(e: &kube::Error, what: &str, fix: &str) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => format!("{what} is forbidden by kube-apiserver: {fix}"),
        kube::Error::Api(s) => format!("{what} failed: {} ({})", s.message, s.code),
        other => format!("{what} failed: kube-apiserver unreachable: {other}"),
    }
}

pub(crate) const AUTH_DELEGATOR_FIX: &str = "bind the server's ServiceAccount to the ClusterRole system:auth-delegator \
    (a ClusterRoleBinding), which allows creating tokenreviews and subjectaccessreviews";

/// Bearer tokens checked with `authentication.k8s.io/v1` TokenReviews.
pub struct TokenReviewAuthenticator {
    client: kube::Client,
    ttl: Duration,
    audiences: Vec<String>,
    cache: TtlCache<Option<UserInfo>>,
    diagnosis: Arc<Diagnosis>,
}

impl TokenReviewAuthenticator {
    pub fn new(client: kube::Client, ttl: Duration, audiences: Vec<String>, diagnosis: Arc<Diagnosis>) -> Self {
        Self { client, ttl, audiences, cache: TtlCache::new(), diagnosis }
    }

    /// When a cached answer for `token` must expire: the TTL, but never after the token's own `exp`.
    fn expiry(&self, token: &str) -> Instant {
        let ttl_end = Instant::now() + self.ttl;
        #[derive(serde::Deserialize)]
        struct Claims {
            exp: Option<i64>,
        }
        match jsonwebtoken::dangerous::insecure_decode_claims::<Claims>(token).ok().and_then(|c| c.exp) {
            Some(exp) => {
                let left = exp - jiff::Timestamp::now().as_second();
                let until_exp = Instant::now() + Duration::from_secs(left.max(0) as u64);
                ttl_end.min(until_exp)
            }
            None => ttl_end,
        }
    }

    async fn review(&self, token: &str) -> Result<Option<UserInfo>, AuthnError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let result = match api.create(&PostParams::default(), &review).await {
            Ok(r) => {
                self.diagnosis.set(CHECK_TOKENREVIEW, None);
                r
            }
            Err(e) => {
                let msg = explain(&e, "TokenReview", AUTH_DELEGATOR_FIX);
                self.diagnosis.set(CHECK_TOKENREVIEW, Some(msg.clone()));
                return Err(AuthnError(msg));
            }
        };
        let status = result.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Ok(None);
        }
        let u = status.user.unwrap_or_default();
        Ok(Some(UserInfo {
            name: u.username.unwrap_or_default(),
            uid: u.uid.unwrap_or_default(),
            groups: u.groups.unwrap_or_default(),
            extra: u.extra.unwrap_or_default().into_iter().collect(),
        }))
    }
}

#[async_trait::async_trait]
impl Authenticator for TokenReviewAuthenticator {
    async fn authenticate(&self, parts: &mut Parts) -> Result<Option<UserInfo>, AuthnError> {
        let Some(token) = bearer_token(parts).map(str::to_string) else {
            return Ok(None);
        };
        let key = hex::encode(Sha256::digest(token.as_bytes()));
        let answer = match self.cache.get(&key) {
            Some(cached) => cached,
            None => {
                let fresh = self.review(&token).await?;
                self.cache.put(key, fresh.clone(), self.expiry(&token));
                fresh
            }
        };
        match answer {
            Some(u) => Ok(Some(u)),
            None => Err(AuthnError("invalid bearer token".into())),
        }
    }
}

/// Requests authorized with `authorization.k8s.io/v1` SubjectAccessReviews.
pub struct SubjectAccessReviewAuthorizer {
    client: kube::Client,
    allow_ttl: Duration,
    deny_ttl: Duration,
    cache: TtlCache<Decision>,
    diagnosis: Arc<Diagnosis>,
}

impl SubjectAccessReviewAuthorizer {
    pub fn new(client: kube::Client, allow_ttl: Duration, deny_ttl: Duration, diagnosis: Arc<Diagnosis>) -> Self {
        Self { client, allow_ttl, deny_ttl, cache: TtlCache::new(), diagnosis }
    }
}

/// The review's spec for `user` doing `info`.
pub fn review_spec(user: &UserInfo, info: &RequestInfo) -> SubjectAccessReviewSpec {
    let mut spec = SubjectAccessReviewSpec {
        user: Some(user.name.clone()),
        uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
        groups: Some(user.groups.clone()),
        extra: (!user.extra.is_empty()).then(|| user.extra.clone().into_iter().collect()),
        ..SubjectAccessReviewSpec::default()
    };
    if info.is_resource_request {
        spec.resource_attributes = Some(ResourceAttributes {
            namespace: Some(info.namespace.clone()),
            verb: Some(info.verb.as_str().to_string()),
            group: Some(info.api_group.clone()),
            version: Some(info.api_version.clone()),
            resource: Some(info.resource.clone()),
            subresource: Some(info.subresource.as_str().to_string()),
            name: Some(info.name.clone()),
            ..ResourceAttributes::default()
        });
    } else {
        spec.non_resource_attributes =
            Some(NonResourceAttributes { path: Some(info.path.clone()), verb: Some(info.verb.as_str().to_string()) });
    }
    spec
}

#[async_trait::async_trait]
impl Authorizer for SubjectAccessReviewAuthorizer {
    async fn authorize(&self, user: &UserInfo, info: &RequestInfo) -> Decision {
        let spec = review_spec(user, info);
        let key = serde_json::to_string(&spec).unwrap_or_default();
        let cacheable = key.len() < MAX_CACHED_ATTRIBUTE_BYTES;
        if cacheable && let Some(d) = self.cache.get(&key) {
            return d;
        }
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let review = SubjectAccessReview { spec, ..SubjectAccessReview::default() };
        let status = match api.create(&PostParams::default(), &review).await {
            Ok(r) => {
                self.diagnosis.set(CHECK_SAR, None);
                r.status.unwrap_or_default()
            }
            Err(e) => {
                let msg = explain(&e, "SubjectAccessReview", AUTH_DELEGATOR_FIX);
                self.diagnosis.set(CHECK_SAR, Some(msg.clone()));
                return Decision::Error(msg);
            }
        };
        let reason = status.reason.unwrap_or_default();
        let (decision, ttl) = if status.denied == Some(true) {
            (Decision::Deny(reason), self.deny_ttl)
        } else if status.allowed {
            (Decision::Allow, self.allow_ttl)
        } else {
            (Decision::NoOpinion(reason), self.deny_ttl)
        };
        if cacheable {
            self.cache.put(key, decision.clone(), Instant::now() + ttl);
        }
        decision
    }
}
