//! The field manager: `metadata.managedFields` on every write, server-side apply, and strategic merge patch —
//! k8s.io/apiserver's `fieldmanager` over structured-merge-diff, driven by the kind's OpenAPI v3 schema and its
//! `x-kubernetes-list-type` / `x-kubernetes-list-map-keys` markers.
//!
//! endpoints → registry store → strategy → **field manager (here)** → storage.
//!
//! The store calls [`track`] after the strategy pruned, defaulted and validated an object: an update records the
//! fields its manager changed and takes them from the others. [`apply`] runs inside a PATCH with
//! `application/apply-patch+yaml`: it merges the configuration into the live object and computes the managers;
//! the store then runs the strategy on the result and [`track`] keeps what apply computed. How merging reads the
//! kind's schema (structs, maps, list types, ObjectMeta) is in `backup_apis::schema::merge`.

mod lastapplied;
pub(crate) mod managers;
mod path;
mod set;
mod typed;
mod updater;

#[cfg(test)]
mod tests;

use std::sync::LazyLock;

use backup_apis::ResourceInfo;
use backup_apis::schema::Schema;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult, StatusReason};
use crate::request::info::Subresource;

use managers::{ManagerId, Managers, strip_set};
use path::{PathElement, show};
use set::Set;
use updater::{Conflicts, Updater};

/// Who writes, for `metadata.managedFields`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager<'a> {
    /// A create, update or non-apply patch by this manager (operation `Update`).
    Update(&'a str),
    /// A server-side apply: the object already carries the managedFields [`apply`] computed.
    Applied,
}

fn subresource_name(sub: &Subresource) -> &str {
    sub.as_str()
}

/// The fields the strategy resets on an endpoint: status through the main resource, everything but status through
/// `/status` (upstream resets only spec there and would record metadata it then discards). Built once.
fn reset_fields(sub: &Subresource) -> &'static Set {
    static MAIN: LazyLock<Set> = LazyLock::new(|| reset_set(&["status"]));
    static STATUS: LazyLock<Set> = LazyLock::new(|| reset_set(&["spec", "metadata"]));
    match sub {
        Subresource::Status => &STATUS,
        Subresource::Main | Subresource::Other(_) => &MAIN,
    }
}

fn reset_set(names: &[&str]) -> Set {
    let mut s = Set::new();
    for n in names {
        s.insert(&[PathElement::Field((*n).into())]);
    }
    // Never owned (`managers::strip_set`), and left out of comparisons so that the live object's list is not
    // walked nor copied.
    s.insert(&[PathElement::Field("metadata".into()), PathElement::Field("managedFields".into())]);
    s
}

fn updater<'s>(schema: &'s Schema, sub: &Subresource, api_version: &'s str) -> Updater<'s> {
    Updater {
        schema: Some(schema),
        api_version,
        ignored: reset_fields(sub),
        now: backup_apis::objectmeta::timestamp_now(),
    }
}

/// Remove and return `metadata.managedFields`.
pub fn take_managed_fields(obj: &mut Map<String, Value>) -> Option<Value> {
    obj.get_mut("metadata").and_then(Value::as_object_mut).and_then(|m| m.remove("managedFields"))
}

fn set_managed_fields(obj: &mut Map<String, Value>, encoded: Option<Value>) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    match encoded {
        Some(v) => meta.insert("managedFields".into(), v),
        None => meta.remove("managedFields"),
    };
}

fn live_managers(live: Option<&Value>) -> Managers {
    live.and_then(|l| l.get("metadata")?.get("managedFields"))
        .and_then(|v| managers::decode(v).ok())
        .unwrap_or_default()
}

/// Set `new`'s managedFields once the strategy has normalized it. `live` is the stored object (`None` on create);
/// `requested` the managedFields the request body carried (taken out before validation), or for
/// [`Manager::Applied`] the ones [`apply`] computed.
pub fn track(
    schema: &Schema,
    info: &ResourceInfo,
    sub: &Subresource,
    manager: Manager<'_>,
    live: Option<&Value>,
    new: &mut Map<String, Value>,
    requested: Option<Value>,
) {
    let encoded = match manager {
        Manager::Applied => requested,
        Manager::Update(name) => {
            // Upstream's decodeLiveOrNew: a subresource never sets managedFields; `[]` or `[{}]` resets them; an
            // absent or undecodable list keeps the live ones.
            let managers = match requested {
                _ if *sub == Subresource::Status => live_managers(live),
                Some(r) if managers::is_reset(&r) => Managers::new(),
                Some(r) => managers::decode(&r).ok().filter(|m| !m.is_empty()).unwrap_or_else(|| live_managers(live)),
                None => live_managers(live),
            };
            let api_version = info.api_version();
            let id = ManagerId::update(name, &api_version, subresource_name(sub));
            // Read in place: both paths skip managedFields (see `reset_fields`), which are replaced below.
            let new_value = Value::Object(std::mem::take(new));
            let encoded = if live.is_none() && managers.is_empty() {
                // A create that names no managers: its manager owns all it set, and nobody else is to compare with.
                let fields = typed::created_fields_v1(Some(schema), &new_value, reset_fields(sub), strip_set());
                managers::encode_created(&id, &backup_apis::objectmeta::timestamp_now(), fields)
            } else {
                let empty = json!({});
                let managers =
                    updater(schema, sub, &api_version).update(live.unwrap_or(&empty), &new_value, managers, &id);
                managers::encode(&managers)
            };
            if let Value::Object(m) = new_value {
                *new = m;
            }
            encoded
        }
    };
    set_managed_fields(new, encoded);
    if let Some(Value::Object(live)) = live {
        keep_times_if_unchanged(live, new);
    }
}

