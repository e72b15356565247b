//! The window: the recent events of one cached prefix, bounded by count and by bytes, which watches replay from
//! when they start at a past revision, and which watchers read live events from (each with its own cursor).
//!
//! reflector → state + **window** → watchers. Events leave at the front when a limit is passed; the revision of
//! the last one that left is the window's start: every event after it is here.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use super::metrics::{self, CacheMetrics};
use super::object::{Accounting, CachedEvent, CachedObject};
use crate::Revision;

pub(super) struct Window {
    events: VecDeque<Arc<CachedEvent>>,
    /// Every event after this revision is in `events`.
    start: Revision,
    /// Bytes of the events (their memoized encodings are counted in `accounting`).
    bytes: usize,
    /// The running count of bytes pushed: where the next event starts.
    next_offset: u64,
    accounting: Arc<Accounting>,
    max_events: usize,
    max_bytes: usize,
}

impl Window {
    pub fn new(start: Revision, max_events: usize, max_bytes: usize, metrics: Arc<CacheMetrics>) -> Self {
        let accounting = Arc::new(Accounting { memo_bytes: AtomicI64::new(0), metrics });
        Self {
            events: VecDeque::new(),
            start,
            bytes: 0,
            next_offset: 0,
            accounting,
            max_events: max_events.max(1),
            max_bytes,
        }
    }

    /// Forget every event: the window starts after `start`.
    pub fn reset(&mut self, start: Revision) {
        while self.evict_front() {}
        self.start = start;
    }

    /// Every event after `start()` is in the window.
    pub fn start(&self) -> Revision {
        self.start
    }

    /// Where the next event will start in the running count of bytes.
    pub fn head_offset(&self) -> u64 {
        self.next_offset
    }

    /// Append the event of `revision` (after every event in the window), then evict to the limits.
    pub fn push(
        &mut self,
        revision: Revision,
        object: Option<Arc<CachedObject>>,
        prev: Option<Arc<CachedObject>>,
    ) -> Arc<CachedEvent> {
        let event = Arc::new(CachedEvent::new(revision, object, prev, self.accounting.clone(), self.next_offset));
        let size = event.size();
        self.next_offset += size as u64;
        self.bytes += size;
        self.events.push_back(event.clone());
        metrics::count(&self.accounting.metrics.events_dispatched);
        metrics::add(&self.accounting.metrics.window_events, 1);
        metrics::add(&self.accounting.metrics.window_bytes, size as i64);
        while self.events.len() > self.max_events || self.total_bytes() > self.max_bytes {
            if self.events.len() <= 1 || !self.evict_front() {
                break;
            }
        }
        event
    }

    fn total_bytes(&self) -> usize {
        self.bytes + usize::try_from(self.accounting.memo_bytes.load(Ordering::Relaxed)).unwrap_or(0)
    }

    fn evict_front(&mut self) -> bool {
        let Some(event) = self.events.pop_front() else { return false };
        self.start = event.revision();
        let (size, memo) = (event.size(), event.retire());
        self.bytes -= size;
        self.accounting.memo_bytes.fetch_sub(memo as i64, Ordering::Relaxed);
        metrics::add(&self.accounting.metrics.window_events, -1);
        metrics::add(&self.accounting.metrics.window_bytes, -((size + memo) as i64));
        true
    }

    /// The index of the first event after `revision`.
    pub fn index_after(&self, revision: Revision) -> usize {
        self.events.partition_point(|e| e.revision() <= revision)
    }

    pub fn get(&self, index: usize) -> Option<&Arc<CachedEvent>> {
        self.events.get(index)
    }

    /// The events after `revision`, oldest first.
    pub fn after(&self, revision: Revision) -> impl DoubleEndedIterator<Item = &Arc<CachedEvent>> {
        self.events.range(self.index_after(revision)..)
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        while self.evict_front() {}
    }
}
