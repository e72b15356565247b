//! Ownership bookkeeping for one write (structured-merge-diff's `merge.Updater` with upstream's
//! `managedFieldsUpdater`, `stripMetaManager` and `lastAppliedManager` around it): an update takes the fields it
//! changed from everyone else; an apply merges a configuration, prunes what its manager stopped applying, and
//! fails on fields other managers own unless forced.
//!
//! endpoints → registry store → strategy → **field manager (this file: update and apply)** → storage.

use backup_apis::schema::Schema;
use serde_json::Value;

use super::managers::{Entry, ManagerId, Managers, cap_update_managers, strip_set};
use super::path::Path;
use super::set::Set;
use super::typed::{self, Comparison};

/// Fields another manager owns that an apply would change.
pub type Conflicts = Vec<(ManagerId, Path)>;

/// The schema, version and reset fields one write works with.
pub struct Updater<'s> {
    pub schema: Option<&'s Schema>,
    pub api_version: &'s str,
    /// Fields the strategy resets on this endpoint (status on the main resource; spec and metadata on status),
    /// which nobody gains by writing them there.
    pub ignored: &'s Set,
    /// The time of this write (RFC 3339), for the managers it changes.
    pub now: String,
}

impl Updater<'_> {
    /// Managers recorded at another API version are dropped, as upstream drops versions it cannot convert to.
    fn current_version(&self, managers: &mut Managers) {
        managers.retain(|_, e| e.api_version == self.api_version);
    }

    /// Take the changed fields from every manager but `workflow`; with conflicts and without `force`, fail.
    /// Returns the fields the write changed (added or modified) and those it removed.
    fn take_changed(
        &self,
        old: &Value,
        new: &Value,
        managers: &mut Managers,
        workflow: Option<&ManagerId>,
        force: bool,
    ) -> Result<(Set, Set), Conflicts> {
        // A create compares with nothing: every field is added, and the set is built in one walk.
        let comparison = match old {
            Value::Object(m) if m.is_empty() => {
                Comparison { added: typed::added_to_empty(self.schema, new, self.ignored), ..Comparison::default() }
            }
            _ => typed::compare(self.schema, old, new, self.ignored),
        };
        let Comparison { added, modified, removed } = comparison.exclude(self.ignored);
        let changed = modified.into_union(added);
        let mut conflicts = Conflicts::new();
        for (id, e) in managers.iter().filter(|(id, _)| Some(*id) != workflow) {
            let owned = e.set.intersection(&changed);
            conflicts.extend(owned.paths().into_iter().map(|p| (id.clone(), p)));
        }
        if !force && !conflicts.is_empty() {
            return Err(conflicts);
        }
        for (_, e) in managers.iter_mut().filter(|(id, _)| Some(*id) != workflow) {
            e.set = std::mem::take(&mut e.set).difference(&changed).difference(&removed);
        }
        managers.retain(|_, e| !e.set.is_empty());
        Ok((changed, removed))
    }

    /// An update (create, update, non-apply patch) by `manager` at `now`.
    pub fn update(&self, live: &Value, new: &Value, mut managers: Managers, manager: &ManagerId) -> Managers {
        self.current_version(&mut managers);
        // The result is Ok: forced updates never conflict.
        let Ok((changed, removed)) = self.take_changed(live, new, &mut managers, None, true) else { return managers };
        let set = changed.difference(&removed).recursive_difference(self.ignored).difference(strip_set());
        drop(removed);
        if !set.is_empty() {
            let set = match managers.get(manager) {
                Some(previous) => set.union(&previous.set),
                None => set,
            };
            managers.insert(
                manager.clone(),
                Entry { set, api_version: self.api_version.to_string(), time: Some(self.now.clone()) },
            );
        }
        cap_update_managers(&mut managers);
        managers
    }

    /// Apply `config` (checked by [`typed::to_field_set`], which gave `config_set`) over `live` for `manager`.
    /// Returns the new object (`None` when nothing changed) and the managers. The configuration is dropped once
    /// merged, and its set becomes the applier's: neither is copied.
    pub fn apply(
        &self,
        live: &Value,
        config: Value,
        config_set: Set,
        mut managers: Managers,
        manager: &ManagerId,
        force: bool,
    ) -> Result<(Option<Value>, Managers), Conflicts> {
        self.current_version(&mut managers);
        // The other managers' path counts: this write only takes paths from them, so equal counts are equal sets.
        let others = |m: &Managers| -> Vec<(ManagerId, usize)> {
            m.iter().filter(|(id, _)| *id != manager).map(|(id, e)| (id.clone(), e.set.len())).collect()
        };
        let former_others = others(&managers);
        let merged = typed::merge(self.schema, live, &config);
        drop(config);
        let time = managers.get(manager).and_then(|e| e.time.clone());
        let set = config_set.recursive_difference(self.ignored);
        let last = managers.insert(manager.clone(), Entry { set, api_version: self.api_version.to_string(), time });
        let last = last.map(|e| e.set);
        let new = self.prune(merged, &managers, last.as_ref());
        self.take_changed(live, &new, &mut managers, Some(manager), force)?;
        let changed = new != *live;
        if let Some(e) = managers.get_mut(manager) {
            e.set = std::mem::take(&mut e.set).difference(strip_set());
        }
        managers.retain(|_, e| !e.set.is_empty());
        // As upstream's managedFieldsUpdater: the applier's time is now when the object or the ownership changed
        // (a first apply that changes nothing still takes ownership, and gets a time).
        let ownership_changed =
            managers.get(manager).map(|e| &e.set) != last.as_ref() || others(&managers) != former_others;
        if (changed || ownership_changed)
            && let Some(e) = managers.get_mut(manager)
        {
            e.time = Some(self.now.clone());
        }
        Ok((changed.then_some(new), managers))
    }

    /// Remove what the applier owned last time and no longer applies, unless another manager owns it
    /// (upstream's `prune`, `addBackOwnedItems`, `addBackDanglingItems`).
    fn prune(&self, merged: Value, managers: &Managers, last: Option<&Set>) -> Value {
        let Some(last) = last.filter(|s| !s.is_empty()) else { return merged };
        let s = self.schema;
        let named = |set: &Set| set.ensure_named_fields_are_members(s);
        let fields = |v: &Value| named(&typed::field_set(s, v));
        let remove = |set: &Set| typed::remove_items(s, &merged, set).unwrap_or_else(empty_object);
        let last = named(last);
        let pruned = typed::remove_items(s, &merged, &last).unwrap_or_else(empty_object);
        let managed = managers.values().fold(Set::new(), |acc, e| acc.union(&e.set));
        let merged_set = fields(&merged);
        let pruned = remove(&merged_set.clone().difference(&fields(&pruned).union(&named(&managed))));
        remove(&merged_set.difference(&fields(&pruned)).intersection(&last))
    }
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}
