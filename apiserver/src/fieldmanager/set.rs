//! Field sets (structured-merge-diff's `fieldpath.Set`): a trie of path elements whose nodes are members (the
//! field itself is in the set) and/or have children, with set algebra and the `fieldsV1` JSON encoding of
//! `metadata.managedFields[].fieldsV1`.
//!
//! endpoints → registry store → strategy → **field manager (this file: field sets)** → storage.

use std::collections::{BTreeMap, BTreeSet};

use backup_apis::schema::{Schema, merge};
use serde_json::{Map, Value};

use super::path::{Path, PathElement};

/// A set of field paths. Children are never empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Set {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, Set>,
}

impl Set {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// The number of paths (what [`Set::paths`] would list), counted without building them.
    pub fn len(&self) -> usize {
        self.members.len() + self.children.values().map(Set::len).sum::<usize>()
    }

    /// Adds a path; the empty path is ignored.
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// The paths under `pe`, relative to it.
    pub fn with_prefix(&self, pe: &PathElement) -> Option<&Set> {
        self.children.get(pe)
    }

    /// Adds `children` (paths relative to `pe`) under `pe`, and `pe` itself when `member`: a set built from the
    /// leaves up.
    pub fn insert_node(&mut self, pe: PathElement, children: Set, member: bool) {
        match (member, children.is_empty()) {
            (true, true) => {
                self.members.insert(pe);
            }
            (true, false) => {
                self.children.insert(pe.clone(), children);
                self.members.insert(pe);
            }
            (false, false) => {
                self.children.insert(pe, children);
            }
            (false, true) => {}
        }
    }

    /// `self` with `other`'s paths added; `self` is reused, so only what `other` adds is allocated.
    pub fn union(mut self, other: &Set) -> Set {
        self.members.extend(other.members.iter().cloned());
        for (pe, c) in &other.children {
            match self.children.get_mut(pe) {
                Some(mine) => *mine = std::mem::take(mine).union(c),
                None => {
                    self.children.insert(pe.clone(), c.clone());
                }
            }
        }
        self
    }

    /// [`Set::union`] of two owned sets: the smaller set's nodes are moved into the larger, not copied.
    pub fn into_union(mut self, mut other: Set) -> Set {
        if self.members.len() + self.children.len() < other.members.len() + other.children.len() {
            std::mem::swap(&mut self, &mut other);
        }
        self.members.extend(other.members);
        for (pe, c) in other.children {
            let merged = match self.children.remove(&pe) {
                Some(mine) => mine.into_union(c),
                None => c,
            };
            self.children.insert(pe, merged);
        }
        self
    }

