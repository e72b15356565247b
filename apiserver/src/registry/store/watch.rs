//! Watch (`?watch=true`) in the generic store: storage events translated into Kubernetes watch events — ADDED,
//! MODIFIED, DELETED, with selectors (an object entering or leaving the selection is ADDED or DELETED), initial
//! ADDED events or a streaming list (`sendInitialEvents`, ending in a BOOKMARK marked `k8s.io/initial-events-end`),
//! periodic BOOKMARKs, an ERROR (410 Expired) for a compacted resourceVersion, and the end at `timeoutSeconds`.
//! The endpoint renders each event.
//!
//! Events come from the watch cache (one backend watch per resource whatever the number of watchers; initial
//! events from its memory) or, with `--watch-cache=false`, from a backend watch per watcher. A watch is a stream
//! the response pulls from as the client reads: nothing is queued per watcher beyond what its source holds (the
//! cache's cursor: at most a batch of shared events; a backend watch: its buffer). A client that stops reading
//! for [`SLOW_WATCHER_BUDGET`] while an event waits for it is cut off by the [`Watchdog`] — its source is
//! dropped and its response ends once the client reads again — and the cache closes a watcher that falls its
//! lag budget of bytes behind; the client resumes from the last resourceVersion it saw, or relists. The same
//! watchdog ends watches at their timeout and when the server stops, and marks their periodic bookmarks due: a
//! watch's own poll reads flags under the lock it already takes, with no timer or stop signal of its own to poll.
//!
//! endpoints/watch → **store watch** → selectors → reads (watch cache or storage watch).

use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use backup_storage::cacher::{CachedEvent, CachedObject, WakeGroup, WatchEnd};
use backup_storage::{EventType, Revision};
use futures::Stream;
use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Store;
use super::list::list;
use super::reads::Events;
use crate::error::{ApiError, ApiResult};
use crate::registry::selectors::Filter;
use crate::registry::strategy::Strategy;
use crate::request::options::ListOptions;

/// How often a bookmark is sent to a watcher that allowed them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// How long a watcher's client may leave its buffer full (read nothing of what the server holds for it) while
/// another event waits, before the watch is cut off: its client resumes from the last resourceVersion it saw, or
/// relists, as upstream's cacher closes a watcher whose buffer stays full. A client that stops reading holds
/// nothing for long; one that reads, however slowly, or that waits on an idle resource, is never cut off.
const SLOW_WATCHER_BUDGET: Duration = Duration::from_secs(1);
/// How often the watchdog looks for such watchers, for watches past their timeout and for bookmarks due: a watch
/// ends at most this long after its `timeoutSeconds`.
const WATCHDOG_INTERVAL: Duration = Duration::from_millis(250);

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
    },
    /// A BOOKMARK at `revision`; `initial_events_end` marks the end of a streaming list's initial events.
    Bookmark { revision: Revision, initial_events_end: bool },
    /// The watch cannot go on (e.g. 410 Expired); it is the last event.
    Error(ApiError),
}

impl Store {
    /// Start a watch of `namespace` (None = all) with `opts`; from the cache, it is woken with `group`'s watchers
    /// (those of the client's HTTP/2 connection).
    pub async fn watch(&self, namespace: Option<&str>, opts: &ListOptions, group: WakeGroup) -> ApiResult<WatchEvents> {
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
            let events = self.reads.watch_after_list(&prefix, page.revision, group).await;
            let start = page.revision + 1;
            (Some(page), start, events)
        } else {
            let rv = opts.resource_version.unwrap_or(0);
            (None, rv + 1, self.reads.watch_after(&prefix, rv, group).await)
        };
        let timeout = Duration::from_secs(opts.timeout_seconds.unwrap_or_else(|| {
            let min = self.tuning.min_request_timeout.max(1);
            rand::rng().random_range(min..2 * min)
        }));
        let (source, failed) = match events {
            Ok(events) => (Some(events), None),
            Err(e) => (None, Some(ApiError::from(e))),
        };
        let now = Instant::now();
        let watched = Arc::new(Watched(Mutex::new(Source {
            events: source,
            peeked: None,
            pulled_at: None,
            delivered: false,
            // A timeout past what the clock can count (any client may send any number) is no timeout.
            deadline: now.checked_add(timeout),
            next_bookmark: opts.allow_bookmarks.then(|| now + BOOKMARK_INTERVAL),
            bookmark_due: false,
            ending: None,
            waker: None,
        })));
        self.watchdog.watch(&watched);
        let (initial, initial_end) = match initial_page {
            Some(page) => (page.items, opts.send_initial_events.then_some(page.revision)),
            None => (Vec::new(), None),
        };
        Ok(WatchEvents {
            watched,
            sequence: Sequence {
                initial: initial.into_iter(),
                initial_end,
                failed,
                translator: Translator { filter, strategy: self.strategy.clone() },
                allow_bookmarks: opts.allow_bookmarks,
                last_rv: start_revision - 1,
                done: false,
            },
        })
    }
}

