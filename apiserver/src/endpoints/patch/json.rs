//! JSON patch (`application/json-patch+json`, RFC 6902): a list of operations applied in order.
//!
//! endpoints/patch → **JSON patch** (inside the store's update loop).

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Parse a JSON patch body (400 when it is not a list of operations).
pub fn parse(body: &[u8]) -> ApiResult<json_patch::Patch> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// Apply `patch` to `doc`; an operation that does not apply is 422 exactly as upstream answers it
/// (`NewGenericServerResponse` without a cause: the generic message and empty details — the failed operation is
/// only logged).
pub fn apply(doc: &mut Value, patch: &json_patch::Patch) -> ApiResult<()> {
    json_patch::patch(doc, patch).map_err(|e| {
        tracing::debug!(error = %e, "JSON patch does not apply");
        ApiError::unprocessable("the server rejected our request due to an error in our request")
            .with_details(serde_json::json!({}))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations_and_failures() {
        let mut doc = json!({"spec": {"a": 1, "b": 2}});
        apply(&mut doc, &parse(br#"[{"op":"replace","path":"/spec/b","value":5}]"#).unwrap()).unwrap();
        assert_eq!(doc["spec"]["b"], 5);
        let bad = parse(br#"[{"op":"remove","path":"/nope"}]"#).unwrap();
        assert_eq!(apply(&mut doc, &bad).unwrap_err().code, 422);
        assert_eq!(parse(b"{").unwrap_err().code, 400);
    }
}
