//! Stored objects as bytes: how the registry writes an object to storage and serves it back without decoding.
//!
//! Storage holds the object's JSON exactly as a client sees it, minus `metadata.resourceVersion` (which is the
//! key's mod revision, as in kube-apiserver's etcd3 store). Objects are written in canonical order —
//! `{"apiVersion":…,"kind":…,"metadata":{…},…}` — so reading one back only needs the resourceVersion spliced in
//! after `"metadata":{`: no decode/encode round trip on get, list or watch. Bytes of any other shape (written by
//! another tool) take the slow path through serde.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde_json::{Map, Value};

/// Serialize an object for storage: canonical key order, without `metadata.resourceVersion`.
pub fn encode_for_storage(obj: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.push(b'{');
    let mut first = true;
    for k in ["apiVersion", "kind"] {
        if let Some(v) = obj.get(k) {
            put(&mut out, &mut first, k, v);
        }
    }
    if let Some(Value::Object(meta)) = obj.get("metadata") {
        put(&mut out, &mut first, "metadata", &WithoutResourceVersion(meta));
    }
    for (k, v) in obj {
        if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            put(&mut out, &mut first, k, v);
        }
    }
    out.push(b'}');
    out
}

/// One `"key":value` member of the object being written.
fn put(out: &mut Vec<u8>, first: &mut bool, k: &str, v: &impl Serialize) {
    if !std::mem::replace(first, false) {
        out.push(b',');
    }
    // Writing a string key and a JSON value to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, k);
    out.push(b':');
    let _ = serde_json::to_writer(&mut *out, v);
}

/// `metadata` serialized as the map it is, but for `resourceVersion`: skipped rather than copied and removed.
struct WithoutResourceVersion<'a>(&'a Map<String, Value>);

impl Serialize for WithoutResourceVersion<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().filter(|(k, _)| k.as_str() != "resourceVersion"))
    }
}

/// Whether stored bytes begin as this server writes them (`{"apiVersion":"…","kind":"…","metadata":{`): written by
/// [`encode_for_storage`], compact and with every map's keys in order, rather than by another tool.
pub fn is_canonical(stored: &[u8]) -> bool {
    metadata_body_offset(stored).is_some()
}

/// Where the body of `metadata` starts in canonically written bytes, if they are canonical.
fn metadata_body_offset(stored: &[u8]) -> Option<usize> {
    const HEAD: &[u8] = b"{\"apiVersion\":\"";
    const KIND: &[u8] = b"\",\"kind\":\"";
    const META: &[u8] = b"\",\"metadata\":{";
    let rest = stored.strip_prefix(HEAD)?;
    // apiVersion and kind are plain strings: the first quote ends each (an escape before it means another shape).
    let kind_at = end_of_plain_string(rest, KIND)?;
    let after_kind = &rest[kind_at + KIND.len()..];
    let meta_at = end_of_plain_string(after_kind, META)?;
    Some(HEAD.len() + kind_at + KIND.len() + meta_at + META.len())
}

/// Where a plain string (no quote or backslash in it) at the start of `bytes` ends, if `next` follows it.
fn end_of_plain_string(bytes: &[u8], next: &[u8]) -> Option<usize> {
    let at = bytes.iter().position(|&b| b == b'"' || b == b'\\')?;
    bytes[at..].starts_with(next).then_some(at)
}

/// `n` in decimal, without allocating.
fn put_decimal(out: &mut BytesMut, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.put_u8(b'-');
    }
    out.put_slice(&digits[at..]);
}

/// The stored bytes with `metadata.resourceVersion` set to `rv`, appended to `out`.
pub fn write_with_resource_version(out: &mut BytesMut, stored: &[u8], rv: i64) {
    match metadata_body_offset(stored) {
        Some(at) => {
            out.reserve(stored.len() + 32);
            out.put_slice(&stored[..at]);
            out.put_slice(b"\"resourceVersion\":\"");
            put_decimal(out, rv);
            out.put_slice(b"\"");
            if stored.get(at) != Some(&b'}') {
                out.put_u8(b',');
            }
            out.put_slice(&stored[at..]);
        }
        None => match decode(stored, rv) {
            Ok(v) => {
                let _ = serde_json::to_writer(out.writer(), &v);
            }
            Err(_) => out.put_slice(stored),
        },
    }
}

