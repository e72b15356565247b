//! Updates, patches and deletes that start from the watch cache's copy of their object: while the cache is behind
//! the backend, each must answer as if it had read the backend's copy; under concurrent patches, none is lost.
//!
//! The cache's backend watch is held back by a stand-in around the embedded store (a real backend cannot be made
//! to delay its events on demand), so that the cache's copy is an older version than the backend's.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backup_apis::Kind;
use backup_apis::backup::BackupKind;
use backup_storage::cacher::{CachedPrefix, Cacher, CacherConfig};
use backup_storage::embedded::EmbeddedStorage;
use backup_storage::{
    Deleted, KeyValue, ListOptions, ListResult, ProgressWatch, Result, Revision, Storage, WatchStream,
};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};

use super::{Reads, Store};
use crate::admission::RequestContext;
use crate::error::{ApiError, ApiResult};
use crate::registry::attrs;
use crate::request::body::Decoded;
use crate::request::info::Subresource;
use crate::request::options::{CreateOptions, FieldValidation, PatchOptions};

/// A backend whose watches deliver nothing while held, and which counts reads of single objects.
struct Lagging {
    inner: Arc<dyn Storage>,
    open: tokio::sync::watch::Sender<bool>,
    gets: AtomicUsize,
}

impl Lagging {
    /// Holds back (`false`) or releases (`true`) every watch's events.
    fn deliver(&self, open: bool) {
        self.open.send_replace(open);
    }

    fn gate<S>(&self, items: S) -> impl futures::Stream<Item = S::Item> + Send + use<S>
    where
        S: futures::Stream + Send,
        S::Item: Send,
    {
        let gate = self.open.subscribe();
        items.then(move |item| {
            let mut gate = gate.clone();
            async move {
                let _ = gate.wait_for(|open| *open).await;
                item
            }
        })
    }
}

#[async_trait::async_trait]
impl Storage for Lagging {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        self.inner.list(prefix, opts).await
    }
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.inner.create(key, value).await
    }
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        self.inner.update(key, value, expected).await
    }
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Deleted> {
        self.inner.delete(key, expected).await
    }
    async fn watch(&self, prefix: &str, start: Revision) -> Result<WatchStream> {
        Ok(Box::pin(self.gate(self.inner.watch(prefix, start).await?)))
    }
    async fn watch_with_progress(&self, prefix: &str, start: Revision) -> Result<ProgressWatch> {
        let watch = self.inner.watch_with_progress(prefix, start).await?;
        Ok(ProgressWatch { items: Box::pin(self.gate(watch.items)), mode: watch.mode })
    }
    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }
    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }
}

const NS: &str = "ns";
const NAME: &str = "b";

struct Fixture {
    store: Store,
    backend: Arc<Lagging>,
    cacher: Arc<Cacher>,
    key: String,
    context: RequestContext,
}

impl Fixture {
    /// A store reading through a watch cache over the lagging backend, with one backup (`keepLast: 7`) that the
    /// cache holds.
    async fn new() -> Self {
        let (open, _) = tokio::sync::watch::channel(true);
        let inner: Arc<dyn Storage> = Arc::new(EmbeddedStorage::in_memory().expect("embedded store"));
        let backend = Arc::new(Lagging { inner, open, gets: AtomicUsize::new(0) });
        let kind: Arc<dyn Kind> = Arc::new(BackupKind);
        let info = kind.resource();
        let prefix = CachedPrefix::with_attrs(format!("/{}/{}/", info.group, info.plural), attrs::hook());
        let cacher = Arc::new(Cacher::new(backend.clone(), CacherConfig::new([prefix])).expect("watch cache"));
        assert!(cacher.wait_ready(Duration::from_secs(10)).await, "the watch cache did not list");
        let key = format!("/{}/{}/{NS}/{NAME}", info.group, info.plural);
        let never_stops = tokio::sync::watch::channel(false).1;
        let store = Store::new(kind, backend.clone(), Reads::Cache(cacher.clone()), None, never_stops);
        let context = RequestContext::new(Arc::default(), None);
        let fixture = Self { store, backend, cacher, key, context };
        let object = json!({
            "apiVersion": "backup.extend-k8s.io/v1", "kind": "TimeseriesDBBackup",
            "metadata": {"name": NAME},
            "spec": {"database": {"type": "Prometheus", "url": "http://prometheus:9090"},
                     "schedule": "0 2 * * *", "retention": {"keepLast": 7}},
        });
        let opts =
            CreateOptions { dry_run: false, field_validation: FieldValidation::Strict, field_manager: "test".into() };
        let decoded = Decoded { value: object, duplicates: Vec::new() };
        let created = fixture.store.create(NS, decoded, &opts, &fixture.context).await.expect("create");
        fixture.cached_up_to(revision_of(&created.body)).await;
        fixture
    }

