//! The watch cache's counters: plain atomics, updated where the work happens (reflector, reads, watchers) and
//! read by the apiserver, which owns the Prometheus registry and exports them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Gauges (`i64`, summed over the cached prefixes) and counters (`u64`, only growing) of one [`Cacher`](super::Cacher).
#[derive(Debug, Default)]
pub struct CacheMetrics {
    /// Objects held.
    pub objects: AtomicI64,
    /// Bytes of the objects held (keys and stored values).
    pub object_bytes: AtomicI64,
    /// Events in the windows kept for resuming watches.
    pub window_events: AtomicI64,
    /// Bytes of those events, and of the encodings memoized on them.
    pub window_bytes: AtomicI64,
    /// Open watches served by the cache.
    pub watchers: AtomicI64,
    /// Events dispatched to the watchers: one per event whatever the number of watchers, as upstream counts
    /// `apiserver_watch_cache_events_dispatched_total`.
    pub events_dispatched: AtomicU64,
    /// Watches closed because they fell behind (their consumer read too slowly).
    pub watchers_closed_lagging: AtomicU64,
    /// Reads sent to the backend because the cache could not answer them (not ready, not fresh in time, a
    /// revision outside the window).
    pub backend_fallbacks: AtomicU64,
    /// Lists of a prefix from the backend after the first (after a compaction or a broken watch).
    pub relists: AtomicU64,
    /// Encodings made and memoized on events ([`CachedEvent::encoded`](super::CachedEvent::encoded)).
    pub encodings: AtomicU64,
    /// Progress notifications asked of the backend.
    pub progress_requests: AtomicU64,
    /// Reads of the backend's current revision (consistent reads waiting at once share one).
    pub revision_reads: AtomicU64,
    /// Questions to the backend whether a past revision was compacted (before serving it from memory).
    pub revision_checks: AtomicU64,
    /// Watches that resumed before the window and began on a backend watch of their own.
    pub backend_watches: AtomicU64,
    /// Of those, the ones still on their backend watch (not yet caught up with the window).
    pub backend_watchers: AtomicI64,
    /// Lists answered from memory.
    pub lists: AtomicU64,
    /// Objects those lists read from memory.
    pub listed_objects: AtomicU64,
}

/// The values of [`CacheMetrics`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheMetricsSnapshot {
    pub objects: i64,
    pub object_bytes: i64,
    pub window_events: i64,
    pub window_bytes: i64,
    pub watchers: i64,
    pub events_dispatched: u64,
    pub watchers_closed_lagging: u64,
    pub backend_fallbacks: u64,
    pub relists: u64,
    pub encodings: u64,
    pub progress_requests: u64,
    pub revision_reads: u64,
    pub revision_checks: u64,
    pub backend_watches: u64,
    pub backend_watchers: i64,
    pub lists: u64,
    pub listed_objects: u64,
}

impl CacheMetrics {
    /// Every value, read one after the other (not atomically together).
    pub fn snapshot(&self) -> CacheMetricsSnapshot {
        let gauge = |g: &AtomicI64| g.load(Ordering::Relaxed);
        let counter = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheMetricsSnapshot {
            objects: gauge(&self.objects),
            object_bytes: gauge(&self.object_bytes),
            window_events: gauge(&self.window_events),
            window_bytes: gauge(&self.window_bytes),
            watchers: gauge(&self.watchers),
            events_dispatched: counter(&self.events_dispatched),
            watchers_closed_lagging: counter(&self.watchers_closed_lagging),
            backend_fallbacks: counter(&self.backend_fallbacks),
            relists: counter(&self.relists),
            encodings: counter(&self.encodings),
            progress_requests: counter(&self.progress_requests),
            revision_reads: counter(&self.revision_reads),
            revision_checks: counter(&self.revision_checks),
            backend_watches: counter(&self.backend_watches),
            backend_watchers: gauge(&self.backend_watchers),
            lists: counter(&self.lists),
            listed_objects: counter(&self.listed_objects),
        }
    }
}

pub(super) fn add(gauge: &AtomicI64, delta: i64) {
    gauge.fetch_add(delta, Ordering::Relaxed);
}

pub(super) fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
