//! What selectors read of a stored object (its labels and the kind's selectable fields), decoded from its bytes at
//! most once per object version and shared by every list and watch that asks: the watch cache's attributes
//! ([`backup_storage::cacher::Attrs`]) of the apiserver.
//!
//! storage (watch cache, or a backend read) → **attrs** (computed on first use) → selectors → registry store.
//!
//! The cache calls [`hook`] for each object version it takes in; that only attaches an empty cell, so a cache of
//! objects nobody selects on costs no decoding. The first selector that looks at the object fills the cell.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use backup_storage::KeyValue;
use backup_storage::cacher::{AttrsHook, CachedObject};
use serde_json::Value;

use crate::registry::strategy::Strategy;

/// The selectable parts of one stored object, decoded on first use.
#[derive(Debug, Default)]
pub struct ObjectAttrs(OnceLock<Result<Selectable, String>>);

/// What label and field selectors compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selectable {
    /// `metadata.labels` (string values only, as labels are).
    pub labels: BTreeMap<String, String>,
    /// The value of each of the kind's selectable fields, in [`Strategy::field_names`] order ("" when absent).
    pub fields: Vec<String>,
}

impl Selectable {
    /// The selectable parts of a decoded object.
    pub fn of(strategy: &Strategy, obj: &Value) -> Self {
        let labels = obj
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default();
        let fields = strategy.field_names().iter().map(|f| strategy.field_value(obj, f)).collect();
        Self { labels, fields }
    }

    /// The label `key`'s value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// The value of the selectable field `name` ("" when the kind has no such field).
    pub fn field<'a>(&'a self, strategy: &Strategy, name: &str) -> &'a str {
        strategy
            .field_names()
            .iter()
            .position(|f| *f == name)
            .and_then(|i| self.fields.get(i))
            .map_or("", String::as_str)
    }
}

/// The hook that gives every cached object an empty [`ObjectAttrs`] cell.
pub fn hook() -> AttrsHook {
    Arc::new(|_: &KeyValue| Some(Arc::new(ObjectAttrs::default()) as _))
}

/// The selectable parts of `object` (a kind `strategy` serves): from its cell, filled now if it is the first to
/// ask; decoded on the spot for an object without one. `Err` says why the stored bytes cannot be decoded.
pub fn selectable<'a>(strategy: &Strategy, object: &'a CachedObject) -> SelectableRef<'a> {
    match object.attrs::<ObjectAttrs>() {
        Some(cell) => SelectableRef::Shared(cell.0.get_or_init(|| decode(strategy, object.kv()))),
        None => SelectableRef::Owned(decode(strategy, object.kv())),
    }
}

/// [`selectable`]'s answer: shared with the object's cell, or decoded for this caller alone.
pub enum SelectableRef<'a> {
    Shared(&'a Result<Selectable, String>),
    Owned(Result<Selectable, String>),
}

impl SelectableRef<'_> {
    pub fn get(&self) -> Result<&Selectable, &str> {
        match self {
            Self::Shared(r) => r.as_ref().map_err(String::as_str),
            Self::Owned(r) => r.as_ref().map_err(String::as_str),
        }
    }
}

fn decode(strategy: &Strategy, kv: &KeyValue) -> Result<Selectable, String> {
    serde_json::from_slice::<Value>(&kv.value).map(|obj| Selectable::of(strategy, &obj)).map_err(|e| e.to_string())
}
