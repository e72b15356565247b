//! Watch (`?watch=true`) in the generic store: storage events translated into Kubernetes watch events — ADDED,
//! MODIFIED, DELETED, with selectors (an object entering or leaving the selection is ADDED or DELETED), initial
//! ADDED events or a streaming list (`sendInitialEvents`, ending in a BOOKMARK marked `k8s.io/initial-events-end`),
//! periodic BOOKMARKs, an ERROR (410 Expired) for a compacted resourceVersion, and the end at `timeoutSeconds`.
//! The endpoint renders each event.
//!
//! Events come from the watch cache (one backend watch per resource whatever the number of watchers; initial
//! events from its memory) or, with `--watch-cache=false`, from a backend watch per watcher. Either way each
//! watcher has one task that translates events into a buffer bounded in count and bytes: a client that stops
//! reading for [`SLOW_WATCHER_BUDGET`] (or, on the cache, falls its lag budget of bytes behind) is cut off and
//! its response ends cleanly; it resumes from the last resourceVersion it saw, or relists.
//!
//! endpoints/watch → **store watch** → selectors → reads (watch cache or storage watch).

use std::sync::Arc;
use std::time::Duration;

use backup_storage::cacher::{CachedEvent, CachedObject, WatchEnd};
use backup_storage::{EventType, Revision};
use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::Store;
use super::list::list;
use super::reads::Events;
use crate::error::{ApiError, ApiResult};
use crate::registry::selectors::Filter;
use crate::registry::strategy::Strategy;
use crate::request::options::ListOptions;

/// How often a bookmark is sent to a watcher that allowed them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// Default watch duration when the client gives no timeoutSeconds: random in [30, 60) minutes, as upstream.
const MIN_REQUEST_TIMEOUT: u64 = 1800;
/// Events buffered per watcher before the translating task waits for the client.
const WATCHER_BUFFER: usize = 64;
/// Bytes of objects buffered per watcher (an event larger than this waits for an empty buffer).
const WATCHER_BUFFER_BYTES: usize = 1024 * 1024;
/// Bytes counted per buffered object beyond its stored value.
const EVENT_OVERHEAD_BYTES: usize = 128;
/// How long a watcher may keep its buffer full before it is cut off (its client resumes from the last
/// resourceVersion it saw, or relists), so a client that stops reading holds nothing for long.
const SLOW_WATCHER_BUDGET: Duration = Duration::from_secs(10);

/// The type of an object event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
}

impl WatchEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One event of a watch.
#[derive(Debug)]
pub enum WatchEvent {
    /// An object event: the object to show (for DELETED its last state) at the resourceVersion to show.
    Object {
        event_type: WatchEventType,
        object: Arc<CachedObject>,
        revision: Revision,
        /// The storage event it translates, on which every watcher that renders it alike shares one rendering
        /// ([`CachedEvent::encoded`]); `None` for the initial events of a list.
        shared: Option<Arc<CachedEvent>>,
        /// Its share of the watcher's buffer, given back when the event is dropped (once written).
        buffered: Buffered,
    },
    /// A BOOKMARK at `revision`; `initial_events_end` marks the end of a streaming list's initial events.
    Bookmark { revision: Revision, initial_events_end: bool },
    /// The watch cannot go on (e.g. 410 Expired); it is the last event.
    Error(ApiError),
}

/// Bytes of a watcher's buffer held by one event (given back when it is dropped).
#[derive(Debug, Default)]
pub struct Buffered {
    _held: Option<OwnedSemaphorePermit>,
}

/// The events of one watch, ending when the watch does.
pub type WatchEvents = mpsc::Receiver<WatchEvent>;

