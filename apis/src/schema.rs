//! A small engine driven by a kind's OpenAPI v3 structural schema, as apiextensions-apiserver runs a CRD's
//! `openAPIV3Schema`: pruning of unknown fields, structural defaulting, and type/enum/required/bounds validation.
//! Also the builders the kinds write their schemas with, and [`merge`]: how the field manager and strategic merge
//! patch read the same schema.
//!
//! filters → endpoints → registry store → **strategy (this file: the registry's strategy calls [`prune`], then
//! [`apply_defaults`], then `Kind::default`, then [`validate`] and `Kind::validate`)** → storage → etcd.
//!
//! Supported keywords: `type`, `properties`, `required`, `additionalProperties` (a schema), `items`, `enum`,
//! `default`, `nullable`, `minimum`, `maximum`, `maxLength`, `format: date-time`, `x-kubernetes-list-type`
//! (`map` with `x-kubernetes-list-map-keys`, `set`, `atomic`) and `x-kubernetes-preserve-unknown-fields`. A `$ref`
//! is left alone, except that a `$ref` to ObjectMeta keeps only ObjectMeta's fields when pruning. The walks read a
//! kind's schema as a [`Schema`], made once from its JSON.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

pub use self::compiled::{ListKind, Schema};
use crate::field::{ErrorList, FieldError};
use crate::objectmeta::OBJECT_META_FIELDS;

mod compiled;
pub mod merge;

/// Where a kind's schema points for `metadata`.
pub const OBJECT_META_REF: &str = "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// `{"$ref": <ObjectMeta>}`: a kind's `metadata` property.
pub fn object_meta() -> Value {
    json!({ "$ref": OBJECT_META_REF })
}

/// A string.
pub fn string(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

/// A 64-bit integer.
pub fn int64(description: &str) -> Value {
    json!({ "type": "integer", "format": "int64", "description": description })
}

/// A boolean.
pub fn boolean(description: &str) -> Value {
    json!({ "type": "boolean", "description": description })
}

/// An RFC 3339 time (`2026-07-01T12:00:00Z`).
pub fn date_time(description: &str) -> Value {
    json!({ "type": "string", "format": "date-time", "description": description })
}

/// A string that must be one of `values`.
pub fn enum_of(description: &str, values: &[&str]) -> Value {
    json!({ "type": "string", "enum": values, "description": description })
}

/// An atomic list (replaced whole by merges and server-side apply).
pub fn array_of(description: &str, items: Value) -> Value {
    json!({ "type": "array", "items": items, "x-kubernetes-list-type": "atomic", "description": description })
}

/// A list of objects merged by `keys` (`x-kubernetes-list-type: map`): no two items share their keys.
pub fn map_list(description: &str, items: Value, keys: &[&str]) -> Value {
    json!({
        "type": "array",
        "items": items,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": keys,
        "description": description,
    })
}

/// An object with these properties, of which `required` must be present.
pub fn obj<'a>(description: &str, props: impl IntoIterator<Item = (&'a str, Value)>, required: &[&str]) -> Value {
    let properties: Map<String, Value> = props.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let mut s = json!({ "type": "object", "properties": properties, "description": description });
    if !required.is_empty() {
        s["required"] = json!(required);
    }
    s
}

/// A kind's whole-object schema: `apiVersion`, `kind`, `metadata` (a `$ref` to ObjectMeta), `spec` (required) and
/// `status`.
pub fn kind_root(description: &str, spec: Value, status: Value) -> Value {
    const CONVENTIONS: &str = "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md";
    let api_version = format!(
        "APIVersion defines the versioned schema of this representation of an object. Servers should convert \
         recognized schemas to the latest internal value, and may reject unrecognized values. More info: \
         {CONVENTIONS}#resources"
    );
    let kind = format!(
        "Kind is a string value representing the REST resource this object represents. Servers may infer this from \
         the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: \
         {CONVENTIONS}#types-kinds"
    );
    let props = [
        ("apiVersion", string(&api_version)),
        ("kind", string(&kind)),
        ("metadata", object_meta()),
        ("spec", spec),
        ("status", status),
    ];
    obj(description, props, &["spec"])
}

/// Adds a keyword to a schema: `int64("…").with("default", json!(7)).with("minimum", json!(1))`.
pub trait SchemaExt {
    /// This schema with `key` set to `value`.
    fn with(self, key: &str, value: Value) -> Value;
}

impl SchemaExt for Value {
    fn with(mut self, key: &str, value: Value) -> Value {
        if let Some(m) = self.as_object_mut() {
            m.insert(key.to_string(), value);
        }
        self
    }
}

/// Where a walk is in an object, kept on the stack as it goes down and written out (`spec.items[0].name`) only for
/// an error or a pruned field: most objects have neither, and formatting every path cost a create ~3% of its
/// instructions.
#[derive(Clone, Copy)]
enum FieldPath<'a> {
    Root,
    Key(&'a FieldPath<'a>, &'a str),
    Index(&'a FieldPath<'a>, usize),
}