    pub fn intersection(&self, other: &Set) -> Set {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, c)| other.children.get(pe).map(|o| (pe.clone(), c.intersection(o))))
            .filter(|(_, c)| !c.is_empty())
            .collect();
        Set { members, children }
    }

    /// Paths of `self` not in `other` (a member of `other` does not remove `self`'s paths below it), computed in
    /// place. Each step looks up the smaller side's elements in the larger: what is taken out of a write's set (what
    /// it removed, the fields nobody may own) is usually small or empty.
    pub fn difference(mut self, other: &Set) -> Set {
        remove_members(&mut self.members, &other.members);
        self.subtract_children(other, Set::difference);
        self
    }

    /// Like [`Set::difference`], but a member of `other` also removes everything below it.
    pub fn recursive_difference(mut self, other: &Set) -> Set {
        remove_members(&mut self.members, &other.members);
        remove_children(&mut self.children, &other.members);
        self.subtract_children(other, Set::recursive_difference);
        self
    }

    /// Takes `other`'s children out of `self`'s with `subtract`, dropping those left empty.
    fn subtract_children(&mut self, other: &Set, subtract: fn(Set, &Set) -> Set) {
        if other.children.len() < self.children.len() {
            for (pe, o) in &other.children {
                if let Some(c) = self.children.get_mut(pe) {
                    *c = subtract(std::mem::take(c), o);
                    if c.is_empty() {
                        self.children.remove(pe);
                    }
                }
            }
        } else {
            self.children.retain(|pe, c| {
                if let Some(o) = other.children.get(pe) {
                    *c = subtract(std::mem::take(c), o);
                }
                !c.is_empty()
            });
        }
    }

    /// Every path, members of a node before its children's paths, in order (upstream's `Iterate`).
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for m in &self.members {
            let mut p = prefix.clone();
            p.push(m.clone());
            out.push(p);
        }
        for (pe, c) in &self.children {
            prefix.push(pe.clone());
            c.collect(prefix, out);
            prefix.pop();
        }
    }

    /// The set plus every declared struct field that has children in it (upstream's
    /// `EnsureNamedFieldsAreMembers`): owning `spec.a` then also means owning `spec`, but not `metadata.labels`.
    pub fn ensure_named_fields_are_members(&self, schema: Option<&Schema>) -> Set {
        let mut members = self.members.clone();
        let mut children = BTreeMap::new();
        for (pe, c) in &self.children {
            let child_schema = match pe {
                PathElement::Field(name) => {
                    if merge::is_declared(schema, name) {
                        members.insert(pe.clone());
                    }
                    merge::child(schema, name)
                }
                _ => merge::items(schema),
            };
            children.insert(pe.clone(), c.ensure_named_fields_are_members(child_schema));
        }
        Set { members, children }
    }

    /// The `fieldsV1` encoding: `{"f:spec":{"f:schedule":{}}}`, with `".":{}` for a member that has children.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.emit(false))
    }

    /// One node's `fieldsV1` object. Members and children are both in path order, so one pass over the two finds
    /// which members have children.
    fn emit(&self, include_self: bool) -> Map<String, Value> {
        let leaf = || Value::Object(Map::new());
        let mut out = Map::new();
        let mut members = self.members.iter().peekable();
        for (pe, c) in &self.children {
            while let Some(m) = members.next_if(|m| *m < pe) {
                out.insert(m.encode(), leaf());
            }
            let member = members.next_if(|m| *m == pe).is_some();
            out.insert(pe.encode(), Value::Object(c.emit(member)));
        }
        for m in members {
            out.insert(m.encode(), leaf());
        }
        if include_self && !out.is_empty() {
            out.insert(".".into(), leaf());
        }
        out
    }

    /// Parse `fieldsV1`; keys of unknown kinds are dropped as upstream does.
    pub fn from_fields_v1(v: &Value) -> Result<Set, String> {
        let Value::Object(m) = v else { return Err("fieldsV1 must be a JSON object".into()) };
        Ok(Self::read(m)?.0)
    }

    /// The children of a node, and whether the node itself is a member.
    fn read(m: &Map<String, Value>) -> Result<(Set, bool), String> {
        let mut set = Set::new();
        let mut member = false;
        for (k, v) in m {
            if k == "." {
                member = true;
                continue;
            }
            let Some(pe) = PathElement::decode(k).map_err(|e| format!("parsing key as path element: {e}"))? else {
                continue;
            };
            let Value::Object(inner) = v else { return Err(format!("the value of {k:?} must be an object")) };
            let (grandchildren, child_member) = Self::read(inner)?;
            if child_member {
                set.members.insert(pe.clone());
            }
            if !grandchildren.is_empty() {
                set.children.insert(pe, grandchildren);
            }
        }
        let member = member || set.is_empty();
        Ok((set, member))
    }
}

/// Removes `elements` from `members`, looking up the smaller of the two in the other.
fn remove_members(members: &mut BTreeSet<PathElement>, elements: &BTreeSet<PathElement>) {
    if elements.len() < members.len() {
        for e in elements {
            members.remove(e);
        }
    } else {
        members.retain(|m| !elements.contains(m));
    }
}

/// Removes the children under `elements`, in the same way.
fn remove_children(children: &mut BTreeMap<PathElement, Set>, elements: &BTreeSet<PathElement>) {
    if elements.len() < children.len() {
        for e in elements {
            children.remove(e);
        }
    } else {
        children.retain(|pe, _| !elements.contains(pe));
    }
}
