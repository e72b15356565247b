//! The watch cache: one backend watch per cached prefix, lists, gets and watches from memory, for every backend.
//!
//! HTTP → … → REST → **cacher** → storage backend (etcd or the embedded store).
//!
//! A [`Cacher`] wraps an `Arc<dyn Storage>` for a set of prefixes (one per resource, e.g.
//! `/backup.extend-k8s.io/timeseriesdbbackups/`) and is a [`Storage`] itself: writes and keys outside the cached
//! prefixes pass through to the backend; reads and watches inside them are served from memory. The semantics are
//! k8s.io/apiserver's `pkg/storage/cacher` (KEP-2340 consistent reads from cache, KEP-3157 watch-list, KEP-4988
//! snapshots for paginated lists); the flow, per prefix:
//!
//! - [`reflector`]: at construction (eagerly, so the first request finds a warm cache and readiness can wait for
//!   it) one task lists the prefix and holds **one backend watch** on it, with progress notifications,
//!   re-established from its last revision after errors and relisted after a compaction;
//! - [`state`] (objects as stored bytes plus the apiserver's [`Attrs`], in a persistent map) and [`window`] (recent
//!   events, bounded by count and bytes);
//! - reads: `list`/`get` without a revision are consistent (the backend's current revision, one cheap call shared
//!   by the reads that wait at the same time ([`revision`]), then a bounded wait for the cache to reach it, as
//!   upstream ≥ 1.31); `*_not_older_than` (resourceVersion="0", NotOlderThan) answer from memory at once; a list
//!   at an exact revision inside the window (continue tokens) reads a snapshot, once the backend confirms that
//!   revision is not compacted (compactions the cache does not make are not announced to it); anything the cache
//!   cannot answer goes to the backend ([`CacheMetrics::backend_fallbacks`]);
//! - [`watcher`]: watches are cursors into the window; each event is one [`CachedEvent`] shared by every watcher,
//!   which memoizes one encoding per representation ([`CachedEvent::encoded`]). A client's watch from its
//!   resourceVersion ([`Cacher::resume_watch`]) is checked against the backend's compaction the same way, and
//!   one from before the window (a cache younger than the client) reads a backend watch until it reaches it.
//!
//! The apiserver uses the native API ([`Cacher::list_cached`], [`Cacher::get_cached`], [`Cacher::watch_after_list`],
//! [`Cacher::resume_watch`]), which hands out `Arc`s of the cached objects and events instead of copies.

mod metrics;
mod object;
mod prefix;
mod reflector;
mod revision;
mod state;
mod watcher;
mod window;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

pub use self::metrics::{CacheMetrics, CacheMetricsSnapshot};
pub use self::object::{Attrs, AttrsHook, CachedEvent, CachedObject, RepresentationId};
use self::prefix::PrefixCache;
use self::revision::RevisionReader;
use self::state::Snapshot;
pub use self::watcher::{CacheWatch, WakeGroup, WatchEnd};
use crate::{
    Deleted, KeyValue, ListOptions, ListResult, ProgressMode, ProgressWatch, Result, Revision, Storage, StorageError,
    WatchItem, WatchStream, key,
};

/// One prefix to cache.
#[derive(Clone)]
pub struct CachedPrefix {
    /// The prefix (ending with `/`), e.g. `/backup.extend-k8s.io/timeseriesdbbackups/`.
    pub prefix: String,
    /// Computes each object's [`Attrs`] once, when the cache takes it in; `None`: no attributes.
    pub attrs: Option<AttrsHook>,
}

impl CachedPrefix {
    /// `prefix` without attributes.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into(), attrs: None }
    }

    /// `prefix` with `attrs` computing each object's attributes.
    pub fn with_attrs(prefix: impl Into<String>, attrs: AttrsHook) -> Self {
        Self { prefix: prefix.into(), attrs: Some(attrs) }
    }
}