impl<'a> FieldPath<'a> {
    fn key(&'a self, key: &'a str) -> Self {
        Self::Key(self, key)
    }

    fn index(&'a self, i: usize) -> Self {
        Self::Index(self, i)
    }
}

impl std::fmt::Display for FieldPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Root => Ok(()),
            Self::Key(Self::Root, key) => f.write_str(key),
            Self::Key(parent, key) => write!(f, "{parent}.{key}"),
            Self::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// Removes fields the schema does not know and returns their paths (`spec.foo`, `spec.items[0].bar`), for the
/// `unknown field` warnings of fieldValidation=Warn and the errors of Strict.
pub fn prune(schema: &Schema, obj: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    prune_at(schema, obj, &FieldPath::Root, &mut pruned);
    pruned
}

fn prune_at(schema: &Schema, value: &mut Value, path: &FieldPath<'_>, pruned: &mut Vec<String>) {
    if schema.is_ref {
        if schema.object_meta
            && let Some(meta) = value.as_object_mut()
        {
            meta.retain(|k, _| OBJECT_META_FIELDS.contains(&k.as_str()) || record(pruned, path.key(k)));
        }
        return;
    }
    match value {
        Value::Object(map) if schema.is_type("object") => {
            map.retain(|k, v| match schema.child(k) {
                Some(s) => {
                    prune_at(s, v, &path.key(k), pruned);
                    true
                }
                None => schema.preserve_unknown || record(pruned, path.key(k)),
            });
        }
        Value::Array(items) => {
            if let Some(s) = &schema.items {
                for (i, v) in items.iter_mut().enumerate() {
                    prune_at(s, v, &path.index(i), pruned);
                }
            }
        }
        _ => {}
    }
}

/// Records a pruned path; false, so that `retain` drops the field.
fn record(pruned: &mut Vec<String>, path: FieldPath<'_>) -> bool {
    pruned.push(path.to_string());
    false
}

