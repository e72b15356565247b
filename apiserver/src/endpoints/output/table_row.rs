//! Table rows and PartialObjectMetadata read from an object's stored bytes without decoding the object whole:
//! `metadata` is copied member by member (its resourceVersion put in its place), and only the members the printer
//! columns read are decoded. For bytes this server wrote, the output is byte for byte what [`super::table`] writes
//! from the decoded object (bytes written otherwise with the same beginning give the same JSON, its escapes as
//! stored). Bytes this quick read does not take (not beginning as this server writes, a key with an escape in it,
//! `metadata`'s keys out of order or twice, malformed JSON) go the decoded way.
//!
//! output (a Table or PartialObjectMetadataList of a list) → **stored rows** → the response.

use std::fmt;

use backup_apis::Kind;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::registry::object_bytes::is_canonical;
use crate::request::negotiation::{IncludeObject, MetaVersion};

/// An object's `metadata` read from its stored bytes, borrowing from them.
pub struct StoredMetadata<'a> {
    /// The members as stored, in key order (the order a decoded object's are written in).
    members: Vec<Member<'a>>,
    resource_version: String,
}

impl<'a> StoredMetadata<'a> {
    /// `metadata` of the object stored as `stored` at revision `rv`; `None` when the object must be decoded.
    pub fn read(stored: &'a [u8], rv: i64) -> Option<Self> {
        Some(read_members(stored, rv)?.1)
    }

    /// `{"apiVersion":…,"kind":"PartialObjectMetadata","metadata":{…}}` of `version`.
    pub fn write_partial_object_metadata(&self, out: &mut Vec<u8>, version: MetaVersion) {
        out.extend_from_slice(b"{\"apiVersion\":");
        // Serializing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, version.api_version());
        out.extend_from_slice(b",\"kind\":\"PartialObjectMetadata\",\"metadata\":{");
        let rv = ("resourceVersion", self.resource_version.as_str());
        let mut rv_written = false;
        let mut first = true;
        for &(key, raw) in &self.members {
            if key == rv.0 {
                continue;
            }
            if !rv_written && key > rv.0 {
                write_string_member(out, &mut first, rv);
                rv_written = true;
            }
            write_key(out, &mut first, key);
            out.extend_from_slice(raw.get().as_bytes());
        }
        if !rv_written {
            write_string_member(out, &mut first, rv);
        }
        out.extend_from_slice(b"}}");
    }
}

/// One Table row, read from stored bytes and borrowing from them.
pub struct StoredRow<'a> {
    cells: Vec<Value>,
    /// `None` when the row carries no object.
    metadata: Option<StoredMetadata<'a>>,
}

impl<'a> StoredRow<'a> {
    /// The row of the object stored as `stored` at revision `rv`, for a Table with `include` = None or Metadata;
    /// `None` when the object must be decoded whole for it.
    pub fn read(
        kind: &dyn Kind,
        stored: &'a [u8],
        rv: i64,
        include: IncludeObject,
        now: jiff::Timestamp,
    ) -> Option<Self> {
        if include == IncludeObject::Object {
            return None;
        }
        let (top, metadata) = read_members(stored, rv)?;
        // What the columns read, decoded: an object with only those members, for the cells.
        let mut read_meta = Map::new();
        let mut read = Map::new();
        for column in kind.printer_columns() {
            let pointer = column.source.pointer();
            if pointer.contains('~') {
                return None;
            }
            let mut path = pointer.split('/').skip(1);
            match (path.next(), path.next()) {
                (Some("metadata"), Some(key)) => decode_member(&mut read_meta, &metadata.members, key)?,
                (Some(name), _) if name != "metadata" => decode_member(&mut read, &top, name)?,
                _ => {}
            }
        }
        read_meta.insert("resourceVersion".into(), Value::String(metadata.resource_version.clone()));
        read.insert("metadata".into(), Value::Object(read_meta));
        let read = Value::Object(read);
        let cells = kind.printer_columns().iter().map(|c| c.cell(&read, now)).collect();
        let metadata = (include == IncludeObject::Metadata).then_some(metadata);
        Some(Self { cells, metadata })
    }

