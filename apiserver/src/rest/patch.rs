//! Patch types (`Content-Type` of a PATCH): JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge
//! patch (driven by the kind's schema) and server-side apply (YAML or JSON, merged by the field manager).
//!
//! HTTP → authn → authz → **REST handlers (this file: patch bodies, apply)** → field manager → strategy → storage.

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use serde_saphyr::options::DuplicateKeyPolicy;

use crate::rest::fieldmanager::{self, ApplyRequest, strategic};
use crate::rest::params::FieldValidation;
use crate::rest::store::{ResourceStore, Subresource, WriteOptions, Written};

/// Patch content types this server applies, in upstream's order.
pub const SUPPORTED: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// A parsed patch body.
pub enum PatchBody {
    Json(json_patch::Patch),
    Merge(Value),
    Strategic(Value),
    /// A server-side apply configuration; `duplicates` is the strict decoder's complaint about repeated keys
    /// (the later value was kept), which fieldValidation decides on.
    Apply {
        config: Value,
        duplicates: Option<String>,
    },
}

impl PatchBody {
    /// Parse a body by its content type (parameters after `;` are ignored): 415 for other types, 400 for a body
    /// that does not parse.
    pub fn parse(content_type: &str, body: &[u8]) -> ApiResult<Self> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/json-patch+json" => serde_json::from_slice(body)
                .map(Self::Json)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}"))),
            "application/merge-patch+json" => serde_json::from_slice(body)
                .map(Self::Merge)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}"))),
            "application/strategic-merge-patch+json" => serde_json::from_slice(body)
                .map(Self::Strategic)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}"))),
            "application/apply-patch+yaml" => parse_apply(body),
            other => Err(ApiError::unsupported_media_type(other, SUPPORTED)),
        }
    }

    pub fn is_apply(&self) -> bool {
        matches!(self, Self::Apply { .. })
    }

    /// Apply to `doc` in place; `schema` drives strategic merge patches. Apply configurations go through
    /// [`server_side_apply`] instead.
    pub fn apply(&self, doc: &mut Value, schema: &Value) -> ApiResult<()> {
        match self {
            Self::Json(p) => json_patch::patch(doc, p).map_err(|e| {
                let mut err = ApiError::bad_request(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ));
                err.code = 422;
                err.reason = "Invalid";
                err
            }),
            Self::Merge(p) => {
                json_patch::merge(doc, p);
                Ok(())
            }
            Self::Strategic(p) => strategic::apply(schema, doc, p),
            Self::Apply { .. } => Err(ApiError::internal("an apply configuration is merged by the field manager")),
        }
    }
}

/// An apply body: YAML (JSON is YAML too) holding one object; an empty body is an empty object. Repeated keys keep
/// the later value, as Go's YAML decoder does, and are reported for fieldValidation.
fn parse_apply(body: &[u8]) -> ApiResult<PatchBody> {
    let decode_error = |e: &dyn std::fmt::Display| ApiError::bad_request(format!("error decoding YAML: {e}"));
    let text = std::str::from_utf8(body).map_err(|e| decode_error(&e))?;
    let (value, duplicates) = match serde_saphyr::from_str::<Value>(text) {
        Ok(v) => (v, None),
        Err(strict) => {
            let lenient = serde_saphyr::options! { duplicate_keys: DuplicateKeyPolicy::LastWins };
            let v = serde_saphyr::from_str_with_options::<Value>(text, lenient).map_err(|e| decode_error(&e))?;
            (v, Some(strict.to_string()))
        }
    };
    let config = match value {
        Value::Object(_) => value,
        Value::Null => json!({}),
        _ => {
            return Err(decode_error(
                &"json: cannot unmarshal non-object into Go value of type map[string]interface {}",
            ));
        }
    };
    Ok(PatchBody::Apply { config, duplicates })
}

