//! The etcd v3 backend: what kube-apiserver's `storage/etcd3` does, over etcd-client.
//!
//! filters → endpoints → registry store → strategy → storage → **etcd**.
//!
//! Every key is stored as `prefix + key` (`/registry/backup.extend-k8s.io/timeseriesdbbackups/ns/name`).
//! Writes are single transactions guarded by `ModRevision` compares, so concurrent writers (other replicas too)
//! get `Conflict`/`AlreadyExists` instead of lost updates; revisions come from the response headers. Watches
//! reconnect by themselves ([`watch`]); a background task compacts history like kube-apiserver ([`compactor`]).
//! The client reaches etcd over [`channel`]: one connection per member, the next member when one fails, each
//! connection's writes gathered per turn of the scheduler ([`crate::gather`]).

mod channel;
mod compactor;
mod config;
mod errors;
mod watch;

use bytes::Bytes;
use etcd_client::proto::{PbKeyValue, PbTxnOpResponse};
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, KvClient, MaintenanceClient, Txn, TxnOp, TxnResponse,
    WatchClient, WatchOptions,
};
use tracing::debug;

pub use self::config::EtcdConfig;
use self::errors::{Failure, classify, map_err, map_failure};
use self::watch::PrevValues;
use crate::{
    Deleted, KeyValue, ListOptions, ListResult, ProgressMode, ProgressRequester, ProgressWatch, Result, Revision,
    Storage, StorageError, WatchStream, check_value_size, key,
};

/// The largest gRPC message read back from etcd (kube-apiserver uses `math.MaxInt32` too): a list of many
/// objects is far over tonic's 4 MiB default.
const MAX_DECODING_MESSAGE_BYTES: usize = i32::MAX as usize;

/// [`Storage`] on etcd v3. Cheap to clone: clones share one gRPC channel and one compactor.
#[derive(Clone)]
pub struct EtcdStorage {
    kv: KvClient,
    watch: WatchClient,
    maintenance: MaintenanceClient,
    /// Whether etcd orders requested progress notifications with the events (by its version), once known.
    ordered_progress: std::sync::Arc<tokio::sync::OnceCell<bool>>,
    /// `prefix` as bytes, without a trailing `/`.
    prefix: Vec<u8>,
    _compactor: Option<std::sync::Arc<compactor::Handle>>,
}

