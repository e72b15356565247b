//! What the cache holds: objects as their stored bytes plus the attributes the apiserver decoded from them once,
//! and events that share those objects with every watcher and memoize each encoding made of them.
//!
//! backend event → reflector → **[`CachedObject`] in the state, [`CachedEvent`] in the window** → lists, gets and
//! watchers, which hand out `Arc`s of them: an object's bytes are never copied per reader, an event's encodings
//! are made once for all watchers.

use std::any::Any;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::metrics::{self, CacheMetrics};
use crate::{Event, EventType, KeyValue, Revision};

/// What the apiserver decoded from an object once, for selectors and Table columns (labels, fields, printer
/// columns…): any type it likes; read back with [`CachedObject::attrs`].
pub type Attrs = Option<Arc<dyn Any + Send + Sync>>;

/// Computes an object's [`Attrs`] from its stored bytes; called once per object version the cache takes in.
/// Only the apiserver knows the kinds, so it supplies this per cached prefix.
pub type AttrsHook = Arc<dyn Fn(&KeyValue) -> Attrs + Send + Sync>;

/// Bytes counted per object or event beyond its key and value (allocations, pointers, revisions).
const OVERHEAD_BYTES: usize = 96;

/// The most encodings memoized on one event: representations × versions an apiserver serves at once.
const MAX_ENCODINGS: usize = 8;

/// One object as stored, shared by the state, the window and every reader.
pub struct CachedObject {
    kv: KeyValue,
    attrs: Attrs,
}

impl std::fmt::Debug for CachedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedObject").field("kv", &self.kv).field("attrs", &self.attrs.is_some()).finish()
    }
}

impl CachedObject {
    /// `kv` with the attributes `hook` computes: how the cache takes objects in, and how a reader that bypasses
    /// it (a backend read or watch) gives them the same shape.
    pub fn new(kv: KeyValue, hook: Option<&AttrsHook>) -> Self {
        let attrs = hook.and_then(|hook| hook(&kv));
        Self { kv, attrs }
    }

    /// The stored key-value (key, value bytes, revisions).
    pub fn kv(&self) -> &KeyValue {
        &self.kv
    }

    /// The stored bytes; cloning them is a reference count, not a copy.
    pub fn value(&self) -> &Bytes {
        &self.kv.value
    }

    /// The attributes the [`AttrsHook`] computed, if it did and they are a `T`.
    pub fn attrs<T: Any>(&self) -> Option<&T> {
        self.attrs.as_deref().and_then(|a| a.downcast_ref())
    }

    /// The attributes as the hook returned them.
    pub fn attrs_any(&self) -> Option<&Arc<dyn Any + Send + Sync>> {
        self.attrs.as_ref()
    }

    /// Bytes this object holds, as counted in the metrics.
    pub(super) fn size(&self) -> usize {
        self.kv.key.len() + self.kv.value.len() + OVERHEAD_BYTES
    }
}

/// Which encoding of an event: an id the apiserver chooses per representation (JSON, Table, PartialObjectMetadata,
/// each version…) and whatever else changes the bytes it writes.
pub type RepresentationId = u64;

/// One change of a cached prefix, shared by the window and every watcher.
pub struct CachedEvent {
    revision: Revision,
    event_type: EventType,
    /// `Put`: the new object. `Delete`: `None`.
    object: Option<Arc<CachedObject>>,
    /// The object before the event (always there for `Delete`; for `Put` unless it created the key).
    prev: Option<Arc<CachedObject>>,
    /// Encodings memoized by [`Self::encoded`].
    encodings: Mutex<Memo>,
    /// `None` for an event outside the window ([`Self::detached`]), which memoizes nothing.
    accounting: Option<Arc<Accounting>>,
    /// Where this event starts in the window's running count of bytes (for watchers' lag).
    pub(super) offset: u64,
}

#[derive(Default)]
struct Memo {
    entries: Vec<(RepresentationId, Bytes)>,
    /// The event left the window: encodings are no longer memoized (nor counted).
    retired: bool,
}

/// Where memoized encodings are counted: the window's bytes (for its limit) and the metrics.
pub(super) struct Accounting {
    pub memo_bytes: AtomicI64,
    pub metrics: Arc<CacheMetrics>,
}

impl std::fmt::Debug for CachedEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedEvent")
            .field("revision", &self.revision)
            .field("event_type", &self.event_type)
            .field("object", &self.object)
            .field("prev", &self.prev)
            .finish()
    }
}