impl std::fmt::Debug for CachedPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedPrefix").field("prefix", &self.prefix).field("attrs", &self.attrs.is_some()).finish()
    }
}

/// What to cache and the cache's limits.
#[derive(Debug, Clone)]
pub struct CacherConfig {
    /// The prefixes to cache; none may lie inside another.
    pub prefixes: Vec<CachedPrefix>,
    /// Events kept per prefix for resuming watches (default 10,000).
    pub window_events: usize,
    /// Bytes of events (and their memoized encodings) kept per prefix (default 64 MiB).
    pub window_bytes: usize,
    /// Bytes of events that may wait for one watcher before it is closed (default 8 MiB).
    pub watcher_lag_bytes: usize,
    /// How long a read waits for the cache to reach a revision when the backend reports progress (default 3 s,
    /// as upstream), before going to the backend.
    pub fresh_timeout: Duration,
    /// The same when the backend reports progress only occasionally (etcd before 3.4.31/3.5.13; default 20 ms):
    /// only events can bring a quiet prefix there, so reads go to the backend sooner.
    pub fresh_timeout_without_progress: Duration,
}

impl CacherConfig {
    /// `prefixes` with the default limits.
    pub fn new(prefixes: impl IntoIterator<Item = CachedPrefix>) -> Self {
        Self {
            prefixes: prefixes.into_iter().collect(),
            window_events: 10_000,
            window_bytes: 64 * 1024 * 1024,
            watcher_lag_bytes: 8 * 1024 * 1024,
            fresh_timeout: Duration::from_secs(3),
            fresh_timeout_without_progress: Duration::from_millis(20),
        }
    }
}

/// How fresh a read without an exact revision must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// The latest state (resourceVersion unset): the cache waits until it has the backend's current revision.
    Consistent,
    /// Any state at or after this revision (resourceVersion="0" → 0, NotOlderThan=N → N): from memory at once.
    NotOlderThan(Revision),
}

/// A list from the cache: the objects themselves, shared.
#[derive(Debug, Clone)]
pub struct CachedList {
    /// In key order.
    pub items: Vec<Arc<CachedObject>>,
    /// The revision of the state listed.
    pub revision: Revision,
    /// True when more keys under the prefix follow the last item.
    pub more: bool,
    /// How many keys under the prefix follow the last item.
    pub remaining: i64,
}

/// The watch cache over a backend; see the module documentation.
pub struct Cacher {
    backend: Arc<dyn Storage>,
    revisions: Arc<RevisionReader>,
    caches: Vec<Arc<PrefixCache>>,
    metrics: Arc<CacheMetrics>,
    reflectors: Vec<tokio::task::AbortHandle>,
}

impl Drop for Cacher {
    fn drop(&mut self) {
        for reflector in &self.reflectors {
            reflector.abort();
        }
    }
}

/// Where a read is answered.
enum Source {
    Memory(Snapshot),
    Backend,
}

impl Cacher {
    /// Cache `config.prefixes` of `backend`: starts one reflector task per prefix (needs a tokio runtime), which
    /// lists and watches at once; reads fall back to the backend until its list is in ([`Self::wait_ready`]).
    /// `InvalidKey` when a prefix is malformed or lies inside another.
    pub fn new(backend: Arc<dyn Storage>, config: CacherConfig) -> Result<Self> {
        for (i, cached) in config.prefixes.iter().enumerate() {
            key::validate_key(&cached.prefix, true)?;
            if let Some(outer) = config.prefixes.iter().enumerate().find(|(j, other)| {
                *j != i && cached.prefix.starts_with(other.prefix.as_str()) && (other.prefix != cached.prefix || *j < i)
            }) {
                return Err(StorageError::InvalidKey {
                    key: cached.prefix.clone(),
                    reason: format!("the cached prefix lies inside the cached prefix {:?}", outer.1.prefix),
                });
            }
        }
        let metrics = Arc::new(CacheMetrics::default());
        let shared_config = Arc::new(CacherConfig { prefixes: Vec::new(), ..config.clone() });
        let caches: Vec<_> = config
            .prefixes
            .iter()
            .map(|p| {
                Arc::new(PrefixCache::new(p.prefix.clone(), p.attrs.clone(), shared_config.clone(), metrics.clone()))
            })
            .collect();
        let reflectors = caches
            .iter()
            .map(|cache| tokio::spawn(reflector::run(cache.clone(), backend.clone())).abort_handle())
            .collect();
        let revisions = RevisionReader::new(backend.clone(), metrics.clone());
        Ok(Self { backend, revisions, caches, metrics, reflectors })
    }

