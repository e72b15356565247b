//! A kind's structural schema read once into the keywords that the request path looks up, so that a write walks
//! plain fields instead of searching the schema's JSON maps for a dozen keywords at every node (which was a sixth
//! of a create's instructions). Pruning, defaulting and validation ([`super`]) and merging — the field manager and
//! strategic merge patch, through [`super::merge`] — read the same [`Schema`].
//!
//! filters → endpoints → registry store → **strategy (this file: the schema the strategy's walks read)** → storage.

use std::collections::BTreeMap;

use serde_json::Value;

use super::OBJECT_META_REF;

/// How a list's items are identified (`x-kubernetes-list-type`; CRDs default to atomic).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ListKind {
    /// Replaced whole: one leaf.
    #[default]
    Atomic,
    /// Scalars identified by their value (`v:`); no two items are equal.
    Set,
    /// Objects identified by these key fields (`k:`, `x-kubernetes-list-map-keys`); no two items share their keys.
    /// A map list without keys is atomic.
    Map(Vec<String>),
}

/// One node of a structural schema. A keyword that is absent, or not of its JSON type, is `None`/`false`/empty, as
/// when the walks read it from the JSON schema.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// `$ref`: the walks leave the node alone (but for pruning ObjectMeta, and merging it as ObjectMeta).
    pub(super) is_ref: bool,
    /// `$ref` to ObjectMeta.
    pub(super) object_meta: bool,
    pub(super) type_name: Option<String>,
    /// Whether the node has a `type` keyword at all (of any JSON type).
    pub(super) has_type: bool,
    pub(super) nullable: bool,
    pub(super) enum_values: Option<Vec<Value>>,
    pub(super) minimum: Option<f64>,
    pub(super) maximum: Option<f64>,
    pub(super) max_length: Option<u64>,
    /// `format: date-time`.
    pub(super) date_time: bool,
    pub(super) properties: BTreeMap<String, Schema>,
    /// Whether the node has a `properties` keyword at all.
    pub(super) has_properties: bool,
    /// `additionalProperties`, when it is a schema (an object).
    pub(super) additional: Option<Box<Schema>>,
    /// `additionalProperties: true`: any key, of any shape.
    pub(super) additional_any: bool,
    pub(super) items: Option<Box<Schema>>,
    pub(super) required: Vec<String>,
    pub(super) list: ListKind,
    /// `x-kubernetes-map-type: atomic`.
    pub(super) atomic_map: bool,
    pub(super) preserve_unknown: bool,
    pub(super) default: Option<Value>,
}

impl Schema {
    /// Reads an OpenAPI v3 structural schema (a kind's `Kind::schema()`).
    pub fn new(schema: &Value) -> Self {
        let Some(m) = schema.as_object() else { return Self::default() };
        let text = |key: &str| m.get(key).and_then(Value::as_str);
        let flag = |key: &str| m.get(key).and_then(Value::as_bool).unwrap_or(false);
        let strings = |key: &str| -> Vec<String> {
            let list = m.get(key).and_then(Value::as_array).into_iter().flatten();
            list.filter_map(Value::as_str).map(str::to_string).collect()
        };
        let list = match text("x-kubernetes-list-type") {
            Some("set") => ListKind::Set,
            Some("map") => match strings("x-kubernetes-list-map-keys") {
                keys if keys.is_empty() => ListKind::Atomic,
                keys => ListKind::Map(keys),
            },
            _ => ListKind::Atomic,
        };
        let properties = m.get("properties").and_then(Value::as_object).into_iter().flatten();
        Self {
            is_ref: m.contains_key("$ref"),
            object_meta: text("$ref") == Some(OBJECT_META_REF),
            type_name: text("type").map(str::to_string),
            has_type: m.contains_key("type"),
            nullable: flag("nullable"),
            enum_values: m.get("enum").and_then(Value::as_array).cloned(),
            minimum: m.get("minimum").and_then(Value::as_f64),
            maximum: m.get("maximum").and_then(Value::as_f64),
            max_length: m.get("maxLength").and_then(Value::as_u64),
            date_time: text("format") == Some("date-time"),
            properties: properties.map(|(k, v)| (k.clone(), Self::new(v))).collect(),
            has_properties: m.contains_key("properties"),
            additional: m.get("additionalProperties").filter(|a| a.is_object()).map(|a| Box::new(Self::new(a))),
            additional_any: m.get("additionalProperties") == Some(&Value::Bool(true)),
            items: m.get("items").map(|i| Box::new(Self::new(i))),
            required: strings("required"),
            list,
            atomic_map: text("x-kubernetes-map-type") == Some("atomic"),
            preserve_unknown: flag("x-kubernetes-preserve-unknown-fields"),
            default: m.get("default").cloned(),
        }
    }

    /// Whether the node declares this JSON type.
    pub(super) fn is_type(&self, name: &str) -> bool {
        self.type_name.as_deref() == Some(name)
    }

    /// The schema of `key` in an object: its property, else `additionalProperties`.
    pub(super) fn child(&self, key: &str) -> Option<&Schema> {
        self.properties.get(key).or(self.additional.as_deref())
    }
}
