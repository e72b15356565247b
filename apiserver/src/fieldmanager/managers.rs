//! `metadata.managedFields` decoded into per-manager field sets and encoded back, as upstream's
//! `managedfields/internal/managedfields.go`, `capmanagers.go` and `stripmeta.go` do: manager identities,
//! entry order, the 10-updater cap with `ancient-changes`, the fields never tracked, and the reset request.
//!
//! endpoints → registry store → strategy → **field manager (this file: managedFields entries)** → storage.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::path::PathElement;
use super::set::Set;

/// Upstream's `DefaultMaxUpdateManagers`.
pub const MAX_UPDATE_MANAGERS: usize = 10;
/// The manager the oldest updaters are merged into past the cap.
pub const ANCIENT_CHANGES: &str = "ancient-changes";

/// Who owns a set (upstream's manager identifier: everything but time and fields; no apiVersion for appliers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerId {
    pub manager: String,
    pub applied: bool,
    /// Empty for appliers.
    pub api_version: String,
    pub subresource: String,
}

/// Ordered as upstream's JSON identifiers sort: manager, then `Apply` before `Update`, apiVersion, subresource.
impl Ord for ManagerId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.manager
            .cmp(&other.manager)
            .then_with(|| other.applied.cmp(&self.applied))
            .then_with(|| self.api_version.cmp(&other.api_version))
            .then_with(|| self.subresource.cmp(&other.subresource))
    }
}

impl PartialOrd for ManagerId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl ManagerId {
    pub fn update(manager: &str, api_version: &str, subresource: &str) -> Self {
        let manager = if manager.is_empty() { "unknown" } else { manager };
        Self {
            manager: manager.into(),
            applied: false,
            api_version: api_version.into(),
            subresource: subresource.into(),
        }
    }

    pub fn apply(manager: &str, subresource: &str) -> Self {
        let manager = if manager.is_empty() { "unknown" } else { manager };
        Self { manager: manager.into(), applied: true, api_version: String::new(), subresource: subresource.into() }
    }

    /// How conflict messages name the manager: `"kubectl" using backup.extend-k8s.io/v1` for an updater.
    pub fn describe(&self) -> String {
        if self.applied {
            format!("{:?}", self.manager)
        } else {
            format!("{:?} using {}", self.manager, self.api_version)
        }
    }
}

/// One manager's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub set: Set,
    pub api_version: String,
    /// RFC 3339, as stored.
    pub time: Option<String>,
}

pub type Managers = BTreeMap<ManagerId, Entry>;

/// Decode managedFields entries; `Err` for anything upstream's `DecodeManagedFields` rejects.
pub fn decode(entries: &Value) -> Result<Managers, String> {
    let Value::Array(list) = entries else { return Err("managedFields must be a list".into()) };
    let mut out = Managers::new();
    for (i, e) in list.iter().enumerate() {
        let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let applied = match text("operation").as_str() {
            "Apply" => true,
            "Update" => false,
            _ => return Err("operation must be `Apply` or `Update`".into()),
        };
        let api_version = text("apiVersion");
        if api_version.is_empty() {
            return Err("apiVersion must not be empty".into());
        }
        match text("fieldsType").as_str() {
            "FieldsV1" => {}
            "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
            other => return Err(format!("invalid fieldsType {other:?} in managed fields entry {i}")),
        }
        let set = match e.get("fieldsV1") {
            Some(v) if !v.is_null() => Set::from_fields_v1(v).map_err(|m| format!("error decoding set: {m}"))?,
            _ => Set::new(),
        };
        let id = ManagerId {
            manager: text("manager"),
            applied,
            api_version: if applied { String::new() } else { api_version.clone() },
            subresource: text("subresource"),
        };
        let time = e.get("time").and_then(Value::as_str).map(str::to_string);
        out.insert(id, Entry { set, api_version, time });
    }
    Ok(out)
}

