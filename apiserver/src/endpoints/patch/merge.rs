//! JSON merge patch (`application/merge-patch+json`, RFC 7386): the patch's fields replace the object's, `null`
//! removes one. Strategic merge patches have the same body shape and are parsed here too.
//!
//! endpoints/patch → **merge patch** (inside the store's update loop).
//!
//! The merge is json-patch's `merge` with the patch's values moved into the document rather than copied (a 20,000
//! item list is ~15 MB as values). It is bounded: it recurses as deep as the patch, which the JSON decoder limits to
//! 127 levels, and the result nests no deeper than the document or the patch; the result is then held to
//! `body::MAX_DEPTH`.

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// Parse a merge (or strategic merge) patch body: any JSON value (400 when it is not JSON).
pub fn parse(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// Merge `patch` into `doc`.
pub fn apply(doc: &mut Value, patch: Value) -> ApiResult<()> {
    merge(doc, patch);
    super::within_depth(doc)
}

/// RFC 7386's MergePatch: an object merges key by key (`null` removes), anything else replaces.
fn merge(doc: &mut Value, patch: Value) {
    let Value::Object(patch) = patch else {
        *doc = patch;
        return;
    };
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let Value::Object(map) = doc else { return };
    for (key, value) in patch {
        if value.is_null() {
            map.remove(&key);
        } else {
            merge(map.entry(key).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_and_removes() {
        let mut doc = json!({"spec": {"a": 1, "b": 2}});
        apply(&mut doc, parse(br#"{"spec":{"a":null,"c":3}}"#).unwrap()).unwrap();
        assert_eq!(doc, json!({"spec": {"b": 2, "c": 3}}));
        assert_eq!(parse(b"{").unwrap_err().code, 400);
    }

    #[test]
    fn results_nesting_too_deep_are_a_422() {
        let mut deep = json!(1);
        for _ in 0..99 {
            deep = json!({"d": deep});
        }
        let mut doc = json!({"spec": {}});
        let err = apply(&mut doc, json!({"spec": {"v": deep}})).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(err.message.contains("nest deeper than 100 levels"), "{}", err.message);
    }
}
