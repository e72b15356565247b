//! The embedded backend: etcd's semantics in one local redb file, or in memory, for single-replica installs and
//! tests.
//!
//! filters → endpoints → registry store → strategy → storage → **redb** (instead of etcd).
//!
//! Three tables: `kv` (current values with their create/mod revisions), `history` (one event per revision, with
//! the previous value: what watches replay and what a list at a past revision undoes) and `meta` (the global
//! revision, persisted and never reset, the compacted revision and the history's size). Writes queue up and one
//! committer at a time commits what has queued in one redb transaction ([`write`]); reads use redb's MVCC
//! snapshots ([`read`]); watches replay history, then follow a broadcast of committed events ([`watch`]). History is kept
//! to `history_limit` events (and `history_bytes_limit` bytes): older revisions read as `Compacted`.

mod codec;
mod read;
mod watch;
mod write;

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::broadcast;

use self::write::{Op, Outcome};
use crate::{
    Deleted, Event, KeyValue, ListOptions, ListResult, ProgressMode, ProgressWatch, Result, Revision, Storage,
    StorageError, WatchStream, check_value_size, key,
};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const HISTORY: TableDefinition<i64, &[u8]> = TableDefinition::new("history");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";
const META_HISTORY_BYTES: &str = "history_bytes";

/// Where and how to keep the embedded store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// The database file (created if missing); `None` keeps everything in memory, gone when the store is dropped.
    pub path: Option<PathBuf>,
    /// Keep about this many events of history (default 10,000); older revisions are compacted away.
    pub history_limit: u64,
    /// Keep at most about this many bytes of history (default 256 MiB), whatever `history_limit` allows.
    pub history_bytes_limit: u64,
    /// redb's page cache (default 64 MiB).
    pub cache_bytes: usize,
    /// Committed events buffered for live watches (default 4,096); a watch that falls further behind re-reads
    /// them from history.
    pub watch_buffer: usize,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            path: None,
            history_limit: 10_000,
            history_bytes_limit: 256 * 1024 * 1024,
            cache_bytes: 64 * 1024 * 1024,
            watch_buffer: 4096,
        }
    }
}

/// [`Storage`] in one redb file or in memory. Cheap to clone; clones share the database, which is closed when the
/// last clone is dropped (once no call is running; open watches do not keep it open, they end with `Unavailable`).
#[derive(Clone)]
pub struct EmbeddedStorage {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    config: EmbeddedConfig,
    /// Writes waiting to be committed, and whether a committer runs.
    queue: Mutex<write::Queue>,
    /// Every committed event, in revision order.
    events: broadcast::Sender<Arc<Event>>,
    /// The last committed revision.
    revision: AtomicI64,
}

impl EmbeddedStorage {
    /// Open (or create) the store at `path`. Blocks while redb opens the file.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        Self::with_config(EmbeddedConfig { path: Some(path.into()), ..EmbeddedConfig::default() })
    }

    /// A store that lives in memory only.
    pub fn in_memory() -> Result<Self> {
        Self::with_config(EmbeddedConfig::default())
    }

    /// Open the store `config` describes. Blocks while redb opens the file.
    pub fn with_config(config: EmbeddedConfig) -> Result<Self> {
        let mut builder = redb::Builder::new();
        builder.set_cache_size(config.cache_bytes);
        let db = match &config.path {
            Some(path) => builder.create(path),
            None => builder.create_with_backend(redb::backends::InMemoryBackend::new()),
        }
        .map_err(db_error)?;
        let revision = initialize(&db)?;
        let (events, _) = broadcast::channel(config.watch_buffer.max(1));
        let inner = Inner {
            db,
            config,
            queue: Mutex::new(write::Queue::default()),
            events,
            revision: AtomicI64::new(revision),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    async fn write(&self, op: Op) -> Result<Outcome> {
        write::submit(&self.inner, op).await
    }

    /// Run redb work on the blocking pool.
    async fn blocking<T: Send + 'static>(&self, work: impl FnOnce(&Inner) -> Result<T> + Send + 'static) -> Result<T> {
        let inner = self.inner.clone();
        spawn_blocking(move || work(&inner)).await
    }
}

