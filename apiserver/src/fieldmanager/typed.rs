//! Schema-guided operations on JSON objects (structured-merge-diff's `typed` package): the set of fields a value
//! sets, the comparison of two values (added, modified, removed fields), the apply merge of a configuration into a
//! live object, and removal of fields.
//!
//! endpoints → registry store → strategy → **field manager (this file: typed values)** → storage.
//!
//! Leaves are scalars, atomic lists and maps, and empty maps and lists (so that `{}` and absent differ). Objects
//! are walked field by field; map lists item by item keyed by `k:`, sets by `v:`.

use std::collections::BTreeMap;

use backup_apis::schema::merge::{self, Field, Node};
use backup_apis::schema::{ListKind, Schema};
use serde_json::{Map, Value};

use super::path::{Path, PathElement, show};
use super::set::Set;

/// The path element of a list item, or why there is none (a map-list item missing a key).
pub fn item_element(kind: &ListKind, index: usize, item: &Value) -> Result<PathElement, String> {
    match kind {
        ListKind::Atomic => Ok(PathElement::Index(index)),
        ListKind::Set => Ok(PathElement::Value(item.clone())),
        ListKind::Map(keys) => {
            let Value::Object(m) = item else {
                return Err("associative list with keys may not have non-map elements".into());
            };
            let mut fields = Map::new();
            for k in keys {
                match m.get(k) {
                    Some(v) => fields.insert(k.clone(), v.clone()),
                    None => {
                        return Err(format!(
                            "associative list with keys has an element that omits key field {k:?} (and doesn't have default value)"
                        ));
                    }
                };
            }
            Ok(PathElement::key_of(fields))
        }
    }
}

/// Every field `value` sets, ignoring what the schema does not declare.
pub fn field_set(schema: Option<&Schema>, value: &Value) -> Set {
    let mut w = FieldSetWalk { set: Set::new(), errors: Vec::new(), path: Vec::new() };
    w.walk(schema, value);
    w.set
}

/// Every field `value` sets (upstream's `ToFieldSet`). Errors name undeclared fields and unkeyed map-list items,
/// as the typed conversion of an apply configuration reports them.
pub fn to_field_set(schema: Option<&Schema>, value: &Value) -> Result<Set, Vec<String>> {
    let mut w = FieldSetWalk { set: Set::new(), errors: Vec::new(), path: Vec::new() };
    w.walk(schema, value);
    if w.errors.is_empty() { Ok(w.set) } else { Err(w.errors) }
}

struct FieldSetWalk {
    set: Set,
    errors: Vec<String>,
    path: Path,
}

impl FieldSetWalk {
    fn walk(&mut self, schema: Option<&Schema>, value: &Value) {
        match (merge::node(schema, value), value) {
            (Node::Map { atomic: true, .. } | Node::List { kind: ListKind::Atomic, .. } | Node::Scalar, _) => {
                self.set.insert(&self.path)
            }
            (Node::Map { schema, .. }, Value::Object(m)) => {
                for (k, v) in m {
                    let declared = match merge::field(schema, k) {
                        Field::Declared(_) => true,
                        Field::Entry(_) => false,
                        Field::Unknown => {
                            self.errors.push(format!("{}.{k}: field not declared in schema", show(&self.path)));
                            continue;
                        }
                    };
                    self.path.push(PathElement::Field(k.clone()));
                    self.walk(merge::child(schema, k), v);
                    if !declared {
                        self.set.insert(&self.path);
                    }
                    self.path.pop();
                }
            }
            (Node::List { items, kind }, Value::Array(list)) => {
                for (i, item) in list.iter().enumerate() {
                    match item_element(kind, i, item) {
                        Ok(pe) => {
                            self.path.push(pe);
                            self.walk(items, item);
                            self.set.insert(&self.path);
                            self.path.pop();
                        }
                        Err(e) => self.errors.push(format!("{}: element {i}: {e}", show(&self.path))),
                    }
                }
            }
            _ => self.set.insert(&self.path),
        }
    }
}

