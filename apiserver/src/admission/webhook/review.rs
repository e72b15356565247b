//! The `AdmissionReview` a webhook receives and the one it answers (upstream's `request` package), and a denial
//! as the `Status` the client gets (`errors.ToStatusErr`).
//!
//! The first of the webhook's `admissionReviewVersions` this server speaks is used: `v1`, or `v1beta1` (the same
//! fields; its answers need no `patchType`).
//!
//! dispatcher → **review** → call → **review** (verify) → dispatcher.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::hook::Hook;
use crate::admission::{Attributes, Object};
use crate::error::{ApiError, StatusReason};

/// The AdmissionReview versions this server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V1beta1,
}

impl Version {
    /// The first of `versions` this server speaks.
    pub fn negotiate(versions: &[String]) -> Option<Self> {
        versions.iter().find_map(|v| match v.as_str() {
            "v1" => Some(Self::V1),
            "v1beta1" => Some(Self::V1beta1),
            _ => None,
        })
    }

    fn api_version(self) -> &'static str {
        match self {
            Self::V1 => "admission.k8s.io/v1",
            Self::V1beta1 => "admission.k8s.io/v1beta1",
        }
    }
}

/// The AdmissionReview sent to `hook` about `object` (None on a delete), with request `uid`.
pub fn request(version: Version, uid: &str, attrs: &Attributes<'_>, object: Option<&Object>) -> Value {
    let info = attrs.resource;
    let gvk = json!({"group": info.group, "version": info.version, "kind": info.kind});
    let gvr = json!({"group": info.group, "version": info.version, "resource": info.plural});
    let user = &attrs.request.user;
    let mut user_info = Map::new();
    for (k, v) in [("username", json!(user.name)), ("uid", json!(user.uid))] {
        if v != "" {
            user_info.insert(k.into(), v);
        }
    }
    if !user.groups.is_empty() {
        user_info.insert("groups".into(), json!(user.groups));
    }
    if !user.extra.is_empty() {
        user_info.insert("extra".into(), json!(user.extra));
    }
    let mut request = json!({
        "uid": uid,
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "operation": attrs.operation.as_str(),
        "userInfo": user_info,
        "object": object,
        "oldObject": attrs.old_object,
        "dryRun": attrs.dry_run,
        "options": attrs.options,
    });
    for (field, value) in [
        ("subResource", attrs.subresource.as_str()),
        ("requestSubResource", attrs.subresource.as_str()),
        ("name", attrs.name),
        ("namespace", attrs.namespace),
    ] {
        if !value.is_empty() {
            request[field] = json!(value);
        }
    }
    json!({"kind": "AdmissionReview", "apiVersion": version.api_version(), "request": request})
}

/// What a webhook answered, checked.
#[derive(Debug, Default)]
pub struct Answer {
    pub allowed: bool,
    /// The `status` of a denial.
    pub status: Option<Value>,
    /// The JSON patch of a mutating webhook (`patchType: JSONPatch`), decoded from base64; empty: none.
    pub patch: Vec<u8>,
    pub patch_type: String,
    pub audit_annotations: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    response: Option<WireResponse>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    allowed: bool,
    status: Option<Value>,
    patch: Option<String>,
    patch_type: Option<String>,
    #[serde(default)]
    audit_annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    warnings: Option<Vec<String>>,
}

/// Check a webhook's answer as upstream's `VerifyAdmissionResponse`; the error is why the call failed.
pub fn verify(body: &[u8], version: Version, uid: &str, mutating: bool) -> Result<Answer, String> {
    let wire: Wire =
        serde_json::from_slice(body).map_err(|e| format!("the response is not an AdmissionReview: {e}"))?;
    let r = wire.response.ok_or("webhook response was absent")?;
    let patch = match r.patch.as_deref() {
        Some(p) => base64::engine::general_purpose::STANDARD
            .decode(p)
            .map_err(|e| format!("response.patch is not base64: {e}"))?,
        None => Vec::new(),
    };
    let mut patch_type = String::new();
    if version == Version::V1 {
        if r.uid != uid {
            return Err(format!("expected response.uid={uid:?}, got {:?}", r.uid));
        }
        let expected = version.api_version();
        if wire.api_version != expected || wire.kind != "AdmissionReview" {
            return Err(format!(
                "expected webhook response of {expected}, Kind=AdmissionReview, got {}, Kind={}",
                wire.api_version, wire.kind
            ));
        }
    }
    if mutating {
        match (version, patch.is_empty(), r.patch_type) {
            (Version::V1, false, None) => {
                return Err("webhook returned response.patch but not response.patchType".into());
            }
            (Version::V1, true, Some(_)) => {
                return Err("webhook returned response.patchType but not response.patch".into());
            }
            (Version::V1, _, Some(t)) if t.is_empty() => {
                return Err("webhook returned invalid response.patchType of \"\"".into());
            }
            (Version::V1, _, Some(t)) => patch_type = t,
            (Version::V1beta1, false, _) => patch_type = "JSONPatch".into(),
            _ => {}
        }
    } else if version == Version::V1 {
        if !patch.is_empty() {
            return Err("validating webhook may not return response.patch".into());
        }
        if r.patch_type.is_some() {
            return Err("validating webhook may not return response.patchType".into());
        }
    }
    Ok(Answer {
        allowed: r.allowed,
        status: r.status,
        patch: if mutating { patch } else { Vec::new() },
        patch_type,
        audit_annotations: r.audit_annotations.unwrap_or_default(),
        warnings: r.warnings.unwrap_or_default(),
    })
}

