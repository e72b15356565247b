//! Admission webhooks (k8s.io/apiserver `pkg/admission/plugin/webhook`): the plugins `MutatingAdmissionWebhook`
//! ([`mutating`]) and `ValidatingAdmissionWebhook` ([`validating`]) call the webhooks of the cluster's
//! Mutating/ValidatingWebhookConfigurations ([`source`], compiled into [`hook`]s) whose rules and selectors match
//! a write ([`matching`]), with an `AdmissionReview` ([`review`]) over HTTPS ([`client`]).
//!
//! What every call shares is here: a dry run never reaches a webhook that has side effects (400), the answer is
//! checked, its `auditAnnotations` become the request's audit annotations (`<webhook>/<key>`), its `warnings` the
//! response's `Warning` headers, and a denial the `Status` the client gets; a call that fails is decided by the
//! webhook's `failurePolicy`.
//!
//! registry store → admission chain → **webhook plugins** → the cluster's webhooks.

pub mod client;
pub mod hook;
pub mod matching;
pub mod mutating;
pub mod review;
pub mod source;
pub mod validating;

use backup_apis::objectmeta;

use client::Caller;
use hook::{FailurePolicy, Hook};
use review::{Answer, Version};

use crate::admission::{Attributes, Object};
use crate::audit::policy::Level;
use crate::error::ApiError;

/// Why a webhook's answer is not simply "allowed".
#[derive(Debug)]
pub enum HookError {
    /// The call failed (upstream's `ErrCallingWebhook`): the `failurePolicy` decides.
    Calling(String),
    /// The webhook denied the request, or the request cannot go on whatever the policy says.
    Refused(ApiError),
}

/// Call `hook` about `object` (None on a delete) and check its answer; audit annotations and warnings are passed
/// on whether it allows the request or not.
async fn invoke(
    caller: &Caller,
    hook: &Hook,
    attrs: &Attributes<'_>,
    object: Option<&Object>,
    mutating: bool,
) -> Result<Answer, HookError> {
    if attrs.dry_run && !hook.side_effects.dry_run_safe() {
        let message = format!("admission webhook {:?} does not support dry run", hook.name);
        return Err(HookError::Refused(ApiError::bad_request(message)));
    }
    let version = Version::negotiate(&hook.review_versions).ok_or_else(|| {
        HookError::Calling("webhook does not accept known AdmissionReview versions (v1, v1beta1)".into())
    })?;
    let uid = uuid::Uuid::new_v4().to_string();
    let request = review::request(version, &uid, attrs, object);
    let body = serde_json::to_vec(&request).map_err(|e| HookError::Calling(e.to_string()))?;
    let answer = caller.call(hook, body).await.map_err(HookError::Calling)?;
    let answer = review::verify(&answer, version, &uid, mutating).map_err(HookError::Calling)?;
    for (k, v) in &answer.audit_annotations {
        let key = format!("{}/{k}", hook.name);
        if key.split('/').count() == 2 && objectmeta::is_qualified_name(&key).is_empty() {
            attrs.request.annotate(Level::Metadata, key, v.clone());
        } else {
            tracing::warn!(webhook = hook.name, key, "ignoring an audit annotation whose key is not a qualified name");
        }
    }
    for w in &answer.warnings {
        attrs.request.warn(w.clone());
    }
    if !answer.allowed {
        return Err(HookError::Refused(review::denied(hook, answer.status.as_ref())));
    }
    Ok(answer)
}

/// What `failurePolicy` makes of a failed call: the request's error (500), or None when the webhook is skipped.
fn failed_call(hook: &Hook, why: &str) -> Option<ApiError> {
    let message = format!("failed calling webhook {:?}: {why}", hook.name);
    match hook.failure_policy {
        FailurePolicy::Ignore => {
            tracing::warn!(webhook = hook.name, "failing open: {message}");
            None
        }
        FailurePolicy::Fail => {
            tracing::warn!(webhook = hook.name, "failing closed: {message}");
            Some(ApiError::internal(message))
        }
    }
}

/// The request's error for a webhook's `outcome`, if any.
fn decide<T>(hook: &Hook, outcome: Result<T, HookError>) -> Result<Option<T>, ApiError> {
    match outcome {
        Ok(t) => Ok(Some(t)),
        Err(HookError::Calling(why)) => failed_call(hook, &why).map_or(Ok(None), Err),
        Err(HookError::Refused(e)) => Err(e),
    }
}
