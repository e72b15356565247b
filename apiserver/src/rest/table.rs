//! Table and PartialObjectMetadata renderings (`as=Table`, `as=PartialObjectMetadata[List]`), from the kind's
//! printer columns. This is what `kubectl get` prints.

use backup_apis::Kind;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::http::negotiation::MetaVersion;

/// `includeObject` of a Table request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(v: Option<&str>) -> ApiResult<Self> {
        match v {
            None | Some("" | "Metadata") => Ok(Self::Metadata),
            Some("None") => Ok(Self::None),
            Some("Object") => Ok(Self::Object),
            Some(other) => Err(ApiError::bad_request(format!(
                "includeObject: Unsupported value: {other:?}: supported values: \"Metadata\", \"None\", \"Object\""
            ))),
        }
    }
}

/// `{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{…}}` of an object.
pub fn partial_object_metadata(obj: &Value, version: MetaVersion) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": version.api_version(),
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A `PartialObjectMetadataList` of objects.
pub fn partial_object_metadata_list(objs: &[Value], list_meta: Map<String, Value>, version: MetaVersion) -> Value {
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": version.api_version(),
        "metadata": list_meta,
        "items": objs.iter().map(|o| partial_object_metadata(o, version)).collect::<Vec<_>>(),
    })
}

/// A Table of `objs`; `headers` = false omits `columnDefinitions` (later watch events).
pub fn table(
    kind: &dyn Kind,
    objs: &[Value],
    list_meta: Map<String, Value>,
    include: IncludeObject,
    version: MetaVersion,
    headers: bool,
) -> Value {
    let now = jiff::Timestamp::now();
    let columns = kind.printer_columns();
    let rows: Vec<Value> = objs
        .iter()
        .map(|obj| {
            let cells: Vec<Value> = columns.iter().map(|c| c.cell(obj, now)).collect();
            let object = match include {
                IncludeObject::None => Value::Null,
                IncludeObject::Metadata => partial_object_metadata(obj, version),
                IncludeObject::Object => obj.clone(),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    let mut t = Map::new();
    t.insert("kind".into(), "Table".into());
    t.insert("apiVersion".into(), version.api_version().into());
    t.insert("metadata".into(), Value::Object(list_meta));
    if headers {
        let defs: Vec<Value> = columns
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
            .collect();
        t.insert("columnDefinitions".into(), Value::Array(defs));
    }
    t.insert("rows".into(), Value::Array(rows));
    Value::Object(t)
}
