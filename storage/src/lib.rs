//! Storage with etcd semantics: the bottom of the request flow.
//!
//! filters → endpoints → registry store → strategy → **storage** → etcd (or the embedded store).
//!
//! The [`Storage`] trait has the shape of k8s.io/apiserver's `storage.Interface`: values are opaque bytes, every
//! write yields a new global revision, an object's resourceVersion is its `mod_revision`, a list's is the store's
//! revision at the time of the read. Backends: [`etcd::EtcdStorage`] (etcd v3 through etcd-client) and
//! [`embedded::EmbeddedStorage`] (one redb file, or memory only). The watch cache ([`cacher::Cacher`]) wraps any
//! `Arc<dyn Storage>` and is a `Storage` itself, as is [`encryption::EncryptedStorage`], which encrypts the values
//! of configured resources at rest (between the cache and a backend).

pub mod cacher;
#[cfg(feature = "testing")]
pub mod conformance;
pub mod embedded;
pub mod encryption;
pub mod etcd;
pub mod gather;
pub mod key;
#[cfg(feature = "testing")]
pub mod testing;

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};

/// A global revision of the store (etcd's revision). Always > 0 for anything that was written.
pub type Revision = i64;

/// The largest value a backend accepts: etcd's default request limit (`--max-request-bytes`, 1.5 MiB).
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// One stored key with its revisions, as etcd's `mvccpb.KeyValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key relative to the backend's prefix, e.g. `/backup.extend-k8s.io/timeseriesdbbackups/ns/name`.
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created the key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to the key: the object's resourceVersion.
    pub mod_revision: Revision,
}

/// What to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// At most this many items; `None` (or `Some(0)`, as in etcd) = all.
    pub limit: Option<usize>,
    /// Start at this key (inclusive); it must lie under the listed prefix. Used for continue tokens.
    pub start_key: Option<String>,
    /// Read the state as of this revision; `None` (or a revision ≤ 0, as in etcd) = the latest state.
    pub revision: Option<Revision>,
}

/// The result of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    /// Items in key order.
    pub items: Vec<KeyValue>,
    /// The revision the list was read at (the list's resourceVersion).
    pub revision: Revision,
    /// True when more keys under the prefix follow the last item.
    pub more: bool,
    /// How many keys under the prefix follow the last item.
    pub remaining: i64,
}

/// What a delete removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The value as it was just before the delete.
    pub prev: KeyValue,
    /// The revision of the delete itself.
    pub revision: Revision,
}

/// The kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Put,
    Delete,
}

/// One change under a watched prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event_type: EventType,
    /// For `Put`: the new value with `mod_revision` = the event's revision. For `Delete`: the key with an empty
    /// value, `mod_revision` = the delete's revision.
    pub kv: KeyValue,
    /// The value before this event (always present for `Delete`; for `Put` unless it created the key), except in
    /// the events of [`Storage::watch_for_cache`], which may leave it out.
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision at which this event happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A stream of watch events in revision order, each exactly once. It ends with `Err` when the watch cannot go
/// on (e.g. [`StorageError::Compacted`]); the consumer may re-watch from its last seen revision + 1.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event, StorageError>> + Send>>;

/// One item of a watch with progress ([`Storage::watch_with_progress`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    /// A change under the watched prefix, as in [`WatchStream`].
    Event(Event),
    /// Every event under the prefix at revisions ≤ this one has been delivered: what the watcher has seen is the
    /// prefix's state at this revision, although the prefix may have had no event there (etcd's progress
    /// notification). Never lower than a revision already delivered.
    Progress(Revision),
}

/// The items of a watch with progress, in revision order; it ends as a [`WatchStream`] does.
pub type ProgressStream = Pin<Box<dyn Stream<Item = Result<WatchItem, StorageError>> + Send>>;

/// When a backend's watch reports progress.
#[derive(Debug, Clone)]
pub enum ProgressMode {
    /// Unasked, soon after every revision of the store, whatever key it wrote (the embedded store: every commit
    /// passes every watch).
    Continuous,
    /// Soon after [`ProgressRequester::request`] (etcd's `RequestWatchProgress`, which etcd orders with the events
    /// from 3.4.31 and 3.5.13 on).
    OnRequest(ProgressRequester),
    /// Now and then unasked, or never: waiting for a given revision may take long on a quiet prefix (etcd before
    /// those versions, where a requested notification can overtake events still queued in etcd; only etcd's
    /// periodic notifications, `--experimental-watch-progress-notify-interval`, are in order there).
    Occasional,
}