/// The events of one watch, as the client reads them; the stream ends when the watch does.
pub struct WatchEvents {
    watched: Arc<Watched>,
    sequence: Sequence,
}

/// What a watch sends, in order, beside what it shares with the watchdog.
struct Sequence {
    /// The initial state (ADDED events), first.
    initial: std::vec::IntoIter<Arc<CachedObject>>,
    /// Then, for a streaming list, the bookmark that ends the initial events.
    initial_end: Option<Revision>,
    /// The watch could not start: this error, then the end.
    failed: Option<ApiError>,
    translator: Translator,
    allow_bookmarks: bool,
    /// The revision of the last storage event seen.
    last_rv: Revision,
    done: bool,
}

/// What a watch shares with the [`Watchdog`], under one lock (the client's side polls with it held, so the
/// watchdog never polls the source while the client's side waits on it).
struct Watched(Mutex<Source>);

type SourceItem = Option<std::result::Result<Arc<CachedEvent>, WatchEnd>>;

/// Why the watchdog ends a watch whose source goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Its `timeoutSeconds` passed: a last bookmark (when allowed), then the end.
    TimedOut,
    /// The server stops: the end, at once.
    Stopped,
}

struct Source {
    /// `None` once cut off.
    events: Option<Events>,
    /// What the watchdog took from `events` to see whether an event waits: the client's side gets it first.
    peeked: Option<SourceItem>,
    /// When the client's side last asked for an event and got one (what `delivered` needs).
    pulled_at: Option<Instant>,
    /// The last ask got one: the client's side asks again as soon as it has written it (HTTP/1.1: into its
    /// bounded buffer; HTTP/2: within the stream's flow-control window), without being woken.
    delivered: bool,
    /// When the watch times out (`timeoutSeconds`), if the clock can count that far.
    deadline: Option<Instant>,
    /// When its next periodic bookmark is due, if it allowed bookmarks.
    next_bookmark: Option<Instant>,
    /// The watchdog found a bookmark due: the client's side sends one.
    bookmark_due: bool,
    /// Set by the watchdog: the watch ends.
    ending: Option<Ending>,
    /// The client's side's waker, from its last poll that found nothing: the watchdog wakes it.
    waker: Option<Waker>,
}

impl Source {
    /// The client's side has not asked for more for `budget` since it got an event: what the server holds for
    /// it is full.
    fn full_for(&self, budget: Duration, now: Instant) -> bool {
        self.delivered && self.pulled_at.is_some_and(|at| now.duration_since(at) >= budget)
    }

    /// What waits for the client (polling the source without a waker: the client's side asks again by itself,
    /// see `delivered`).
    fn waiting(&mut self) -> Waiting {
        let Some(events) = self.events.as_mut() else { return Waiting::Nothing };
        if self.peeked.is_none() {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            if let Poll::Ready(item) = events.poll_next(&mut cx) {
                self.peeked = Some(item);
            }
        }
        match self.peeked {
            None => Waiting::Nothing,
            Some(Some(Ok(_))) => Waiting::Event,
            Some(_) => Waiting::End,
        }
    }
}

