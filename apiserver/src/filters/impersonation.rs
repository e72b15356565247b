//! The impersonation filter (k8s.io/apiserver `WithImpersonation`): `Impersonate-User`, `Impersonate-Uid`,
//! `Impersonate-Group` and `Impersonate-Extra-<key>` make the request act as another user, when the authenticated
//! user may `impersonate` each of them: `users` (or `serviceaccounts` for `system:serviceaccount:<ns>:<name>`) and
//! `groups` in the core group, `uids` and `userextras/<key>` in `authentication.k8s.io`, asked of the same
//! authorizer as every request. The first refusal is upstream's 403 naming what could not be impersonated.
//!
//! Through the aggregator these headers never arrive (kube-apiserver impersonates, then forwards the user it acts
//! as); they matter to clients that call this server directly.
//!
//! authentication → **impersonation** → max in flight → authorization → endpoints.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::Next;
use crate::auth::authn::{ANONYMOUS_USER, AUTHENTICATED_GROUP, UNAUTHENTICATED_GROUP, UserInfo};
use crate::auth::authz::{Authorizer, Decision, forbidden};
use crate::error::ApiError;
use crate::request::info::{RequestInfo, Subresource, Verb};

const USER_HEADER: &str = "impersonate-user";
const UID_HEADER: &str = "impersonate-uid";
const GROUP_HEADER: &str = "impersonate-group";
const EXTRA_PREFIX: &str = "impersonate-extra-";
/// Each impersonated name is its own authorization check (a SubjectAccessReview unless cached): at most this many
/// per request. Upstream has no bound; a request's 1 MiB of headers could otherwise ask for tens of thousands.
const MAX_IMPERSONATIONS: usize = 256;

/// One thing a request asks to act as.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Impersonation {
    User(String),
    ServiceAccount { namespace: String, name: String },
    Uid(String),
    Group(String),
    Extra { key: String, value: String },
}

impl Impersonation {
    /// The authorization attributes that must be allowed: verb `impersonate` on the thing.
    fn attributes(&self) -> RequestInfo {
        let mut info = RequestInfo::non_resource(Verb::Impersonate, "");
        info.is_resource_request = true;
        info.api_version = "v1".into();
        let (group, resource, name) = match self {
            Self::User(name) => ("", "users", name),
            Self::ServiceAccount { namespace, name } => {
                info.namespace = namespace.clone();
                ("", "serviceaccounts", name)
            }
            Self::Group(name) => ("", "groups", name),
            Self::Uid(uid) => ("authentication.k8s.io", "uids", uid),
            Self::Extra { key, value } => {
                info.subresource = Subresource::Other(key.as_str().into());
                ("authentication.k8s.io", "userextras", value)
            }
        };
        info.api_group = group.into();
        info.resource = resource.into();
        info.name = name.clone();
        info
    }
}

pub async fn impersonate(authorizer: &dyn Authorizer, req: Request, next: impl Next) -> Response {
    // Nearly every request has no impersonation header: one pass over the names to say so.
    if !req.headers().keys().any(|name| name.as_str().starts_with("impersonate-")) {
        return next(req).await;
    }
    let requested = match requested(req.headers()) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if requested.is_empty() {
        return next(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let Some(user) = parts.extensions.get::<Arc<UserInfo>>().cloned() else {
        return ApiError::internal("no user found for request").into_response();
    };
    for wanted in &requested {
        let attributes = wanted.attributes();
        let reason = match authorizer.authorize(&user, &attributes).await {
            Decision::Allow => continue,
            Decision::Deny(reason) | Decision::NoOpinion(reason) | Decision::Error(reason) => reason,
        };
        tracing::debug!(user = %user.name, ?wanted, %reason, "impersonation forbidden");
        return forbidden(&user, &attributes, &reason).into_response();
    }
    let acting_as = acting_as(&requested, parts.headers.contains_key(GROUP_HEADER));
    if let Some(audit) = crate::audit::context(&parts.extensions) {
        audit.set_impersonated_user(&acting_as);
    }
    tracing::debug!(user = %user.name, acting_as = %acting_as.name, "impersonating");
    strip_headers(&mut parts.headers);
    parts.extensions.insert(Arc::new(acting_as));
    next(Request::from_parts(parts, body)).await
}

/// What the headers ask to act as, in upstream's order (the user, its uid, the groups, the extras); a group, uid or
/// extra without a user is a 400.
fn requested(headers: &HeaderMap) -> Result<Vec<Impersonation>, ApiError> {
    let text = |name: &str, value: &axum::http::HeaderValue| {
        value.to_str().map(str::to_string).map_err(|_| {
            ApiError::bad_request(format!("the {name} header must be visible ASCII text (Go's header values)"))
        })
    };
    let mut requested = Vec::new();
    let user = match headers.get(USER_HEADER) {
        Some(v) => text("Impersonate-User", v)?,
        None => String::new(),
    };
    if !user.is_empty() {
        requested.push(match service_account(&user) {
            Some((namespace, name)) => Impersonation::ServiceAccount { namespace, name },
            None => Impersonation::User(user),
        });
    }
    if let Some(uid) = headers.get(UID_HEADER).map(|v| text("Impersonate-Uid", v)).transpose()?
        && !uid.is_empty()
    {
        requested.push(Impersonation::Uid(uid));
    }
    for group in headers.get_all(GROUP_HEADER) {
        requested.push(Impersonation::Group(text("Impersonate-Group", group)?));
    }
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix(EXTRA_PREFIX) {
            let key = percent_encoding::percent_decode_str(key).decode_utf8().map_or(key.into(), |k| k.into_owned());
            requested.push(Impersonation::Extra { key, value: text(name.as_str(), value)? });
        }
    }
    if requested.len() > MAX_IMPERSONATIONS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_IMPERSONATIONS} users, uids, groups and extras may be impersonated in one request"
        )));
    }
    if !requested.is_empty() && !matches!(requested[0], Impersonation::User(_) | Impersonation::ServiceAccount { .. }) {
        return Err(ApiError::bad_request(
            "impersonating a uid, groups or extras needs Impersonate-User: requested without impersonating a user",
        ));
    }
    Ok(requested)
}

