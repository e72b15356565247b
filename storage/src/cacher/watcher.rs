//! A watch served from the cache: a cursor into its prefix's window, read by the consumer's own task.
//!
//! reflector → window → **watcher** → the apiserver's watch handler. Nothing is pushed or copied per watcher: the
//! reflector appends each event once and wakes every watcher, one [`WakeGroup`] after another; each takes `Arc`s
//! of the events after its cursor, keeping those under its own prefix (a namespace). A watcher is closed when it
//! lags: when more than `watcher_lag_bytes` of events arrived since it last read (checked by the reflector's
//! sweep, so a consumer that never reads is closed too), when events it has not read left the window, or when the
//! cache relisted. Its consumer then watches again from [`WatchEnd::Lagged`]'s revision (or relists on 410).
//!
//! A watch resumed from before the window (e.g. a client of the previous process, whose cache started later) is
//! *bridged*: it reads a backend watch of its own until that reaches the window, then becomes a cursor too.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::watch;

use super::metrics;
use super::object::CachedEvent;
use super::prefix::{PrefixCache, WatcherShared};
use crate::{ProgressMode, ProgressStream, Revision, StorageError, WatchItem};

/// Events taken from the window per lock, and at most about this many bytes of them: what a watcher holds of
/// the window beyond its cursor (events that leave the window meanwhile stay alive only through it).
const BATCH: usize = 256;
const BATCH_BYTES: usize = 256 * 1024;

/// Which watchers the cache wakes one after another, as a group: those whose events go out on one HTTP/2
/// connection (the API server gives each connection's watches its own group; [`WakeGroup::default`] is the group
/// of every other watcher). Each watcher queues its events on its stream from its own task, and the connection
/// writes what its streams queued when its task next runs ([`crate::gather`]); woken together, one connection's
/// watchers run one after another and its task writes their events in a few writes, where woken in no order
/// they ran among every other connection's and it wrote a few events at a time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct WakeGroup(pub u64);

/// Why a watch from the cache ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEnd {
    /// It fell behind and was closed: watch again from `resume_from` (a 410 then, if that left the window).
    Lagged { resume_from: Revision },
    /// It cannot go on (e.g. `Compacted` as its first item, for a start revision outside the window).
    Failed(StorageError),
}

impl From<WatchEnd> for StorageError {
    /// As a [`WatchStream`](crate::WatchStream) reports it: a lagging watcher ends with `Unavailable`.
    fn from(end: WatchEnd) -> Self {
        match end {
            WatchEnd::Lagged { resume_from } => StorageError::Unavailable(format!(
                "the watch fell behind and was closed; watch again from revision {resume_from}"
            )),
            WatchEnd::Failed(e) => e,
        }
    }
}

/// A watch from the cache: a stream of the events under its prefix after its start revision, in order, each the
/// same `Arc` every watcher gets; it ends with one `Err`.
pub struct CacheWatch {
    inner: Pin<Box<dyn Stream<Item = Result<Arc<CachedEvent>, WatchEnd>> + Send>>,
    /// Every event up to this revision has been yielded (see [`Self::revision`]).
    progress: Arc<AtomicI64>,
}

impl CacheWatch {
    pub(super) fn new(cache: Arc<PrefixCache>, filter: String, after: Revision, group: WakeGroup) -> Self {
        let progress = Arc::new(AtomicI64::new(after));
        let cursor = Cursor::new(cache, filter, after, progress.clone(), group);
        let inner = futures::stream::unfold(cursor, |mut cursor| async move {
            let item = cursor.next().await?;
            Some((item, cursor))
        });
        Self { inner: Box::pin(inner), progress }
    }

    /// A watch whose only item is `error`.
    pub(super) fn failed(error: StorageError) -> Self {
        let inner = Box::pin(futures::stream::iter([Err(WatchEnd::Failed(error))]));
        Self { inner, progress: Arc::new(AtomicI64::new(0)) }
    }