/// What changed from one value to another (upstream's `Comparison`).
#[derive(Debug, Default, Clone)]
pub struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

impl Comparison {
    /// Drops ignored fields (and everything below them) from all three sets.
    pub fn exclude(self, ignored: &Set) -> Self {
        Self {
            added: self.added.recursive_difference(ignored),
            modified: self.modified.recursive_difference(ignored),
            removed: self.removed.recursive_difference(ignored),
        }
    }
}

/// What a merge walk does at leaves, and after containers.
trait Rules {
    /// A scalar, atomic value, or a container empty on both sides: the merged value (`None`: absent).
    fn leaf(&mut self, path: &Path, lhs: Option<&Value>, rhs: Option<&Value>) -> Option<Value>;
    /// After the items of a container were merged.
    fn post(&mut self, _path: &Path, _lhs: Option<&Value>, _rhs: Option<&Value>) {}
    /// Whether the walk leaves this path (and everything below it) out.
    fn skip(&self, _path: &Path) -> bool {
        false
    }
}

/// Compare `lhs` (old) with `rhs` (new), leaving out the members of `skip` and what is below them. A container that
/// appears or disappears is itself added or removed.
pub fn compare(schema: Option<&Schema>, lhs: &Value, rhs: &Value, skip: &Set) -> Comparison {
    struct Compare<'s>(Comparison, &'s Set);
    impl Rules for Compare<'_> {
        fn skip(&self, path: &Path) -> bool {
            self.1.has(path)
        }
        fn leaf(&mut self, path: &Path, lhs: Option<&Value>, rhs: Option<&Value>) -> Option<Value> {
            match (lhs, rhs) {
                (None, _) => self.0.added.insert(path),
                (_, None) => self.0.removed.insert(path),
                (Some(a), Some(b)) if a != b => self.0.modified.insert(path),
                _ => {}
            }
            None
        }
        fn post(&mut self, path: &Path, lhs: Option<&Value>, rhs: Option<&Value>) {
            match (lhs, rhs) {
                (None, _) => self.0.added.insert(path),
                (_, None) => self.0.removed.insert(path),
                _ => {}
            }
        }
    }
    let mut rules = Compare(Comparison::default(), skip);
    merge_walk(&mut rules, &mut Vec::new(), schema, Some(lhs), Some(rhs));
    rules.0
}

/// What [`compare`] finds added from an empty object to `new`, built as a tree in one walk: the comparison inserts
/// each field's whole path from the root (the comparison was ~15% of a create's instructions). Everything in `new` is
/// added, containers included, except the members of `skip` and what is below them.
pub fn added_to_empty(schema: Option<&Schema>, new: &Value, skip: &Set) -> Set {
    added(schema, new, skip, None)
}

/// The `fieldsV1` of the one manager of a create: `added_to_empty(schema, new, skip).difference(strip)` encoded,
/// written from the object in the same walk without building the set (building, subtracting and encoding the set
/// was ~10% of a create's instructions).
pub fn created_fields_v1(schema: Option<&Schema>, new: &Value, skip: &Set, strip: &Set) -> Map<String, Value> {
    added(schema, new, skip, Some(strip))
}

fn added<A: Added>(schema: Option<&Schema>, new: &Value, skip: &Set, strip: Option<&Set>) -> A {
    let mut out = A::default();
    // An atomic or scalar root is the empty path, which a set does not hold.
    if let (Node::Map { atomic: false, schema }, Value::Object(m)) = (merge::node(schema, new), new) {
        for (k, v) in m {
            add(&mut out, PathElement::Field(k.clone()), merge::child(schema, k), v, Some(skip), strip);
        }
    }
    out
}

/// Where [`add`] puts the fields it finds: a [`Set`], or a create's `fieldsV1` object directly.
trait Added: Default {
    /// `pe` with what was found below it; `member`: `pe` itself is kept (it is not in the set stripped).
    fn push(&mut self, pe: PathElement, below: Self, member: bool);
}

impl Added for Set {
    fn push(&mut self, pe: PathElement, below: Self, member: bool) {
        self.insert_node(pe, below, member);
    }
}

