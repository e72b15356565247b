//! `/metrics` in Prometheus text: request counts and durations per verb/resource/code, requests the server
//! refused in self-defence, open watches, storage operation durations (through [`InstrumentedStorage`], which wraps
//! any backend, below the watch cache: it counts only what reaches etcd) and object counts ([`storage_objects`]),
//! TLS handshake errors, the watch cache's gauges and counters ([`WatchCacheCollector`]), and the process's
//! ([`process`]).

pub mod encryption;
pub mod process;
pub mod storage_objects;
pub mod watch_events;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use backup_storage::cacher::CacheMetrics;
use backup_storage::{Deleted, KeyValue, ListOptions, ListResult, ProgressWatch, Revision, Storage, WatchStream};
use bytes::Bytes;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The request metrics' labels are the served resources' own names or fixed words (anything else is counted with
/// empty labels), so a request's label set borrows them and allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: &'static str,
    pub dry_run: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    pub scope: &'static str,
    pub component: &'static str,
    pub code: u16,
}

/// `apiserver_request_terminations_total`'s labels: the request's, without `dry_run`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TerminationLabels {
    pub verb: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    pub scope: &'static str,
    pub component: &'static str,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub verb: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    pub scope: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
}

/// A request's labels without its code or dry run: `apiserver_longrunning_requests`', `apiserver_response_sizes`'.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub verb: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    pub scope: &'static str,
    pub component: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InFlightLabels {
    pub request_kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StorageLabels {
    pub operation: String,
    pub r#type: String,
}

/// Upstream's response size buckets: 1 kB to 10 GB, by tens.
fn size_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(1000.0, 10.0, 8))
}

fn duration_histogram() -> Histogram {
    Histogram::new([0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0])
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub durations: Family<DurationLabels, Histogram, fn() -> Histogram>,
    pub watchers: Family<WatchLabels, Gauge>,
    /// Requests that stay open (watches), as upstream's `apiserver_longrunning_requests`.
    pub longrunning: Family<RouteLabels, Gauge>,
    /// Bytes of each answer but a watch's, as the handler wrote them (before gzip).
    pub response_sizes: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub storage: Family<StorageLabels, Histogram, fn() -> Histogram>,
    /// Requests held under the max-in-flight limits, per `request_kind` (`readOnly`, `mutating`).
    pub in_flight: Family<InFlightLabels, Gauge>,
    /// Requests refused at the max-in-flight limits, per `request_kind`.
    pub dropped: Family<InFlightLabels, Counter>,
    /// Requests the server ended in self-defence (429 at the max-in-flight limits, 504 at the request timeout).
    pub terminations: Family<TerminationLabels, Counter>,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_errors: Counter,
    /// Objects stored per resource (`<plural>.<group>`), counted in storage every poll period.
    pub storage_objects: Family<storage_objects::ResourceLabels, Gauge>,
    /// The watch cache's counters, once it is built.
    watch_cache: Arc<OnceLock<Arc<CacheMetrics>>>,
    /// The encryption providers' counts, once the backend is open with encryption.
    encryption: encryption::TransformationCollector,
    /// Events sent to watchers, and their sizes.
    pub watch_events: watch_events::WatchEventCounters,
    /// Reloads of the encryption configuration, by outcome.
    pub encryption_reloads: Family<encryption::ReloadLabels, Counter>,
    /// Audit events queued for the log.
    pub audit_events: Counter,
    /// Audit events lost (queue full or a failed write).
    pub audit_errors: Family<PluginLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let durations =
            Family::<DurationLabels, Histogram, fn() -> Histogram>::new_with_constructor(duration_histogram);
        let watchers = Family::<WatchLabels, Gauge>::default();
        let storage = Family::<StorageLabels, Histogram, fn() -> Histogram>::new_with_constructor(duration_histogram);
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, group, version, resource, subresource and scope.",
            durations.clone(),
        );
        registry.register(
            "apiserver_registered_watchers",
            "Number of currently registered watchers for a given resources",
            watchers.clone(),
        );
        let response_sizes = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(size_histogram);
        registry.register(
            "apiserver_response_sizes",
            "Response size distribution in bytes for each group, version, verb, resource, subresource, scope and component.",
            response_sizes.clone(),
        );
        let longrunning = Family::<RouteLabels, Gauge>::default();
        registry.register(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component. Not all requests are tracked this way.",
            longrunning.clone(),
        );
        registry.register(
            "etcd_request_duration_seconds",
            "Storage request latency in seconds for each operation and object type.",
            storage.clone(),
        );
        let in_flight = Family::<InFlightLabels, Gauge>::default();
        registry.register(
            "apiserver_current_inflight_requests",
            "Number of requests being served under the max-in-flight limits, per request kind.",
            in_flight.clone(),
        );
        let dropped = Family::<InFlightLabels, Counter>::default();
        registry.register(
            "apiserver_dropped_requests",
            "Number of requests dropped with 'Try again later' response",
            dropped.clone(),
        );
        let terminations = Family::<TerminationLabels, Counter>::default();
        registry.register(
            "apiserver_request_terminations",
            "Number of requests which apiserver terminated in self-defense.",
            terminations.clone(),
        );
        let tls_handshake_errors = Counter::default();
        registry.register(
            "apiserver_tls_handshake_errors",
            "Number of requests dropped with 'TLS handshake error from' error",
            tls_handshake_errors.clone(),
        );
        let storage_objects = Family::<storage_objects::ResourceLabels, Gauge>::default();
        registry.register(
            "apiserver_storage_objects",
            "Number of stored objects at the time of last check split by kind.",
            storage_objects.clone(),
        );
        registry.register_collector(Box::new(process::ProcessCollector));
        let audit_events = Counter::default();
        let audit_errors = Family::<PluginLabels, Counter>::default();
        registry.register(
            "apiserver_audit_event",
            "Counter of audit events generated and sent to the audit backend.",
            audit_events.clone(),
        );
        registry.register(
            "apiserver_audit_error",
            "Counter of audit events that failed to be audited properly.",
            audit_errors.clone(),
        );
        let watch_cache = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(WatchCacheCollector(watch_cache.clone())));
        let encryption = encryption::TransformationCollector::default();
        registry.register_collector(Box::new(encryption.clone()));
        let watch_events = watch_events::WatchEventCounters::default();
        registry.register_collector(Box::new(watch_events.clone()));
        let encryption_reloads = Family::<encryption::ReloadLabels, Counter>::default();
        registry.register(
            "apiserver_encryption_config_controller_automatic_reloads",
            "Total number of reload successes and failures of encryption configuration.",
            encryption_reloads.clone(),
        );
        Self {
            registry,
            requests,
            durations,
            watchers,
            longrunning,
            response_sizes,
            storage,
            in_flight,
            dropped,
            terminations,
            tls_handshake_errors,
            storage_objects,
            watch_cache,
            encryption,
            encryption_reloads,
            watch_events,
            audit_events,
            audit_errors,
        }
    }
}