impl EtcdStorage {
    /// Connect to etcd as `config` says and start the periodic compaction (unless its interval is zero).
    /// Needs a tokio runtime. Connecting is lazy: an unreachable etcd makes later calls fail with `Unavailable`.
    pub async fn connect(config: &EtcdConfig) -> Result<Self> {
        let client = Client::from_channel(channel::channel(config)?, None).await.map_err(map_err)?;
        let kv = client.kv_client().max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES);
        let watch = client.watch_client().max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES);
        let compactor = (!config.compaction_interval.is_zero())
            .then(|| std::sync::Arc::new(compactor::spawn(kv.clone(), config.compaction_interval)));
        Ok(Self {
            kv,
            watch,
            maintenance: client.maintenance_client(),
            ordered_progress: std::sync::Arc::default(),
            prefix: config.prefix_bytes(),
            _compactor: compactor,
        })
    }

    /// Whether etcd sends requested progress notifications in order with the events: from 3.4.31, 3.5.13 and
    /// 3.6 on (etcd-io/etcd#15220, #17557; kube-apiserver asks for the same versions before it serves consistent
    /// reads from its cache). Asked once; `false` when etcd does not tell.
    async fn orders_requested_progress(&self) -> bool {
        *self
            .ordered_progress
            .get_or_init(|| async {
                let status = self.maintenance.clone().status().await;
                match status {
                    Ok(status) => orders_requested_progress(status.version()),
                    Err(e) => {
                        debug!(error = %e, "etcd: no status; not requesting watch progress");
                        false
                    }
                }
            })
            .await
    }

    fn watch_target(
        &self,
        prefix: &str,
        progress: bool,
        requests: Option<ProgressRequester>,
        prev: PrevValues,
    ) -> watch::Target {
        watch::Target {
            client: self.watch.clone(),
            storage_prefix: self.prefix.clone(),
            start: self.full_key(prefix),
            end: self.full_key(&key::prefix_end(prefix)),
            progress,
            requests,
            prev,
        }
    }

    /// A watch with progress items ([`Storage::watch_with_progress`]), its events with or without their previous
    /// values.
    async fn progress_watch(&self, prefix: &str, start_revision: Revision, prev: PrevValues) -> Result<ProgressWatch> {
        key::validate_key(prefix, true)?;
        let start = self.watch_start(start_revision).await?;
        let (requests, mode) = if self.orders_requested_progress().await {
            let requests = ProgressRequester::default();
            (Some(requests.clone()), ProgressMode::OnRequest(requests))
        } else {
            (None, ProgressMode::Occasional)
        };
        let items = watch::spawn(self.watch_target(prefix, true, requests, prev), start);
        Ok(ProgressWatch { items: Box::pin(items), mode })
    }

    /// The revision a watch starts at: "from now on" is pinned, so that a reconnect does not skip or repeat events.
    async fn watch_start(&self, start_revision: Revision) -> Result<Revision> {
        Ok(if start_revision > 0 { start_revision } else { self.current_revision().await? + 1 })
    }

    fn full_key(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(&self.prefix);
        full.extend_from_slice(key.as_bytes());
        full
    }

    fn to_kv(&self, kv: PbKeyValue) -> Result<KeyValue> {
        to_kv(&self.prefix, kv)
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, Failure> {
        self.kv.clone().txn(txn).await.map_err(classify)
    }

    /// The compacted revision, which etcd's "compacted" error does not carry: a watch from revision 1 is
    /// cancelled at once with it (a fraction of a second). `0` when etcd does not tell within 2 s.
    async fn compacted_revision(&self) -> Revision {
        let lookup = async {
            let options = WatchOptions::new().with_start_revision(1);
            let mut stream = self.watch.clone().watch(compactor::COMPACT_REV_KEY, Some(options)).await.ok()?;
            loop {
                let response = stream.message().await.ok()??;
                if response.0.compact_revision > 0 {
                    return Some(response.0.compact_revision);
                }
                if response.0.canceled {
                    return None;
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(2), lookup).await.ok().flatten().unwrap_or(0)
    }

    /// The error for a failed read or compaction at `revision`.
    async fn revision_error(&self, failure: Failure, revision: Revision) -> StorageError {
        match failure {
            Failure::Compacted => {
                StorageError::Compacted { requested: revision, compacted: self.compacted_revision().await }
            }
            Failure::FutureRevision => match self.current_revision().await {
                Ok(current) => StorageError::FutureRevision { requested: revision, current },
                Err(e) => e,
            },
            other => map_failure(other),
        }
    }
}

/// Whether an etcd of `version` ("3.4.23") orders requested progress notifications with the events.
fn orders_requested_progress(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor, patch) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    match (major, minor) {
        (3, 4) => patch >= 31,
        (3, 5) => patch >= 13,
        (3, m) => m >= 6,
        (m, _) => m > 3,
    }
}

/// The key-value etcd returned, with its key made relative to `prefix` again.
fn to_kv(prefix: &[u8], kv: PbKeyValue) -> Result<KeyValue> {
    let mut key = kv.key;
    if !key.starts_with(prefix) {
        let key = String::from_utf8_lossy(&key);
        return Err(StorageError::Internal(format!("etcd returned key {key:?} outside the prefix")));
    }
    key.drain(..prefix.len());
    Ok(KeyValue {
        key: String::from_utf8(key).map_err(|_| StorageError::Internal("etcd returned a non-UTF-8 key".into()))?,
        value: Bytes::from(kv.value),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
    })
}

/// The header revision of a response, which etcd always sends.
fn header_revision(header: Option<&etcd_client::proto::PbResponseHeader>) -> Result<Revision> {
    header.map(|h| h.revision).ok_or_else(|| StorageError::Internal("etcd response without a header".into()))
}

/// The key-values of the `n`-th operation of a transaction, if it was a range.
fn range_kvs(txn: &mut TxnResponse, n: usize) -> Option<Vec<PbKeyValue>> {
    match txn.0.responses.get_mut(n)?.response.as_mut()? {
        PbTxnOpResponse::ResponseRange(range) => Some(std::mem::take(&mut range.kvs)),
        _ => None,
    }
}

/// The error of a failed write of `value`.
fn write_error(failure: Failure, value: &Bytes) -> StorageError {
    match failure {
        Failure::TooLarge => StorageError::ValueTooLarge { size: value.len(), limit: crate::MAX_VALUE_BYTES },
        other => map_failure(other),
    }
}

#[async_trait::async_trait]
impl Storage for EtcdStorage {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        key::validate_key(key, false)?;
        let mut response = self.kv.clone().get(self.full_key(key), None).await.map_err(map_err)?;
        response.0.kvs.pop().map(|kv| self.to_kv(kv)).transpose()
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        key::validate_key(prefix, true)?;
        let start = key::list_start(prefix, opts.start_key.as_deref())?;
        let revision = opts.revision.filter(|r| *r > 0);
        let mut get = GetOptions::new().with_range(self.full_key(&key::prefix_end(prefix)));
        if let Some(limit) = opts.limit.filter(|l| *l > 0) {
            get = get.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        if let Some(revision) = revision {
            get = get.with_revision(revision);
        }
        let response = match self.kv.clone().get(self.full_key(start), Some(get)).await {
            Ok(response) => response.0,
            Err(e) => return Err(self.revision_error(classify(e), revision.unwrap_or(0)).await),
        };
        let read_at = match revision {
            Some(revision) => revision,
            None => header_revision(response.header.as_ref())?,
        };
        let items = response.kvs.into_iter().map(|kv| self.to_kv(kv)).collect::<Result<Vec<_>>>()?;
        let remaining = (response.count - items.len() as i64).max(0);
        Ok(ListResult { items, revision: read_at, more: response.more, remaining })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        key::validate_key(key, false)?;
        check_value_size(&value)?;
        let full = self.full_key(key);
        let txn = Txn::new().when([Compare::mod_revision(full.clone(), CompareOp::Equal, 0)]).and_then([TxnOp::put(
            full,
            value.to_vec(),
            None,
        )]);
        let response = self.txn(txn).await.map_err(|f| write_error(f, &value))?;
        if !response.succeeded() {
            return Err(StorageError::AlreadyExists { key: key.to_string() });
        }
        let revision = header_revision(response.0.header.as_ref())?;
        Ok(KeyValue { key: key.to_string(), value, create_revision: revision, mod_revision: revision })
    }

    async fn update(&self, key: &str, value: Bytes, expected_revision: Revision) -> Result<KeyValue> {
        key::validate_key(key, false)?;
        check_value_size(&value)?;
        let full = self.full_key(key);
        // `CreateRevision > 0` keeps an expected revision of 0 from creating a missing key.
        let txn = Txn::new()
            .when([
                Compare::create_revision(full.clone(), CompareOp::Greater, 0),
                Compare::mod_revision(full.clone(), CompareOp::Equal, expected_revision),
            ])
            .and_then([
                TxnOp::put(full.clone(), value.to_vec(), None),
                TxnOp::get(full.clone(), Some(GetOptions::new().with_keys_only())),
            ])
            .or_else([TxnOp::get(full, None)]);
        let mut response = self.txn(txn).await.map_err(|f| write_error(f, &value))?;
        if response.succeeded() {
            let revision = header_revision(response.0.header.as_ref())?;
            let written = range_kvs(&mut response, 1).and_then(|mut kvs| kvs.pop());
            let create_revision = written.map(|kv| kv.create_revision).ok_or_else(|| {
                StorageError::Internal("etcd: the updated key is missing from the transaction's read".into())
            })?;
            return Ok(KeyValue { key: key.to_string(), value, create_revision, mod_revision: revision });
        }
        match range_kvs(&mut response, 0).and_then(|mut kvs| kvs.pop()) {
            None => Err(StorageError::NotFound { key: key.to_string() }),
            Some(current) => Err(StorageError::Conflict {
                key: key.to_string(),
                expected: expected_revision,
                current: Box::new(self.to_kv(current)?),
            }),
        }
    }

    async fn delete(&self, key: &str, expected_revision: Option<Revision>) -> Result<Deleted> {
        key::validate_key(key, false)?;
        let full = self.full_key(key);
        let not_found = || StorageError::NotFound { key: key.to_string() };
        let Some(expected) = expected_revision else {
            let options = DeleteOptions::new().with_prev_key();
            let mut response = self.kv.clone().delete(full, Some(options)).await.map_err(map_err)?;
            let revision = header_revision(response.0.header.as_ref())?;
            let prev = response.0.prev_kvs.pop().ok_or_else(not_found)?;
            return Ok(Deleted { prev: self.to_kv(prev)?, revision });
        };
        let txn = Txn::new()
            .when([
                Compare::create_revision(full.clone(), CompareOp::Greater, 0),
                Compare::mod_revision(full.clone(), CompareOp::Equal, expected),
            ])
            .and_then([TxnOp::delete(full.clone(), Some(DeleteOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(full, None)]);
        let mut response = self.txn(txn).await.map_err(|f| write_error(f, &Bytes::new()))?;
        let revision = header_revision(response.0.header.as_ref())?;
        if response.succeeded() {
            let prev = match response.0.responses.get_mut(0).and_then(|r| r.response.as_mut()) {
                Some(PbTxnOpResponse::ResponseDeleteRange(deleted)) => deleted.prev_kvs.pop(),
                _ => None,
            };
            return Ok(Deleted { prev: self.to_kv(prev.ok_or_else(not_found)?)?, revision });
        }
        match range_kvs(&mut response, 0).and_then(|mut kvs| kvs.pop()) {
            None => Err(not_found()),
            Some(current) => {
                Err(StorageError::Conflict { key: key.to_string(), expected, current: Box::new(self.to_kv(current)?) })
            }
        }
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream> {
        key::validate_key(prefix, true)?;
        let start = self.watch_start(start_revision).await?;
        let items = watch::spawn(self.watch_target(prefix, false, None, PrevValues::Sent), start);
        Ok(crate::events_only(items))
    }

    async fn watch_with_progress(&self, prefix: &str, start_revision: Revision) -> Result<ProgressWatch> {
        self.progress_watch(prefix, start_revision, PrevValues::Sent).await
    }

    async fn watch_for_cache(&self, prefix: &str, start_revision: Revision) -> Result<ProgressWatch> {
        self.progress_watch(prefix, start_revision, PrevValues::Omitted).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        let options = GetOptions::new().with_count_only();
        let response = self.kv.clone().get(compactor::COMPACT_REV_KEY, Some(options)).await.map_err(map_err)?;
        header_revision(response.0.header.as_ref())
    }

    /// A count-only range of one key at `revision`: etcd refuses it exactly when a read or watch there would fail.
    async fn check_revision(&self, revision: Revision) -> Result<()> {
        let options = GetOptions::new().with_count_only().with_revision(revision.max(1));
        match self.kv.clone().get(compactor::COMPACT_REV_KEY, Some(options)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.revision_error(classify(e), revision).await),
        }
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.kv.clone().compact(revision, None).await.map(|_| ()).map_err(classify) {
            Ok(()) => {
                debug!(revision, "etcd: compacted");
                Ok(())
            }
            // Already compacted at or after `revision`: nothing to do.
            Err(Failure::Compacted) => Ok(()),
            Err(failure) => Err(self.revision_error(failure, revision).await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::orders_requested_progress;

    #[test]
    fn requested_progress_is_ordered_from_the_fixed_versions_on() {
        for old in ["3.4.23", "3.4.30", "3.5.12", "3.5.0", "3.3.27", "", "garbage"] {
            assert!(!orders_requested_progress(old), "{old}");
        }
        for fixed in ["3.4.31", "3.4.37", "3.5.13", "3.5.21", "3.6.0", "3.6.4", "4.0.0"] {
            assert!(orders_requested_progress(fixed), "{fixed}");
        }
    }
}
