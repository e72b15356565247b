//! Table and PartialObjectMetadata renderings (`as=Table`, `as=PartialObjectMetadata[List]`), from the kind's
//! printer columns. This is what `kubectl get` prints. Lists are written row by row, so a Table of N objects holds
//! one decoded object at a time, not N.

use backup_apis::Kind;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::error::ApiResult;
use crate::request::negotiation::{IncludeObject, MetaVersion};

/// `{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{…}}` of an object (its metadata
/// moved, not copied).
pub fn partial_object_metadata(mut obj: Value, version: MetaVersion) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": version.api_version(),
        "metadata": obj.get_mut("metadata").map(Value::take).unwrap_or_else(|| json!({})),
    })
}

/// A `PartialObjectMetadataList`, written item by item from `objs` (each decoded object is dropped once written).
pub fn partial_object_metadata_list(
    objs: impl Iterator<Item = ApiResult<Value>>,
    list_meta: Map<String, Value>,
    version: MetaVersion,
) -> ApiResult<Bytes> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"{\"kind\":\"PartialObjectMetadataList\",\"apiVersion\":");
    write_json(&mut out, &Value::from(version.api_version()));
    out.extend_from_slice(b",\"metadata\":");
    write_json(&mut out, &Value::Object(list_meta));
    out.extend_from_slice(b",\"items\":[");
    for (i, obj) in objs.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(&mut out, &partial_object_metadata(obj?, version));
    }
    out.extend_from_slice(b"]}");
    Ok(Bytes::from(out))
}

/// One Table row of `obj`.
fn row(kind: &dyn Kind, obj: Value, include: IncludeObject, version: MetaVersion, now: jiff::Timestamp) -> Value {
    let cells: Vec<Value> = kind.printer_columns().iter().map(|c| c.cell(&obj, now)).collect();
    let object = match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => partial_object_metadata(obj, version),
        IncludeObject::Object => obj,
    };
    json!({"cells": cells, "object": object})
}

fn column_definitions(kind: &dyn Kind) -> Value {
    kind.printer_columns()
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.column_type.as_str(),
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect()
}

fn write_json(out: &mut Vec<u8>, v: &Value) {
    // Serializing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// A Table of `objs`, written row by row (each decoded object is dropped once its row is written), with ages as of
/// `now`; `headers` = false omits `columnDefinitions` (later watch events).
pub fn table(
    kind: &dyn Kind,
    objs: impl Iterator<Item = ApiResult<Value>>,
    list_meta: Map<String, Value>,
    (include, version, headers): (IncludeObject, MetaVersion, bool),
    now: jiff::Timestamp,
) -> ApiResult<Bytes> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"{\"kind\":\"Table\",\"apiVersion\":");
    write_json(&mut out, &Value::from(version.api_version()));
    out.extend_from_slice(b",\"metadata\":");
    write_json(&mut out, &Value::Object(list_meta));
    if headers {
        out.extend_from_slice(b",\"columnDefinitions\":");
        write_json(&mut out, &column_definitions(kind));
    }
    out.extend_from_slice(b",\"rows\":[");
    for (i, obj) in objs.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(&mut out, &row(kind, obj?, include, version, now));
    }
    out.extend_from_slice(b"]}");
    Ok(Bytes::from(out))
}