/// Asks a watch for a [`WatchItem::Progress`]; requests made before the watch answers are answered together.
#[derive(Debug, Clone, Default)]
pub struct ProgressRequester(Arc<tokio::sync::Notify>);

impl ProgressRequester {
    /// Ask for a progress notification.
    pub fn request(&self) {
        self.0.notify_one();
    }

    /// Wait for a request (the backend's side).
    pub async fn requested(&self) {
        self.0.notified().await;
    }
}

/// A watch with progress notifications.
pub struct ProgressWatch {
    pub items: ProgressStream,
    /// When `items` carries progress.
    pub mode: ProgressMode,
}

/// The events of a watch with progress, without the progress: a [`WatchStream`].
pub fn events_only(items: impl Stream<Item = Result<WatchItem>> + Send + 'static) -> WatchStream {
    Box::pin(items.filter_map(|item| {
        std::future::ready(match item {
            Ok(WatchItem::Event(event)) => Some(Ok(event)),
            Ok(WatchItem::Progress(_)) => None,
            Err(e) => Some(Err(e)),
        })
    }))
}

/// Every error a backend returns; the REST layer maps each to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// 404.
    #[error("key not found: {key}")]
    NotFound { key: String },
    /// 409 AlreadyExists.
    #[error("key already exists: {key}")]
    AlreadyExists { key: String },
    /// 409 Conflict: the key's mod_revision is not the expected one. `current` is the value now stored.
    #[error("conflict on {key}: expected mod revision {expected}, found {}", current.mod_revision)]
    Conflict { key: String, expected: Revision, current: Box<KeyValue> },
    /// 410 Expired: the requested revision is older than the oldest one kept.
    #[error("required revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted { requested: Revision, compacted: Revision },
    /// 504 Timeout with cause ResourceVersionTooLarge: the requested revision is newer than the store's.
    #[error("required revision {requested} is a future revision (current revision {current})")]
    FutureRevision { requested: Revision, current: Revision },
    /// 400: the key has an empty, `.` or `..` segment, or is not a path.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    /// 413: the value is over [`MAX_VALUE_BYTES`].
    #[error("value of {size} bytes is over the limit of {limit} bytes")]
    ValueTooLarge { size: usize, limit: usize },
    /// 503: the backend cannot be reached right now.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// 500, with its message: a stored value the encryption configuration cannot read (no provider or key for
    /// it, or it does not decrypt), which the operator must fix ([`encryption`]), or delete at `revision` without
    /// reading it (upstream's unsafe delete of a corrupt object).
    #[error("{message}")]
    Unreadable { key: String, revision: Revision, message: String },
    /// 500: anything else.
    #[error("storage error: {0}")]
    Internal(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// The storage interface, with etcd's semantics. Keys are `/`-separated paths relative to the backend's prefix.
#[async_trait::async_trait]
pub trait Storage: Send + Sync + 'static {
    /// The current value of `key`, or `None`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys under `prefix` (which must end with `/`), in key order.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;

    /// Create `key`; `AlreadyExists` when it exists. Returns the stored key-value (its revisions).
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Replace `key` if its mod_revision is `expected_revision`: else `Conflict` (with the current value), or
    /// `NotFound` when the key is gone.
    async fn update(&self, key: &str, value: Bytes, expected_revision: Revision) -> Result<KeyValue>;

    /// Delete `key`, if `expected_revision` is given only when its mod_revision equals it (else `Conflict`).
    async fn delete(&self, key: &str, expected_revision: Option<Revision>) -> Result<Deleted>;

    /// Watch `prefix` (ending with `/`) for events at revisions ≥ `start_revision`; `0` = from now on.
    /// A `start_revision` below the compacted revision fails with `Compacted` (as the stream's first item), as in
    /// etcd; a future one waits for it.
    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream>;

    /// Watch `prefix` as [`watch`](Self::watch) does, with [`WatchItem::Progress`] items between the events when
    /// `mode` says so: what a cache needs to know that a quiet prefix has reached a revision. The default carries
    /// `watch`'s events and no progress ([`ProgressMode::Occasional`]).
    async fn watch_with_progress(&self, prefix: &str, start_revision: Revision) -> Result<ProgressWatch> {
        let events = self.watch(prefix, start_revision).await?;
        Ok(ProgressWatch { items: Box::pin(events.map(|e| e.map(WatchItem::Event))), mode: ProgressMode::Occasional })
    }

    /// What the watch cache watches: [`watch_with_progress`](Self::watch_with_progress), but the events need not
    /// carry the previous value (`Event::prev`), which the cache holds itself. etcd then does not read the
    /// previous revision of each key that changes (4–16% of its CPU per patch). The default is
    /// `watch_with_progress`.
    async fn watch_for_cache(&self, prefix: &str, start_revision: Revision) -> Result<ProgressWatch> {
        self.watch_with_progress(prefix, start_revision).await
    }

    /// The value of `key` in some state at or after `min_revision` (`0`: any state), not necessarily the latest:
    /// the apiserver's get with `resourceVersion="0"` or a minimum resourceVersion, which a cache answers from
    /// memory without a round trip to the backend. `FutureRevision` when the store has not reached
    /// `min_revision` (a cache waits for it a little first). The default reads the latest value (after checking
    /// the current revision when `min_revision > 0`).
    async fn get_not_older_than(&self, key: &str, min_revision: Revision) -> Result<Option<KeyValue>> {
        if min_revision > 0 {
            let current = self.current_revision().await?;
            if current < min_revision {
                return Err(StorageError::FutureRevision { requested: min_revision, current });
            }
        }
        self.get(key).await
    }

    /// A list of `prefix` in some state at or after `min_revision` (`0`: any state), not necessarily the latest:
    /// the apiserver's list with `resourceVersion="0"` or `resourceVersionMatch=NotOlderThan`, which a cache
    /// answers from memory without a round trip to the backend. `limit` and `start_key` work as in
    /// [`list`](Self::list); with `opts.revision` set this is `list` (an exact read). The result's `revision` is
    /// the state's (≥ `min_revision`); `FutureRevision` when the store has not reached `min_revision` (a cache
    /// waits for it a little first). The default reads the latest state.
    async fn list_not_older_than(&self, prefix: &str, opts: ListOptions, min_revision: Revision) -> Result<ListResult> {
        if opts.revision.is_some_and(|r| r > 0) {
            return self.list(prefix, opts).await;
        }
        let list = self.list(prefix, opts).await?;
        if list.revision < min_revision {
            return Err(StorageError::FutureRevision { requested: min_revision, current: list.revision });
        }
        Ok(list)
    }

    /// The store's current revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// Whether the history at `revision` is still kept: `Compacted` when it was compacted away (as a read or a
    /// watch at `revision` would fail), `FutureRevision` when the store has not reached it. What a cache asks
    /// before it serves a past revision from memory, since compactions it does not make itself (etcd's own
    /// compactor, another replica's, an operator's) are not announced to it. The default lists one key at
    /// `revision`; backends answer it more cheaply.
    async fn check_revision(&self, revision: Revision) -> Result<()> {
        let opts = ListOptions { limit: Some(1), start_key: None, revision: Some(revision.max(1)) };
        self.list("/", opts).await.map(|_| ())
    }

    /// Forget history before `revision`: reads and watches at older revisions fail with `Compacted`. Compacting
    /// at or below the compacted revision is a no-op; above the current revision it fails with `FutureRevision`.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// A cheap round trip that fails when the backend is unreachable (for /readyz).
    async fn health(&self) -> Result<()> {
        self.current_revision().await.map(|_| ())
    }

    /// Whether an update of `key` (read at `mod_revision`) that changes nothing must be written all the same:
    /// its stored value was encrypted by a provider or key other than the one that writes now (upstream's stale
    /// read, [`encryption`]), so that rewriting every object moves it to the current key. The default: never.
    async fn rewrite_needed(&self, key: &str, mod_revision: Revision) -> Result<bool> {
        let _ = (key, mod_revision);
        Ok(false)
    }
}

/// Reject a value over [`MAX_VALUE_BYTES`] before it reaches a backend.
pub fn check_value_size(value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StorageError::ValueTooLarge { size: value.len(), limit: MAX_VALUE_BYTES });
    }
    Ok(())
}