/// What a watch's source holds for its client.
enum Waiting {
    Nothing,
    Event,
    /// The source ended (e.g. the cache closed it for lagging): only its end waits.
    End,
}

impl Sequence {
    /// A bookmark at the source's progress (or the last event's revision while an event taken from the source
    /// waits in `peeked`: the source's progress may count it as sent).
    fn bookmark(&self, source: &Source) -> WatchEvent {
        let progress = if source.peeked.is_some() { None } else { source.events.as_ref().and_then(Events::revision) };
        let revision = progress.map_or(self.last_rv, |r| r.max(self.last_rv));
        WatchEvent::Bookmark { revision, initial_events_end: false }
    }

    fn next_event(&mut self, source: &mut Source, cx: &mut Context<'_>) -> Poll<Option<WatchEvent>> {
        if self.done || source.ending == Some(Ending::Stopped) {
            self.done = true;
            return Poll::Ready(None);
        }
        if let Some(object) = self.initial.next() {
            let revision = object.kv().mod_revision;
            return Poll::Ready(Some(object_event(WatchEventType::Added, object, revision, None)));
        }
        if let Some(revision) = self.initial_end.take() {
            return Poll::Ready(Some(WatchEvent::Bookmark { revision, initial_events_end: true }));
        }
        if let Some(error) = self.failed.take() {
            self.done = true;
            return Poll::Ready(Some(WatchEvent::Error(error)));
        }
        if source.ending == Some(Ending::TimedOut) {
            self.done = true;
            return Poll::Ready(self.allow_bookmarks.then(|| self.bookmark(source)));
        }
        if std::mem::take(&mut source.bookmark_due) {
            return Poll::Ready(Some(self.bookmark(source)));
        }
        loop {
            let next = match (source.peeked.take(), source.events.as_mut()) {
                (Some(item), _) => Poll::Ready(item),
                (None, Some(events)) => events.poll_next(cx),
                (None, None) => {
                    // Cut off by the watchdog.
                    self.done = true;
                    return Poll::Ready(None);
                }
            };
            match next {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    self.done = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(WatchEnd::Lagged { resume_from }))) => {
                    tracing::info!(resume_from, "closing a watch that fell behind the watch cache");
                    self.done = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(WatchEnd::Failed(e)))) => {
                    self.done = true;
                    return Poll::Ready(Some(WatchEvent::Error(e.into())));
                }
                Poll::Ready(Some(Ok(ev))) => {
                    self.last_rv = ev.revision();
                    if let Some(out) = self.translator.translate(&ev) {
                        return Poll::Ready(Some(out));
                    }
                }
            }
        }
    }
}

impl Stream for WatchEvents {
    type Item = WatchEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WatchEvent>> {
        // Borrowed, not cloned: an `Arc` clone is a shared write to a line that, among 10,000 watchers, is
        // rarely in this core's cache.
        let WatchEvents { watched, sequence } = self.get_mut();
        let mut source = lock(&watched.0);
        let next = sequence.next_event(&mut source, cx);
        source.delivered = matches!(next, Poll::Ready(Some(_)));
        if source.delivered {
            // The clock is read once per event, not at every poll.
            source.pulled_at = Some(Instant::now());
        } else if next.is_pending() && !source.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            source.waker = Some(cx.waker().clone());
        }
        if sequence.done {
            // Nothing more is read from the source: release it now, not when the response is dropped (which waits
            // for the client to take what was written).
            source.events = None;
            source.peeked = None;
        }
        next
    }
}

/// A lock that a panicked holder left behind is still usable: what it guards is a plain value.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn object_event(
    event_type: WatchEventType,
    object: Arc<CachedObject>,
    revision: Revision,
    shared: Option<Arc<CachedEvent>>,
) -> WatchEvent {
    WatchEvent::Object { event_type, object, revision, shared }
}

