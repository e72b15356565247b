//! Request bodies: read with a size limit, and decoded in one pass into JSON values, noting keys that repeat in an
//! object (as upstream's strict decoder does) so fieldValidation can reject (Strict) or warn about (Warn) them; the
//! last value wins.
//!
//! Decoding is linear in the body and its memory a small multiple of it: the path of the value being decoded is a
//! stack of keys and indices, formatted only for a repeated key, and at most [`MAX_REPORTED_DUPLICATES`] of those
//! are reported. Objects nest at most [`MAX_DOCUMENT_DEPTH`] levels and their fields [`MAX_DEPTH`] ([`MAX_YAML_DEPTH`]
//! in YAML). YAML (`application/yaml` bodies and server-side apply
//! configurations) may expand aliases only within [`yaml_budget`] of the body's size, so a "billion laughs" body
//! fails with 400 after a few thousand nodes.

use std::cell::RefCell;
use std::fmt;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Value};
use serde_saphyr::options::DuplicateKeyPolicy;

use crate::error::{ApiError, ApiResult};

/// Request bodies over this size get 413 (upstream's `MaxRequestBodyBytes`, 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How deeply an object's fields may nest (the object itself is level 1), `metadata.managedFields` aside: in a
/// body, a patched object, and so in anything stored. Upstream has no such limit below its JSON decoder's 10,000.
pub const MAX_DEPTH: usize = 100;

/// How deeply a whole JSON body or patched object may nest, `metadata.managedFields` included: their `fieldsV1`
/// nest five levels deeper than the deepest field they name, so a stored object nests at most this deep and can
/// always be sent back. serde_json reads 127 levels, which leaves room for what wraps an object on its way to a
/// client (a list's `{"items":[…]}`, a watch event, a Table row).
pub const MAX_DOCUMENT_DEPTH: usize = MAX_DEPTH + 10;

/// How deeply `value` nests (a scalar 0, an empty list or object 1), counting at most `cap + 1` levels: the walk
/// stops there, so its recursion is bounded whatever the value. Each node visited adds one to `nodes`.
pub fn depth_counting(value: &Value, cap: usize, nodes: &mut usize) -> usize {
    *nodes += 1;
    let children: &mut dyn Iterator<Item = &Value> = match value {
        Value::Array(a) => &mut a.iter(),
        Value::Object(m) => &mut m.values(),
        _ => return 0,
    };
    if cap == 0 {
        return 1;
    }
    let mut deepest = 0;
    for child in children {
        deepest = deepest.max(depth_counting(child, cap - 1, nodes));
        if deepest >= cap {
            break;
        }
    }
    1 + deepest
}

/// Why an object nests too deeply: deeper than [`MAX_DOCUMENT_DEPTH`], or its fields (`metadata.managedFields`
/// aside) deeper than [`MAX_DEPTH`].
pub fn depth_error(object: &Value) -> Option<String> {
    if depth_counting(object, MAX_DOCUMENT_DEPTH, &mut 0) > MAX_DOCUMENT_DEPTH {
        return Some(format!("the object nests deeper than {MAX_DOCUMENT_DEPTH} levels"));
    }
    let Value::Object(fields) = object else { return None };
    let deepest = fields
        .iter()
        .map(|(k, v)| match (k.as_str(), v) {
            ("metadata", Value::Object(meta)) => {
                let inner = meta.iter().filter(|(k, _)| k.as_str() != "managedFields");
                1 + inner.map(|(_, v)| depth_counting(v, MAX_DEPTH, &mut 0)).max().unwrap_or(0)
            }
            _ => depth_counting(v, MAX_DEPTH, &mut 0),
        })
        .max()
        .unwrap_or(0);
    (1 + deepest > MAX_DEPTH).then(|| format!("the object's fields nest deeper than {MAX_DEPTH} levels"))
}