/// `system:serviceaccount:<namespace>:<name>` with a valid namespace and name (upstream's `SplitUsername`).
fn service_account(user: &str) -> Option<(String, String)> {
    let (namespace, name) = user.strip_prefix("system:serviceaccount:")?.split_once(':')?;
    let valid = backup_apis::objectmeta::is_dns1123_label(namespace).is_empty()
        && backup_apis::objectmeta::is_dns1123_subdomain(name).is_empty();
    valid.then(|| (namespace.to_string(), name.to_string()))
}

/// The user the request acts as: the impersonated name, uid, groups and extras; a service account's groups when
/// no group was asked for; `system:authenticated` (or, for `system:anonymous`, `system:unauthenticated`) added
/// unless either is already there, as upstream.
fn acting_as(requested: &[Impersonation], groups_given: bool) -> UserInfo {
    let mut user = UserInfo::default();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for wanted in requested {
        match wanted {
            Impersonation::User(name) => user.name = name.clone(),
            Impersonation::ServiceAccount { namespace, name } => {
                user.name = format!("system:serviceaccount:{namespace}:{name}");
                if !groups_given {
                    user.groups = vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{namespace}")];
                }
            }
            Impersonation::Uid(uid) => user.uid = uid.clone(),
            Impersonation::Group(group) => user.groups.push(group.clone()),
            Impersonation::Extra { key, value } => extra.entry(key.clone()).or_default().push(value.clone()),
        }
    }
    user.extra = extra;
    let has = |g: &str| user.groups.iter().any(|x| x == g);
    if user.name != ANONYMOUS_USER {
        if !has(AUTHENTICATED_GROUP) && !has(UNAUTHENTICATED_GROUP) {
            user.groups.push(AUTHENTICATED_GROUP.into());
        }
    } else if !has(UNAUTHENTICATED_GROUP) {
        user.groups.push(UNAUTHENTICATED_GROUP.into());
    }
    user
}

