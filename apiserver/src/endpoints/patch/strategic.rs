//! Strategic merge patch (`application/strategic-merge-patch+json`), as apimachinery's `strategicpatch` applies
//! one, with the patch strategy read from the kind's schema instead of Go struct tags: objects merge field by
//! field, map lists (`x-kubernetes-list-type: map`) merge by their keys, sets (`set`) merge by value, atomic lists
//! are replaced, and a `null` deletes a field.
//!
//! endpoints/patch → **strategic merge** (applied to the stored object inside the store's update loop) → strategy
//! → storage.
//!
//! Directives: `$patch: replace|delete` on an object, `$patch: replace` and `{"$patch":"delete",<keys>}` items in
//! a map list, `$retainKeys`, `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` (the order is
//! honoured as upstream does). Deliberate differences: map lists with several keys match items on all keys
//! (upstream has one merge key); a value added where the original had none is merged into an empty value, so
//! directives and nulls inside it are processed rather than stored; `$deleteFromPrimitiveList` on an atomic list
//! deletes the values instead of replacing the list with them; errors upstream answers with 500 are 422 here.
//!
//! Lists merge in O(n log n): items are found by a hash of their value or merge keys ([`Identity`]), never by
//! scanning the list. The result nests at most `body::MAX_DEPTH` levels (422).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use backup_apis::schema::merge;
use backup_apis::schema::{ListKind, Schema};
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

/// Upstream's `mergepatch` errors that `interpretStrategicMergePatchError` answers with 400.
fn bad_request(msg: &str) -> ApiError {
    ApiError::bad_request(msg)
}

/// Upstream's 422 for lists of lists and retainKeys mismatches.
fn unprocessable(msg: &str) -> ApiError {
    ApiError::unprocessable(format!("the server rejected our request due to an error in our request: {msg}"))
}

/// Any other patch error, which upstream passes on as an internal error (500): the patch does not apply.
fn other(msg: impl std::fmt::Display) -> ApiError {
    unprocessable(&msg.to_string())
}

fn no_merge_key(item: &Value, keys: &[String]) -> ApiError {
    other(format!("map: {item} does not contain declared merge key: {}", keys.join(",")))
}

fn bad_patch_type(t: &Value, m: &Map<String, Value>) -> ApiError {
    other(format!("unknown patch type: {} in map: {}", t.as_str().unwrap_or(&t.to_string()), Value::Object(m.clone())))
}

/// Apply `patch` to `doc` with the kind's `schema`; the patch's values are moved into the result.
pub fn apply(schema: &Schema, doc: &mut Value, patch: Value) -> ApiResult<()> {
    let Value::Object(p) = patch else {
        return Err(bad_request("json: cannot unmarshal non-object into Go value of type map[string]interface {}"));
    };
    let original = match std::mem::take(doc) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    *doc = Value::Object(merge_map(Some(schema), original, p)?);
    super::within_depth(doc)
}

/// The list semantics of a field, and its items' schema.
fn list_meta(schema: Option<&Schema>) -> (&ListKind, Option<&Schema>) {
    (merge::list_kind(schema), merge::items(schema))
}

