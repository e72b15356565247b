//! The generic registry store (k8s.io/apiserver `registry/generic/registry.Store`): every verb of any kind, one
//! method each — [`Store::get`] here, `list`, `watch`, `create`, `update` and `patch`, `apply`, `delete` and
//! `delete_collection` in the files beside this one — with the kind's [`Strategy`] deciding defaults and validation
//! and the field manager keeping `metadata.managedFields`. Gets, lists and watches read through [`Reads`] (the
//! watch cache, or the backend with `--watch-cache=false`); writes, and the reads a write starts from, go to the
//! backend.
//!
//! endpoints → **registry store** → strategy → field manager → storage (reads: watch cache → storage).

mod admit;
mod apply;
mod create;
mod delete;
mod list;
mod reads;
mod update;
mod watch;

#[cfg(test)]
mod tests;

pub use apply::ConfigurationFn;
pub use delete::{DeleteOutcome, DeletedCollection};
pub use list::{ListPage, unreadable};
pub use reads::{Events, Reads};
pub use update::PatchFn;
pub use watch::{WatchEvent, WatchEventType, WatchEvents, Watchdog};

use std::sync::Arc;

use backup_apis::{Kind, ResourceInfo};
use backup_storage::cacher::Freshness;
use backup_storage::{KeyValue, Storage, StorageError, check_value_size};
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::admission::{Admission, RequestContext};
use crate::error::{ApiError, ApiResult};
use crate::fieldmanager::Manager;
use crate::registry::object_bytes::{
    MAX_DEPTH, decode, encode_for_storage, object_depth_exceeds, with_resource_version,
};
use crate::registry::strategy::Strategy;
use crate::request::options::{FieldValidation, GetOptions};

/// How many times a write without a resourceVersion precondition is retried on a concurrent change.
const MAX_UPDATE_RETRIES: usize = 16;

/// One kind's store.
pub struct Store {
    pub strategy: Arc<Strategy>,
    /// Where writes go.
    pub storage: Arc<dyn Storage>,
    /// Where gets, lists and watches come from.
    pub reads: Reads,
    /// The admission chain every write goes through (in a cluster; none standalone).
    admission: Option<Arc<dyn Admission>>,
    /// Ends watches: at their timeout, when the server stops, and those whose clients stopped reading.
    watchdog: Arc<Watchdog>,
    /// Standalone: the server removes the `orphan`/`foregroundDeletion` finalizers itself (no garbage collector).
    finishes_propagation: bool,
    tuning: Tuning,
}

/// What the flags tune in every store.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Watches without `timeoutSeconds` end after a random time in [this, 2× this) seconds
    /// (`--min-request-timeout`).
    pub min_request_timeout: u64,
    /// Objects a deletecollection deletes at once (`--delete-collection-workers`).
    pub delete_collection_workers: usize,
}

impl Default for Tuning {
    /// Upstream's defaults: 1800 s, one worker.
    fn default() -> Self {
        Self { min_request_timeout: 1800, delete_collection_workers: 1 }
    }
}

/// The result of a write: the object as served, whether it was created, and warnings for the client.
#[derive(Debug, Clone)]
pub struct Written {
    pub body: Bytes,
    pub created: bool,
    pub warnings: Vec<String>,
}

/// A stored object decoded, with its mod revision.
struct Current {
    kv: KeyValue,
    obj: Map<String, Value>,
    /// The watch cache's copy, which may be behind the backend's (see [`Store::current_for_write`]).
    cached: bool,
}

/// How one attempt at a write (update, patch, delete) that started from `Current` ended, answering a `T`.
enum Attempt<T = Written> {
    /// Compared and swapped (or deleted) in the backend at the revision the attempt started from, which was then
    /// the latest; with what to answer (an error of what followed the write).
    Stored(ApiResult<T>),
    /// Computed from the object the attempt started from, with nothing written: an error, no change or a dry run.
    Done(ApiResult<T>),
    /// The attempt starts again from the backend's copy: the object changed there since the attempt's revision, or
    /// the attempt acts on the object (beyond one compare-and-swap) only from the backend's copy.
    Conflict(ApiError),
}

