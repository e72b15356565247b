//! The state of one cached prefix: its objects at the revision the cache has reached, in a persistent ordered map
//! (imbl's `OrdMap`), so that a snapshot is an O(1) clone that later events do not disturb (KEP-4988), and a
//! past revision inside the window is the current map with the newer events undone.
//!
//! reflector → **state** (+ window) → lists and gets read snapshots.

use std::ops::Bound;
use std::sync::Arc;

use imbl::OrdMap;

use super::metrics::{self, CacheMetrics};
use super::object::{CachedEvent, CachedObject};
use super::window::Window;
use crate::{KeyValue, Revision};

pub(super) type Objects = OrdMap<Arc<str>, Arc<CachedObject>>;

pub(super) struct State {
    /// The initial list is in.
    pub ready: bool,
    /// Every event at or below this revision has been applied: `objects` is the prefix's state then.
    pub revision: Revision,
    pub objects: Objects,
    /// Bytes of `objects`, as counted in the metrics.
    pub object_bytes: i64,
    pub window: Window,
    /// The highest compaction the cache knows of (made through it, or reported by the backend).
    pub compacted: Revision,
    /// Incremented by every relist: watchers of an older generation missed events and are closed.
    pub generation: u64,
    pub metrics: Arc<CacheMetrics>,
}

/// The objects of one revision, shared with the state (an O(1) clone).
pub(super) struct Snapshot {
    pub revision: Revision,
    pub objects: Objects,
}

impl State {
    pub fn new(window: Window, metrics: Arc<CacheMetrics>) -> Self {
        Self {
            ready: false,
            revision: 0,
            objects: Objects::new(),
            object_bytes: 0,
            window,
            compacted: 0,
            generation: 0,
            metrics,
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot { revision: self.revision, objects: self.objects.clone() }
    }

    /// The objects in `[start, end)` at `revision`, which must lie in `[window.start(), self.revision]`: the
    /// current objects with the window's newer events undone, newest first.
    pub fn snapshot_at(&self, revision: Revision, start: &str, end: &str) -> Snapshot {
        let mut objects = self.objects.clone();
        for event in self.window.after(revision).rev() {
            let key = event.key();
            if key < start || key >= end {
                continue;
            }
            match event.prev() {
                Some(prev) => {
                    objects.insert(Arc::from(key), prev.clone());
                }
                None => {
                    objects.remove(key);
                }
            }
        }
        Snapshot { revision, objects }
    }

    /// Replace everything with a fresh list at `revision`.
    pub fn replace(&mut self, objects: Vec<Arc<CachedObject>>, revision: Revision) {
        let bytes: i64 = objects.iter().map(|o| o.size() as i64).sum();
        metrics::add(&self.metrics.objects, objects.len() as i64 - self.objects.len() as i64);
        metrics::add(&self.metrics.object_bytes, bytes - self.object_bytes);
        self.objects = objects.into_iter().map(|o| (Arc::from(o.kv().key.as_str()), o)).collect();
        self.object_bytes = bytes;
        self.revision = revision;
        self.window.reset(revision);
        self.generation += 1;
        self.ready = true;
    }

    /// Apply a put at `object`'s mod revision; `reported_prev` is the backend's previous value, used only if the
    /// state had none (it always has, unless the backend skipped an event; etcd's watch for the cache reports
    /// none).
    pub fn put(&mut self, object: Arc<CachedObject>, reported_prev: Option<KeyValue>) -> Arc<CachedEvent> {
        let revision = object.kv().mod_revision;
        let size = object.size() as i64;
        let prev = self.objects.insert(Arc::from(object.kv().key.as_str()), object.clone());
        let prev_size = prev.as_ref().map_or(0, |p| p.size() as i64);
        if prev.is_none() {
            metrics::add(&self.metrics.objects, 1);
        }
        self.object_bytes += size - prev_size;
        metrics::add(&self.metrics.object_bytes, size - prev_size);
        let prev = prev.or_else(|| reported_prev.map(|kv| Arc::new(CachedObject::new(kv, None))));
        self.revision = revision;
        self.window.push(revision, Some(object), prev)
    }

    /// Apply a delete of `key` at `revision`.
    pub fn delete(&mut self, key: &str, revision: Revision, reported_prev: Option<KeyValue>) -> Arc<CachedEvent> {
        let prev = self.objects.remove(key);
        if let Some(prev) = &prev {
            let size = prev.size() as i64;
            self.object_bytes -= size;
            metrics::add(&self.metrics.objects, -1);
            metrics::add(&self.metrics.object_bytes, -size);
        }
        let prev = prev.or_else(|| {
            let kv = reported_prev.unwrap_or(KeyValue {
                key: key.to_string(),
                value: bytes::Bytes::new(),
                create_revision: 0,
                mod_revision: revision,
            });
            Some(Arc::new(CachedObject::new(kv, None)))
        });
        self.revision = revision;
        self.window.push(revision, None, prev)
    }
}

impl Drop for State {
    fn drop(&mut self) {
        metrics::add(&self.metrics.objects, -(self.objects.len() as i64));
        metrics::add(&self.metrics.object_bytes, -self.object_bytes);
    }
}

impl Snapshot {
    /// Up to `limit` objects (0: all) from `start` to `end` (exclusive), and how many more follow.
    pub fn page(&self, start: &str, end: &str, limit: usize) -> (Vec<Arc<CachedObject>>, i64) {
        let mut range = self.objects.range::<_, str>((Bound::Included(start), Bound::Excluded(end)));
        let limit = if limit == 0 { usize::MAX } else { limit };
        let items: Vec<_> = range.by_ref().take(limit).map(|(_, o)| o.clone()).collect();
        let remaining = range.count() as i64;
        (items, remaining)
    }

    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        self.objects.get(key).cloned()
    }
}
