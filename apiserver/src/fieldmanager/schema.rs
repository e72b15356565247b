//! How the field manager and strategic merge patch read a kind's OpenAPI v3 structural schema: which nodes are
//! structs (declared fields), maps (`additionalProperties`), and which lists are atomic, sets or maps keyed by
//! `x-kubernetes-list-map-keys` — the role of structured-merge-diff's `schema.Schema` upstream.
//!
//! endpoints → registry store → strategy → **field manager (this file: schema shapes)** → storage.
//!
//! A `None` schema is "deduced" (upstream's `__untyped_deduced_`): objects are granular maps, lists atomic,
//! everything else a leaf. `metadata` (a `$ref` to ObjectMeta) resolves to ObjectMeta's shape: labels and
//! annotations are maps, finalizers a set, ownerReferences a map list keyed by `uid`, managedFields atomic.

use std::sync::LazyLock;

use backup_apis::schema::OBJECT_META_REF;
use serde_json::{Value, json};

/// ObjectMeta as upstream's OpenAPI models describe it, reduced to what merging needs.
static OBJECT_META: LazyLock<Value> = LazyLock::new(|| {
    let string = json!({"type": "string"});
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let owner_reference = json!({
        "type": "object",
        "properties": {
            "apiVersion": string, "kind": string, "name": string, "uid": string,
            "controller": {"type": "boolean"}, "blockOwnerDeletion": {"type": "boolean"},
        },
    });
    json!({
        "type": "object",
        "properties": {
            "name": string, "generateName": string, "namespace": string, "selfLink": string, "uid": string,
            "resourceVersion": string, "generation": {"type": "integer"}, "creationTimestamp": string,
            "deletionTimestamp": string, "deletionGracePeriodSeconds": {"type": "integer"},
            "labels": string_map, "annotations": string_map,
            "ownerReferences": {
                "type": "array", "items": owner_reference,
                "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"],
            },
            "finalizers": {"type": "array", "items": string, "x-kubernetes-list-type": "set"},
            "managedFields": {"type": "array", "items": {"type": "object"}, "x-kubernetes-list-type": "atomic"},
        },
    })
});

/// How a list's items are identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListKind<'s> {
    /// Replaced whole: one leaf.
    Atomic,
    /// Scalars identified by their value (`v:`).
    Set,
    /// Objects identified by these key fields (`k:`).
    Map(Vec<&'s str>),
}

/// The shape of one node, given its schema and value.
#[derive(Debug, Clone)]
pub enum Node<'s> {
    Scalar,
    /// An object: struct fields (`properties`) and/or map entries (`additionalProperties`).
    Map {
        schema: Option<&'s Value>,
        atomic: bool,
    },
    List {
        items: Option<&'s Value>,
        kind: ListKind<'s>,
    },
}

/// Follows a `$ref` to ObjectMeta; other refs are deduced.
pub fn resolve(schema: Option<&Value>) -> Option<&Value> {
    let s = schema?;
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) if r == OBJECT_META_REF => Some(&OBJECT_META),
        Some(_) => None,
        None => Some(s),
    }
}

/// The shape of `value` under `schema`; a value whose JSON type contradicts the schema is a leaf (validation
/// reports it later).
pub fn node<'s>(schema: Option<&'s Value>, value: &Value) -> Node<'s> {
    let schema = resolve(schema);
    let declared = schema.and_then(|s| s.get("type")).and_then(Value::as_str);
    match value {
        Value::Object(_) if matches!(declared, None | Some("object")) => {
            let atomic = schema.and_then(|s| s.get("x-kubernetes-map-type")).and_then(Value::as_str) == Some("atomic");
            Node::Map { schema, atomic }
        }
        Value::Array(_) if matches!(declared, None | Some("array")) => {
            let kind = list_kind(schema);
            Node::List { items: schema.and_then(|s| s.get("items")), kind }
        }
        _ => Node::Scalar,
    }
}

/// The list semantics of an array schema (CRDs default to atomic).
pub fn list_kind(schema: Option<&Value>) -> ListKind<'_> {
    let Some(s) = resolve(schema) else { return ListKind::Atomic };
    match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => ListKind::Set,
        Some("map") => {
            let keys = s.get("x-kubernetes-list-map-keys").and_then(Value::as_array);
            let keys: Vec<&str> = keys.into_iter().flatten().filter_map(Value::as_str).collect();
            if keys.is_empty() { ListKind::Atomic } else { ListKind::Map(keys) }
        }
        _ => ListKind::Atomic,
    }
}

/// A map entry's schema, and whether it is a declared struct field.
pub enum Field<'s> {
    /// A `properties` entry.
    Declared(&'s Value),
    /// An `additionalProperties` entry, or any key of a deduced or preserve-unknown-fields object.
    Entry(Option<&'s Value>),
    /// A key the schema does not allow.
    Unknown,
}

/// The schema of `key` in an object with `schema`.
pub fn field<'s>(schema: Option<&'s Value>, key: &str) -> Field<'s> {
    let Some(s) = resolve(schema) else { return Field::Entry(None) };
    if let Some(p) = s.get("properties").and_then(|p| p.get(key)) {
        return Field::Declared(p);
    }
    match s.get("additionalProperties") {
        Some(a) if a.is_object() => Field::Entry(Some(a)),
        Some(Value::Bool(true)) => Field::Entry(None),
        _ if s.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true) => Field::Entry(None),
        _ if s.get("properties").is_none() && s.get("type").is_none() => Field::Entry(None),
        _ => Field::Unknown,
    }
}

/// The schema of `key` for walking into it, whatever the kind of field.
pub fn child<'s>(schema: Option<&'s Value>, key: &str) -> Option<&'s Value> {
    match field(schema, key) {
        Field::Declared(s) => Some(s),
        Field::Entry(s) => s,
        Field::Unknown => None,
    }
}

/// Whether `key` is a declared struct field of `schema` (structured-merge-diff's `Map.FindField`).
pub fn is_declared(schema: Option<&Value>, key: &str) -> bool {
    matches!(field(schema, key), Field::Declared(_))
}