    /// `{"cells":[…],"object":…}`: the object null, or PartialObjectMetadata of `version`.
    pub fn write(&self, out: &mut Vec<u8>, version: MetaVersion) {
        out.extend_from_slice(b"{\"cells\":");
        // Serializing values into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &self.cells);
        out.extend_from_slice(b",\"object\":");
        match &self.metadata {
            None => out.extend_from_slice(b"null"),
            Some(metadata) => metadata.write_partial_object_metadata(out, version),
        }
        out.push(b'}');
    }
}

/// The members of a canonically stored object other than `metadata`, and its `metadata`; `None` when the object
/// must be decoded.
fn read_members(stored: &[u8], rv: i64) -> Option<(Vec<Member<'_>>, StoredMetadata<'_>)> {
    if !is_canonical(stored) {
        return None;
    }
    let Members { top, metadata } = serde_json::from_slice(stored).ok()?;
    Some((top, StoredMetadata { members: metadata?, resource_version: rv.to_string() }))
}

/// One member of a JSON object: its key (with no escape in it) and its value as written.
type Member<'a> = (&'a str, &'a RawValue);

/// The member `key` of `members` (the last, if twice) decoded into `into` (once); nothing when absent; `None` when
/// it is not JSON.
fn decode_member(into: &mut Map<String, Value>, members: &[Member<'_>], key: &str) -> Option<()> {
    if let Some((_, raw)) = members.iter().rev().find(|(k, _)| *k == key)
        && !into.contains_key(key)
    {
        into.insert(key.to_string(), serde_json::from_str(raw.get()).ok()?);
    }
    Some(())
}

/// A stored object's members as written, read in one pass: `metadata`'s own members (of the last `metadata`, as a
/// decoder takes it), which must be in strictly increasing key order as this server writes them (so each is there
/// once, in the order a decoded object's are written in); and the other members.
struct Members<'a> {
    /// In the order written; where a key is there twice, the last counts (as for a decoder).
    top: Vec<Member<'a>>,
    metadata: Option<Vec<Member<'a>>>,
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Top;
        impl<'de> Visitor<'de> for Top {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Members { top: Vec::new(), metadata: None };
                while let Some(key) = map.next_key::<&str>()? {
                    if key == "metadata" {
                        members.metadata = Some(map.next_value::<Sorted<'de>>()?.0);
                    } else {
                        members.top.push((key, map.next_value()?));
                    }
                }
                Ok(members)
            }
        }
        deserializer.deserialize_map(Top)
    }
}

/// An object's members as written, keys in strictly increasing order.
struct Sorted<'a>(Vec<Member<'a>>);

impl<'de> Deserialize<'de> for Sorted<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Inner;
        impl<'de> Visitor<'de> for Inner {
            type Value = Sorted<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Sorted<'de>, A::Error> {
                let mut members: Vec<Member<'de>> = Vec::with_capacity(16);
                while let Some(key) = map.next_key::<&str>()? {
                    if members.last().is_some_and(|(last, _)| *last >= key) {
                        return Err(de::Error::custom("keys out of order"));
                    }
                    members.push((key, map.next_value()?));
                }
                Ok(Sorted(members))
            }
        }
        deserializer.deserialize_map(Inner)
    }
}

/// `"key":` (after a comma unless first). The key was borrowed from JSON text, so it holds no character that
/// needs an escape.
fn write_key(out: &mut Vec<u8>, first: &mut bool, key: &str) {
    if !std::mem::replace(first, false) {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// `"key":"value"` for a value with no character that needs an escape (a decimal resourceVersion).
fn write_string_member(out: &mut Vec<u8>, first: &mut bool, (key, value): (&str, &str)) {
    write_key(out, first, key);
    out.push(b'"');
    out.extend_from_slice(value.as_bytes());
    out.push(b'"');
}
