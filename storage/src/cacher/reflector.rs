//! The reflector: one task per cached prefix that keeps its state in step with the backend.
//!
//! **backend list + one backend watch** → reflector → state and window → reads and watchers.
//!
//! It lists the prefix, then watches it from the list's revision + 1 with progress notifications, applying what
//! arrives in batches (one lock per batch) and waking watchers. The backend watch itself survives broken
//! connections and backend restarts (it resumes from its last revision); when it ends all the same (a
//! compaction past its revision, a cancelled watch), the reflector lists again: a relist, which closes the
//! watchers (they missed events) and restarts the window. Every 250 ms it closes watchers that lag.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tracing::{debug, warn};

use super::metrics;
use super::object::CachedObject;
use super::prefix::PrefixCache;
use crate::{ListOptions, ProgressStream, Storage, StorageError};

const MIN_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// Items of the backend watch applied under one lock.
const MAX_BATCH: usize = 1024;
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

pub(super) async fn run(cache: Arc<PrefixCache>, backend: Arc<dyn Storage>) {
    let mut pause = MIN_PAUSE;
    let mut listed = false;
    loop {
        match list_and_watch(&cache, backend.as_ref(), &mut listed).await {
            Ok(error) => {
                warn!(prefix = %cache.prefix, error = %error, "watch cache: the backend watch ended; listing again");
                pause = MIN_PAUSE;
            }
            Err(error) => {
                warn!(prefix = %cache.prefix, error = %error, pause_ms = pause.as_millis() as u64,
                    "watch cache: cannot list and watch; trying again");
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// List, then follow the backend watch until it ends: `Ok` with why it ended, `Err` when listing or starting the
/// watch failed.
async fn list_and_watch(
    cache: &PrefixCache,
    backend: &dyn Storage,
    listed: &mut bool,
) -> Result<StorageError, StorageError> {
    let list = backend.list(&cache.prefix, ListOptions::default()).await?;
    let revision = list.revision;
    let hook = cache.attrs.as_ref();
    let objects: Vec<_> = list.items.into_iter().map(|kv| Arc::new(CachedObject::new(kv, hook))).collect();
    let watch = backend.watch_for_cache(&cache.prefix, revision + 1).await?;
    debug!(prefix = %cache.prefix, revision, objects = objects.len(), "watch cache: listed");
    if std::mem::replace(listed, true) {
        metrics::count(&cache.metrics.relists);
    }
    cache.set_progress_mode(watch.mode);
    cache.replace(objects, revision);
    Ok(follow(cache, watch.items).await)
}

/// Apply the backend watch's items until it fails; why it did.
async fn follow(cache: &PrefixCache, mut items: ProgressStream) -> StorageError {
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            item = items.next() => {
                let Some(item) = item else {
                    return StorageError::Unavailable("the backend watch ended".into());
                };
                let mut batch = vec![item];
                while batch.len() < MAX_BATCH {
                    match items.next().now_or_never() {
                        Some(Some(item)) => batch.push(item),
                        _ => break,
                    }
                }
                if let Err(error) = cache.apply(batch) {
                    return error;
                }
            }
            _ = sweep.tick() => cache.sweep_watchers(),
        }
    }
}