impl Metrics {
    /// Export the counts of these encryption providers too.
    pub fn encryption(&self, resources: &[backup_storage::encryption::ResourceTransformer]) {
        self.encryption.add(resources);
    }

    /// Export the watch cache's counters from now on.
    pub fn watch_cache(&self, metrics: Arc<CacheMetrics>) {
        let _ = self.watch_cache.set(metrics);
    }

    /// The gauges of the requests held under the max-in-flight limits: `[readOnly, mutating]`.
    pub fn in_flight_gauges(&self) -> [Gauge; 2] {
        ["readOnly", "mutating"]
            .map(|kind| self.in_flight.get_or_create(&InFlightLabels { request_kind: kind.to_string() }).clone())
    }

    /// The counters of the requests refused at the max-in-flight limits: `[readOnly, mutating]`.
    pub fn dropped_counters(&self) -> [Counter; 2] {
        ["readOnly", "mutating"]
            .map(|kind| self.dropped.get_or_create(&InFlightLabels { request_kind: kind.to_string() }).clone())
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// A storage backend that records each operation's duration.
pub struct InstrumentedStorage {
    pub inner: Arc<dyn Storage>,
    pub metrics: Arc<Metrics>,
}

impl InstrumentedStorage {
    fn observe(&self, op: &str, key: &str, start: Instant) {
        // The resource segment of `/<group>/<resource>/…`.
        let resource = key.split('/').nth(2).unwrap_or("").to_string();
        self.metrics
            .storage
            .get_or_create(&StorageLabels { operation: op.into(), r#type: resource })
            .observe(start.elapsed().as_secs_f64());
    }
}

#[async_trait::async_trait]
impl Storage for InstrumentedStorage {
    async fn get(&self, key: &str) -> backup_storage::Result<Option<KeyValue>> {
        let t = Instant::now();
        let r = self.inner.get(key).await;
        self.observe("get", key, t);
        r
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> backup_storage::Result<ListResult> {
        let t = Instant::now();
        let r = self.inner.list(prefix, opts).await;
        self.observe("list", prefix, t);
        r
    }

    async fn create(&self, key: &str, value: Bytes) -> backup_storage::Result<KeyValue> {
        let t = Instant::now();
        let r = self.inner.create(key, value).await;
        self.observe("create", key, t);
        r
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> backup_storage::Result<KeyValue> {
        let t = Instant::now();
        let r = self.inner.update(key, value, expected).await;
        self.observe("update", key, t);
        r
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> backup_storage::Result<Deleted> {
        let t = Instant::now();
        let r = self.inner.delete(key, expected).await;
        self.observe("delete", key, t);
        r
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> backup_storage::Result<WatchStream> {
        let t = Instant::now();
        let r = self.inner.watch(prefix, start_revision).await;
        self.observe("watch", prefix, t);
        r
    }

    async fn watch_with_progress(&self, prefix: &str, start: Revision) -> backup_storage::Result<ProgressWatch> {
        let t = Instant::now();
        let r = self.inner.watch_with_progress(prefix, start).await;
        self.observe("watch", prefix, t);
        r
    }

    async fn watch_for_cache(&self, prefix: &str, start: Revision) -> backup_storage::Result<ProgressWatch> {
        let t = Instant::now();
        let r = self.inner.watch_for_cache(prefix, start).await;
        self.observe("watch", prefix, t);
        r
    }

    async fn get_not_older_than(&self, key: &str, min_revision: Revision) -> backup_storage::Result<Option<KeyValue>> {
        let t = Instant::now();
        let r = self.inner.get_not_older_than(key, min_revision).await;
        self.observe("get", key, t);
        r
    }

    async fn list_not_older_than(
        &self,
        prefix: &str,
        opts: ListOptions,
        min_revision: Revision,
    ) -> backup_storage::Result<ListResult> {
        let t = Instant::now();
        let r = self.inner.list_not_older_than(prefix, opts, min_revision).await;
        self.observe("list", prefix, t);
        r
    }

    async fn current_revision(&self) -> backup_storage::Result<Revision> {
        let t = Instant::now();
        let r = self.inner.current_revision().await;
        self.observe("getCurrentResourceVersion", "", t);
        r
    }

    async fn check_revision(&self, revision: Revision) -> backup_storage::Result<()> {
        let t = Instant::now();
        let r = self.inner.check_revision(revision).await;
        self.observe("checkRevision", "", t);
        r
    }

    async fn compact(&self, revision: Revision) -> backup_storage::Result<()> {
        self.inner.compact(revision).await
    }

    async fn health(&self) -> backup_storage::Result<()> {
        self.inner.health().await
    }

    async fn rewrite_needed(&self, key: &str, mod_revision: Revision) -> backup_storage::Result<bool> {
        self.inner.rewrite_needed(key, mod_revision).await
    }
}

/// The watch cache's gauges and counters, read at each scrape (upstream's names where upstream has the figure:
/// `apiserver_watch_cache_events_dispatched_total`, `apiserver_terminated_watchers_total`; summed over resources).
#[derive(Debug)]
struct WatchCacheCollector(Arc<OnceLock<Arc<CacheMetrics>>>);

impl Collector for WatchCacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(metrics) = self.0.get() else { return Ok(()) };
        let m = metrics.snapshot();
        let gauges: [(&str, &str, i64); 6] = [
            ("apiserver_watch_cache_objects", "Objects held by the watch cache.", m.objects),
            ("apiserver_watch_cache_object_bytes", "Bytes of the objects held by the watch cache.", m.object_bytes),
            (
                "apiserver_watch_cache_window_events",
                "Events kept by the watch cache for resuming watches.",
                m.window_events,
            ),
            (
                "apiserver_watch_cache_window_bytes",
                "Bytes of the events kept for resuming watches, with their shared encodings.",
                m.window_bytes,
            ),
            ("apiserver_watch_cache_watchers", "Watches served by the watch cache.", m.watchers),
            (
                "apiserver_watch_cache_storage_watchers",
                "Watches resumed from before the watch cache's window, still on a storage watch of their own.",
                m.backend_watchers,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let counters: [(&str, &str, u64); 11] = [
            (
                "apiserver_watch_cache_events_dispatched",
                "Events dispatched to watchers by the watch cache (one per event, whatever the number of watchers).",
                m.events_dispatched,
            ),
            (
                "apiserver_terminated_watchers",
                "Watches closed by the watch cache because they fell behind.",
                m.watchers_closed_lagging,
            ),
            (
                "apiserver_watch_cache_fallbacks",
                "Reads the watch cache sent to storage (not ready, not fresh in time, or a revision outside its window).",
                m.backend_fallbacks,
            ),
            (
                "apiserver_watch_cache_relists",
                "Lists of a resource from storage by the watch cache after its first.",
                m.relists,
            ),
            (
                "apiserver_watch_cache_encodings",
                "Watch event renderings made once and shared by watchers.",
                m.encodings,
            ),
            (
                "apiserver_watch_cache_progress_requests",
                "Progress notifications the watch cache asked of storage.",
                m.progress_requests,
            ),
            (
                "apiserver_watch_cache_revision_reads",
                "Reads of storage's current revision for consistent reads (concurrent reads share one).",
                m.revision_reads,
            ),
            (
                "apiserver_watch_cache_revision_checks",
                "Questions to storage whether a past revision was compacted, before serving it from memory.",
                m.revision_checks,
            ),
            (
                "apiserver_watch_cache_storage_watches",
                "Watches that resumed from before the watch cache's window and began on a storage watch.",
                m.backend_watches,
            ),
            ("apiserver_cache_list", "Lists answered from the watch cache's memory.", m.lists),
            (
                "apiserver_cache_list_fetched_objects",
                "Objects read from the watch cache's memory by lists.",
                m.listed_objects,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        Ok(())
    }
}