impl CachedEvent {
    pub(super) fn new(
        revision: Revision,
        object: Option<Arc<CachedObject>>,
        prev: Option<Arc<CachedObject>>,
        accounting: Arc<Accounting>,
        offset: u64,
    ) -> Self {
        let event_type = if object.is_some() { EventType::Put } else { EventType::Delete };
        Self { revision, event_type, object, prev, encodings: Mutex::default(), accounting: Some(accounting), offset }
    }

    /// A backend's event outside the cache (a watch that bypasses it, or resumes before its window), its objects'
    /// attributes computed by `hook`: the same shape as a cached event, shared with nobody, so
    /// [`Self::encoded`] memoizes nothing.
    pub fn detached(event: Event, hook: Option<&AttrsHook>) -> Self {
        let revision = event.revision();
        let Event { event_type, kv, prev } = event;
        let (object, prev) = match event_type {
            EventType::Put => (Some(Arc::new(CachedObject::new(kv, hook))), prev),
            // A delete always names what it deleted: the backend's previous value, else the bare key.
            EventType::Delete => {
                (None, Some(prev.unwrap_or(KeyValue { value: Bytes::new(), create_revision: 0, ..kv })))
            }
        };
        let prev = prev.map(|kv| Arc::new(CachedObject::new(kv, hook)));
        let memo = Memo { entries: Vec::new(), retired: true };
        Self { revision, event_type, object, prev, encodings: Mutex::new(memo), accounting: None, offset: 0 }
    }

    /// The revision of the change.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    pub fn event_type(&self) -> EventType {
        self.event_type
    }

    /// The changed key.
    pub fn key(&self) -> &str {
        match (&self.object, &self.prev) {
            (Some(object), _) | (None, Some(object)) => &object.kv.key,
            (None, None) => "",
        }
    }

    /// `Put`: the new object; `Delete`: `None`.
    pub fn object(&self) -> Option<&Arc<CachedObject>> {
        self.object.as_ref()
    }

    /// The object before the change: for `Delete`, the deleted object; for `Put`, `None` when it created the key.
    pub fn prev(&self) -> Option<&Arc<CachedObject>> {
        self.prev.as_ref()
    }

    /// Whether the event created its key (a `Put` whose create and mod revisions are the same).
    pub fn created(&self) -> bool {
        self.object.as_ref().is_some_and(|o| o.kv.create_revision == o.kv.mod_revision)
    }

    /// The encoding `representation` of this event: made by `encode` the first time anyone asks, then the same
    /// `Bytes` for every watcher (up to 8 representations per event; past that, made per call).
    pub fn encoded(&self, representation: RepresentationId, encode: impl FnOnce(&CachedEvent) -> Bytes) -> Bytes {
        let mut memo = self.encodings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, bytes)) = memo.entries.iter().find(|(id, _)| *id == representation) {
            return bytes.clone();
        }
        // Encoded under the lock: watchers asking for the same representation at once wait for this one.
        let bytes = encode(self);
        let Some(accounting) = &self.accounting else { return bytes };
        metrics::count(&accounting.metrics.encodings);
        if memo.entries.len() < MAX_ENCODINGS && !memo.retired {
            memo.entries.push((representation, bytes.clone()));
            let size = bytes.len() as i64;
            accounting.memo_bytes.fetch_add(size, std::sync::atomic::Ordering::Relaxed);
            metrics::add(&accounting.metrics.window_bytes, size);
        }
        bytes
    }

    /// Bytes this event holds beyond its memoized encodings, as counted in the window.
    pub(super) fn size(&self) -> usize {
        self.object.as_ref().or(self.prev.as_ref()).map_or(OVERHEAD_BYTES, |o| o.size())
    }

    /// The event leaves the window: memoize nothing more; the bytes of the encodings memoized so far.
    pub(super) fn retire(&self) -> usize {
        let mut memo = self.encodings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        memo.retired = true;
        memo.entries.iter().map(|(_, b)| b.len()).sum()
    }

    /// The event as a [`Storage::watch`](crate::Storage::watch) stream carries it.
    pub fn to_event(&self) -> Event {
        let prev = self.prev.as_ref().map(|p| p.kv.clone());
        match &self.object {
            Some(object) => Event { event_type: EventType::Put, kv: object.kv.clone(), prev },
            None => Event {
                event_type: EventType::Delete,
                kv: KeyValue {
                    key: self.key().to_string(),
                    value: Bytes::new(),
                    create_revision: 0,
                    mod_revision: self.revision,
                },
                prev,
            },
        }
    }
}
