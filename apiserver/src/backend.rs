//! The storage backend the flags choose: etcd (`--etcd-servers`), or the embedded store on disk (`--data-dir`, the
//! standalone default) or in memory (`--in-memory`); wrapped so every operation is timed in the metrics; with
//! `--encryption-provider-config`, the configured resources encrypted over it ([`crate::encryption`]); and the
//! watch cache over that (`--watch-cache`, on by default as upstream): one prefix per served resource, listed and
//! watched from the start.
//!
//! registry store → **backend** (`backup_storage`: watch cache → encryption → instrumented storage) → etcd or the
//! embedded store.

use std::sync::Arc;

use anyhow::Context;
use backup_apis::{Kind, ResourceInfo};
use backup_storage::Storage;
use backup_storage::cacher::{CachedPrefix, Cacher, CacherConfig};
use backup_storage::embedded::EmbeddedStorage;
use backup_storage::encryption::EncryptedStorage;
use backup_storage::etcd::{EtcdConfig, EtcdStorage};

use crate::encryption;
use crate::metrics::{InstrumentedStorage, Metrics};
use crate::options::Options;
use crate::registry::attrs;

/// The opened backend.
pub struct Backend {
    /// Every write, and the reads a write starts from (timed in the metrics).
    pub storage: Arc<dyn Storage>,
    /// The watch cache over `storage` (so that the metrics count only what reaches the backend); `None` with
    /// `--watch-cache=false`.
    pub cache: Option<Arc<Cacher>>,
    /// The name of its health check (`etcd` or `storage`).
    pub check_name: &'static str,
}

/// Open the backend and start the watch cache of `kinds` over it (needs a tokio runtime).
pub async fn open(opts: &Options, metrics: &Arc<Metrics>, kinds: &[Arc<dyn Kind>]) -> anyhow::Result<Backend> {
    let (raw, check_name) = open_raw(opts).await?;
    let mut storage: Arc<dyn Storage> = Arc::new(InstrumentedStorage { inner: raw, metrics: metrics.clone() });
    if let Some(path) = &opts.encryption_provider_config {
        let served: Vec<ResourceInfo> = kinds.iter().map(|k| k.resource().clone()).collect();
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let resources = encryption::from_file(path, &text, &served)?;
        metrics.encryption(&resources);
        let encrypted = Arc::new(EncryptedStorage::new(storage, &opts.etcd_prefix, resources));
        if opts.encryption_provider_config_automatic_reload {
            let reload = encryption::Reload { path: path.clone(), served, loaded: text, metrics: metrics.clone() };
            tokio::spawn(reload.run(Arc::downgrade(&encrypted)));
        }
        storage = encrypted;
    }
    let cache = if opts.watch_cache {
        let prefixes = kinds.iter().map(|k| {
            let info = k.resource();
            CachedPrefix::with_attrs(format!("/{}/{}/", info.group, info.plural), attrs::hook())
        });
        let cacher = Arc::new(Cacher::new(storage.clone(), CacherConfig::new(prefixes)).context("the watch cache")?);
        metrics.watch_cache(cacher.metrics().clone());
        Some(cacher)
    } else {
        None
    };
    Ok(Backend { storage, cache, check_name })
}

async fn open_raw(opts: &Options) -> anyhow::Result<(Arc<dyn Storage>, &'static str)> {
    if !opts.etcd_servers.is_empty() {
        let config = EtcdConfig {
            servers: opts.etcd_servers.clone(),
            cafile: opts.etcd_cafile.clone(),
            certfile: opts.etcd_certfile.clone(),
            keyfile: opts.etcd_keyfile.clone(),
            prefix: opts.etcd_prefix.clone(),
            compaction_interval: opts.etcd_compaction_interval,
            ..EtcdConfig::default()
        };
        let s = EtcdStorage::connect(&config).await.context("connecting to etcd")?;
        return Ok((Arc::new(s), "etcd"));
    }
    if opts.in_memory {
        return Ok((Arc::new(EmbeddedStorage::in_memory().context("opening the in-memory store")?), "storage"));
    }
    let dir = match (&opts.data_dir, opts.standalone) {
        (Some(d), _) => d.clone(),
        (None, true) => "standalone-data".into(),
        (None, false) => anyhow::bail!("no storage: give --etcd-servers, or --data-dir for the embedded store"),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("store.redb");
    let s = tokio::task::spawn_blocking(move || EmbeddedStorage::open(path))
        .await
        .context("opening the embedded store")?
        .context("opening the embedded store")?;
    Ok((Arc::new(s), "storage"))
}