/// Asks the CPU to start loading the cache line at `at` into its caches, without waiting for it: a hint for loops
/// over objects scattered across the heap. A no-op where there is no such instruction.
#[inline]
pub fn prefetch(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing into the program and never faults, whatever the address; SSE, which it
    // needs, is part of every x86_64 CPU.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// [`prefetch`] for the first [`PREFETCH_MAX_BYTES`] of `bytes`, a cache line at a time.
#[inline]
pub fn prefetch_bytes(bytes: &[u8]) {
    let head = &bytes[..bytes.len().min(PREFETCH_MAX_BYTES)];
    for line in head.chunks(64) {
        prefetch(line.as_ptr());
    }
}

/// How much of an object [`prefetch_bytes`] asks for: most objects whole, and no more than the CPU's first-level
/// cache holds several of.
const PREFETCH_MAX_BYTES: usize = 2048;

/// The stored bytes with `metadata.resourceVersion` set: the object as a client sees it.
pub fn with_resource_version(stored: &[u8], rv: i64) -> Bytes {
    let mut out = BytesMut::new();
    write_with_resource_version(&mut out, stored, rv);
    out.freeze()
}

/// The deepest nesting of objects and arrays a stored object may have: the bound of a decoded body or patched
/// object (`body::MAX_DOCUMENT_DEPTH`, which leaves `managedFields` room above the fields they name). serde_json
/// reads at most 128 levels (its recursion limit); storing less leaves room for what wraps an object on its way
/// to a client, so whatever is stored can always be read back.
pub const MAX_DEPTH: usize = crate::request::body::MAX_DOCUMENT_DEPTH;

/// Whether an object (whose map is one level) nests deeper than `limit`.
pub fn object_depth_exceeds(obj: &Map<String, Value>, limit: usize) -> bool {
    limit == 0 || containers_exceed(obj.values(), limit - 1)
}

/// Whether any of `values` nests objects and arrays deeper than `limit` (a scalar is 0), without recursion and
/// stopping once `limit` is passed: one stack of the containers still to look into, with their
/// depths (scalars are never pushed).
fn containers_exceed<'a>(values: impl Iterator<Item = &'a Value>, limit: usize) -> bool {
    fn is_container(v: &&Value) -> bool {
        matches!(v, Value::Object(_) | Value::Array(_))
    }
    let mut stack: Vec<(&Value, usize)> = values.filter(is_container).map(|v| (v, 1)).collect();
    while let Some((v, depth)) = stack.pop() {
        if depth > limit {
            return true;
        }
        match v {
            Value::Object(m) => stack.extend(m.values().filter(is_container).map(|c| (c, depth + 1))),
            Value::Array(a) => stack.extend(a.iter().filter(is_container).map(|c| (c, depth + 1))),
            _ => {}
        }
    }
    false
}