    /// The counters and gauges, for the apiserver to export.
    pub fn metrics(&self) -> &Arc<CacheMetrics> {
        &self.metrics
    }

    /// The storage it caches.
    pub fn backend(&self) -> &Arc<dyn Storage> {
        &self.backend
    }

    /// Whether every prefix has its initial list.
    pub fn is_ready(&self) -> bool {
        self.caches.iter().all(|c| c.is_ready())
    }

    /// Wait until every prefix has its initial list, at most `limit`; whether they have.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let wait = async {
            for cache in &self.caches {
                let mut changed = cache.subscribe();
                while !cache.is_ready() {
                    if changed.changed().await.is_err() {
                        return false;
                    }
                }
            }
            true
        };
        tokio::time::timeout(limit, wait).await.unwrap_or(false)
    }

    /// The cached prefix `key` (or prefix) lies in.
    fn cache_for(&self, key: &str) -> Option<&Arc<PrefixCache>> {
        self.caches.iter().find(|c| key.starts_with(c.prefix.as_str()))
    }

    fn fallback(&self) -> Source {
        metrics::count(&self.metrics.backend_fallbacks);
        Source::Backend
    }

    /// Where to answer a read of `[start, end)` in `cache`: at `exact`, or as fresh as `freshness` says.
    async fn source(
        &self,
        cache: &PrefixCache,
        exact: Option<Revision>,
        freshness: Freshness,
        start: &str,
        end: &str,
    ) -> Result<Source> {
        if !cache.is_ready() {
            return Ok(self.fallback());
        }
        let target = match (exact, freshness) {
            (Some(revision), _) => revision,
            (None, Freshness::Consistent) => self.revisions.current().await?,
            (None, Freshness::NotOlderThan(revision)) => revision,
        };
        let reached = {
            let state = cache.read();
            if let Some(revision) = exact {
                if revision < state.compacted {
                    return Err(StorageError::Compacted { requested: revision, compacted: state.compacted });
                }
                if revision < state.window.start() {
                    // Before the window: only the backend may still have it.
                    drop(state);
                    return Ok(self.fallback());
                }
            }
            state.revision >= target
        };
        if let Some(revision) = exact {
            // The window may still hold what the backend compacted since (not through this cache).
            match self.check_revision(revision).await {
                Err(StorageError::FutureRevision { .. }) => return Ok(self.fallback()),
                other => other?,
            }
        }
        if !reached {
            if exact.is_some() && self.revisions.current().await? < target {
                // A future revision: the backend says so.
                return Ok(self.fallback());
            }
            if !cache.wait_for(target, cache.fresh_wait()).await {
                return Ok(self.fallback());
            }
        }
        let state = cache.read();
        Ok(Source::Memory(match exact {
            Some(revision) if revision < state.revision => state.snapshot_at(revision, start, end),
            _ => state.snapshot(),
        }))
    }

    /// A list of `prefix` from the cache (or, when it cannot answer, the backend): with `opts.revision` set at
    /// that exact revision, else as fresh as `freshness` says. Objects outside the cached prefixes come without
    /// attributes.
    pub async fn list_cached(&self, prefix: &str, opts: ListOptions, freshness: Freshness) -> Result<CachedList> {
        key::validate_key(prefix, true)?;
        let start = key::list_start(prefix, opts.start_key.as_deref())?.to_string();
        let Some(cache) = self.cache_for(prefix) else {
            return Ok(wrap_list(self.backend_list(prefix, opts, freshness).await?, None));
        };
        let end = key::prefix_end(prefix);
        let exact = opts.revision.filter(|r| *r > 0);
        match self.source(cache, exact, freshness, &start, &end).await? {
            Source::Memory(snapshot) => {
                let (items, remaining) = snapshot.page(&start, &end, opts.limit.unwrap_or(0));
                metrics::count(&self.metrics.lists);
                self.metrics.listed_objects.fetch_add(items.len() as u64, std::sync::atomic::Ordering::Relaxed);
                Ok(CachedList { items, revision: snapshot.revision, more: remaining > 0, remaining })
            }
            Source::Backend => Ok(wrap_list(self.backend_list(prefix, opts, freshness).await?, cache.attrs.as_ref())),
        }
    }

    async fn backend_list(&self, prefix: &str, opts: ListOptions, freshness: Freshness) -> Result<ListResult> {
        match freshness {
            Freshness::Consistent => self.backend.list(prefix, opts).await,
            Freshness::NotOlderThan(min) => self.backend.list_not_older_than(prefix, opts, min).await,
        }
    }

    /// The cache's copy of the object at `key`, as it is now, without waiting or asking the backend: `None` when
    /// `key` is outside the cached prefixes, the cache has no list yet, or it does not hold the key. The copy may be
    /// behind the backend: a write that starts from it (upstream's `cachedExistingObject`) compares and swaps
    /// against the copy's revision, and checks with the backend whatever it does not write.
    pub fn peek(&self, key: &str) -> Option<Arc<CachedObject>> {
        let cache = self.cache_for(key)?;
        if !cache.is_ready() {
            return None;
        }
        cache.read().objects.get(key).cloned()
    }

    /// The object at `key` from the cache (or, when it cannot answer, the backend), as fresh as `freshness` says.
    pub async fn get_cached(&self, key: &str, freshness: Freshness) -> Result<Option<Arc<CachedObject>>> {
        key::validate_key(key, false)?;
        let Some(cache) = self.cache_for(key) else {
            return Ok(self.backend_get(key, freshness).await?.map(|kv| Arc::new(CachedObject::new(kv, None))));
        };
        match self.source(cache, None, freshness, key, key).await? {
            Source::Memory(snapshot) => Ok(snapshot.get(key)),
            Source::Backend => Ok(self
                .backend_get(key, freshness)
                .await?
                .map(|kv| Arc::new(CachedObject::new(kv, cache.attrs.as_ref())))),
        }
    }

    async fn backend_get(&self, key: &str, freshness: Freshness) -> Result<Option<KeyValue>> {
        match freshness {
            Freshness::Consistent => self.backend.get(key).await,
            Freshness::NotOlderThan(min) => self.backend.get_not_older_than(key, min).await,
        }
    }

    /// Watch `prefix` (ending with `/`, inside a cached prefix) from the cache: the events at revisions ≥
    /// `start_revision` (`0`: from now on, i.e. after the backend's current revision). A start revision whose
    /// events left the window (or were compacted) yields `Compacted` as the first item, as a backend does. While
    /// the cache has no list yet, the watch waits for it (at most `fresh_timeout`, then `Unavailable`).
    /// `InvalidKey` when `prefix` is not inside a cached prefix. The watcher is woken with `group`'s.
    pub async fn watch_cached(&self, prefix: &str, start_revision: Revision, group: WakeGroup) -> Result<CacheWatch> {
        key::validate_key(prefix, true)?;
        let Some(cache) = self.cache_for(prefix) else {
            return Err(StorageError::InvalidKey {
                key: prefix.to_string(),
                reason: "the prefix is not inside a cached prefix".into(),
            });
        };
        if !cache.is_ready() && !cache.wait_for(0, cache.config.fresh_timeout).await {
            return Err(StorageError::Unavailable("the watch cache is not ready".into()));
        }
        let after = if start_revision > 0 { start_revision - 1 } else { self.revisions.current().await? };
        {
            let state = cache.read();
            let oldest = state.compacted.max(state.window.start() + 1);
            if start_revision > 0 && start_revision < oldest {
                let compacted = StorageError::Compacted { requested: start_revision, compacted: oldest };
                return Ok(CacheWatch::failed(compacted));
            }
        }
        Ok(CacheWatch::new(cache.clone(), prefix.to_string(), after, group))
    }

    /// Watch `prefix` from `start_revision` (> 0) as a backend would — what a client's watch from its
    /// resourceVersion needs. The backend is asked first whether it still has that history (one cheap call):
    /// compacted → `Compacted` as the first item, even when the window still holds the events (a compaction this
    /// cache did not make). Inside the window → as [`Self::watch_cached`]; before it (a cache younger than the
    /// client's resourceVersion, e.g. after a restart) → a backend watch of its own until it reaches the window
    /// ([`CacheMetrics::backend_watches`]). A start revision of 0 is [`Self::watch_cached`]'s "from now on".
    pub async fn resume_watch(&self, prefix: &str, start_revision: Revision, group: WakeGroup) -> Result<CacheWatch> {
        key::validate_key(prefix, true)?;
        if start_revision <= 0 {
            return self.watch_cached(prefix, 0, group).await;
        }
        match self.check_revision(start_revision).await {
            Ok(()) | Err(StorageError::FutureRevision { .. }) => {}
            Err(compacted @ StorageError::Compacted { .. }) => return Ok(CacheWatch::failed(compacted)),
            Err(e) => return Err(e),
        }
        self.watch_or_bridge(prefix, start_revision, group).await
    }

    /// Watch `prefix` after a list of it at `list_revision` ([`Self::list_cached`]; sendInitialEvents, or a watch
    /// from resourceVersion "0" or unset): from the window, without a backend call, when the list came from
    /// memory; from a backend watch until it reaches the window when it did not (the cache was not ready).
    pub async fn watch_after_list(
        &self,
        prefix: &str,
        list_revision: Revision,
        group: WakeGroup,
    ) -> Result<CacheWatch> {
        key::validate_key(prefix, true)?;
        self.watch_or_bridge(prefix, list_revision + 1, group).await
    }

    /// [`Self::watch_cached`] when the window holds every event from `start_revision` on, else a bridged watch.
    async fn watch_or_bridge(&self, prefix: &str, start_revision: Revision, group: WakeGroup) -> Result<CacheWatch> {
        let Some(cache) = self.cache_for(prefix) else {
            return self.watch_cached(prefix, start_revision, group).await;
        };
        if !cache.is_ready() && !cache.wait_for(0, cache.config.fresh_timeout).await {
            return Err(StorageError::Unavailable("the watch cache is not ready".into()));
        }
        let before_window = {
            let state = cache.read();
            start_revision - 1 < state.window.start() && start_revision >= state.compacted
        };
        if !before_window {
            return self.watch_cached(prefix, start_revision, group).await;
        }
        let watch = self.backend.watch_with_progress(prefix, start_revision).await?;
        let after = start_revision - 1;
        Ok(CacheWatch::bridged(cache.clone(), prefix.to_string(), after, watch.items, watch.mode, group))
    }

    /// Ask the backend whether `revision` is compacted (see [`Storage::check_revision`]); a compaction it
    /// reports is remembered, so that older revisions are refused without asking again.
    async fn check_revision(&self, revision: Revision) -> Result<()> {
        metrics::count(&self.metrics.revision_checks);
        let checked = self.backend.check_revision(revision).await;
        if let Err(StorageError::Compacted { compacted, .. }) = &checked {
            for cache in &self.caches {
                cache.compacted(*compacted);
            }
        }
        checked
    }
}