fn merge_map(
    schema: Option<&Schema>,
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
) -> ApiResult<Map<String, Value>> {
    if let Some(d) = patch.remove(DIRECTIVE) {
        return match d.as_str() {
            Some("replace") => merge_map(schema, Map::new(), patch),
            Some("delete") => Ok(Map::new()),
            _ => Err(bad_patch_type(&d, &patch)),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    merge_set_element_order(schema, &mut original, &mut patch)?;
    for (key, pv) in patch {
        let (k, delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(rest) => match rest.strip_prefix('/') {
                Some(k) => (k.to_string(), true),
                None => return Err(bad_request("invalid patch format of primitive list")),
            },
            None => (key, false),
        };
        let child = merge::child(schema, &k);
        if pv.is_null() {
            original.remove(&k);
            continue;
        }
        let Some(ov) = original.remove(&k) else {
            if !delete_list {
                original.insert(k, fresh(child, pv)?);
            }
            continue;
        };
        let merged = match (ov, pv) {
            (Value::Object(o), Value::Object(p)) if !atomic_map(child) => Value::Object(merge_map(child, o, p)?),
            (Value::Array(o), Value::Array(p)) => Value::Array(merge_slice_handler(child, o, p, delete_list)?),
            (ov, _) if delete_list => ov,
            (_, pv) => fresh(child, pv)?,
        };
        original.insert(k, merged);
    }
    Ok(original)
}

fn atomic_map(schema: Option<&Schema>) -> bool {
    merge::resolve(schema).is_some_and(merge::is_atomic_map)
}

/// A patch value where the original has none: merged into an empty value so its directives are applied.
fn fresh(schema: Option<&Schema>, pv: Value) -> ApiResult<Value> {
    Ok(match pv {
        Value::Object(p) if !atomic_map(schema) => Value::Object(merge_map(schema, Map::new(), p)?),
        Value::Array(p) => Value::Array(merge_slice_handler(schema, Vec::new(), p, false)?),
        pv => pv,
    })
}

/// `$retainKeys`: clear original fields not listed; every field the patch sets must be listed.
fn apply_retain_keys(original: &mut Map<String, Value>, patch: &mut Map<String, Value>) -> ApiResult<()> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else { return Ok(()) };
    let Value::Array(list) = retain else { return Err(bad_request("invalid patch format of retainKeys")) };
    let listed: HashSet<&str> = list.iter().filter_map(Value::as_str).collect();
    let listed = |k: &str| listed.contains(k);
    for (k, v) in patch.iter() {
        let directive = k.starts_with(DELETE_FROM_PRIMITIVE_LIST) || k.starts_with(SET_ELEMENT_ORDER);
        if !v.is_null() && !directive && !listed(k) {
            return Err(bad_request("invalid patch format of retainKeys"));
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

fn merge_slice_handler(
    schema: Option<&Schema>,
    original: Vec<Value>,
    patch: Vec<Value>,
    delete_list: bool,
) -> ApiResult<Vec<Value>> {
    let (kind, items) = list_meta(schema);
    match kind {
        ListKind::Atomic if delete_list => Ok(delete_from_slice(original, &patch)),
        ListKind::Atomic => Ok(patch),
        ListKind::Set => merge_slice(items, original, patch, &[], delete_list),
        ListKind::Map(keys) => merge_slice(items, original, patch, keys, delete_list),
    }
}

/// Whether the items are objects; `Err` for lists of lists or mixed items (upstream's `sliceElementType`).
fn elements_are_maps(lists: &[&[Value]]) -> ApiResult<bool> {
    let mut kind: Option<u8> = None;
    for v in lists.iter().flat_map(|l| l.iter()) {
        let k = match v {
            Value::Array(_) => return Err(unprocessable("lists of lists are not supported")),
            Value::Object(_) => 1,
            Value::String(_) => 2,
            Value::Number(_) => 3,
            Value::Bool(_) => 4,
            Value::Null => 5,
        };
        match kind {
            Some(prev) if prev != k => {
                return Err(other(format!("list element types are not identical: {}", Value::Array(lists.concat()))));
            }
            _ => kind = Some(k),
        }
    }
    kind.map(|k| k == 1).ok_or_else(|| other("no elements in any of the given slices"))
}

fn merge_slice(
    items: Option<&Schema>,
    original: Vec<Value>,
    patch: Vec<Value>,
    keys: &[String],
    delete_list: bool,
) -> ApiResult<Vec<Value>> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let maps = elements_are_maps(&[&original, &patch])?;
    let (original, patch, merged) = if !maps {
        if delete_list {
            return Ok(delete_from_slice(original, &patch));
        }
        let mut seen: HashSet<Identity> = original.iter().map(Identity::of_value).collect();
        let mut merged = original.clone();
        for p in &patch {
            if seen.insert(Identity::of_value(p)) {
                merged.push(p.clone());
            }
        }
        (original, patch, merged)
    } else {
        if keys.is_empty() {
            return Err(other("cannot merge lists without merge key for type map"));
        }
        let (original, patch) = special_elements(original, patch, keys)?;
        // Only the items' keys order the result: the values move into the merge instead of being copied.
        let (original_keys, patch_keys) = (key_fields(&original, keys), key_fields(&patch, keys));
        let merged = merge_items(items, original, patch, keys)?;
        (original_keys, patch_keys, merged)
    };
    let (in_patch, server_only) = partition(merged, &patch, keys, maps)?;
    normalize_element_order(in_patch, server_only, &patch, &original, keys, maps)
}

/// `$patch` items of a map list: `replace` takes the patch items as the list; `delete` removes matching items.
fn special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    keys: &[String],
) -> ApiResult<(Vec<Value>, Vec<Value>)> {
    let mut plain = Vec::new();
    let mut replace = false;
    let mut deleted = HashSet::new();
    for v in patch {
        let Value::Object(m) = &v else { return Err(other("list element is not a map")) };
        match m.get(DIRECTIVE) {
            None => plain.push(v),
            Some(d) => match d.as_str() {
                Some("delete") => {
                    if !has_keys(&v, keys) {
                        return Err(no_merge_key(&v, keys));
                    }
                    deleted.insert(Identity::of_keys(&v, keys));
                }
                Some("replace") => replace = true,
                Some("merge") => return Err(other("merging lists cannot yet be specified in the patch")),
                _ => return Err(bad_patch_type(d, m)),
            },
        }
    }
    if replace {
        return Ok((plain, Vec::new()));
    }
    if !deleted.is_empty() {
        original.retain(|o| !(has_keys(o, keys) && deleted.contains(&Identity::of_keys(o, keys))));
    }
    Ok((original, plain))
}

fn has_keys(v: &Value, keys: &[String]) -> bool {
    keys.iter().all(|k| v.get(k.as_str()).is_some())
}

fn same_keys(a: &Value, b: &Value, keys: &[String]) -> bool {
    keys.iter().all(|k| a.get(k.as_str()).is_some() && a.get(k.as_str()) == b.get(k.as_str()))
}

/// Each item as an object of its merge keys alone (an item that is not an object as it is): what ordering the
/// merged list needs of the original and patch items.
fn key_fields(list: &[Value], keys: &[String]) -> Vec<Value> {
    let only_keys = |m: &Map<String, Value>| {
        Value::Object(keys.iter().filter_map(|k| m.get(k.as_str()).map(|v| (k.clone(), v.clone()))).collect())
    };
    list.iter()
        .map(|v| match v {
            Value::Object(m) => only_keys(m),
            other => other.clone(),
        })
        .collect()
}

/// Merge each patch item into the first original item with the same keys, or append it.
fn merge_items(
    items: Option<&Schema>,
    mut original: Vec<Value>,
    patch: Vec<Value>,
    keys: &[String],
) -> ApiResult<Vec<Value>> {
    // Where the items with all their keys are, by keys; a merge may change an item's keys.
    let mut positions: HashMap<Identity, BTreeSet<usize>> = HashMap::new();
    for (i, o) in original.iter().enumerate().filter(|(_, o)| has_keys(o, keys)) {
        positions.entry(Identity::of_keys(o, keys)).or_default().insert(i);
    }
    let mut checked = false;
    for v in patch {
        if !has_keys(&v, keys) {
            return Err(no_merge_key(&v, keys));
        }
        if !checked {
            if let Some(i) = original.iter().position(|o| !o.is_object()) {
                return Err(other(format!("value for key {i} is not a map.")));
            }
            checked = true;
        }
        let id = Identity::of_keys(&v, keys);
        let Value::Object(p) = v else { continue };
        match positions.get(&id).and_then(|at| at.first().copied()) {
            Some(i) => {
                let o = match std::mem::take(&mut original[i]) {
                    Value::Object(o) => o,
                    _ => Map::new(),
                };
                original[i] = Value::Object(merge_map(items, o, p)?);
                let now = has_keys(&original[i], keys).then(|| Identity::of_keys(&original[i], keys));
                if now.as_ref() != Some(&id) {
                    if let Some(at) = positions.get_mut(&id) {
                        at.remove(&i);
                    }
                    if let Some(now) = now {
                        positions.entry(now).or_default().insert(i);
                    }
                }
            }
            None => {
                let merged = Value::Object(merge_map(items, Map::new(), p)?);
                if has_keys(&merged, keys) {
                    positions.entry(Identity::of_keys(&merged, keys)).or_default().insert(original.len());
                }
                original.push(merged);
            }
        }
    }
    Ok(original)
}

fn delete_from_slice(current: Vec<Value>, to_delete: &[Value]) -> Vec<Value> {
    let to_delete: HashSet<Identity> = to_delete.iter().map(Identity::of_value).collect();
    current.into_iter().filter(|v| !to_delete.contains(&Identity::of_value(v))).collect()
}

/// A list item's identity, to find items by hashing instead of scanning: its value, or (map items) the values of
/// its merge keys, `None` for a key it lacks. Two identities are equal exactly when the values are `==`.
#[derive(Debug, PartialEq, Eq)]
struct Identity(Vec<Option<Value>>);

impl Identity {
    fn of_value(v: &Value) -> Self {
        Self(vec![Some(v.clone())])
    }

    fn of_keys(v: &Value, keys: &[String]) -> Self {
        Self(keys.iter().map(|k| v.get(k.as_str()).cloned()).collect())
    }

    /// By keys for map items, by value otherwise.
    fn of(v: &Value, keys: &[String], maps: bool) -> Self {
        if maps { Self::of_keys(v, keys) } else { Self::of_value(v) }
    }
}

impl Hash for Identity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for v in &self.0 {
            match v {
                None => state.write_u8(0),
                Some(v) => {
                    state.write_u8(1);
                    hash_value(v, state);
                }
            }
        }
    }
}

