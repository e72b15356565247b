//! Request bodies: read with a size limit, and decoded in one pass into JSON values, noting keys that repeat in an
//! object (as upstream's strict decoder does) so fieldValidation can reject (Strict) or warn about (Warn) them; the
//! last value wins.

use std::cell::RefCell;
use std::fmt;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// Request bodies over this size get 413 (upstream's `MaxRequestBodyBytes`, 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The body, at most [`MAX_BODY_BYTES`].
pub async fn read(body: Body) -> ApiResult<Bytes> {
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(ApiError::too_large(MAX_BODY_BYTES))
        }
        Err(e) => Err(ApiError::bad_request(format!("error reading the request body: {e}"))),
    }
}

/// The media type of the `Content-Type` header, without parameters ("" when absent).
pub fn media_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .map_or("", str::trim)
}

/// An object body (create, update) in JSON or YAML, with its repeated keys; the content type must be one of
/// those, or absent.
pub async fn read_object(headers: &HeaderMap, body: Body) -> ApiResult<Decoded> {
    let media = media_type(headers).to_string();
    let raw = read(body).await?;
    let decoded = match media.as_str() {
        "" | "application/json" => decode(&raw).map_err(|e| decode_error(&e.to_string()))?,
        "application/yaml" => {
            let text = std::str::from_utf8(&raw).map_err(|e| decode_error(&e.to_string()))?;
            let value = serde_saphyr::from_str(text).map_err(|e| decode_error(&e.to_string()))?;
            Decoded { value, duplicates: Vec::new() }
        }
        other => return Err(ApiError::unsupported_media_type(other, &["application/json", "application/yaml"])),
    };
    if !decoded.value.is_object() {
        return Err(decode_error("the body must be an object"));
    }
    Ok(decoded)
}

fn decode_error(detail: &str) -> ApiError {
    ApiError::bad_request(format!("error decoding the request body: {detail}"))
}

/// A decoded body and the paths of its repeated keys (`metadata.name`, `spec.items[0].x`).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub value: Value,
    pub duplicates: Vec<String>,
}

/// Decode JSON, recording duplicate keys.
pub fn decode(raw: &[u8]) -> serde_json::Result<Decoded> {
    let duplicates = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(raw);
    let value = Node { path: String::new(), duplicates: &duplicates }.deserialize(&mut de)?;
    de.end()?;
    Ok(Decoded { value, duplicates: duplicates.into_inner() })
}

struct Node<'a> {
    path: String,
    duplicates: &'a RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) =
            seq.next_element_seed(Node { path: format!("{}[{}]", self.path, out.len()), duplicates: self.duplicates })?
        {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() { key.clone() } else { format!("{}.{key}", self.path) };
            let value = map.next_value_seed(Node { path: path.clone(), duplicates: self.duplicates })?;
            if out.insert(key, value).is_some() {
                self.duplicates.borrow_mut().push(path);
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_repeated_keys_and_keeps_the_last_value() {
        let d = decode(br#"{"metadata":{"name":"a","name":"b"},"spec":{"items":[{"x":1,"x":2}],"n":1.5}}"#).unwrap();
        assert_eq!(d.value, json!({"metadata": {"name": "b"}, "spec": {"items": [{"x": 2}], "n": 1.5}}));
        assert_eq!(d.duplicates, vec!["metadata.name", "spec.items[0].x"]);
        assert!(decode(b"{} x").is_err());
        assert!(decode(br#"{"a":1}"#).unwrap().duplicates.is_empty());
    }
}