fn wrap_list(list: ListResult, hook: Option<&AttrsHook>) -> CachedList {
    CachedList {
        items: list.items.into_iter().map(|kv| Arc::new(CachedObject::new(kv, hook))).collect(),
        revision: list.revision,
        more: list.more,
        remaining: list.remaining,
    }
}

fn unwrap_list(list: CachedList) -> ListResult {
    ListResult {
        items: list.items.iter().map(|o| o.kv().clone()).collect(),
        revision: list.revision,
        more: list.more,
        remaining: list.remaining,
    }
}

/// A lock that a panicked holder left behind is still usable: what it guards is replaced wholesale.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait::async_trait]
impl Storage for Cacher {
    /// Inside a cached prefix: a consistent read from memory (see [`Freshness::Consistent`]).
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.get_cached(key, Freshness::Consistent).await?.map(|o| o.kv().clone()))
    }

    /// Inside a cached prefix: from memory, consistent without `opts.revision`, else at that revision.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        Ok(unwrap_list(self.list_cached(prefix, opts, Freshness::Consistent).await?))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.backend.create(key, value).await
    }

    async fn update(&self, key: &str, value: Bytes, expected_revision: Revision) -> Result<KeyValue> {
        self.backend.update(key, value, expected_revision).await
    }

    async fn delete(&self, key: &str, expected_revision: Option<Revision>) -> Result<Deleted> {
        self.backend.delete(key, expected_revision).await
    }

    /// Inside a cached prefix: from the cache ([`Cacher::watch_cached`]); a watcher that lags ends with
    /// `Unavailable` (it may watch again from its last revision + 1).
    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream> {
        key::validate_key(prefix, true)?;
        if self.cache_for(prefix).is_none() {
            return self.backend.watch(prefix, start_revision).await;
        }
        let watch = self.watch_cached(prefix, start_revision, WakeGroup::default()).await?;
        Ok(Box::pin(watch.map(|item| item.map(|event| event.to_event()).map_err(StorageError::from))))
    }

    /// Inside a cached prefix: the cache's events, without progress.
    async fn watch_with_progress(&self, prefix: &str, start_revision: Revision) -> Result<ProgressWatch> {
        key::validate_key(prefix, true)?;
        if self.cache_for(prefix).is_none() {
            return self.backend.watch_with_progress(prefix, start_revision).await;
        }
        let events = self.watch(prefix, start_revision).await?;
        Ok(ProgressWatch { items: Box::pin(events.map(|e| e.map(WatchItem::Event))), mode: ProgressMode::Occasional })
    }

    /// Inside a cached prefix: from memory as soon as the cache has `min_revision`.
    async fn get_not_older_than(&self, key: &str, min_revision: Revision) -> Result<Option<KeyValue>> {
        Ok(self.get_cached(key, Freshness::NotOlderThan(min_revision)).await?.map(|o| o.kv().clone()))
    }

    /// Inside a cached prefix: from memory as soon as the cache has `min_revision`.
    async fn list_not_older_than(&self, prefix: &str, opts: ListOptions, min_revision: Revision) -> Result<ListResult> {
        Ok(unwrap_list(self.list_cached(prefix, opts, Freshness::NotOlderThan(min_revision)).await?))
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.backend.current_revision().await
    }

    async fn check_revision(&self, revision: Revision) -> Result<()> {
        self.check_revision(revision).await
    }

    /// Compacts the backend; the cache then refuses reads and watches below `revision` too.
    async fn compact(&self, revision: Revision) -> Result<()> {
        self.backend.compact(revision).await?;
        for cache in &self.caches {
            cache.compacted(revision);
        }
        Ok(())
    }

    async fn health(&self) -> Result<()> {
        self.backend.health().await
    }

    async fn rewrite_needed(&self, key: &str, mod_revision: Revision) -> Result<bool> {
        self.backend.rewrite_needed(key, mod_revision).await
    }
}