/// A hash consistent with `Value`'s `==` (`1` and `1.0` differ, `0.0` and `-0.0` do not); its recursion is the
/// value's depth, which decoding bounds.
fn hash_value<H: Hasher>(v: &Value, state: &mut H) {
    match v {
        Value::Null => state.write_u8(0),
        Value::Bool(b) => {
            state.write_u8(1);
            b.hash(state);
        }
        Value::Number(n) => {
            state.write_u8(2);
            if let Some(u) = n.as_u64() {
                state.write_u8(0);
                u.hash(state);
            } else if let Some(i) = n.as_i64() {
                state.write_u8(1);
                i.hash(state);
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                state.write_u8(2);
                (if f == 0.0 { 0.0f64 } else { f }).to_bits().hash(state);
            }
        }
        Value::String(s) => {
            state.write_u8(3);
            s.hash(state);
        }
        Value::Array(a) => {
            state.write_u8(4);
            a.len().hash(state);
            for x in a {
                hash_value(x, state);
            }
        }
        Value::Object(m) => {
            state.write_u8(5);
            m.len().hash(state);
            for (k, x) in m {
                k.hash(state);
                hash_value(x, state);
            }
        }
    }
}

/// The first position of each item of `list`.
fn first_positions(list: &[Value], keys: &[String], maps: bool) -> HashMap<Identity, usize> {
    let mut out = HashMap::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        out.entry(Identity::of(v, keys, maps)).or_insert(i);
    }
    out
}