/// What every write shares: dry run, fieldValidation, who writes, the keys the body repeated, and for admission
/// the field manager's name and the request.
#[derive(Clone, Copy)]
struct WriteOptions<'a> {
    dry_run: bool,
    field_validation: FieldValidation,
    manager: Manager<'a>,
    duplicate_fields: &'a [String],
    field_manager: &'a str,
    request: &'a RequestContext,
}

impl Store {
    /// The store of `kind`, writing to `storage`, reading from `reads`; its watches end when `stopping` turns true.
    pub fn new(
        kind: Arc<dyn Kind>,
        storage: Arc<dyn Storage>,
        reads: Reads,
        admission: Option<Arc<dyn Admission>>,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let watchdog = Arc::new(Watchdog::new(stopping));
        Self {
            strategy: Arc::new(Strategy::new(kind)),
            storage,
            reads,
            admission,
            watchdog,
            finishes_propagation: false,
            tuning: Tuning::default(),
        }
    }

    /// This store finishes the propagation policies' finalizers itself (standalone: no garbage collector).
    pub fn finishing_propagation(mut self, standalone: bool) -> Self {
        self.finishes_propagation = standalone;
        self
    }

    /// This store with `tuning` instead of the defaults.
    pub fn tuned(mut self, tuning: Tuning) -> Self {
        self.tuning = tuning;
        self
    }

    pub fn info(&self) -> &ResourceInfo {
        self.strategy.info()
    }

    /// `/<group>/<plural>/` or `/<group>/<plural>/<ns>/`.
    fn prefix(&self, namespace: Option<&str>) -> String {
        let info = self.info();
        match namespace.filter(|n| !n.is_empty() && info.namespaced) {
            Some(ns) => format!("/{}/{}/{}/", info.group, info.plural, ns),
            None => format!("/{}/{}/", info.group, info.plural),
        }
    }

    fn key(&self, namespace: &str, name: &str) -> String {
        let info = self.info();
        if info.namespaced {
            format!("/{}/{}/{}/{}", info.group, info.plural, namespace, name)
        } else {
            format!("/{}/{}/{}", info.group, info.plural, name)
        }
    }

    /// The bytes to store for `obj`: refused (422) when they could not be read back (nested too deeply), 413 when
    /// over the storage's size limit.
    fn encode(&self, name: &str, obj: &Map<String, Value>) -> ApiResult<Vec<u8>> {
        if object_depth_exceeds(obj, MAX_DEPTH) {
            return Err(ApiError::unprocessable(format!(
                "{} \"{name}\" is invalid: the object nests objects and arrays more than {MAX_DEPTH} levels deep",
                self.info().qualified_kind()
            )));
        }
        let bytes = encode_for_storage(obj);
        check_value_size(&bytes).map_err(self.storage_err(name))?;
        Ok(bytes)
    }