/// Ends a store's watches that the client's side would not end by itself, every [`WATCHDOG_INTERVAL`]: those at
/// their timeout, and all of them when the server stops (`stopping` turns true); marks their periodic bookmarks
/// due; and cuts off the watches whose client has read nothing for [`SLOW_WATCHER_BUDGET`] while an event waits
/// for it: drops their source (the cache's cursor, or the backend watch), so they hold nothing more; their
/// response ends once the client reads again. One task per store, started with its first watch.
pub struct Watchdog {
    watches: Mutex<Vec<Weak<Watched>>>,
    started: OnceLock<()>,
    stopping: watch::Receiver<bool>,
}

impl Watchdog {
    /// A watchdog whose watches end when `stopping` turns true (never, if its sender is dropped first).
    pub fn new(stopping: watch::Receiver<bool>) -> Self {
        Self { watches: Mutex::default(), started: OnceLock::new(), stopping }
    }

    fn watch(self: &Arc<Self>, watched: &Arc<Watched>) {
        // Under the list's lock, which `stop` takes after the stop is sent: a watch is either listed before `stop`
        // ends the listed ones, or sees the stop here and ends at once.
        let mut watches = lock(&self.watches);
        if *self.stopping.borrow() {
            lock(&watched.0).ending = Some(Ending::Stopped);
        } else {
            watches.push(Arc::downgrade(watched));
        }
        drop(watches);
        self.started.get_or_init(|| {
            let watchdog = Arc::downgrade(self);
            let mut stopping = self.stopping.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(WATCHDOG_INTERVAL);
                let mut can_stop = true;
                loop {
                    tokio::select! {
                        _ = ticks.tick() => {
                            let Some(watchdog) = watchdog.upgrade() else { return };
                            watchdog.sweep();
                        }
                        stopped = stopping.wait_for(|s| *s), if can_stop => {
                            if stopped.is_err() {
                                // Its sender is gone: nothing will stop these watches but their own ends.
                                can_stop = false;
                                continue;
                            }
                            if let Some(watchdog) = watchdog.upgrade() {
                                watchdog.stop();
                            }
                            return;
                        }
                    }
                }
            });
        });
    }

    /// End every watch listed (those that start later see the stop themselves).
    fn stop(&self) {
        let mut wake = Vec::new();
        let mut watches = lock(&self.watches);
        for watched in watches.drain(..).filter_map(|w| w.upgrade()) {
            let mut source = lock(&watched.0);
            source.ending = Some(Ending::Stopped);
            wake.extend(source.waker.take());
        }
        drop(watches);
        wake.into_iter().for_each(Waker::wake);
    }

    fn sweep(&self) {
        let now = Instant::now();
        let mut full = Vec::new();
        let mut wake = Vec::new();
        lock(&self.watches).retain(|w| {
            let Some(watched) = w.upgrade() else { return false };
            let mut source = lock(&watched.0);
            if source.events.is_none() || source.ending.is_some() {
                return false;
            }
            if source.deadline.is_some_and(|at| now >= at) {
                source.ending = Some(Ending::TimedOut);
                wake.extend(source.waker.take());
                return false;
            }
            if source.next_bookmark.is_some_and(|at| now >= at) {
                source.next_bookmark = Some(now + BOOKMARK_INTERVAL);
                source.bookmark_due = true;
                wake.extend(source.waker.take());
            }
            if source.full_for(SLOW_WATCHER_BUDGET, now) {
                drop(source);
                full.push(watched);
            }
            true
        });
        wake.into_iter().for_each(Waker::wake);
        // Outside the list's lock: polling a source takes the cache's.
        for watched in full {
            let mut source = lock(&watched.0);
            if !source.full_for(SLOW_WATCHER_BUDGET, now) {
                continue;
            }
            match source.waiting() {
                Waiting::Nothing => {}
                Waiting::Event => {
                    tracing::info!(budget = ?SLOW_WATCHER_BUDGET, "closing a watch whose client stopped reading");
                    source.events = None;
                    source.peeked = None;
                }
                // Release the source (a closed cache watcher still counts until dropped); its end stays in
                // `peeked` for the client.
                Waiting::End => source.events = None,
            }
        }
    }
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
            |event_type, object: &Arc<CachedObject>| object_event(event_type, object.clone(), rev, Some(ev.clone()));
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