/// A denial as upstream's `ToStatusErr`: the webhook's Status with `admission webhook "<name>" denied the request`
/// before its message (or reason), at least 400, always a Failure; its reason and details kept.
pub fn denied(hook: &Hook, status: Option<&Value>) -> ApiError {
    let field = |k: &str| status.and_then(|s| s.get(k)).and_then(Value::as_str).unwrap_or("");
    let denied_by = format!("admission webhook {:?} denied the request", hook.name);
    let message = match (field("message"), field("reason")) {
        ("", "") => format!("{denied_by} without explanation"),
        ("", reason) => format!("{denied_by}: {reason}"),
        (message, _) => format!("{denied_by}: {message}"),
    };
    let code = status
        .and_then(|s| s.get("code"))
        .and_then(Value::as_i64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..=599).contains(c))
        .unwrap_or(400);
    let reason = field("reason");
    let known = StatusReason::parse(reason);
    let mut e = ApiError::new(code, known.unwrap_or(classify(code)), message);
    if known.is_none() {
        e.foreign_reason = Some(reason.into());
    }
    e.details = status.and_then(|s| s.get("details")).filter(|d| d.is_object()).cloned();
    e
}

/// The reason a code stands for, to classify a denial whose reason is the webhook's own.
fn classify(code: u16) -> StatusReason {
    match code {
        401 => StatusReason::Unauthorized,
        403 => StatusReason::Forbidden,
        404 => StatusReason::NotFound,
        409 => StatusReason::Conflict,
        422 => StatusReason::Invalid,
        429 => StatusReason::TooManyRequests,
        500..=599 => StatusReason::InternalError,
        _ => StatusReason::BadRequest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::test_support::attrs;
    use crate::admission::{Operation, RequestContext};
    use crate::request::info::Subresource;

    fn hook() -> Hook {
        let config: k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration =
            serde_json::from_value(json!({"metadata": {"name": "c"}, "webhooks": [{"name": "deny.example.com",
                "sideEffects": "None", "admissionReviewVersions": ["v1"], "clientConfig": {"url": "https://x"}}]}))
            .unwrap();
        super::super::hook::validating(&[&config]).remove(0)
    }

    fn answer(response: Value) -> Vec<u8> {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}).to_string().into()
    }

    #[test]
    fn the_request_carries_upstreams_fields() {
        let cx = RequestContext::new(Default::default(), None);
        let info = backup_apis::kinds()[0].resource().clone();
        let a = attrs(&info, Operation::Update, &Subresource::Status, "ns", &cx);
        let object = Map::from_iter([("kind".to_string(), json!("TimeseriesDBBackup"))]);
        let review = request(Version::V1, "u1", &a, Some(&object));
        let r = &review["request"];
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
        assert_eq!((r["uid"].as_str(), r["operation"].as_str()), (Some("u1"), Some("UPDATE")));
        assert_eq!((r["subResource"].as_str(), r["requestSubResource"].as_str()), (Some("status"), Some("status")));
        assert_eq!((r["namespace"].as_str(), r["name"].as_str()), (Some("ns"), Some("b1")));
        assert_eq!(r["resource"]["resource"], info.plural);
        assert_eq!(r["kind"], r["requestKind"]);
        assert_eq!(r["object"]["kind"], "TimeseriesDBBackup");
        assert!(r["oldObject"].is_null());
        assert_eq!(r["dryRun"], false);
        assert_eq!(r["options"]["kind"], "UpdateOptions");
    }

    #[test]
    fn answers_are_checked_as_upstream_checks_them() {
        let ok = verify(&answer(json!({"uid": "u1", "allowed": true})), Version::V1, "u1", false).unwrap();
        assert!(ok.allowed);
        let wrong_uid = verify(&answer(json!({"uid": "u2", "allowed": true})), Version::V1, "u1", false);
        assert_eq!(wrong_uid.unwrap_err(), "expected response.uid=\"u1\", got \"u2\"");
        let patch = base64::engine::general_purpose::STANDARD.encode("[]");
        let validating_patch = json!({"uid": "u1", "allowed": true, "patch": patch, "patchType": "JSONPatch"});
        assert!(verify(&answer(validating_patch.clone()), Version::V1, "u1", false).is_err());
        assert_eq!(verify(&answer(validating_patch), Version::V1, "u1", true).unwrap().patch_type, "JSONPatch");
        let untyped = json!({"uid": "u1", "allowed": true, "patch": patch});
        assert!(verify(&answer(untyped.clone()), Version::V1, "u1", true).is_err());
        let beta = json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "response": untyped});
        let beta = verify(beta.to_string().as_bytes(), Version::V1beta1, "u1", true).unwrap();
        assert_eq!(beta.patch_type, "JSONPatch", "v1beta1 answers need no patchType");
        assert_eq!(verify(b"{}", Version::V1, "u1", false).unwrap_err(), "webhook response was absent");
        assert!(verify(b"not json", Version::V1, "u1", false).is_err());
    }

    #[test]
    fn denials_read_as_upstreams() {
        let status = json!({"code": 403, "reason": "Forbidden", "message": "no"});
        let e = denied(&hook(), Some(&status));
        assert_eq!((e.code, e.reason), (403, StatusReason::Forbidden));
        assert_eq!(e.message, "admission webhook \"deny.example.com\" denied the request: no");
        let e = denied(&hook(), None);
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "admission webhook \"deny.example.com\" denied the request without explanation")
        );
        let own = json!({"code": 299, "reason": "TeamMissing"});
        let e = denied(&hook(), Some(&own));
        assert_eq!(e.code, 400, "a code below 400 is a 400");
        assert_eq!(e.message, "admission webhook \"deny.example.com\" denied the request: TeamMissing");
        assert_eq!(e.foreign_reason.as_deref(), Some("TeamMissing"));
    }
}