/// Remove the impersonation headers, as upstream does before the handler.
fn strip_headers(headers: &mut HeaderMap) {
    headers.remove(USER_HEADER);
    headers.remove(UID_HEADER);
    headers.remove(GROUP_HEADER);
    let extras: Vec<_> = headers.keys().filter(|k| k.as_str().starts_with(EXTRA_PREFIX)).cloned().collect();
    for name in extras {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn what_is_requested() {
        assert!(requested(&HeaderMap::new()).unwrap().is_empty());
        let all = requested(&headers(&[
            ("Impersonate-Group", "g1"),
            ("Impersonate-User", "bob"),
            ("Impersonate-Extra-Scopes%2Fone", "a"),
            ("Impersonate-Group", "g2"),
            ("Impersonate-Uid", "u-1"),
            ("Impersonate-Extra-Scopes%2Fone", "b"),
        ]))
        .unwrap();
        assert_eq!(
            all,
            [
                Impersonation::User("bob".into()),
                Impersonation::Uid("u-1".into()),
                Impersonation::Group("g1".into()),
                Impersonation::Group("g2".into()),
                Impersonation::Extra { key: "scopes/one".into(), value: "a".into() },
                Impersonation::Extra { key: "scopes/one".into(), value: "b".into() },
            ]
        );
        let sa = requested(&headers(&[("Impersonate-User", "system:serviceaccount:ns-1:builder")])).unwrap();
        assert_eq!(sa, [Impersonation::ServiceAccount { namespace: "ns-1".into(), name: "builder".into() }]);
        let not_sa = requested(&headers(&[("Impersonate-User", "system:serviceaccount:Bad_NS:x")])).unwrap();
        assert_eq!(not_sa, [Impersonation::User("system:serviceaccount:Bad_NS:x".into())]);
        for without_user in [("Impersonate-Group", "g"), ("Impersonate-Uid", "u"), ("Impersonate-Extra-k", "v")] {
            let e = requested(&headers(&[without_user])).unwrap_err();
            assert_eq!(e.code, 400);
            assert!(e.message.contains("needs Impersonate-User"), "{}", e.message);
        }
        let mut many = headers(&[("Impersonate-User", "bob")]);
        for i in 1..MAX_IMPERSONATIONS {
            many.append(GROUP_HEADER, HeaderValue::from_str(&format!("g{i}")).unwrap());
        }
        assert_eq!(requested(&many).unwrap().len(), MAX_IMPERSONATIONS);
        many.append(GROUP_HEADER, HeaderValue::from_static("one-more"));
        assert_eq!(requested(&many).unwrap_err().code, 400);
        let mut binary = HeaderMap::new();
        binary.insert(USER_HEADER, HeaderValue::from_bytes(b"b\xffb").unwrap());
        assert_eq!(requested(&binary).unwrap_err().code, 400);
    }

    #[test]
    fn attributes_are_upstreams() {
        let extra = Impersonation::Extra { key: "scopes".into(), value: "view".into() }.attributes();
        assert_eq!(
            (extra.verb.as_str(), extra.api_group.as_str(), extra.resource.as_str(), extra.subresource.as_str()),
            ("impersonate", "authentication.k8s.io", "userextras", "scopes")
        );
        assert_eq!(extra.name, "view");
        let sa = Impersonation::ServiceAccount { namespace: "ns".into(), name: "b".into() }.attributes();
        assert_eq!((sa.api_group.as_str(), sa.resource.as_str(), sa.namespace.as_str()), ("", "serviceaccounts", "ns"));
        let e = forbidden(
            &UserInfo { name: "alice".into(), ..UserInfo::default() },
            &Impersonation::User("bob".into()).attributes(),
            "",
        );
        assert_eq!(
            e.message,
            "users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        );
    }

    #[test]
    fn the_user_acted_as() {
        let user = acting_as(&[Impersonation::User("bob".into())], false);
        assert_eq!((user.name.as_str(), user.groups.as_slice()), ("bob", [AUTHENTICATED_GROUP.to_string()].as_slice()));
        let sa = acting_as(&[Impersonation::ServiceAccount { namespace: "ns".into(), name: "b".into() }], false);
        assert_eq!(sa.groups, ["system:serviceaccounts", "system:serviceaccounts:ns", AUTHENTICATED_GROUP]);
        let sa_groups = acting_as(
            &[
                Impersonation::ServiceAccount { namespace: "ns".into(), name: "b".into() },
                Impersonation::Group("only".into()),
            ],
            true,
        );
        assert_eq!(sa_groups.groups, ["only", AUTHENTICATED_GROUP]);
        let anonymous = acting_as(&[Impersonation::User(ANONYMOUS_USER.into())], false);
        assert_eq!(anonymous.groups, [UNAUTHENTICATED_GROUP]);
        let unauthenticated =
            acting_as(&[Impersonation::User("x".into()), Impersonation::Group(UNAUTHENTICATED_GROUP.into())], true);
        assert_eq!(unauthenticated.groups, [UNAUTHENTICATED_GROUP]);
        let full = acting_as(
            &[
                Impersonation::User("x".into()),
                Impersonation::Uid("u".into()),
                Impersonation::Extra { key: "k".into(), value: "1".into() },
                Impersonation::Extra { key: "k".into(), value: "2".into() },
            ],
            false,
        );
        assert_eq!(full.uid, "u");
        assert_eq!(full.extra["k"], ["1", "2"]);
    }

    #[test]
    fn headers_are_removed() {
        let mut h = headers(&[("Impersonate-User", "b"), ("Impersonate-Extra-a", "1"), ("Accept", "x")]);
        strip_headers(&mut h);
        assert_eq!(h.len(), 1);
    }
}