/// How deeply YAML values may nest: saphyr's default budget, which protects the stack (its parser recurses with
/// large frames: a debug build overflows a 2 MiB thread stack at 100 levels).
pub const MAX_YAML_DEPTH: usize = 64;

/// At most this many repeated keys of one body are reported (upstream reports all of them in one error); the
/// others are still decoded, the last value winning.
pub const MAX_REPORTED_DUPLICATES: usize = 256;

/// Reporting stops once the reported paths add up to this many bytes, so that long keys cannot make the report a
/// multiple of the body.
const MAX_REPORTED_DUPLICATE_BYTES: usize = 64 * 1024;

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
    decode_object(&media, &raw)
}

/// [`read_object`] once the body is read: `media` is the body's media type.
pub fn decode_object(media: &str, raw: &[u8]) -> ApiResult<Decoded> {
    let decoded = match media {
        "" | "application/json" => decode(raw).map_err(|e| decode_error(&e.to_string()))?,
        "application/yaml" => {
            let text = std::str::from_utf8(raw).map_err(|e| decode_error(&e.to_string()))?;
            let value = decode_yaml(text, DuplicateKeyPolicy::Error).map_err(|e| decode_error(&e))?;
            Decoded { value, duplicates: Vec::new() }
        }
        other => return Err(ApiError::unsupported_media_type(other, &["application/json", "application/yaml"])),
    };
    if !decoded.value.is_object() {
        return Err(decode_error("the body must be an object"));
    }
    if let Some(why) = depth_error(&decoded.value) {
        return Err(decode_error(&why));
    }
    Ok(decoded)
}

fn decode_error(detail: &str) -> ApiError {
    ApiError::bad_request(format!("error decoding the request body: {detail}"))
}

/// A decoded body and the paths of its repeated keys (`metadata.name`, `spec.items[0].x`), at most
/// [`MAX_REPORTED_DUPLICATES`] of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub value: Value,
    pub duplicates: Vec<String>,
}

/// Decode JSON, recording duplicate keys; values nest at most [`MAX_DOCUMENT_DEPTH`] levels.
pub fn decode(raw: &[u8]) -> serde_json::Result<Decoded> {
    let state = RefCell::new(State::new(None));
    let mut de = serde_json::Deserializer::from_slice(raw);
    let value = Node { state: &state, depth: 1, max_depth: MAX_DOCUMENT_DEPTH }.deserialize(&mut de)?;
    de.end()?;
    Ok(Decoded { value, duplicates: state.into_inner().duplicates })
}

/// What the values of a YAML body of `len` bytes may cost (see [`NODE_COST`]): 16 times the body, as flow YAML
/// without aliases (`[0,0,…]`, two bytes a node) can cost, plus 64 KiB for small bodies.
pub fn yaml_budget(len: usize) -> usize {
    len.saturating_mul(16).saturating_add(64 * 1024)
}

/// Every decoded node is charged this much, plus the bytes of its string or key.
const NODE_COST: usize = std::mem::size_of::<Value>();

/// Decode one YAML document with `duplicates` as the repeated-key policy. Depth is bounded by saphyr's budget and
/// by [`MAX_YAML_DEPTH`] (aliases can nest what the budget did not see), expansion by [`yaml_budget`].
pub fn decode_yaml(text: &str, duplicates: DuplicateKeyPolicy) -> Result<Value, String> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! { max_depth: MAX_YAML_DEPTH },
        duplicate_keys: duplicates,
    };
    let state = RefCell::new(State::new(Some(yaml_budget(text.len()))));
    serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        Node { state: &state, depth: 1, max_depth: MAX_YAML_DEPTH }.deserialize(de)
    })
    .map_err(|e| e.to_string())
}

/// One step of the path to the value being decoded.
enum Segment {
    Key(String),
    Index(usize),
}

/// The decoder's state, shared by the nodes of one body.
struct State {
    path: Vec<Segment>,
    duplicates: Vec<String>,
    duplicate_bytes: usize,
    /// What the values decoded so far cost, and the budget (YAML only).
    cost: usize,
    budget: Option<usize>,
}

