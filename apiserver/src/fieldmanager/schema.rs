//! How the field manager and strategic merge patch read a kind's OpenAPI v3 structural schema: which nodes are
//! structs (declared fields), maps (`additionalProperties`), and which lists are atomic, sets or maps keyed by
//! `x-kubernetes-list-map-keys` — the role of structured-merge-diff's `schema.Schema` upstream. The schema is read
//! once per kind into a [`Shape`], so that a write walks plain fields instead of searching the schema's JSON maps
//! for the same keywords at every node of every object.
//!
//! endpoints → registry store → strategy → **field manager (this file: schema shapes)** → storage.
//!
//! A `None` shape is "deduced" (upstream's `__untyped_deduced_`): objects are granular maps, lists atomic,
//! everything else a leaf. `metadata` (a `$ref` to ObjectMeta) resolves to ObjectMeta's shape: labels and
//! annotations are maps, finalizers a set, ownerReferences a map list keyed by `uid`, managedFields atomic.

use std::collections::BTreeMap;

use backup_apis::schema::OBJECT_META_REF;
use serde_json::{Value, json};

/// ObjectMeta as upstream's OpenAPI models describe it, reduced to what merging needs.
fn object_meta() -> Value {
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

/// How a list's items are identified.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ListKind {
    /// Replaced whole: one leaf.
    #[default]
    Atomic,
    /// Scalars identified by their value (`v:`).
    Set,
    /// Objects identified by these key fields (`k:`).
    Map(Vec<String>),
}

/// The `type` a schema node declares, as merging tells nodes apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Declared {
    /// No `type` string: any JSON type.
    #[default]
    Any,
    Object,
    Array,
    /// Another type: a leaf.
    Other,
}

/// `additionalProperties`.
#[derive(Debug, Default)]
enum Additional {
    /// Absent, `false` or not a schema.
    #[default]
    None,
    /// `true`: any key, of any shape.
    Any,
    Schema(Box<Shape>),
}

/// One node of a kind's schema, with the keywords merging reads. A keyword that is absent, or not of its JSON type,
/// reads as it does in the JSON schema.
#[derive(Debug, Default)]
pub struct Shape {
    /// A `$ref` to something other than ObjectMeta: merged as deduced.
    deduced: bool,
    declared: Declared,
    /// Whether the node has a `type` keyword at all (of any JSON type).
    has_type: bool,
    /// `x-kubernetes-map-type: atomic`.
    atomic_map: bool,
    /// Whether the node has a `properties` keyword at all.
    has_properties: bool,
    properties: BTreeMap<String, Shape>,
    additional: Additional,
    preserve_unknown: bool,
    items: Option<Box<Shape>>,
    list: ListKind,
}

impl Shape {
    /// Reads an OpenAPI v3 structural schema (a kind's `Kind::schema()`); ObjectMeta's `$ref` is replaced by its
    /// shape.
    pub fn new(schema: &Value) -> Self {
        let Some(m) = schema.as_object() else { return Self::default() };
        match m.get("$ref").and_then(Value::as_str) {
            Some(OBJECT_META_REF) => return Self::new(&object_meta()),
            Some(_) => return Self { deduced: true, ..Self::default() },
            None => {}
        }
        let text = |key: &str| m.get(key).and_then(Value::as_str);
        let declared = match text("type") {
            None => Declared::Any,
            Some("object") => Declared::Object,
            Some("array") => Declared::Array,
            Some(_) => Declared::Other,
        };
        let list = match text("x-kubernetes-list-type") {
            Some("set") => ListKind::Set,
            Some("map") => {
                let keys = m.get("x-kubernetes-list-map-keys").and_then(Value::as_array).into_iter().flatten();
                let keys: Vec<String> = keys.filter_map(Value::as_str).map(str::to_string).collect();
                if keys.is_empty() { ListKind::Atomic } else { ListKind::Map(keys) }
            }
            _ => ListKind::Atomic,
        };
        let additional = match m.get("additionalProperties") {
            Some(a) if a.is_object() => Additional::Schema(Box::new(Self::new(a))),
            Some(Value::Bool(true)) => Additional::Any,
            _ => Additional::None,
        };
        let properties = m.get("properties").and_then(Value::as_object).into_iter().flatten();
        Self {
            deduced: false,
            declared,
            has_type: m.contains_key("type"),
            atomic_map: text("x-kubernetes-map-type") == Some("atomic"),
            has_properties: m.contains_key("properties"),
            properties: properties.map(|(k, v)| (k.clone(), Self::new(v))).collect(),
            additional,
            preserve_unknown: m.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true),
            items: m.get("items").map(|i| Box::new(Self::new(i))),
            list,
        }
    }

    /// Whether objects under this node are replaced whole (`x-kubernetes-map-type: atomic`).
    pub fn is_atomic_map(&self) -> bool {
        self.atomic_map
    }
}