/// As [`Set::to_fields_v1`] writes a node: `{}` for a member without children, `".":{}` beside the children of a
/// member, and nothing for a node that is neither.
impl Added for Map<String, Value> {
    fn push(&mut self, pe: PathElement, mut below: Self, member: bool) {
        if member && !below.is_empty() {
            below.insert(".".into(), Value::Object(Map::new()));
        }
        if member || !below.is_empty() {
            self.insert(pe.encode(), Value::Object(below));
        }
    }
}

/// Adds `pe` (a field or item of `value`, new) to `out` with everything below it, as [`compare`] adds it; the
/// members of `strip` are left out but not what is below them (as [`Set::difference`] takes them out).
fn add<A: Added>(
    out: &mut A,
    pe: PathElement,
    schema: Option<&Schema>,
    value: &Value,
    skip: Option<&Set>,
    strip: Option<&Set>,
) {
    let here = std::slice::from_ref(&pe);
    if skip.is_some_and(|s| s.has(here)) {
        return;
    }
    let (skip_below, strip_below) = (skip.and_then(|s| s.with_prefix(&pe)), strip.and_then(|s| s.with_prefix(&pe)));
    let mut below = A::default();
    match merge::node(schema, value) {
        Node::Scalar | Node::Map { atomic: true, .. } | Node::List { kind: ListKind::Atomic, .. } => {}
        _ if is_empty_container(Some(value)) => {}
        Node::Map { schema, .. } => {
            for (k, v) in value.as_object().into_iter().flatten() {
                add(&mut below, PathElement::Field(k.clone()), merge::child(schema, k), v, skip_below, strip_below);
            }
        }
        Node::List { items, kind } => {
            let (order, mut by_element) = index_list(kind, Some(value));
            for pe in order {
                if let Some(item) = by_element.remove(&pe) {
                    add(&mut below, pe, items, item, skip_below, strip_below);
                }
            }
        }
    }
    let member = !strip.is_some_and(|s| s.has(here));
    out.push(pe, below, member);
}

/// The apply merge: `config`'s leaves win, containers merge, map lists merge by key and keep a stable order
/// (upstream's `TypedValue.Merge`).
pub fn merge(schema: Option<&Schema>, live: &Value, config: &Value) -> Value {
    struct KeepRhs;
    impl Rules for KeepRhs {
        fn leaf(&mut self, _: &Path, lhs: Option<&Value>, rhs: Option<&Value>) -> Option<Value> {
            rhs.or(lhs).cloned()
        }
    }
    merge_walk(&mut KeepRhs, &mut Vec::new(), schema, Some(live), Some(config)).unwrap_or(Value::Null)
}

fn is_empty_container(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    }
}

