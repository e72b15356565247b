//! Server-side apply bodies (`application/apply-patch+yaml`): YAML (JSON is YAML too) holding one object; an empty
//! body is an empty object. Repeated keys keep the later value, as Go's YAML decoder does, and are reported for
//! fieldValidation. Decoding is bounded as every YAML body's is (`request::body::decode_yaml`: depth, alias
//! expansion). The store merges the configuration with the field manager.
//!
//! endpoints/patch → **apply body** → registry store apply → field manager.

use serde_json::{Value, json};
use serde_saphyr::options::DuplicateKeyPolicy;

use crate::error::{ApiError, ApiResult};
use crate::request::body::decode_yaml;

/// An apply configuration: the object and, when it repeated keys, the strict decoder's complaint (the later value
/// was kept), which fieldValidation decides on.
pub struct ApplyConfiguration {
    pub config: Value,
    pub duplicates: Option<String>,
}

/// Parse an apply body.
pub fn parse(body: &[u8]) -> ApiResult<ApplyConfiguration> {
    let decode_error = |e: &dyn std::fmt::Display| ApiError::bad_request(format!("error decoding YAML: {e}"));
    let text = std::str::from_utf8(body).map_err(|e| decode_error(&e))?;
    let (value, duplicates) = match decode_yaml(text, DuplicateKeyPolicy::Error) {
        Ok(v) => (v, None),
        Err(strict) => {
            let v = decode_yaml(text, DuplicateKeyPolicy::LastWins).map_err(|e| decode_error(&e))?;
            (v, Some(strict))
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
    Ok(ApplyConfiguration { config, duplicates })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_duplicates_and_errors() {
        let c = parse(b"a: 1\na: 2\n").unwrap();
        assert_eq!((c.config, c.duplicates.is_some()), (json!({"a": 2}), true));
        assert_eq!(parse(b"").unwrap().config, json!({}));
        assert_eq!(parse(b"- 1\n").err().map(|e| e.code), Some(400));
    }
}