    fn storage_err(&self, name: &str) -> impl Fn(StorageError) -> ApiError + '_ {
        let name = name.to_string();
        move |e| ApiError::from_storage(e, self.info(), &name)
    }

    /// The stored object as a client sees it: the latest (resourceVersion unset: a consistent read, from the
    /// watch cache once it has caught up with the backend's revision, as upstream since 1.31), any ("0": from
    /// memory), or one not older than the given resourceVersion (waiting up to 3 s for it; 504 past that).
    pub async fn get(&self, namespace: &str, name: &str, opts: &GetOptions) -> ApiResult<Bytes> {
        let freshness = opts.resource_version.map_or(Freshness::Consistent, Freshness::NotOlderThan);
        let key = self.key(namespace, name);
        let object = match self.reads.get(&key, freshness).await {
            Err(StorageError::FutureRevision { requested, .. }) => {
                list::wait_for_revision(self, requested).await?;
                self.reads.get(&key, freshness).await
            }
            other => other,
        };
        let object = object.map_err(self.storage_err(name))?.ok_or_else(|| ApiError::not_found(self.info(), name))?;
        Ok(with_resource_version(object.value(), object.kv().mod_revision))
    }

    /// The stored object from the backend: what a write starts from.
    async fn get_kv(&self, namespace: &str, name: &str) -> ApiResult<KeyValue> {
        self.storage
            .get(&self.key(namespace, name))
            .await
            .map_err(self.storage_err(name))?
            .ok_or_else(|| ApiError::not_found(self.info(), name))
    }

    /// The stored object from the backend, decoded.
    async fn current(&self, namespace: &str, name: &str) -> ApiResult<Current> {
        let kv = self.get_kv(namespace, name).await?;
        self.decoded(name, kv)
    }

    /// An object read from the backend, decoded.
    fn decoded(&self, name: &str, kv: KeyValue) -> ApiResult<Current> {
        let obj = readable(&kv).map_err(|detail| self.corrupt(name, &detail))?;
        Ok(Current { kv, obj, cached: false })
    }

    /// The object an update, patch or delete starts from: the watch cache's copy when it holds one, so that the write
    /// needs no read from the backend (upstream's `cachedExistingObject`), else the backend's. The copy may be
    /// behind: the write then fails its compare-and-swap and starts again from the backend's copy, and what a
    /// write computes from the copy without writing (an error, no change, a dry run) is checked against the
    /// backend's revision before it is answered ([`Store::unless_stale`]).
    async fn current_for_write(&self, namespace: &str, name: &str) -> ApiResult<Current> {
        let cached = self.reads.peek(&self.key(namespace, name));
        match cached.and_then(|c| Some((c.kv().clone(), readable(c.kv()).ok()?))) {
            Some((kv, obj)) => Ok(Current { kv, obj, cached: true }),
            None => self.current(namespace, name).await,
        }
    }

    /// Runs `attempt` on the object, first from the watch cache's copy ([`Store::current_for_write`]), again from
    /// the backend's after a conflict, or when an attempt that wrote nothing started from a copy that was behind;
    /// at most [`MAX_UPDATE_RETRIES`] times.
    async fn retried<T, F>(&self, namespace: &str, name: &str, mut attempt: impl FnMut(Current) -> F) -> ApiResult<T>
    where
        F: Future<Output = Attempt<T>>,
    {
        let mut current = self.current_for_write(namespace, name).await?;
        for _ in 0..MAX_UPDATE_RETRIES {
            let started = current.cached.then_some(current.kv.mod_revision);
            match (attempt(current).await, started) {
                (Attempt::Stored(result), _) => return result,
                (Attempt::Done(result), None) => return result,
                // Computed from the cache's copy: it stands while that copy is the backend's latest.
                (Attempt::Done(result), Some(revision)) => match self.unless_stale(namespace, name, revision).await? {
                    None => return result,
                    Some(latest) => current = latest,
                },
                (Attempt::Conflict(_), _) => current = self.current(namespace, name).await?,
            }
        }
        Err(ApiError::conflict(self.info(), name, "too many concurrent changes, please try again"))
    }

    /// For an attempt that started from the cache's copy at `revision` and wrote nothing: `None` when that copy is
    /// still the backend's latest (the attempt's answer stands), else the backend's object to start again from.
    async fn unless_stale(&self, namespace: &str, name: &str, revision: i64) -> ApiResult<Option<Current>> {
        let latest = self.get_kv(namespace, name).await?;
        if latest.mod_revision == revision { Ok(None) } else { self.decoded(name, latest).map(Some) }
    }

    /// The 500 for a stored object that cannot be decoded, saying how to get rid of it.
    fn corrupt(&self, name: &str, detail: &str) -> ApiError {
        ApiError::internal(format!(
            "the stored object {} {name:?} is corrupt ({detail}); it can only be deleted, with DeleteOptions \
             ignoreStoreReadErrorWithClusterBreakingPotential: true",
            self.info().qualified_resource()
        ))
    }
}

/// The stored object decoded, or why it cannot be.
fn readable(kv: &KeyValue) -> Result<Map<String, Value>, String> {
    match decode(&kv.value, kv.mod_revision) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(e.to_string()),
    }
}
