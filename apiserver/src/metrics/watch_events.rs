//! `apiserver_watch_events_total` and `apiserver_watch_events_sizes` (by group, version and kind), as upstream
//! counts them: every event line sent to every watcher, and its bytes.
//!
//! metrics filter (a watch's body) → **these counters** → `/metrics`.
//!
//! A delivery is the hot path of a fan-out (10,000 watchers × every event), so nothing there is shared: each watch
//! counts into its own [`WatchEventCounts`], registered here while it is open; a scrape sums the open watches and
//! what the closed ones left. Its one writer (the watch's body) updates them with plain loads and stores (no
//! locked instruction), on cache lines of their own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

use super::WatchLabels;

/// Upstream's buckets: 1 KiB to 128 KiB by doubling (then +Inf).
const BUCKETS: [f64; 8] = [1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0, 65536.0, 131072.0];

/// The counts of one watch, alone on their cache lines (two, for the adjacent-line prefetcher), so that watches
/// counting on different cores do not take lines from each other.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Counts {
    events: AtomicU64,
    bytes: AtomicU64,
    /// Events per bucket of [`BUCKETS`], the last for +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
}

/// Sums over watches.
#[derive(Debug, Default, Clone)]
struct Totals {
    events: u64,
    bytes: u64,
    buckets: [u64; BUCKETS.len() + 1],
}

impl Totals {
    fn add(&mut self, counts: &Counts) {
        self.events += counts.events.load(Ordering::Relaxed);
        self.bytes += counts.bytes.load(Ordering::Relaxed);
        for (total, bucket) in self.buckets.iter_mut().zip(&counts.buckets) {
            *total += bucket.load(Ordering::Relaxed);
        }
    }
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    open: HashMap<u64, (WatchLabels, Arc<Counts>)>,
    closed: HashMap<WatchLabels, Totals>,
}

/// Every watch's counts.
#[derive(Debug, Default, Clone)]
pub struct WatchEventCounters(Arc<Mutex<Registry>>);

/// One open watch's counts; they join the closed watches' totals when it is dropped.
#[derive(Debug)]
pub struct WatchEventCounts {
    id: u64,
    counts: Arc<Counts>,
    registry: WatchEventCounters,
}

impl WatchEventCounters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts for a watch of `labels`' kind, from now until dropped.
    pub fn open(&self, labels: WatchLabels) -> WatchEventCounts {
        let counts = Arc::new(Counts::default());
        let mut registry = self.lock();
        let id = registry.next_id;
        registry.next_id += 1;
        registry.open.insert(id, (labels, counts.clone()));
        WatchEventCounts { id, counts, registry: self.clone() }
    }
}

impl WatchEventCounts {
    /// One event line of `bytes` sent. Only the watch's body calls it (`&mut`): the counts have one writer, so a
    /// load and a store suffice where a read-modify-write would lock the bus.
    pub fn record(&mut self, bytes: usize) {
        let c = &self.counts;
        let add = |counter: &AtomicU64, n: u64| counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        add(&c.events, 1);
        add(&c.bytes, bytes as u64);
        let bucket = BUCKETS.iter().position(|&le| bytes as f64 <= le).unwrap_or(BUCKETS.len());
        add(&c.buckets[bucket], 1);
    }
}

impl Drop for WatchEventCounts {
    fn drop(&mut self) {
        let mut registry = self.registry.lock();
        if let Some((labels, counts)) = registry.open.remove(&self.id) {
            registry.closed.entry(labels).or_default().add(&counts);
        }
    }
}

impl Collector for WatchEventCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = {
            let registry = self.lock();
            let mut totals = registry.closed.clone();
            for (labels, counts) in registry.open.values() {
                totals.entry(labels.clone()).or_default().add(counts);
            }
            totals
        };
        if totals.is_empty() {
            return Ok(());
        }
        let mut events = encoder.encode_descriptor(
            "apiserver_watch_events",
            "Number of events sent in watch clients",
            None,
            MetricType::Counter,
        )?;
        for (labels, t) in &totals {
            ConstCounter::new(t.events).encode(events.encode_family(labels)?)?;
        }
        let mut sizes = encoder.encode_descriptor(
            "apiserver_watch_events_sizes",
            "Watch event size distribution in bytes",
            None,
            MetricType::Histogram,
        )?;
        for (labels, t) in &totals {
            let bounds = BUCKETS.iter().copied().chain([f64::INFINITY]);
            let buckets: Vec<(f64, u64)> = bounds.zip(t.buckets.iter().copied()).collect();
            sizes.encode_family(labels)?.encode_histogram::<NoLabelSet>(t.bytes as f64, t.events, &buckets, None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_open_and_closed_watches_into_upstreams_buckets() {
        let counters = WatchEventCounters::default();
        let labels = WatchLabels { group: "g", version: "v1", kind: "K" };
        let mut a = counters.open(labels.clone());
        let mut b = counters.open(labels.clone());
        for bytes in [100, 1024, 1025, 200_000] {
            a.record(bytes);
        }
        b.record(5000);
        drop(a);
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(counters.clone()));
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"apiserver_watch_events_total{group="g",version="v1",kind="K"} 5"#,
            r#"apiserver_watch_events_sizes_sum{group="g",version="v1",kind="K"} 207149.0"#,
            r#"apiserver_watch_events_sizes_bucket{le="1024.0",group="g",version="v1",kind="K"} 2"#,
            r#"apiserver_watch_events_sizes_bucket{le="2048.0",group="g",version="v1",kind="K"} 3"#,
            r#"apiserver_watch_events_sizes_bucket{le="8192.0",group="g",version="v1",kind="K"} 4"#,
            r#"apiserver_watch_events_sizes_bucket{le="+Inf",group="g",version="v1",kind="K"} 5"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        drop(b);
        assert!(counters.lock().open.is_empty());
    }
}
