//! Auditing (k8s.io/apiserver `pkg/audit`): who did what, when, with what outcome. The [`policy`] decides per request
//! how much is recorded; the audit filter (`filters::audit`) builds [`event`]s at the stages RequestReceived,
//! ResponseStarted (watches), ResponseComplete and Panic; the [`log`] and [`webhook`] backends take them without
//! ever delaying a request. Inner layers add to the request's [`AuditContext`]: the authenticated user, the impersonated one, and annotations
//! (authorization's decision, admission's).
//!
//! request info → **audit** → metrics → timeout → authentication (→ the user) → impersonation (→ the user acted as)
//! → authorization (→ annotations) → ….

pub mod event;
pub mod log;
pub mod policy;
pub mod queue;
pub mod setup;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::auth::authn::UserInfo;

/// The request header kube-apiserver's aggregator sets, kept as the event's `auditID` so both logs join.
pub const AUDIT_ID_HEADER: &str = "Audit-ID";

/// The policy and where events go: the log, the webhook, or both.
pub struct Auditor {
    pub policy: policy::Policy,
    pub log: Option<log::AuditLog>,
    pub webhook: Option<webhook::AuditWebhook>,
}

impl Auditor {
    /// Hand `event` to every backend.
    pub fn record(&self, event: event::Event) {
        match (&self.log, &self.webhook) {
            (Some(log), Some(webhook)) => {
                webhook.record(event.clone());
                log.record(event);
            }
            (Some(log), None) => log.record(event),
            (None, Some(webhook)) => webhook.record(event),
            (None, None) => {}
        }
    }
}

/// What inner layers learn about a request, for its audit events.
#[derive(Debug, Default)]
pub struct AuditContext {
    user: Mutex<Option<UserInfo>>,
    /// The user the request acts as (`Impersonate-User`…), when not the authenticated one.
    impersonated_user: Mutex<Option<UserInfo>>,
    /// Each annotation with the lowest level of the events that carry it.
    annotations: Mutex<BTreeMap<String, (String, policy::Level)>>,
}

impl AuditContext {
    /// The authenticated user.
    pub fn set_user(&self, user: &UserInfo) {
        if let Ok(mut u) = self.user.lock() {
            *u = Some(user.clone());
        }
    }

    pub fn user(&self) -> Option<UserInfo> {
        self.user.lock().ok().and_then(|u| u.clone())
    }

    /// The user the request acts as, after the impersonation filter allowed it.
    pub fn set_impersonated_user(&self, user: &UserInfo) {
        if let Ok(mut u) = self.impersonated_user.lock() {
            *u = Some(user.clone());
        }
    }

    pub fn impersonated_user(&self) -> Option<UserInfo> {
        self.impersonated_user.lock().ok().and_then(|u| u.clone())
    }

    /// An annotation (`authorization.k8s.io/decision`, an admission webhook's…) on every event; the first value of
    /// a key stays.
    pub fn annotate(&self, key: impl Into<String>, value: impl Into<String>) {
        self.annotate_at(policy::Level::Metadata, key, value);
    }

    /// An annotation only on events of `level` and above (upstream's `AddAnnotationWithLevel`: a mutating
    /// webhook's patch is recorded at Request level).
    pub fn annotate_at(&self, level: policy::Level, key: impl Into<String>, value: impl Into<String>) {
        if let Ok(mut a) = self.annotations.lock() {
            a.entry(key.into()).or_insert_with(|| (value.into(), level));
        }
    }

    /// The annotations of an event at `level`.
    pub fn annotations(&self, level: policy::Level) -> BTreeMap<String, String> {
        self.annotations
            .lock()
            .map(|a| a.iter().filter(|(_, (_, l))| *l <= level).map(|(k, (v, _))| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
}

/// The context of a request, when auditing is on.
pub fn context(extensions: &axum::http::Extensions) -> Option<Arc<AuditContext>> {
    extensions.get::<Arc<AuditContext>>().cloned()
}