impl Store {
    /// Start a watch of `namespace` (None = all) with `opts`.
    pub async fn watch(&self, namespace: Option<&str>, opts: &ListOptions) -> ApiResult<WatchEvents> {
        let filter = Filter::new(&self.strategy, &opts.label_selector, &opts.field_selector)?;
        let initial = opts.send_initial_events || matches!(opts.resource_version, None | Some(0));
        let prefix = self.prefix(namespace);
        let (initial_page, start_revision, events) = if initial {
            // The state as the list semantics say (unset: consistent; "0": any; "N": not older than N), then the
            // events after it.
            let mut list_opts = opts.clone();
            list_opts.limit = None;
            list_opts.continue_token = None;
            let page = list(self, namespace, &list_opts, &filter).await?;
            let events = self.reads.watch_after_list(&prefix, page.revision).await;
            let start = page.revision + 1;
            (Some(page), start, events)
        } else {
            let rv = opts.resource_version.unwrap_or(0);
            (None, rv + 1, self.reads.watch_after(&prefix, rv).await)
        };
        let timeout = Duration::from_secs(
            opts.timeout_seconds
                .unwrap_or_else(|| rand::rng().random_range(MIN_REQUEST_TIMEOUT..2 * MIN_REQUEST_TIMEOUT)),
        );
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
        let out = Outbox { tx, bytes: Arc::new(Semaphore::new(WATCHER_BUFFER_BYTES)) };
        let translator = Translator { filter, strategy: self.strategy.clone() };
        let allow_bookmarks = opts.allow_bookmarks;
        let send_initial_events = opts.send_initial_events;
        tokio::spawn(async move {
            let mut last_rv = start_revision - 1;
            if let Some(page) = initial_page {
                for object in page.items {
                    let revision = object.kv().mod_revision;
                    let ev = Outbox::object(WatchEventType::Added, object, revision, None);
                    if !out.deliver(ev).await {
                        return;
                    }
                }
                if send_initial_events {
                    let ev = WatchEvent::Bookmark { revision: page.revision, initial_events_end: true };
                    if !out.deliver(ev).await {
                        return;
                    }
                }
            }
            let mut events = match events {
                Ok(s) => s,
                Err(e) => {
                    out.deliver(WatchEvent::Error(e.into())).await;
                    return;
                }
            };
            let bookmark = |events: &Events, last_rv: Revision| WatchEvent::Bookmark {
                revision: events.revision().map_or(last_rv, |r| r.max(last_rv)),
                initial_events_end: false,
            };
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut bookmarks =
                tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_INTERVAL, BOOKMARK_INTERVAL);
            loop {
                tokio::select! {
                    _ = &mut deadline => {
                        if allow_bookmarks {
                            out.deliver(bookmark(&events, last_rv)).await;
                        }
                        return;
                    }
                    _ = bookmarks.tick(), if allow_bookmarks => {
                        if !out.deliver(bookmark(&events, last_rv)).await {
                            return;
                        }
                    }
                    _ = out.tx.closed() => return,
                    next = events.next() => match next {
                        None => return,
                        Some(Err(WatchEnd::Lagged { resume_from })) => {
                            tracing::info!(resume_from, "closing a watch that fell behind the watch cache");
                            return;
                        }
                        Some(Err(WatchEnd::Failed(e))) => {
                            out.deliver(WatchEvent::Error(e.into())).await;
                            return;
                        }
                        Some(Ok(ev)) => {
                            last_rv = ev.revision();
                            if let Some(out_ev) = translator.translate(&ev)
                                && !out.deliver(out_ev).await {
                                    return;
                                }
                        }
                    },
                }
            }
        });
        Ok(rx)
    }
}

/// A watcher's buffer: at most [`WATCHER_BUFFER`] events and [`WATCHER_BUFFER_BYTES`] bytes of objects.
struct Outbox {
    tx: mpsc::Sender<WatchEvent>,
    bytes: Arc<Semaphore>,
}

impl Outbox {
    fn object(
        event_type: WatchEventType,
        object: Arc<CachedObject>,
        revision: Revision,
        shared: Option<Arc<CachedEvent>>,
    ) -> WatchEvent {
        WatchEvent::Object { event_type, object, revision, shared, buffered: Buffered::default() }
    }

    /// Hand `ev` to the watcher: false when it is gone, or when its buffer stayed full for
    /// [`SLOW_WATCHER_BUDGET`].
    async fn deliver(&self, mut ev: WatchEvent) -> bool {
        let deadline = tokio::time::Instant::now() + SLOW_WATCHER_BUDGET;
        if let WatchEvent::Object { object, buffered, .. } = &mut ev {
            let size = (object.value().len() + EVENT_OVERHEAD_BYTES).min(WATCHER_BUFFER_BYTES);
            let permits = u32::try_from(size).unwrap_or(u32::MAX);
            let permit = match self.bytes.clone().try_acquire_many_owned(permits) {
                Ok(permit) => permit,
                Err(_) => match tokio::time::timeout_at(deadline, self.bytes.clone().acquire_many_owned(permits)).await
                {
                    Ok(Ok(permit)) => permit,
                    _ => return cut_off(),
                },
            };
            *buffered = Buffered { _held: Some(permit) };
        }
        match self.tx.try_send(ev) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(ev)) => match tokio::time::timeout_at(deadline, self.tx.send(ev)).await
            {
                Ok(sent) => sent.is_ok(),
                Err(_) => cut_off(),
            },
        }
    }
}

fn cut_off() -> bool {
    tracing::info!(budget = ?SLOW_WATCHER_BUDGET, "closing a watch whose client stopped reading");
    false
}

/// Storage events → watch events, through the request's selectors.
struct Translator {
    filter: Filter,
    strategy: Arc<Strategy>,
}

impl Translator {
    /// Whether a stored object matches (one that cannot be decoded does not).
    fn matches(&self, object: &CachedObject) -> bool {
        self.filter.matches_object(&self.strategy, object) == Ok(true)
    }

    /// The watch event for a storage event, or None when the selectors filter it out.
    fn translate(&self, ev: &Arc<CachedEvent>) -> Option<WatchEvent> {
        let rev = ev.revision();
        let object =
            |event_type, object: &Arc<CachedObject>| Outbox::object(event_type, object.clone(), rev, Some(ev.clone()));
        match ev.event_type() {
            EventType::Put => {
                let current = ev.object()?;
                let now = self.matches(current);
                let before = ev.prev().filter(|p| self.matches(p));
                let created = ev.created();
                match (now, before) {
                    (true, Some(_)) if !created => Some(object(WatchEventType::Modified, current)),
                    (true, _) => Some(object(WatchEventType::Added, current)),
                    // Stopped matching: DELETED with the last state that matched, at this revision.
                    (false, Some(prev)) if !created => Some(object(WatchEventType::Deleted, prev)),
                    (false, _) => None,
                }
            }
            EventType::Delete => {
                let prev = ev.prev().filter(|p| self.matches(p))?;
                Some(object(WatchEventType::Deleted, prev))
            }
        }
    }
}
