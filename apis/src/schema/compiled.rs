//! A kind's structural schema read once into the keywords that pruning, defaulting and validation look up, so that
//! a request walks plain fields instead of searching the schema's JSON maps for a dozen keywords at every node
//! (which was a sixth of a create's instructions).
//!
//! filters → endpoints → registry store → **strategy (this file: the schema the strategy's walks read)** → storage.

use std::collections::BTreeMap;

use serde_json::Value;

use super::OBJECT_META_REF;

/// One node of a structural schema. A keyword that is absent, or not of its JSON type, is `None`/`false`/empty, as
/// when the walks read it from the JSON schema.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// `$ref`: the walks leave the node alone (but for pruning ObjectMeta).
    pub(super) is_ref: bool,
    /// `$ref` to ObjectMeta.
    pub(super) object_meta: bool,
    pub(super) type_name: Option<String>,
    pub(super) nullable: bool,
    pub(super) enum_values: Option<Vec<Value>>,
    pub(super) minimum: Option<f64>,
    pub(super) maximum: Option<f64>,
    pub(super) max_length: Option<u64>,
    /// `format: date-time`.
    pub(super) date_time: bool,
    pub(super) properties: BTreeMap<String, Schema>,
    /// `additionalProperties`, when it is a schema (an object).
    pub(super) additional: Option<Box<Schema>>,
    pub(super) items: Option<Box<Schema>>,
    pub(super) required: Vec<String>,
    pub(super) list_type: Option<String>,
    pub(super) list_map_keys: Option<Vec<String>>,
    pub(super) preserve_unknown: bool,
    pub(super) default: Option<Value>,
}

impl Schema {
    /// Reads an OpenAPI v3 structural schema (a kind's `Kind::schema()`).
    pub fn new(schema: &Value) -> Self {
        let Some(m) = schema.as_object() else { return Self::default() };
        let text = |key: &str| m.get(key).and_then(Value::as_str).map(str::to_string);
        let flag = |key: &str| m.get(key).and_then(Value::as_bool).unwrap_or(false);
        let strings = |key: &str| -> Option<Vec<String>> {
            let list = m.get(key).and_then(Value::as_array)?;
            Some(list.iter().filter_map(Value::as_str).map(str::to_string).collect())
        };
        let properties = m.get("properties").and_then(Value::as_object).into_iter().flatten();
        Self {
            is_ref: m.contains_key("$ref"),
            object_meta: m.get("$ref").and_then(Value::as_str) == Some(OBJECT_META_REF),
            type_name: text("type"),
            nullable: flag("nullable"),
            enum_values: m.get("enum").and_then(Value::as_array).cloned(),
            minimum: m.get("minimum").and_then(Value::as_f64),
            maximum: m.get("maximum").and_then(Value::as_f64),
            max_length: m.get("maxLength").and_then(Value::as_u64),
            date_time: text("format").as_deref() == Some("date-time"),
            properties: properties.map(|(k, v)| (k.clone(), Self::new(v))).collect(),
            additional: m.get("additionalProperties").filter(|a| a.is_object()).map(|a| Box::new(Self::new(a))),
            items: m.get("items").map(|i| Box::new(Self::new(i))),
            required: strings("required").unwrap_or_default(),
            list_type: text("x-kubernetes-list-type"),
            list_map_keys: strings("x-kubernetes-list-map-keys"),
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