    /// Waits until the cache's copy is at `revision`.
    async fn cached_up_to(&self, revision: Revision) {
        for _ in 0..500 {
            if self.cacher.peek(&self.key).is_some_and(|o| o.kv().mod_revision >= revision) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the watch cache did not reach revision {revision}");
    }

    fn cached_revision(&self) -> Revision {
        self.cacher.peek(&self.key).expect("the cache holds the object").kv().mod_revision
    }

    /// Writes `keepLast` straight to the backend (not through the store), as another server would.
    async fn write_behind_the_cache(&self, keep_last: u64) -> Revision {
        let kv = self.backend.inner.get(&self.key).await.unwrap().expect("stored");
        let mut obj: Value = serde_json::from_slice(&kv.value).unwrap();
        obj["spec"]["retention"]["keepLast"] = json!(keep_last);
        let bytes = Bytes::from(serde_json::to_vec(&obj).unwrap());
        self.backend.inner.update(&self.key, bytes, kv.mod_revision).await.unwrap().mod_revision
    }

    async fn patch(&self, dry_run: bool, patch: &super::PatchFn<'_>) -> ApiResult<Value> {
        let opts = PatchOptions {
            dry_run,
            field_validation: FieldValidation::Strict,
            field_manager: "test".into(),
            force: false,
        };
        let written = self.store.patch(NS, NAME, patch, &Subresource::Main, &opts, &self.context).await?;
        Ok(serde_json::from_slice(&written.body).unwrap())
    }

    async fn put(&self, mut object: Value, resource_version: Revision, keep_last: u64) -> ApiResult<Value> {
        object["metadata"]["resourceVersion"] = json!(resource_version.to_string());
        object["spec"]["retention"]["keepLast"] = json!(keep_last);
        let opts =
            CreateOptions { dry_run: false, field_validation: FieldValidation::Strict, field_manager: "test".into() };
        let decoded = Decoded { value: object, duplicates: Vec::new() };
        let written = self.store.update(NS, NAME, decoded, &Subresource::Main, &opts, &self.context).await?;
        Ok(serde_json::from_slice(&written.body).unwrap())
    }

    async fn stored(&self) -> Value {
        serde_json::from_slice(&self.backend.inner.get(&self.key).await.unwrap().expect("stored").value).unwrap()
    }
}

fn revision_of(body: &[u8]) -> Revision {
    let obj: Value = serde_json::from_slice(body).unwrap();
    obj["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()
}

fn rv(obj: &Value) -> Revision {
    obj["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()
}

fn keep_last(obj: &Value) -> &Value {
    &obj["spec"]["retention"]["keepLast"]
}

/// Sets `keepLast` when it is `expected` (as a JSON patch's `test`), else fails with 422.
fn set_if(expected: u64, to: u64) -> impl Fn(&mut Value) -> ApiResult<()> + Send + Sync {
    move |doc: &mut Value| {
        if *keep_last(doc) != json!(expected) {
            return Err(ApiError::unprocessable(format!("keepLast is not {expected}")));
        }
        doc["spec"]["retention"]["keepLast"] = json!(to);
        Ok(())
    }
}

#[tokio::test]
async fn writes_from_a_cache_behind_the_backend_answer_as_from_the_backend() {
    let f = Fixture::new().await;
    let cached = f.cached_revision();
    f.backend.deliver(false);
    let latest = f.write_behind_the_cache(9).await;
    assert!(latest > cached && f.cached_revision() == cached, "the cache is behind the backend");

    // A PUT at the backend's resourceVersion succeeds; at the cache's older one it is stale.
    let object = f.stored().await;
    let put = f.put(object.clone(), latest, 10).await.expect("a PUT at the latest resourceVersion");
    assert_eq!(*keep_last(&put), json!(10));
    let stale = f.put(object, cached, 12).await.expect_err("a PUT at an older resourceVersion");
    assert_eq!(stale.code, 409, "{stale:?}");
    assert_eq!(*keep_last(&f.stored().await), json!(10), "the stale PUT wrote nothing");

    // A patch whose precondition holds on the backend's copy (10) but not on the cache's (7).
    let patched = f.patch(false, &set_if(10, 11)).await.expect("the patch checks the backend's copy");
    assert_eq!(*keep_last(&patched), json!(11));
    // A patch that fails on the backend's copy fails, as it would have without the cache.
    let refused = f.patch(false, &set_if(7, 20)).await.expect_err("keepLast is 11 in the backend");
    assert_eq!(refused.code, 422);

    // A dry run answers with the backend's object.
    let schedule = |doc: &mut Value| -> ApiResult<()> {
        doc["spec"]["schedule"] = json!("0 3 * * *");
        Ok(())
    };
    let dry = f.patch(true, &schedule).await.expect("dry run");
    assert_eq!((keep_last(&dry), rv(&dry)), (&json!(11), rv(&patched)), "the backend's object, unchanged");
    assert_eq!(f.stored().await["spec"]["schedule"], json!("0 2 * * *"), "a dry run writes nothing");

    // Setting the value the cache's copy has (7) is no change there, but one in the backend (11).
    let back = f.patch(false, &|doc: &mut Value| -> ApiResult<()> {
        doc["spec"]["retention"]["keepLast"] = json!(7);
        Ok(())
    });
    let back = back.await.expect("patch");
    assert!(rv(&back) > rv(&patched), "written, not answered as unchanged from the cache's copy");
    assert_eq!(*keep_last(&f.stored().await), json!(7));
    assert_eq!(f.cached_revision(), cached, "all of the above ran while the cache was behind");

    // Once the cache has caught up, a patch reads nothing from the backend.
    f.backend.deliver(true);
    f.cached_up_to(rv(&back)).await;
    let gets = f.backend.gets.load(Ordering::Relaxed);
    let patched = f.patch(false, &set_if(7, 8)).await.expect("patch");
    assert_eq!(*keep_last(&patched), json!(8));
    assert_eq!(f.backend.gets.load(Ordering::Relaxed), gets, "the patch started from the cache's copy");
    // A refusal from a current copy stands, after one read of the backend's revision.
    f.cached_up_to(rv(&patched)).await;
    let refused = f.patch(false, &set_if(7, 9)).await.expect_err("keepLast is 8");
    assert_eq!(refused.code, 422);
    assert_eq!(f.backend.gets.load(Ordering::Relaxed), gets + 1);
}

/// Many patches at once, each adding one to `keepLast` from the copy it starts from (the cache's, or etcd's after a
/// conflict): every patch that succeeded is counted exactly once in the end, so none was lost or applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_from_the_cache_lose_nothing() {
    const TASKS: usize = 8;
    const EACH: usize = 25;
    let f = Arc::new(Fixture::new().await);
    let add_one = |doc: &mut Value| -> ApiResult<()> {
        let n = keep_last(doc).as_u64().unwrap();
        doc["spec"]["retention"]["keepLast"] = json!(n + 1);
        Ok(())
    };
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move {
                let mut succeeded = 0;
                for _ in 0..EACH {
                    match f.patch(false, &add_one).await {
                        Ok(_) => succeeded += 1,
                        Err(e) => assert_eq!(e.code, 409, "only 'too many concurrent changes' may fail: {e:?}"),
                    }
                }
                succeeded
            })
        })
        .collect();
    let mut succeeded = 0;
    for task in tasks {
        succeeded += task.await.unwrap();
    }
    assert!(succeeded > TASKS * EACH / 2, "most patches succeed ({succeeded})");
    assert_eq!(*keep_last(&f.stored().await), json!(7 + succeeded as u64));
}