    /// A watch that starts on a backend watch of its own (`items`, from `after` + 1 on), for a start revision
    /// older than the window, and moves to the window once what it has seen reaches it (an event or a progress
    /// notification at or after the window's start): from then on it is a watch like any other.
    pub(super) fn bridged(
        cache: Arc<PrefixCache>,
        filter: String,
        after: Revision,
        items: ProgressStream,
        mode: ProgressMode,
        group: WakeGroup,
    ) -> Self {
        let progress = Arc::new(AtomicI64::new(after));
        let counted = OnBackend::new(cache.metrics.clone());
        let bridge =
            Bridge { cache, filter, seen: after, items, mode, progress: progress.clone(), group, _counted: counted };
        let phase = Phase::Backend(Box::new(bridge));
        let inner = futures::stream::unfold(phase, |phase| async move {
            let (item, phase) = phase.next().await?;
            Some((item, phase))
        });
        Self { inner: Box::pin(inner), progress }
    }

    /// Every event under the prefix up to this revision has been yielded: the revision of a bookmark. It
    /// advances with the cache's progress while no event is pending, i.e. when the consumer waits for the next.
    pub fn revision(&self) -> Revision {
        self.progress.load(Ordering::Acquire)
    }
}

impl Stream for CacheWatch {
    type Item = Result<Arc<CachedEvent>, WatchEnd>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Removes the watcher from the registry when the watch is dropped.
struct Registration {
    cache: Arc<PrefixCache>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.cache.deregister(self.id);
    }
}

struct Cursor {
    registration: Registration,
    shared: Arc<WatcherShared>,
    progress: Arc<AtomicI64>,
    /// Only events under this prefix.
    filter: String,
    /// Every event up to this revision has been taken.
    revision: Revision,
    generation: u64,
    changed: watch::Receiver<u64>,
    pending: VecDeque<Arc<CachedEvent>>,
    done: bool,
}

enum Fill {
    Some,
    Empty,
    End(WatchEnd),
}

impl Cursor {
    fn new(
        cache: Arc<PrefixCache>,
        filter: String,
        after: Revision,
        progress: Arc<AtomicI64>,
        group: WakeGroup,
    ) -> Self {
        let (id, shared) = cache.register();
        let generation = cache.read().generation;
        let changed = cache.subscribe_group(group);
        Cursor {
            registration: Registration { cache, id },
            shared,
            progress,
            filter,
            revision: after,
            generation,
            changed,
            pending: VecDeque::new(),
            done: false,
        }
    }

    async fn next(&mut self) -> Option<Result<Arc<CachedEvent>, WatchEnd>> {
        if self.done {
            return None;
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                let yielded = if self.pending.is_empty() { self.revision } else { event.revision() };
                self.progress.store(yielded, Ordering::Release);
                return Some(Ok(event));
            }
            match self.fill() {
                Fill::Some => {}
                Fill::Empty => {
                    if self.changed.changed().await.is_err() {
                        self.done = true;
                        let closed = StorageError::Unavailable("the watch cache was closed".into());
                        return Some(Err(WatchEnd::Failed(closed)));
                    }
                }
                Fill::End(end) => {
                    self.done = true;
                    return Some(Err(end));
                }
            }
        }
    }

    /// Take the next events from the window.
    fn fill(&mut self) -> Fill {
        // Marked seen before the window is read, so that a wake during the read is not lost (only the version is
        // read: the channel's value says nothing).
        self.changed.mark_unchanged();
        let cache = &self.registration.cache;
        let lagged = WatchEnd::Lagged { resume_from: self.revision + 1 };
        if self.shared.closed.load(Ordering::Acquire) {
            return Fill::End(lagged);
        }
        let state = cache.read();
        if state.generation != self.generation || self.revision < state.window.start() {
            self.shared.close_lagging(&cache.metrics);
            return Fill::End(lagged);
        }
        let mut index = state.window.index_after(self.revision);
        let mut bytes = 0;
        while self.pending.len() < BATCH && bytes < BATCH_BYTES {
            let Some(event) = state.window.get(index) else { break };
            self.revision = event.revision();
            if event.key().starts_with(&self.filter) {
                bytes += event.size();
                self.pending.push_back(event.clone());
            }
            index += 1;
        }
        let next_offset = match state.window.get(index) {
            Some(event) => event.offset,
            None => {
                // Caught up: everything up to the state's revision has been seen.
                self.revision = self.revision.max(state.revision);
                state.window.head_offset()
            }
        };
        self.shared.next_offset.store(next_offset, Ordering::Release);
        if self.pending.is_empty() {
            self.progress.store(self.revision, Ordering::Release);
            Fill::Empty
        } else {
            Fill::Some
        }
    }
}

