//! `apiserver_storage_objects{resource="<plural>.<group>"}`: how many objects of each served resource storage holds,
//! counted in storage (not in the watch cache) at start and then every `--etcd-count-metric-poll-period` (1m), as
//! upstream's store counts them. A count costs storage one read of a single key with the range's total.

use std::sync::Arc;
use std::time::Duration;

use backup_apis::Kind;
use backup_storage::{ListOptions, Storage};
use prometheus_client::encoding::EncodeLabelSet;
use tokio::sync::watch;

use super::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub resource: String,
}

/// Count the objects of `kinds` in `storage` now and every `period` (zero: never) until `stopping` turns true.
pub fn start(
    storage: Arc<dyn Storage>,
    kinds: &[Arc<dyn Kind>],
    metrics: &Metrics,
    period: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    if period.is_zero() {
        return;
    }
    let counted: Vec<_> = kinds
        .iter()
        .map(|k| {
            let r = k.resource();
            let labels = ResourceLabels { resource: format!("{}.{}", r.plural, r.group) };
            (format!("/{}/{}/", r.group, r.plural), metrics.storage_objects.get_or_create(&labels).clone())
        })
        .collect();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
            for (prefix, gauge) in &counted {
                match count(storage.as_ref(), prefix).await {
                    Ok(n) => {
                        gauge.set(n);
                    }
                    Err(e) => tracing::debug!(%prefix, error = %e, "counting stored objects failed"),
                }
            }
        }
    });
}

/// How many keys lie under `prefix`.
async fn count(storage: &dyn Storage, prefix: &str) -> backup_storage::Result<i64> {
    let page = storage.list(prefix, ListOptions { limit: Some(1), ..ListOptions::default() }).await?;
    Ok(page.items.len() as i64 + page.remaining)
}