fn merge_walk(
    rules: &mut dyn Rules,
    path: &mut Path,
    schema: Option<&Schema>,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
) -> Option<Value> {
    if rules.skip(path) {
        return None;
    }
    let ln = lhs.map(|v| merge::node(schema, v));
    let rn = rhs.map(|v| merge::node(schema, v));
    let same_kind = match (&ln, &rn) {
        (Some(a), Some(b)) => std::mem::discriminant(a) == std::mem::discriminant(b),
        _ => true,
    };
    let node = rn.or(ln)?;
    let out = match node {
        _ if !same_kind => return rules.leaf(path, lhs, rhs),
        Node::Scalar | Node::Map { atomic: true, .. } | Node::List { kind: ListKind::Atomic, .. } => {
            return rules.leaf(path, lhs, rhs);
        }
        _ if is_empty_container(lhs) && is_empty_container(rhs) => return rules.leaf(path, lhs, rhs),
        Node::Map { schema, .. } => {
            let empty = Map::new();
            let lm = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let rm = rhs.and_then(Value::as_object).unwrap_or(&empty);
            let mut out = Map::new();
            for k in lm.keys().chain(rm.keys().filter(|k| !lm.contains_key(*k))) {
                path.push(PathElement::Field(k.clone()));
                if let Some(v) = merge_walk(rules, path, merge::child(schema, k), lm.get(k), rm.get(k)) {
                    out.insert(k.clone(), v);
                }
                path.pop();
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Node::List { items, kind } => {
            let out = merge_list(rules, path, items, kind, lhs, rhs);
            (!out.is_empty()).then_some(Value::Array(out))
        }
    };
    rules.post(path, lhs, rhs);
    out
}

/// A list's items by path element, in order, first occurrence of a duplicate kept.
fn index_list<'v>(kind: &ListKind, list: Option<&'v Value>) -> (Vec<PathElement>, BTreeMap<PathElement, &'v Value>) {
    let mut order = Vec::new();
    let mut items = BTreeMap::new();
    for (i, item) in list.and_then(Value::as_array).into_iter().flatten().enumerate() {
        if let Ok(pe) = item_element(kind, i, item)
            && !items.contains_key(&pe)
        {
            items.insert(pe.clone(), item);
            order.push(pe);
        }
    }
    (order, items)
}

/// Merge list items keeping live items in place and config items in their relative order (upstream's
/// `visitListItems`).
fn merge_list(
    rules: &mut dyn Rules,
    path: &mut Path,
    items: Option<&Schema>,
    kind: &ListKind,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
) -> Vec<Value> {
    let (l_order, l_items) = index_list(kind, lhs);
    let (r_order, r_items) = index_list(kind, rhs);
    let mut shared = r_order.iter().filter(|pe| l_items.contains_key(*pe));
    let mut next_shared = shared.next();
    let mut out = Vec::new();
    let item = |rules: &mut dyn Rules, path: &mut Path, pe: &PathElement, out: &mut Vec<Value>| {
        path.push(pe.clone());
        if let Some(v) = merge_walk(rules, path, items, l_items.get(pe).copied(), r_items.get(pe).copied()) {
            out.push(v);
        }
        path.pop();
    };
    let (mut li, mut ri) = (0, 0);
    while li < l_order.len() || ri < r_order.len() {
        if li < l_order.len() && ri < r_order.len() {
            let pe = &l_order[li];
            if *pe == r_order[ri] {
                item(rules, path, pe, &mut out);
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if r_items.contains_key(pe) && next_shared.is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < l_order.len() && !r_items.contains_key(&l_order[li]) {
            item(rules, path, &l_order[li], &mut out);
            li += 1;
            continue;
        }
        if ri < r_order.len() {
            let pe = &r_order[ri];
            item(rules, path, pe, &mut out);
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.next();
            }
        } else {
            // Only shared live items remain, already merged in config order.
            li += 1;
        }
    }
    out
}

/// `value` without the fields (and map- and set-list items) that are members of `remove`; a container emptied
/// by the removal disappears (upstream leaves a null that decoding then drops).
pub fn remove_items(schema: Option<&Schema>, value: &Value, remove: &Set) -> Option<Value> {
    match (merge::node(schema, value), value) {
        (Node::Map { atomic: false, schema }, Value::Object(m)) => {
            let mut out = Map::new();
            for (k, v) in m {
                let pe = PathElement::Field(k.clone());
                if remove.has(std::slice::from_ref(&pe)) {
                    continue;
                }
                match remove.with_prefix(&pe) {
                    Some(sub) => {
                        if let Some(v) = remove_items(merge::child(schema, k), v, sub) {
                            out.insert(k.clone(), v);
                        }
                    }
                    None => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        (Node::List { items, kind }, Value::Array(list)) if *kind != ListKind::Atomic => {
            let mut out = Vec::new();
            for (i, item) in list.iter().enumerate() {
                let Ok(pe) = item_element(kind, i, item) else {
                    out.push(item.clone());
                    continue;
                };
                if remove.has(std::slice::from_ref(&pe)) {
                    continue;
                }
                match remove.with_prefix(&pe) {
                    Some(sub) => out.extend(remove_items(items, item, sub)),
                    None => out.push(item.clone()),
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        _ => Some(value.clone()),
    }
}