/// Items of `merged` present in `by`, and the others.
fn partition(merged: Vec<Value>, by: &[Value], keys: &[String], maps: bool) -> ApiResult<(Vec<Value>, Vec<Value>)> {
    if maps && let Some(v) = merged.iter().find(|v| !has_keys(v, keys)) {
        return Err(no_merge_key(v, keys));
    }
    let present: HashSet<Identity> = by.iter().map(|v| Identity::of(v, keys, maps)).collect();
    Ok(merged.into_iter().partition(|v| present.contains(&Identity::of(v, keys, maps))))
}

/// Order patch items as `patch_order`, server-only items as `server_order`, and interleave them (upstream's
/// `normalizeElementOrder`).
fn normalize_element_order(
    in_patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    keys: &[String],
    maps: bool,
) -> ApiResult<Vec<Value>> {
    let in_patch = normalize_slice_order(in_patch, patch_order, keys, maps)?;
    let server_only = normalize_slice_order(server_only, server_order, keys, maps)?;
    Ok(merge_sorted(server_only, in_patch, server_order, keys, maps))
}

fn normalize_slice_order(
    mut to_sort: Vec<Value>,
    order: &[Value],
    keys: &[String],
    maps: bool,
) -> ApiResult<Vec<Value>> {
    let mut deletes = Vec::new();
    if maps {
        if let Some(v) = to_sort.iter().chain(order).find(|v| !has_keys(v, keys)) {
            return Err(no_merge_key(v, keys));
        }
        let (keep, del): (Vec<Value>, Vec<Value>) =
            to_sort.into_iter().partition(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"));
        to_sort = keep;
        deletes = del;
    }
    // Items missing from `order` go first, as upstream's comparator moves them forward (a stable sort).
    let positions = first_positions(order, keys, maps);
    to_sort.sort_by_cached_key(|v| positions.get(&Identity::of(v, keys, maps)).map_or((0, 0), |i| (1, *i)));
    to_sort.extend(deletes);
    Ok(to_sort)
}

/// Insert the server-only items (`left`) among the patch items (`right`) by their live order.
fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    keys: &[String],
    maps: bool,
) -> Vec<Value> {
    let positions = first_positions(server_order, keys, maps);
    let at = |v: &Value| positions.get(&Identity::of(v, keys, maps)).copied();
    let left: Vec<(Option<usize>, Value)> = left.into_iter().map(|v| (at(&v), v)).collect();
    let right: Vec<(Option<usize>, Value)> = right.into_iter().map(|v| (at(&v), v)).collect();
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut l, mut r) = (left.into_iter().peekable(), right.into_iter().peekable());
    loop {
        let take_left = match (l.peek(), r.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((a, _)), Some((b, _))) => matches!((a, b), (Some(i), Some(j)) if i < j),
        };
        out.extend(if take_left { l.next() } else { r.next() }.map(|(_, v)| v));
    }
    out
}