/// How often a watch still on its backend watch asks the backend for progress (when the backend answers such
/// requests), so that it can move to the window even when its prefix is quiet.
const BRIDGE_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Where a bridged watch is: on its own backend watch, or on the window.
enum Phase {
    Backend(Box<Bridge>),
    Cache(Cursor),
    Done,
}

/// The backend phase of a bridged watch.
struct Bridge {
    cache: Arc<PrefixCache>,
    filter: String,
    /// Every event up to this revision has been seen (yielded when under `filter`).
    seen: Revision,
    items: ProgressStream,
    mode: ProgressMode,
    progress: Arc<AtomicI64>,
    /// The group its cursor joins once it reaches the window.
    group: WakeGroup,
    _counted: OnBackend,
}

/// Counts a bridged watch in [`CacheMetrics::backend_watchers`](super::CacheMetrics::backend_watchers) while it
/// is on its backend watch.
struct OnBackend(Arc<super::CacheMetrics>);

impl OnBackend {
    fn new(metrics: Arc<super::CacheMetrics>) -> Self {
        metrics::count(&metrics.backend_watches);
        metrics::add(&metrics.backend_watchers, 1);
        Self(metrics)
    }
}

impl Drop for OnBackend {
    fn drop(&mut self) {
        metrics::add(&self.0.backend_watchers, -1);
    }
}

impl Phase {
    async fn next(self) -> Option<(Result<Arc<CachedEvent>, WatchEnd>, Phase)> {
        match self {
            Phase::Done => None,
            Phase::Cache(mut cursor) => {
                let item = cursor.next().await?;
                Some((item, Phase::Cache(cursor)))
            }
            Phase::Backend(mut bridge) => loop {
                if bridge.reached_window() {
                    let Bridge { cache, filter, seen, progress, group, .. } = *bridge;
                    let mut cursor = Cursor::new(cache.clone(), filter, seen, progress, group);
                    let item = cursor.next().await?;
                    return Some((item, Phase::Cache(cursor)));
                }
                let item = tokio::select! {
                    item = bridge.items.next() => item,
                    () = tokio::time::sleep(BRIDGE_PROGRESS_INTERVAL) => {
                        if let ProgressMode::OnRequest(requester) = &bridge.mode {
                            requester.request();
                        }
                        continue;
                    }
                };
                match item {
                    Some(Ok(WatchItem::Event(event))) => {
                        bridge.seen = event.revision();
                        bridge.progress.store(bridge.seen, Ordering::Release);
                        if !event.kv.key.starts_with(&bridge.filter) {
                            continue;
                        }
                        let event = Arc::new(CachedEvent::detached(event, bridge.cache.attrs.as_ref()));
                        return Some((Ok(event), Phase::Backend(bridge)));
                    }
                    Some(Ok(WatchItem::Progress(revision))) => {
                        bridge.seen = bridge.seen.max(revision);
                        bridge.progress.store(bridge.seen, Ordering::Release);
                    }
                    Some(Err(e)) => return Some((Err(WatchEnd::Failed(e)), Phase::Done)),
                    None => {
                        let ended = StorageError::Unavailable("the backend watch ended".into());
                        return Some((Err(WatchEnd::Failed(ended)), Phase::Done));
                    }
                }
            },
        }
    }
}

impl Bridge {
    /// Whether every event after what it has seen is in the window.
    fn reached_window(&self) -> bool {
        let state = self.cache.read();
        state.ready && self.seen >= state.window.start()
    }
}
