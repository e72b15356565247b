//! One cached prefix: its state behind a lock, the signal that wakes watchers and waiting reads when the state
//! changes, how its backend watch reports progress, and the registry of its watchers.
//!
//! reflector → **prefix cache** (apply, replace, sweep) → reads (wait until fresh, snapshot) and watchers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::metrics::{self, CacheMetrics};
use super::object::{AttrsHook, CachedObject};
use super::state::State;
use super::watcher::WakeGroup;
use super::window::Window;
use super::{CacherConfig, lock};
use crate::{EventType, ProgressMode, Result, Revision, StorageError, WatchItem};

/// How often a read that waits for a revision asks the backend for progress again.
const PROGRESS_RETRY: Duration = Duration::from_millis(100);

pub(super) struct PrefixCache {
    /// The cached prefix, ending with `/`.
    pub prefix: String,
    pub attrs: Option<AttrsHook>,
    state: RwLock<State>,
    /// Bumped after every change of the state: watchers and waiting reads wake up.
    changed: watch::Sender<u64>,
    /// The same for the watchers of each [`WakeGroup`] but the default one, woken group after group.
    groups: Mutex<Groups>,
    /// How the backend watch reports progress (set by the reflector for each backend watch).
    progress: Mutex<ProgressMode>,
    watchers: Mutex<HashMap<u64, Arc<WatcherShared>>>,
    next_watcher: AtomicU64,
    pub metrics: Arc<CacheMetrics>,
    pub config: Arc<CacherConfig>,
}

/// The wake groups of a prefix's watchers. A group whose watchers have all gone is dropped at the next wake, or
/// when new groups have doubled the map since it was last pruned (so that groups opened and left while the prefix
/// is quiet stay bounded by twice the live ones).
struct Groups {
    senders: HashMap<WakeGroup, watch::Sender<u64>>,
    /// Prune before adding a group once there are this many.
    prune_at: usize,
}

/// The fewest groups pruned for.
const MIN_PRUNE_AT: usize = 64;

impl Groups {
    fn prune(&mut self) {
        self.senders.retain(|_, group| group.receiver_count() > 0);
        self.prune_at = (2 * self.senders.len()).max(MIN_PRUNE_AT);
    }
}

/// What the registry knows of one watcher, for closing it when it lags.
pub(super) struct WatcherShared {
    /// The window offset of the next event it will read.
    pub next_offset: AtomicU64,
    /// The window's head offset when it started: the backlog it began with does not count as lag.
    pub base_offset: u64,
    /// Closed for lagging (set once).
    pub closed: AtomicBool,
}

impl WatcherShared {
    /// Mark it closed; whether this call did (and counted it).
    pub fn close_lagging(&self, metrics: &CacheMetrics) -> bool {
        let first = !self.closed.swap(true, Ordering::AcqRel);
        if first {
            metrics::count(&metrics.watchers_closed_lagging);
        }
        first
    }
}

/// A change for the state, prepared outside its lock.
enum Change {
    Put(Arc<CachedObject>, Option<crate::KeyValue>),
    Delete(String, Revision, Option<crate::KeyValue>),
    Progress(Revision),
}