/// Structural defaulting: a property's `default` fills it when absent from a present object (a default that is an
/// object is then defaulted itself). A `null` for a non-nullable property is dropped first, as CRDs do, so a default
/// replaces it.
pub fn apply_defaults(schema: &Schema, obj: &mut Value) {
    if schema.is_ref {
        return;
    }
    match obj {
        Value::Object(map) => {
            for (k, prop) in &schema.properties {
                let absent = match map.get(k) {
                    None => true,
                    Some(Value::Null) if !prop.nullable => map.remove(k).is_some(),
                    Some(_) => false,
                };
                if let (true, Some(d)) = (absent, &prop.default) {
                    map.insert(k.clone(), d.clone());
                }
            }
            for (k, v) in map.iter_mut() {
                if let Some(s) = schema.child(k) {
                    apply_defaults(s, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = &schema.items {
                items.iter_mut().for_each(|v| apply_defaults(s, v));
            }
        }
        _ => {}
    }
}

/// Checks `obj` against the schema, with apiextensions-apiserver's messages, e.g.
/// `spec.retention.keepLast: Invalid value: "string": spec.retention.keepLast in body must be of type integer: "string"`.
/// Paths index list items as `[i]`.
pub fn validate(schema: &Schema, obj: &Value) -> ErrorList {
    let mut errs = ErrorList::default();
    validate_at(schema, obj, &FieldPath::Root, &mut errs);
    errs
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn validate_at(schema: &Schema, value: &Value, path: &FieldPath<'_>, errs: &mut ErrorList) {
    if schema.is_ref || (value.is_null() && schema.nullable) {
        return;
    }
    if let Some(want) = schema.type_name.as_deref() {
        let got = type_name(value);
        if want != got && !(want == "number" && got == "integer") {
            let detail = format!("{path} in body must be of type {want}: {got:?}");
            errs.push(FieldError::type_invalid(path.to_string(), json!(got), detail));
            return;
        }
    }
    if let Some(allowed) = &schema.enum_values
        && !allowed.contains(value)
    {
        let names: Vec<String> =
            allowed.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        errs.push(FieldError::not_supported(path.to_string(), value.clone(), &names));
    }
    match value {
        Value::String(s) => validate_string(schema, s, path, errs),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if let Some(min) = schema.minimum
                && x < min
            {
                let detail = format!("{path} in body should be greater than or equal to {min}");
                errs.push(FieldError::invalid(path.to_string(), value.clone(), detail));
            }
            if let Some(max) = schema.maximum
                && x > max
            {
                let detail = format!("{path} in body should be less than or equal to {max}");
                errs.push(FieldError::invalid(path.to_string(), value.clone(), detail));
            }
        }
        Value::Object(map) => {
            for r in schema.required.iter().filter(|r| !map.contains_key(*r)) {
                errs.push(FieldError::required(path.key(r).to_string(), ""));
            }
            for (k, v) in map {
                if let Some(s) = schema.child(k) {
                    validate_at(s, v, &path.key(k), errs);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = &schema.items {
                for (i, v) in items.iter().enumerate() {
                    validate_at(s, v, &path.index(i), errs);
                }
            }
            validate_list_type(schema, items, path, errs);
        }
        Value::Null | Value::Bool(_) => {}
    }
}

fn validate_string(schema: &Schema, s: &str, path: &FieldPath<'_>, errs: &mut ErrorList) {
    if let Some(max) = schema.max_length
        && s.chars().count() as u64 > max
    {
        errs.push(FieldError::too_long_max_length(path.to_string(), usize::try_from(max).unwrap_or(usize::MAX)));
    }
    if schema.date_time && !is_date_time(s) {
        let detail = format!("{path} in body must be of type date-time: {s:?}");
        errs.push(FieldError::type_invalid(path.to_string(), json!(s), detail));
    }
}

/// The `date-time` format as CRDs check it (kube-openapi's `strfmt.IsDateTime`, quirks included): the text before
/// the first `t` (case-insensitive) is a `2006-01-02` date, and the text between it and the next `t` matches
/// `^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$` with hours ≤ 23, minutes and
/// seconds ≤ 59. So `2024-01-01T00:00:00Z`, `…T00:00:00.5+01:00` and `…t00:00:00z` pass; `2024-01-01 00:00:00Z`,
/// `…+0100`, `…T00:00Z`, `…Z[UTC]` and `20240101T000000Z` do not.
pub fn is_date_time(s: &str) -> bool {
    if s.len() < 4 {
        return false;
    }
    let lower = s.to_lowercase();
    let mut parts = lower.split('t');
    match (parts.next(), parts.next()) {
        (Some(date), Some(time)) => is_full_date(date) && is_time_of_day(time),
        _ => false,
    }
}

/// Go's `time.Parse("2006-01-02", s)` succeeds: four-digit year, two-digit month and a day that month has.
fn is_full_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r.clone()).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) || !digits(5..7) || !digits(8..10) {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(0);
    let (year, month, day) = (num(0..4), num(5..7), num(8..10));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// strfmt's `DateTimePattern` on the (lower-cased) time part, and its range checks.
fn is_time_of_day(s: &str) -> bool {
    let b = s.as_bytes();
    let two = |at: usize| b.get(at..at + 2).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if !(two(0) && b.get(2) == Some(&b':') && two(3) && b.get(5) == Some(&b':') && two(6)) {
        return false;
    }
    if !(&s[0..2] <= "23" && &s[3..5] <= "59" && &s[6..8] <= "59") {
        return false;
    }
    let zone = |z: &str| {
        let z = z.as_bytes();
        z == b"z"
            || (z.len() == 6
                && matches!(z[0], b'+' | b'-')
                && z[1..3].iter().all(u8::is_ascii_digit)
                && z[3] == b':'
                && z[4..6].iter().all(u8::is_ascii_digit))
    };
    let rest = &s[8..];
    if zone(rest) {
        return true;
    }
    // `(.[0-9]+)`: any one character but a newline, then digits (a zone never starts with a digit, so the run of
    // digits is taken whole).
    let mut chars = rest.chars();
    match chars.next() {
        Some(c) if c != '\n' => {
            let after = chars.as_str();
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            digits > 0 && zone(&after[digits..])
        }
        _ => false,
    }
}

/// Numbers as a CRD stores them: its JSON decoder reads a number without a fraction or exponent as an integer
/// and any other as a float, which Go writes back without a fraction when it is whole — so `5.0` is stored as `5`,
/// and passes as an `integer` (the validator's `IsFloat64AJSONInteger`, whole and within ±(2^53 − 1)). Whole
/// floats in that range become integers here, everywhere in the object; others stay as they are.
pub fn normalize_numbers(value: &mut Value) {
    const MAX_JSON_INTEGER: f64 = 9_007_199_254_740_991.0;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Number(n) if !(n.is_i64() || n.is_u64()) => {
                if let Some(f) = n.as_f64()
                    && f.fract() == 0.0
                    && f.abs() <= MAX_JSON_INTEGER
                {
                    // Whole and within ±(2^53 − 1): the conversion is exact.
                    *v = Value::from(f as i64);
                }
            }
            Value::Object(m) => stack.extend(m.values_mut()),
            Value::Array(a) => stack.extend(a.iter_mut()),
            _ => {}
        }
    }
}

/// `x-kubernetes-list-type`: `map` items must differ in their keys, `set` items in their values.
fn validate_list_type(schema: &Schema, items: &[Value], path: &FieldPath<'_>, errs: &mut ErrorList) {
    let key_of = |item: &Value| -> Option<Value> {
        match &schema.list {
            ListKind::Set => Some(item.clone()),
            ListKind::Map(keys) => {
                let key = keys.iter().filter_map(|k| Some((k.clone(), item.get(k)?.clone())));
                Some(Value::Object(key.collect()))
            }
            ListKind::Atomic => None,
        }
    };
    let mut seen = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(key) = key_of(item)
            && !seen.insert(key.to_string())
        {
            errs.push(FieldError::duplicate(path.index(i).to_string(), key));
        }
    }
}

#[cfg(test)]
mod tests;