/// Decode stored bytes into an object with its resourceVersion.
pub fn decode(stored: &[u8], rv: i64) -> serde_json::Result<Value> {
    let mut v: Value = serde_json::from_slice(stored)?;
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_exceeds(value: &Value, limit: usize) -> bool {
        containers_exceed(std::iter::once(value), limit)
    }
    use serde_json::json;

    #[test]
    fn canonical_bytes_get_the_resource_version_spliced_in() {
        let obj = json!({"spec": {"a": 1}, "metadata": {"name": "x", "resourceVersion": "9"}, "kind": "K", "apiVersion": "g/v1"});
        let stored = encode_for_storage(obj.as_object().unwrap());
        assert!(stored.starts_with(b"{\"apiVersion\":\"g/v1\",\"kind\":\"K\",\"metadata\":{"));
        assert!(!String::from_utf8_lossy(&stored).contains("resourceVersion"));
        let served: Value = serde_json::from_slice(&with_resource_version(&stored, 42)).unwrap();
        assert_eq!(served["metadata"]["resourceVersion"], "42");
        assert_eq!(served["metadata"]["name"], "x");
        assert_eq!(served["spec"]["a"], 1);
    }

    #[test]
    fn metadata_is_written_as_serde_json_writes_it_without_the_resource_version() {
        let obj = json!({"apiVersion": "g/v1", "kind": "K", "metadata": {
            "name": "x", "resourceVersion": "9", "labels": {"a\"b": "c\u{1}"}, "managedFields": [{"f": {"g": {}}}],
            "zz": [], "aa": {}}, "spec": {"q": [1, 2.5, null]}});
        let mut meta = obj["metadata"].as_object().unwrap().clone();
        meta.remove("resourceVersion");
        let expected = format!(
            r#"{{"apiVersion":"g/v1","kind":"K","metadata":{},"spec":{}}}"#,
            serde_json::to_string(&meta).unwrap(),
            serde_json::to_string(&obj["spec"]).unwrap()
        );
        assert_eq!(String::from_utf8(encode_for_storage(obj.as_object().unwrap())).unwrap(), expected);
        let only_rv = json!({"apiVersion": "g/v1", "kind": "K", "metadata": {"resourceVersion": "1"}});
        assert_eq!(
            encode_for_storage(only_rv.as_object().unwrap()),
            br#"{"apiVersion":"g/v1","kind":"K","metadata":{}}"#
        );
    }

    #[test]
    fn empty_metadata_and_foreign_shapes() {
        let stored = br#"{"apiVersion":"g/v1","kind":"K","metadata":{}}"#;
        let served: Value = serde_json::from_slice(&with_resource_version(stored, 3)).unwrap();
        assert_eq!(served["metadata"], json!({"resourceVersion": "3"}));
        let foreign = br#"{"kind":"K","metadata":{"name":"y"},"apiVersion":"g/v1"}"#;
        let served: Value = serde_json::from_slice(&with_resource_version(foreign, 5)).unwrap();
        assert_eq!(served["metadata"]["resourceVersion"], "5");
    }

    #[test]
    fn resource_versions_in_decimal() {
        for n in [0, 7, 10, 12345, i64::MAX, -1, i64::MIN] {
            let mut out = BytesMut::new();
            put_decimal(&mut out, n);
            assert_eq!(&out[..], n.to_string().as_bytes());
        }
    }

    #[test]
    fn only_plain_type_meta_takes_the_fast_path() {
        let canonical = br#"{"apiVersion":"g/v1","kind":"K","metadata":{"name":"x"}}"#;
        assert_eq!(metadata_body_offset(canonical), Some(canonical.len() - br#""name":"x"}}"#.len()));
        for other in [
            &br#"{"apiVersion":"g\"/v1","kind":"K","metadata":{}}"#[..],
            br#"{"apiVersion":"g/v1","kind":"K\u0022","metadata":{}}"#,
            br#"{"apiVersion":"g/v1","other":"K","metadata":{}}"#,
            br#"{"apiVersion":"g/v1","kind":"K","spec":{},"metadata":{}}"#,
            br#"{"apiVersion":"g/v1""#,
        ] {
            assert_eq!(metadata_body_offset(other), None, "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn nesting_depth() {
        assert!(!depth_exceeds(&json!({"a": {"b": [1, {"c": 2}]}}), 4));
        assert!(depth_exceeds(&json!({"a": {"b": [1, {"c": {}}]}}), 4));
        let mut deep = json!(1);
        for _ in 0..200 {
            deep = json!([deep]);
        }
        assert!(depth_exceeds(&deep, MAX_DEPTH));
        assert!(!depth_exceeds(&deep, 200));
    }
}