impl State {
    fn new(budget: Option<usize>) -> Self {
        Self { path: Vec::new(), duplicates: Vec::new(), duplicate_bytes: 0, cost: 0, budget }
    }

    /// Charge `bytes` (plus a node) to the budget.
    fn charge<E: serde::de::Error>(&mut self, bytes: usize) -> Result<(), E> {
        self.cost = self.cost.saturating_add(NODE_COST).saturating_add(bytes);
        match self.budget {
            Some(b) if self.cost > b => {
                Err(E::custom(format!("the document expands to more than {b} bytes of values (aliases?)")))
            }
            _ => Ok(()),
        }
    }

    /// Record the key `key` repeated in the object at the current path.
    fn duplicate(&mut self, key: &str) {
        if self.duplicates.len() >= MAX_REPORTED_DUPLICATES || self.duplicate_bytes >= MAX_REPORTED_DUPLICATE_BYTES {
            return;
        }
        let mut path = String::new();
        for segment in &self.path {
            match segment {
                Segment::Key(k) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                }
                Segment::Index(i) => path.push_str(&format!("[{i}]")),
            }
        }
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
        self.duplicate_bytes += path.len();
        self.duplicates.push(path);
    }
}

struct Node<'a> {
    state: &'a RefCell<State>,
    /// The level of the value: a list or object here nests this deep.
    depth: usize,
    max_depth: usize,
}

impl Node<'_> {
    fn scalar<E: serde::de::Error>(&self, value: Value, bytes: usize) -> Result<Value, E> {
        self.state.borrow_mut().charge(bytes)?;
        Ok(value)
    }

    fn enter<E: serde::de::Error>(&self) -> Result<(), E> {
        if self.depth > self.max_depth {
            return Err(E::custom(format!("the document nests deeper than {} levels", self.max_depth)));
        }
        self.state.borrow_mut().charge(0)
    }

    fn child(&self) -> Node<'_> {
        Node { state: self.state, depth: self.depth + 1, max_depth: self.max_depth }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// The visits of serde_json's own `Value` visitor, with depth, budget and repeated keys accounted.
impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.scalar(Value::Bool(v), 0)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.scalar(Value::from(v), 0)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.scalar(Value::from(v), 0)
    }

    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Value, E> {
        let n = serde_json::Number::deserialize(serde::de::value::I128Deserializer::<E>::new(v))?;
        self.scalar(Value::Number(n), 0)
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Value, E> {
        let n = serde_json::Number::deserialize(serde::de::value::U128Deserializer::<E>::new(v))?;
        self.scalar(Value::Number(n), 0)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.scalar(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number), 0)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.scalar(Value::String(v.to_string()), v.len())
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        let len = v.len();
        self.scalar(Value::String(v), len)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.scalar(Value::Null, 0)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.scalar(Value::Null, 0)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut out = Vec::new();
        self.state.borrow_mut().path.push(Segment::Index(0));
        loop {
            if let Some(Segment::Index(i)) = self.state.borrow_mut().path.last_mut() {
                *i = out.len();
            }
            match seq.next_element_seed(self.child())? {
                Some(v) => out.push(v),
                None => break,
            }
        }
        self.state.borrow_mut().path.pop();
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.state.borrow_mut().charge(key.len())?;
            self.state.borrow_mut().path.push(Segment::Key(key));
            let value = map.next_value_seed(self.child())?;
            let Some(Segment::Key(key)) = self.state.borrow_mut().path.pop() else {
                return Err(A::Error::custom("the decoder lost its path"));
            };
            match out.entry(key) {
                Entry::Vacant(e) => {
                    e.insert(value);
                }
                Entry::Occupied(mut e) => {
                    self.state.borrow_mut().duplicate(e.key());
                    e.insert(value);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;
