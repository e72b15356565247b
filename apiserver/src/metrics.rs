//! `/metrics` in Prometheus text: request counts and durations per verb/resource/code, open watches, and storage
//! operation durations (through [`InstrumentedStorage`], which wraps any backend).

use std::sync::Arc;
use std::time::Instant;

use backup_storage::{Deleted, KeyValue, ListOptions, ListResult, Revision, Storage, WatchStream};
use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub dry_run: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: String,
    pub component: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    pub group: String,
    pub version: String,
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StorageLabels {
    pub operation: String,
    pub r#type: String,
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
    pub storage: Family<StorageLabels, Histogram, fn() -> Histogram>,
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
            "Number of currently registered watchers for a given resource.",
            watchers.clone(),
        );
        registry.register(
            "etcd_request_duration_seconds",
            "Storage request latency in seconds for each operation and object type.",
            storage.clone(),
        );
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
        Self { registry, requests, durations, watchers, storage, audit_events, audit_errors }
    }
}

impl Metrics {
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
        self.inner.watch(prefix, start_revision).await
    }

    async fn current_revision(&self) -> backup_storage::Result<Revision> {
        self.inner.current_revision().await
    }

    async fn compact(&self, revision: Revision) -> backup_storage::Result<()> {
        self.inner.compact(revision).await
    }

    async fn health(&self) -> backup_storage::Result<()> {
        self.inner.health().await
    }
}