/// A shape as merging walks it: a deduced node (another `$ref`) is `None`.
pub fn resolve(shape: Option<&Shape>) -> Option<&Shape> {
    shape.filter(|s| !s.deduced)
}

/// The shape of one node, given its schema and value.
#[derive(Debug, Clone)]
pub enum Node<'s> {
    Scalar,
    /// An object: struct fields (`properties`) and/or map entries (`additionalProperties`).
    Map {
        schema: Option<&'s Shape>,
        atomic: bool,
    },
    List {
        items: Option<&'s Shape>,
        kind: &'s ListKind,
    },
}

/// The shape of `value` under `schema`; a value whose JSON type contradicts the schema is a leaf (validation
/// reports it later).
pub fn node<'s>(schema: Option<&'s Shape>, value: &Value) -> Node<'s> {
    let schema = resolve(schema);
    let declared = schema.map_or(Declared::Any, |s| s.declared);
    match value {
        Value::Object(_) if matches!(declared, Declared::Any | Declared::Object) => {
            Node::Map { schema, atomic: schema.is_some_and(Shape::is_atomic_map) }
        }
        Value::Array(_) if matches!(declared, Declared::Any | Declared::Array) => {
            Node::List { items: items(schema), kind: list_kind(schema) }
        }
        _ => Node::Scalar,
    }
}

/// The list semantics of an array schema (CRDs default to atomic).
pub fn list_kind(schema: Option<&Shape>) -> &ListKind {
    static ATOMIC: ListKind = ListKind::Atomic;
    resolve(schema).map_or(&ATOMIC, |s| &s.list)
}

/// The shape of a list's items.
pub fn items(schema: Option<&Shape>) -> Option<&Shape> {
    resolve(schema)?.items.as_deref()
}

/// A map entry's schema, and whether it is a declared struct field.
pub enum Field<'s> {
    /// A `properties` entry.
    Declared(&'s Shape),
    /// An `additionalProperties` entry, or any key of a deduced or preserve-unknown-fields object.
    Entry(Option<&'s Shape>),
    /// A key the schema does not allow.
    Unknown,
}

/// The schema of `key` in an object with `schema`.
pub fn field<'s>(schema: Option<&'s Shape>, key: &str) -> Field<'s> {
    let Some(s) = resolve(schema) else { return Field::Entry(None) };
    if let Some(p) = s.properties.get(key) {
        return Field::Declared(p);
    }
    match &s.additional {
        Additional::Schema(a) => Field::Entry(Some(a)),
        Additional::Any => Field::Entry(None),
        Additional::None if s.preserve_unknown => Field::Entry(None),
        Additional::None if !s.has_properties && !s.has_type => Field::Entry(None),
        Additional::None => Field::Unknown,
    }
}

/// The schema of `key` for walking into it, whatever the kind of field.
pub fn child<'s>(schema: Option<&'s Shape>, key: &str) -> Option<&'s Shape> {
    match field(schema, key) {
        Field::Declared(s) => Some(s),
        Field::Entry(s) => s,
        Field::Unknown => None,
    }
}

/// Whether `key` is a declared struct field of `schema` (structured-merge-diff's `Map.FindField`).
pub fn is_declared(schema: Option<&Shape>, key: &str) -> bool {
    matches!(field(schema, key), Field::Declared(_))
}