/// Create the tables and the revision counter of a new store; the last committed revision.
fn initialize(db: &Database) -> Result<Revision> {
    let txn = db.begin_write().map_err(db_error)?;
    let revision = {
        txn.open_table(KV).map_err(db_error)?;
        txn.open_table(HISTORY).map_err(db_error)?;
        let mut meta = txn.open_table(META).map_err(db_error)?;
        let stored = meta.get(META_REVISION).map_err(db_error)?.map(|v| v.value());
        match stored {
            Some(revision) => revision,
            None => {
                // As etcd: an empty store is at revision 1, its first write is revision 2.
                meta.insert(META_REVISION, 1).map_err(db_error)?;
                meta.insert(META_COMPACTED, 0).map_err(db_error)?;
                meta.insert(META_HISTORY_BYTES, 0).map_err(db_error)?;
                1
            }
        }
    };
    txn.commit().map_err(db_error)?;
    Ok(revision)
}

fn db_error(e: impl Into<redb::Error>) -> StorageError {
    StorageError::Internal(format!("embedded store: {}", e.into()))
}

async fn spawn_blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::Internal(format!("embedded store task failed: {e}")))?
}

/// A lock that a panicked holder left behind is still usable: the data it guards is replaced wholesale.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unexpected(outcome: Outcome) -> StorageError {
    StorageError::Internal(format!("embedded store: unexpected write outcome {outcome:?}"))
}

#[async_trait::async_trait]
impl Storage for EmbeddedStorage {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        key::validate_key(key, false)?;
        let key = key.to_string();
        self.blocking(move |inner| read::get(&inner.db, &key)).await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        key::validate_key(prefix, true)?;
        key::list_start(prefix, opts.start_key.as_deref())?;
        let prefix = prefix.to_string();
        self.blocking(move |inner| read::list(&inner.db, &prefix, &opts)).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        key::validate_key(key, false)?;
        check_value_size(&value)?;
        match self.write(Op::Create { key: key.to_string(), value }).await? {
            Outcome::Written(kv) => Ok(kv),
            other => Err(unexpected(other)),
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected_revision: Revision) -> Result<KeyValue> {
        key::validate_key(key, false)?;
        check_value_size(&value)?;
        match self.write(Op::Update { key: key.to_string(), value, expected: expected_revision }).await? {
            Outcome::Written(kv) => Ok(kv),
            other => Err(unexpected(other)),
        }
    }

    async fn delete(&self, key: &str, expected_revision: Option<Revision>) -> Result<Deleted> {
        key::validate_key(key, false)?;
        match self.write(Op::Delete { key: key.to_string(), expected: expected_revision }).await? {
            Outcome::Deleted(deleted) => Ok(deleted),
            other => Err(unexpected(other)),
        }
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream> {
        key::validate_key(prefix, true)?;
        let items = watch::spawn(&self.inner, prefix.to_string(), start_revision, false);
        Ok(crate::events_only(items))
    }

    async fn watch_with_progress(&self, prefix: &str, start_revision: Revision) -> Result<ProgressWatch> {
        key::validate_key(prefix, true)?;
        let items = watch::spawn(&self.inner, prefix.to_string(), start_revision, true);
        Ok(ProgressWatch { items: Box::pin(items), mode: ProgressMode::Continuous })
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.inner.revision.load(Ordering::Acquire))
    }

    async fn check_revision(&self, revision: Revision) -> Result<()> {
        self.blocking(move |inner| read::check_revision(&inner.db, revision)).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.write(Op::Compact { revision }).await? {
            Outcome::Compacted => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn health(&self) -> Result<()> {
        self.blocking(|inner| inner.db.begin_read().map(|_| ()).map_err(db_error)).await
    }
}