impl PrefixCache {
    pub fn new(
        prefix: String,
        attrs: Option<AttrsHook>,
        config: Arc<CacherConfig>,
        metrics: Arc<CacheMetrics>,
    ) -> Self {
        let window = Window::new(0, config.window_events, config.window_bytes, metrics.clone());
        Self {
            prefix,
            attrs,
            state: RwLock::new(State::new(window, metrics.clone())),
            changed: watch::Sender::new(0),
            groups: Mutex::new(Groups { senders: HashMap::new(), prune_at: MIN_PRUNE_AT }),
            progress: Mutex::new(ProgressMode::Occasional),
            watchers: Mutex::new(HashMap::new()),
            next_watcher: AtomicU64::new(0),
            metrics,
            config,
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Changes for a watcher of `group`: the default group's are [`Self::subscribe`]'s.
    pub fn subscribe_group(&self, group: WakeGroup) -> watch::Receiver<u64> {
        if group == WakeGroup::default() {
            return self.subscribe();
        }
        let mut groups = lock(&self.groups);
        if !groups.senders.contains_key(&group) && groups.senders.len() >= groups.prune_at {
            groups.prune();
        }
        groups.senders.entry(group).or_insert_with(|| watch::Sender::new(0)).subscribe()
    }

    fn wake(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        let mut groups = lock(&self.groups);
        for group in groups.senders.values() {
            group.send_modify(|n| *n = n.wrapping_add(1));
        }
        groups.prune();
    }

    pub fn is_ready(&self) -> bool {
        self.read().ready
    }

    pub fn set_progress_mode(&self, mode: ProgressMode) {
        *lock(&self.progress) = mode;
    }

    /// How long a read may wait for the cache to reach a revision: long when the backend reports progress on a
    /// quiet prefix, short when only events can bring the cache there.
    pub fn fresh_wait(&self) -> Duration {
        match *lock(&self.progress) {
            ProgressMode::Continuous | ProgressMode::OnRequest(_) => self.config.fresh_timeout,
            ProgressMode::Occasional => self.config.fresh_timeout_without_progress,
        }
    }

    pub fn request_progress(&self) {
        if let ProgressMode::OnRequest(requester) = &*lock(&self.progress) {
            requester.request();
            metrics::count(&self.metrics.progress_requests);
        }
    }

    /// Wait until the cache is ready and has reached `target`, at most `limit`; whether it has.
    pub async fn wait_for(&self, target: Revision, limit: Duration) -> bool {
        let mut changed = self.subscribe();
        let wait = async {
            loop {
                changed.borrow_and_update();
                {
                    let state = self.read();
                    if state.ready && state.revision >= target {
                        return true;
                    }
                }
                self.request_progress();
                if let Ok(Err(_)) = tokio::time::timeout(PROGRESS_RETRY, changed.changed()).await {
                    return false;
                }
            }
        };
        tokio::time::timeout(limit, wait).await.unwrap_or(false)
    }

    /// Replace the state with a fresh list at `revision` (watchers of the old state are closed by the new
    /// generation).
    pub fn replace(&self, objects: Vec<Arc<CachedObject>>, revision: Revision) {
        self.write().replace(objects, revision);
        self.wake();
    }

    /// Apply a batch of the backend watch's items in order; the error that ended the watch, if one did.
    pub fn apply(&self, batch: Vec<Result<WatchItem>>) -> Result<()> {
        let mut changes = Vec::with_capacity(batch.len());
        let mut failure = None;
        for item in batch {
            match item {
                Ok(WatchItem::Event(event)) => match event.event_type {
                    EventType::Put => changes
                        .push(Change::Put(Arc::new(CachedObject::new(event.kv, self.attrs.as_ref())), event.prev)),
                    EventType::Delete => {
                        changes.push(Change::Delete(event.kv.key, event.kv.mod_revision, event.prev));
                    }
                },
                Ok(WatchItem::Progress(revision)) => changes.push(Change::Progress(revision)),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        {
            let mut state = self.write();
            for change in changes {
                match change {
                    Change::Put(object, prev) if object.kv().mod_revision > state.revision => {
                        state.put(object, prev);
                    }
                    Change::Delete(key, revision, prev) if revision > state.revision => {
                        state.delete(&key, revision, prev);
                    }
                    Change::Progress(revision) => state.revision = state.revision.max(revision),
                    // Already applied (a backend never repeats events; be safe).
                    Change::Put(..) | Change::Delete(..) => {}
                }
            }
            if let Some(StorageError::Compacted { compacted, .. }) = &failure {
                state.compacted = state.compacted.max(*compacted);
            }
        }
        self.wake();
        failure.map_or(Ok(()), Err)
    }

    /// Note a compaction of the backend at `revision`.
    pub fn compacted(&self, revision: Revision) {
        let mut state = self.write();
        state.compacted = state.compacted.max(revision);
    }

    /// Register a watcher starting now; its id and shared part.
    pub fn register(&self) -> (u64, Arc<WatcherShared>) {
        let base_offset = self.read().window.head_offset();
        let shared =
            Arc::new(WatcherShared { next_offset: AtomicU64::new(0), base_offset, closed: AtomicBool::new(false) });
        let id = self.next_watcher.fetch_add(1, Ordering::Relaxed);
        lock(&self.watchers).insert(id, shared.clone());
        metrics::add(&self.metrics.watchers, 1);
        (id, shared)
    }

    pub fn deregister(&self, id: u64) {
        if lock(&self.watchers).remove(&id).is_some() {
            metrics::add(&self.metrics.watchers, -1);
        }
    }

    /// Close the watchers that have more than their budget of bytes waiting for them, and wake them.
    pub fn sweep_watchers(&self) {
        let head = self.read().window.head_offset();
        let budget = self.config.watcher_lag_bytes as u64;
        let mut closed = false;
        for watcher in lock(&self.watchers).values() {
            let read_to = watcher.next_offset.load(Ordering::Acquire).max(watcher.base_offset);
            if head.saturating_sub(read_to) > budget && !watcher.closed.load(Ordering::Acquire) {
                closed |= watcher.close_lagging(&self.metrics);
            }
        }
        if closed {
            self.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

    use std::future::Future;
    use std::task::{Context, Poll, Wake, Waker};

    use super::*;
    use crate::cacher::CachedPrefix;

    /// A waker that records its name when woken.
    struct Named(&'static str, Arc<Mutex<Vec<&'static str>>>);

    impl Wake for Named {
        fn wake(self: Arc<Self>) {
            self.1.lock().unwrap().push(self.0);
        }
    }

    /// Each group's watchers are woken one after another, whatever order they subscribed in; a group leaves
    /// the cache once its last watcher has.
    #[test]
    fn watchers_are_woken_group_after_group() {
        let config = Arc::new(CacherConfig::new([CachedPrefix::new("/p/")]));
        let cache = PrefixCache::new("/p/".into(), None, config, Arc::new(CacheMetrics::default()));
        let order = Arc::new(Mutex::new(Vec::new()));
        let subscribed = [
            ("a1", WakeGroup(1)),
            ("b1", WakeGroup(2)),
            ("d1", WakeGroup::default()),
            ("a2", WakeGroup(1)),
            ("b2", WakeGroup(2)),
            ("a3", WakeGroup(1)),
            ("d2", WakeGroup::default()),
            ("b3", WakeGroup(2)),
        ];
        let mut receivers: Vec<_> =
            subscribed.iter().map(|(name, group)| (*name, cache.subscribe_group(*group))).collect();
        {
            let mut waiting: Vec<_> = receivers
                .iter_mut()
                .map(|(name, rx)| {
                    let waker = Waker::from(Arc::new(Named(name, order.clone())));
                    let mut changed = Box::pin(rx.changed());
                    assert!(changed.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
                    changed
                })
                .collect();
            cache.wake();
            for changed in &mut waiting {
                let waker = Waker::noop();
                assert!(matches!(changed.as_mut().poll(&mut Context::from_waker(waker)), Poll::Ready(Ok(()))));
            }
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order.len(), subscribed.len(), "every watcher woken once: {order:?}");
        for group in ["a", "b", "d"] {
            let at: Vec<usize> = (0..order.len()).filter(|&i| order[i].starts_with(group)).collect();
            assert_eq!(at.len(), if group == "d" { 2 } else { 3 }, "{order:?}");
            assert_eq!(at[at.len() - 1] - at[0], at.len() - 1, "group {group} woken together: {order:?}");
        }

        receivers.retain(|(name, _)| !name.starts_with('b'));
        cache.wake();
        assert_eq!(
            lock(&cache.groups).senders.keys().copied().collect::<Vec<_>>(),
            vec![WakeGroup(1)],
            "group 2 is gone"
        );
    }

    /// Groups left while the prefix is quiet (no wake to drop them) stay bounded: a client that opens
    /// connections one after another, each with a watch it then closes, does not grow the map without end.
    #[test]
    fn groups_left_without_a_wake_are_dropped_as_new_ones_come() {
        let config = Arc::new(CacherConfig::new([CachedPrefix::new("/p/")]));
        let cache = PrefixCache::new("/p/".into(), None, config, Arc::new(CacheMetrics::default()));
        let live: Vec<_> = (1..=10).map(|n| cache.subscribe_group(WakeGroup(n))).collect();
        for n in 11..=1_000 {
            drop(cache.subscribe_group(WakeGroup(n)));
        }
        let groups = lock(&cache.groups);
        assert!(groups.senders.len() <= MIN_PRUNE_AT, "{} groups kept", groups.senders.len());
        assert!((1..=10).all(|n| groups.senders.contains_key(&WakeGroup(n))), "the live groups stay");
        drop(live);
    }
}
