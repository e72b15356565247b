//! How the field manager and strategic merge patch read a kind's structural schema: which nodes are structs
//! (declared fields), maps (`additionalProperties`), and which lists are atomic, sets or maps keyed by
//! `x-kubernetes-list-map-keys` — the role of structured-merge-diff's `schema.Schema` upstream. They walk the
//! [`Schema`] that pruning, defaulting and validation walk, read once per kind.
//!
//! endpoints → registry store → strategy → **field manager, strategic merge patch (this file: the schema as merging
//! reads it)** → storage.
//!
//! A `None` schema is "deduced" (upstream's `__untyped_deduced_`): objects are granular maps, lists atomic,
//! everything else a leaf; a `$ref` other than ObjectMeta's is merged so. `metadata` (a `$ref` to ObjectMeta) is
//! merged as ObjectMeta: labels and annotations are maps, finalizers a set, ownerReferences a map list keyed by
//! `uid`, managedFields atomic.

use std::sync::OnceLock;

use serde_json::{Value, json};

use super::{ListKind, Schema};

/// ObjectMeta as upstream's OpenAPI models describe it, reduced to what merging needs.
fn object_meta_json() -> Value {
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
}

/// ObjectMeta's schema as merging reads it, compiled once.
fn object_meta() -> &'static Schema {
    static OBJECT_META: OnceLock<Schema> = OnceLock::new();
    OBJECT_META.get_or_init(|| Schema::new(&object_meta_json()))
}

/// A schema as merging walks it: ObjectMeta's `$ref` is ObjectMeta's schema, another `$ref` is deduced (`None`).
pub fn resolve(schema: Option<&Schema>) -> Option<&Schema> {
    match schema {
        Some(s) if s.object_meta => Some(object_meta()),
        Some(s) if s.is_ref => None,
        other => other,
    }
}

/// The shape of one node, given its schema and value.
#[derive(Debug, Clone)]
pub enum Node<'s> {
    /// A leaf: a scalar, or a value of another JSON type than the schema declares.
    Scalar,
    /// An object: struct fields (`properties`) and/or map entries (`additionalProperties`).
    Map {
        /// The object's schema (`None`: deduced).
        schema: Option<&'s Schema>,
        /// `x-kubernetes-map-type: atomic`: replaced whole.
        atomic: bool,
    },
    /// An array.
    List {
        /// The items' schema (`None`: deduced).
        items: Option<&'s Schema>,
        /// How the items are identified.
        kind: &'s ListKind,
    },
}

/// The shape of `value` under `schema`; a value whose JSON type contradicts the schema is a leaf (validation
/// reports it later).
pub fn node<'s>(schema: Option<&'s Schema>, value: &Value) -> Node<'s> {
    let schema = resolve(schema);
    let declared = schema.and_then(|s| s.type_name.as_deref());
    match value {
        Value::Object(_) if matches!(declared, None | Some("object")) => {
            Node::Map { schema, atomic: schema.is_some_and(is_atomic_map) }
        }
        Value::Array(_) if matches!(declared, None | Some("array")) => {
            Node::List { items: items(schema), kind: list_kind(schema) }
        }
        _ => Node::Scalar,
    }
}

/// Whether objects under this node are replaced whole (`x-kubernetes-map-type: atomic`).
pub fn is_atomic_map(schema: &Schema) -> bool {
    schema.atomic_map
}

/// The list semantics of an array schema (CRDs default to atomic).
pub fn list_kind(schema: Option<&Schema>) -> &ListKind {
    static ATOMIC: ListKind = ListKind::Atomic;
    resolve(schema).map_or(&ATOMIC, |s| &s.list)
}

/// The schema of a list's items.
pub fn items(schema: Option<&Schema>) -> Option<&Schema> {
    resolve(schema)?.items.as_deref()
}

/// A map entry's schema, and whether it is a declared struct field.
pub enum Field<'s> {
    /// A `properties` entry.
    Declared(&'s Schema),
    /// An `additionalProperties` entry, or any key of a deduced or preserve-unknown-fields object.
    Entry(Option<&'s Schema>),
    /// A key the schema does not allow.
    Unknown,
}

/// The schema of `key` in an object with `schema`.
pub fn field<'s>(schema: Option<&'s Schema>, key: &str) -> Field<'s> {
    let Some(s) = resolve(schema) else { return Field::Entry(None) };
    if let Some(p) = s.properties.get(key) {
        return Field::Declared(p);
    }
    match &s.additional {
        Some(a) => Field::Entry(Some(a)),
        None if s.additional_any || s.preserve_unknown => Field::Entry(None),
        None if !s.has_properties && !s.has_type => Field::Entry(None),
        None => Field::Unknown,
    }
}

/// The schema of `key` for walking into it, whatever the kind of field.
pub fn child<'s>(schema: Option<&'s Schema>, key: &str) -> Option<&'s Schema> {
    match field(schema, key) {
        Field::Declared(s) => Some(s),
        Field::Entry(s) => s,
        Field::Unknown => None,
    }
}

/// Whether `key` is a declared struct field of `schema` (structured-merge-diff's `Map.FindField`).
pub fn is_declared(schema: Option<&Schema>, key: &str) -> bool {
    matches!(field(schema, key), Field::Declared(_))
}
