//! A watch served from the cache: a cursor into its prefix's window, read by the consumer's own task.
//!
//! reflector → window → **watcher** → the apiserver's watch handler. Nothing is pushed or copied per watcher: the
//! reflector appends each event once and wakes every watcher; each takes `Arc`s of the events after its cursor,
//! keeping those under its own prefix (a namespace). A watcher is closed when it lags: when more than
//! `watcher_lag_bytes` of events arrived since it last read (checked by the reflector's sweep, so a consumer
//! that never reads is closed too), when events it has not read left the window, or when the cache relisted.
//! Its consumer then watches again from [`WatchEnd::Lagged`]'s revision (or relists on 410).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::watch;

use super::metrics;
use super::object::CachedEvent;
use super::prefix::{PrefixCache, WatcherShared};
use crate::{Revision, StorageError};

/// Events taken from the window per lock.
const BATCH: usize = 256;

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
    /// `None` for a watch that only fails.
    shared: Option<Arc<WatcherShared>>,
}

impl CacheWatch {
    pub(super) fn new(cache: Arc<PrefixCache>, filter: String, after: Revision) -> Self {
        let (id, shared) = cache.register(after);
        let generation = cache.read().generation;
        let changed = cache.subscribe();
        let cursor = Cursor {
            registration: Registration { cache, id },
            shared: shared.clone(),
            filter,
            revision: after,
            generation,
            changed,
            pending: VecDeque::new(),
            done: false,
        };
        let inner = futures::stream::unfold(cursor, |mut cursor| async move {
            let item = cursor.next().await?;
            Some((item, cursor))
        });
        Self { inner: Box::pin(inner), shared: Some(shared) }
    }

    /// A watch whose only item is `error`.
    pub(super) fn failed(error: StorageError) -> Self {
        Self { inner: Box::pin(futures::stream::iter([Err(WatchEnd::Failed(error))])), shared: None }
    }

    /// Every event under the prefix up to this revision has been yielded: the revision of a bookmark. It
    /// advances with the cache's progress while no event is pending, i.e. when the consumer waits for the next.
    pub fn revision(&self) -> Revision {
        self.shared.as_ref().map_or(0, |s| s.progress.load(Ordering::Acquire))
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
    async fn next(&mut self) -> Option<Result<Arc<CachedEvent>, WatchEnd>> {
        if self.done {
            return None;
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                metrics::count(&self.registration.cache.metrics.events_dispatched);
                let yielded = if self.pending.is_empty() { self.revision } else { event.revision() };
                self.shared.progress.store(yielded, Ordering::Release);
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
        self.changed.borrow_and_update();
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
        while self.pending.len() < BATCH {
            let Some(event) = state.window.get(index) else { break };
            self.revision = event.revision();
            if event.key().starts_with(&self.filter) {
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
            self.shared.progress.store(self.revision, Ordering::Release);
            Fill::Empty
        } else {
            Fill::Some
        }
    }
}