/// Deletes from a cache behind the backend: a finalizer added behind the cache holds the object, and a
/// resourceVersion precondition is checked against the backend's revision.
#[tokio::test]
async fn deletes_from_a_cache_behind_the_backend_answer_as_from_the_backend() {
    use super::DeleteOutcome;
    use crate::request::options::DeleteOptions;
    let f = Fixture::new().await;
    let cached = f.cached_revision();
    f.backend.deliver(false);
    // A finalizer the cache has not seen.
    let kv = f.backend.inner.get(&f.key).await.unwrap().expect("stored");
    let mut obj: Value = serde_json::from_slice(&kv.value).unwrap();
    obj["metadata"]["finalizers"] = json!(["example.com/hold"]);
    let bytes = Bytes::from(serde_json::to_vec(&obj).unwrap());
    let latest = f.backend.inner.update(&f.key, bytes, kv.mod_revision).await.unwrap().mod_revision;
    assert_eq!(f.cached_revision(), cached, "the cache is behind the backend");

    // At the cache's older resourceVersion the precondition fails; at the backend's it holds.
    let at = |rv: Revision| DeleteOptions { precondition_resource_version: Some(rv.to_string()), ..Default::default() };
    let stale = f.store.delete(NS, NAME, &at(cached), &f.context).await.expect_err("an older resourceVersion");
    assert_eq!(stale.code, 409, "{stale:?}");
    let outcome = f.store.delete(NS, NAME, &at(latest), &f.context).await.expect("the latest resourceVersion");
    let DeleteOutcome::Pending(body) = outcome else { panic!("the finalizer holds the object") };
    let marked: Value = serde_json::from_slice(&body).unwrap();
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    let stored = f.stored().await;
    assert!(stored["metadata"]["deletionTimestamp"].is_string(), "marked, not deleted: {stored}");
    assert_eq!(stored["metadata"]["finalizers"], json!(["example.com/hold"]));
}