/// Upstream's `IgnoreManagedFieldsTimestampsTransformer`: when only managedFields timestamps changed, keep the old
/// ones so that the write is a no-op.
fn keep_times_if_unchanged(live: &Map<String, Value>, new: &mut Map<String, Value>) {
    fn get(o: &Map<String, Value>) -> Option<&Value> {
        o.get("metadata")?.get("managedFields")
    }
    let (Some(old_mf), Some(new_mf)) = (get(live), get(new)) else { return };
    if old_mf == new_mf || !managers::equal_but_times(old_mf, new_mf) || !equal_but_managed_fields(live, new) {
        return;
    }
    let old_mf = old_mf.clone();
    set_managed_fields(new, Some(old_mf));
}

/// Whether two objects are equal but for their managedFields, compared without copying either.
fn equal_but_managed_fields(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    let same_meta = match (a.get("metadata"), b.get("metadata")) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => managers::equal_except(x, y, "managedFields"),
        (x, y) => x == y,
    };
    same_meta && managers::equal_except(a, b, "metadata")
}

/// A server-side apply request.
#[derive(Debug, Clone, Copy)]
pub struct ApplyRequest<'a> {
    pub manager: &'a str,
    pub force: bool,
    pub sub: &'a Subresource,
}

/// `group/version, Kind=kind`, as Go prints a GroupVersionKind.
fn gvk_of(obj: &Value) -> String {
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let (group, version) = av.split_once('/').unwrap_or(("", av));
    format!("{group}/{version}, Kind={}", obj.get("kind").and_then(Value::as_str).unwrap_or(""))
}

/// Apply `config` to `live` (the stored object, or an empty object when apply creates): the merged object with
/// its managedFields, or 409 on conflicts with other managers. Both are taken: the live object becomes the result
/// when nothing changes, and the configuration is dropped once merged.
pub fn apply(
    schema: &Schema,
    info: &ResourceInfo,
    live: Value,
    config: Value,
    req: ApplyRequest<'_>,
) -> ApiResult<Value> {
    let api_version = info.api_version();
    let expected = format!("{}/{}, Kind={}", info.group, info.version, info.kind);
    if !config.is_object() || gvk_of(&config) != expected {
        return Err(ApiError::bad_request(format!("invalid object type: {}", gvk_of(&config))));
    }
    if config.get("metadata").and_then(|m| m.get("managedFields")).is_some_and(|v| !v.is_null()) {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    let config_set = typed::to_field_set(Some(schema), &config).map_err(|errors| {
        let text =
            |k: &str| config.get("metadata").and_then(|m| m.get(k)).and_then(Value::as_str).unwrap_or("").to_string();
        let detail = if errors.len() == 1 { errors[0].clone() } else { format!("errors:\n  {}", errors.join("\n  ")) };
        ApiError::bad_request(format!(
            "failed to create typed patch object ({}/{}; {}): {detail}",
            text("namespace"),
            text("name"),
            gvk_of(&config)
        ))
    })?;
    let Value::Object(mut live_map) = live else {
        return Err(ApiError::internal("the live object is not an object"));
    };
    // Taken out of the live object, which the merge and the comparisons then see without them.
    let managers = match take_managed_fields(&mut live_map) {
        Some(v) => {
            managers::decode(&v).map_err(|e| ApiError::internal(format!("failed to decode managed fields: {e}")))?
        }
        None => Managers::new(),
    };
    let live = Value::Object(live_map);
    let u = updater(schema, req.sub, &api_version);
    let id = ManagerId::apply(req.manager, subresource_name(req.sub));
    // kubectl may apply twice (forced, once its conflicts are found to be its own client-side apply's) and then
    // rewrites its annotation from the configuration: it keeps copies, which no other manager pays for.
    let kubectl = (req.manager == lastapplied::KUBECTL).then(|| (config.clone(), config_set.clone(), managers.clone()));
    let (new, managers) = match (u.apply(&live, config, config_set, managers, &id, req.force), &kubectl) {
        (Ok(r), _) => r,
        (Err(conflicts), Some((config, config_set, managers))) => {
            match lastapplied::allowed_conflicts(Some(schema), &api_version, &live) {
                Some(allowed) => {
                    let left: Conflicts = conflicts.into_iter().filter(|(_, p)| !allowed.has(p)).collect();
                    if !left.is_empty() {
                        return Err(conflict_error(&left));
                    }
                    u.apply(&live, config.clone(), config_set.clone(), managers.clone(), &id, true)
                        .map_err(|c| conflict_error(&c))?
                }
                None => return Err(conflict_error(&conflicts)),
            }
        }
        (Err(conflicts), None) => return Err(conflict_error(&conflicts)),
    };
    let Value::Object(mut out) = new.unwrap_or(live) else {
        return Err(ApiError::internal("the applied object is not an object"));
    };
    if let Some((config, ..)) = &kubectl {
        lastapplied::update_annotation(&mut out, config);
    }
    set_managed_fields(&mut out, managers::encode(&managers));
    Ok(Value::Object(out))
}

/// The 409 of an apply that would change fields other managers own (upstream's `NewConflictError`).
fn conflict_error(conflicts: &Conflicts) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(id, p)| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", id.describe()), "field": show(p)})
        })
        .collect();
    let message = match conflicts.as_slice() {
        [(id, p)] => format!("Apply failed with 1 conflict: conflict with {}: {}", id.describe(), show(p)),
        _ => {
            let mut lines = Vec::new();
            let mut current: Option<&ManagerId> = None;
            for (id, p) in conflicts {
                if current != Some(id) {
                    lines.push(format!("conflicts with {}:", id.describe()));
                    current = Some(id);
                }
                lines.push(format!("- {}", show(p)));
            }
            format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
        }
    };
    ApiError::new(409, StatusReason::Conflict, message).with_details(json!({"causes": causes}))
}