/// Encode in upstream's order: Apply before Update, then by time, manager, apiVersion, subresource.
pub fn encode(managers: &Managers) -> Option<Value> {
    if managers.is_empty() {
        return None;
    }
    let mut list: Vec<(&ManagerId, &Entry)> = managers.iter().collect();
    list.sort_by(|(a, x), (b, y)| {
        b.applied
            .cmp(&a.applied)
            .then_with(|| seconds(x.time.as_deref()).cmp(&seconds(y.time.as_deref())))
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| x.api_version.cmp(&y.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    let entries = list.into_iter().map(|(id, e)| entry(id, &e.api_version, e.time.as_deref(), e.set.to_fields_v1()));
    Some(Value::Array(entries.collect()))
}

/// The managedFields of a create whose manager is the only one: `fields_v1` as
/// [`typed::created_fields_v1`](super::typed::created_fields_v1) wrote it, `None` when it is empty.
pub fn encode_created(id: &ManagerId, time: &str, fields_v1: Map<String, Value>) -> Option<Value> {
    if fields_v1.is_empty() {
        return None;
    }
    Some(Value::Array(vec![entry(id, &id.api_version, Some(time), Value::Object(fields_v1))]))
}

/// One managedFields entry.
fn entry(id: &ManagerId, api_version: &str, time: Option<&str>, fields_v1: Value) -> Value {
    let mut m = Map::new();
    m.insert("manager".into(), json!(id.manager));
    m.insert("operation".into(), json!(if id.applied { "Apply" } else { "Update" }));
    m.insert("apiVersion".into(), json!(api_version));
    if let Some(t) = time {
        m.insert("time".into(), json!(t));
    }
    m.insert("fieldsType".into(), json!("FieldsV1"));
    m.insert("fieldsV1".into(), fields_v1);
    if !id.subresource.is_empty() {
        m.insert("subresource".into(), json!(id.subresource));
    }
    Value::Object(m)
}

fn seconds(time: Option<&str>) -> i64 {
    time.and_then(|t| t.parse::<jiff::Timestamp>().ok()).map_or(0, |t| t.as_second())
}

/// A request's managedFields ask for a reset: `[]` or `[{}]` (upstream's `isResetManagedFields`).
pub fn is_reset(entries: &Value) -> bool {
    match entries.as_array().map(Vec::as_slice) {
        Some([]) => true,
        Some([only]) => only.as_object().is_some_and(Map::is_empty),
        _ => false,
    }
}

/// The fields no manager ever owns (upstream's `stripMetaManager`), built once.
pub fn strip_set() -> &'static Set {
    static STRIP: std::sync::LazyLock<Set> = std::sync::LazyLock::new(build_strip_set);
    &STRIP
}

fn build_strip_set() -> Set {
    let mut s = Set::new();
    let f = |n: &str| PathElement::Field(n.into());
    for top in ["apiVersion", "kind", "metadata"] {
        s.insert(&[f(top)]);
    }
    for m in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        s.insert(&[f("metadata"), f(m)]);
    }
    s
}

/// Merge the oldest updaters into `ancient-changes` until at most [`MAX_UPDATE_MANAGERS`] remain.
pub fn cap_update_managers(managers: &mut Managers) {
    let mut updaters: Vec<ManagerId> = managers.keys().filter(|id| !id.applied).cloned().collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort_by(|a, b| {
        let t = |id: &ManagerId| seconds(managers.get(id).and_then(|e| e.time.as_deref()));
        t(a).cmp(&t(b)).then_with(|| a.cmp(b))
    });
    let mut first_of_version: BTreeMap<String, ManagerId> = BTreeMap::new();
    let mut remaining = updaters.len();
    for id in updaters {
        if remaining <= MAX_UPDATE_MANAGERS {
            break;
        }
        let Some(entry) = managers.get(&id).cloned() else { continue };
        let bucket = ManagerId::update(ANCIENT_CHANGES, &entry.api_version, "");
        match first_of_version.get(&entry.api_version) {
            Some(first) => {
                if !managers.contains_key(&bucket)
                    && let Some(f) = managers.remove(first)
                {
                    managers.insert(bucket.clone(), f);
                }
                if let Some(b) = managers.get_mut(&bucket) {
                    b.set = entry.set.union(&b.set);
                    b.time = entry.time.clone();
                }
                managers.remove(&id);
                remaining -= 1;
            }
            None => {
                first_of_version.insert(entry.api_version.clone(), id);
            }
        }
    }
}

/// Whether two encoded managedFields lists are equal but for their timestamps (compared without copies).
pub fn equal_but_times(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_array(), b.as_array()) else { return a == b };
    let same = |x: &Value, y: &Value| match (x, y) {
        (Value::Object(x), Value::Object(y)) => equal_except(x, y, "time"),
        _ => x == y,
    };
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
}

/// Whether two maps are equal once `key` is left out of both.
pub fn equal_except(a: &Map<String, Value>, b: &Map<String, Value>, key: &str) -> bool {
    let len = |m: &Map<String, Value>| m.len() - usize::from(m.contains_key(key));
    len(a) == len(b) && a.iter().filter(|(k, _)| *k != key).all(|(k, v)| b.get(k) == Some(v))
}