/// `$setElementOrder/<field>`: merge the field's list and order it as the directive lists.
fn merge_set_element_order(
    schema: Option<&Schema>,
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> ApiResult<()> {
    let directives: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER)).cloned().collect();
    for key in directives {
        let Some(order) = patch.remove(&key) else { continue };
        let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER).and_then(|r| r.strip_prefix('/')) else {
            return Err(bad_request("invalid patch format of setElementOrder list"));
        };
        let field = field.to_string();
        let Value::Array(order) = order else {
            return Err(bad_request("invalid patch format of setElementOrder list"));
        };
        let as_list = |v: Option<&Value>| -> ApiResult<Option<Vec<Value>>> {
            match v {
                None => Ok(None),
                Some(Value::Array(a)) => Ok(Some(a.clone())),
                Some(other_value) => Err(other(format!("expected a list, but received {other_value}"))),
            }
        };
        let orig_list = as_list(original.get(&field))?;
        let patch_list = as_list(patch.get(&field))?;
        let child = merge::child(schema, &field);
        let keys: &[String] = match merge::list_kind(child) {
            ListKind::Map(keys) => keys,
            _ => &[],
        };
        if let Some(p) = &patch_list {
            validate_order(p, &order, keys)?;
        }
        let merged = match (orig_list.clone(), patch_list.clone()) {
            (Some(o), None) => o,
            (None, Some(p)) => p,
            (Some(o), Some(p)) => merge_slice_handler(child, o, p, false)?,
            (None, None) => continue,
        };
        let orig = orig_list.unwrap_or_default();
        let maps = elements_are_maps(&[&orig, patch_list.as_deref().unwrap_or(&[])])?;
        let (in_order, server_only) = partition(merged, &order, keys, maps)?;
        let both = normalize_element_order(in_order, server_only, &order, &orig, keys, maps)?;
        original.insert(field.clone(), Value::Array(both));
        patch.remove(&field);
    }
    Ok(())
}

/// The patch list's items must appear in the directive's list, in the same relative order.
fn validate_order(patch_list: &[Value], order: &[Value], keys: &[String]) -> ApiResult<()> {
    if patch_list.is_empty() || order.is_empty() {
        return Ok(());
    }
    let plain: Vec<&Value> = patch_list.iter().filter(|v| v.get(DIRECTIVE).is_none()).collect();
    let (mut pi, mut oi) = (0, 0);
    while pi < plain.len() && oi < order.len() {
        let equal = if keys.is_empty() { plain[pi] == &order[oi] } else { same_keys(plain[pi], &order[oi], keys) };
        if equal {
            pi += 1;
        }
        oi += 1;
    }
    if pi < plain.len() {
        return Err(other(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}\n",
            Value::Array(patch_list.to_vec()),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

#[cfg(test)]
#[path = "strategic_tests.rs"]
mod tests;
