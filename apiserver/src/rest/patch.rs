//! Patch types (`Content-Type` of a PATCH): JSON patch (RFC 6902) and JSON merge patch (RFC 7386).

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Patch content types this server applies.
pub const SUPPORTED: &[&str] = &["application/json-patch+json", "application/merge-patch+json"];

/// A parsed patch body.
pub enum PatchBody {
    Json(json_patch::Patch),
    Merge(Value),
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
            other => Err(ApiError::unsupported_media_type(other, SUPPORTED)),
        }
    }

    /// Apply to `doc` in place.
    pub fn apply(&self, doc: &mut Value) -> ApiResult<()> {
        match self {
            Self::Json(p) => json_patch::patch(doc, p).map_err(|e| {
                let mut err = ApiError::bad_request(format!("the server rejected our request due to an error in our request: {e}"));
                err.code = 422;
                err.reason = "Invalid";
                err
            }),
            Self::Merge(p) => {
                json_patch::merge(doc, p);
                Ok(())
            }
        }
    }
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
            .apply(&mut doc)
            .unwrap();
        assert_eq!(doc, json!({"spec": {"b": 2, "c": 3}}));
        let p = PatchBody::parse("application/json-patch+json", br#"[{"op":"replace","path":"/spec/b","value":5}]"#).unwrap();
        p.apply(&mut doc).unwrap();
        assert_eq!(doc["spec"]["b"], 5);
        let bad = PatchBody::parse("application/json-patch+json", br#"[{"op":"remove","path":"/nope"}]"#).unwrap();
        assert_eq!(bad.apply(&mut doc).unwrap_err().code, 422);
        assert_eq!(PatchBody::parse("application/strategic-merge-patch+json", b"{}").err().map(|e| e.code), Some(415));
        assert_eq!(PatchBody::parse("application/merge-patch+json", b"{").err().map(|e| e.code), Some(400));
    }
}