/// What fieldValidation makes of repeated keys in an apply body: 400 when Strict, a warning when Warn.
pub fn check_duplicates(duplicates: Option<&str>, fv: FieldValidation, warnings: &mut Vec<String>) -> ApiResult<()> {
    match (duplicates, fv) {
        (Some(d), FieldValidation::Strict) => Err(ApiError::bad_request(format!("error strict decoding YAML: {d}"))),
        (Some(d), FieldValidation::Warn) => {
            warnings.push(d.to_string());
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Server-side apply of `config` to `name`: merged into the live object by the field manager, or — on the main
/// resource of a missing object — created from it (201), as upstream's patcher does with `forceAllowCreate`.
pub async fn server_side_apply(
    store: &ResourceStore,
    namespace: &str,
    name: &str,
    (config, duplicates): (&Value, Option<&str>),
    req: ApplyRequest<'_>,
    write: WriteOptions<'_>,
) -> ApiResult<Written> {
    let mut warnings = Vec::new();
    check_duplicates(duplicates, write.field_validation, &mut warnings)?;
    let mut written = apply_or_create(store, namespace, name, config, req, write).await?;
    written.warnings.splice(0..0, warnings);
    Ok(written)
}

async fn apply_or_create(
    store: &ResourceStore,
    namespace: &str,
    name: &str,
    config: &Value,
    req: ApplyRequest<'_>,
    write: WriteOptions<'_>,
) -> ApiResult<Written> {
    let info = store.info();
    let merge = |doc: &mut Value| -> ApiResult<()> {
        *doc = fieldmanager::apply(store.schema(), info, doc, config, req)?;
        Ok(())
    };
    // A create that loses a race with another create applies to the object that won.
    for _ in 0..2 {
        match store.patch(namespace, name, &merge, req.sub, write).await {
            Err(e) if e.code == 404 && e.reason == "NotFound" && req.sub == Subresource::Main => {}
            other => return other,
        }
        let empty = json!({"apiVersion": info.api_version(), "kind": info.kind});
        let obj = fieldmanager::apply(store.schema(), info, &empty, config, req)?;
        let field = |k: &str| obj.pointer(&format!("/metadata/{k}")).and_then(Value::as_str).unwrap_or("");
        let uid = field("uid");
        if !uid.is_empty() {
            return Err(ApiError::conflict(
                info,
                name,
                &format!("uid mismatch: the provided object specified uid {uid}, and no existing object was found"),
            ));
        }
        if field("name") != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                field("name")
            )));
        }
        match store.create(namespace, obj, write).await {
            Err(e) if e.reason == "AlreadyExists" => continue,
            other => return other,
        }
    }
    Err(ApiError::conflict(info, name, "too many concurrent changes, please try again"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patch_types() {
        let mut doc = json!({"spec": {"a": 1, "b": 2}});
        PatchBody::parse("application/merge-patch+json; charset=utf-8", br#"{"spec":{"a":null,"c":3}}"#)
            .unwrap()
            .apply(&mut doc, &json!({}))
            .unwrap();
        assert_eq!(doc, json!({"spec": {"b": 2, "c": 3}}));
        let p = PatchBody::parse("application/json-patch+json", br#"[{"op":"replace","path":"/spec/b","value":5}]"#)
            .unwrap();
        p.apply(&mut doc, &json!({})).unwrap();
        assert_eq!(doc["spec"]["b"], 5);
        let bad = PatchBody::parse("application/json-patch+json", br#"[{"op":"remove","path":"/nope"}]"#).unwrap();
        assert_eq!(bad.apply(&mut doc, &json!({})).unwrap_err().code, 422);
        assert_eq!(PatchBody::parse("application/cbor-seq", b"{}").err().map(|e| e.code), Some(415));
        assert!(PatchBody::parse("application/apply-patch+yaml", b"kind: X\n").unwrap().is_apply());
        let Ok(PatchBody::Apply { config, duplicates }) =
            PatchBody::parse("application/apply-patch+yaml", b"a: 1\na: 2\n")
        else {
            panic!("not an apply body")
        };
        assert_eq!((config, duplicates.is_some()), (json!({"a": 2}), true));
        let mut warnings = Vec::new();
        assert_eq!(check_duplicates(Some("dup"), FieldValidation::Strict, &mut warnings).unwrap_err().code, 400);
        check_duplicates(Some("dup"), FieldValidation::Warn, &mut warnings).unwrap();
        check_duplicates(Some("dup"), FieldValidation::Ignore, &mut warnings).unwrap();
        assert_eq!(warnings, vec!["dup".to_string()]);
        assert_eq!(PatchBody::parse("application/apply-patch+yaml", b"- 1\n").err().map(|e| e.code), Some(400));
        assert_eq!(PatchBody::parse("application/merge-patch+json", b"{").err().map(|e| e.code), Some(400));
    }
}
