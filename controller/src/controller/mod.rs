//! The reconcilers, run by kube-runtime's `Controller` over the typed client: [`backup`] for TimeseriesDBBackup,
//! [`restore`] for TimeseriesDBRestore; with [`jobs`] (the backups and restores in flight, their slots and
//! cancellation), [`connect`] (an endpoint's TLS settings and credentials), [`status`] (conditions, status patches)
//! and [`schedule`] (cron in a time zone).
//!
//! API → **controller (this module)** → backup file / destination → engine → database.
//!
//! A reconcile decides and returns at once: a backup or restore runs as a job of its own ([`jobs`]), which waits for
//! a slot, runs under a deadline, and writes its outcome to status. While a job is in flight, its object's reconcile
//! comes back every second to stop it if the object changed or is gone. Failures are shown in status and retried
//! with exponential backoff kept in status (`consecutiveFailures`, `nextRetryTime`), so a restart does not retry at
//! once; a run found `Running` without a job (the controller crashed) counts as a failure.
//!
//! Around them: [`leader`] (only the leader runs them), [`events`] (Kubernetes Events of what jobs do),
//! [`metrics`] and [`serve`] (`/metrics`, `/healthz`, `/readyz`); a running job writes its progress to status.

pub mod backup;
pub mod connect;
pub mod events;
pub mod jobs;
pub mod leader;
pub mod metrics;
pub mod restore;
pub mod schedule;
pub mod serve;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use backup_apis::backup::TimeseriesDBBackup;
use backup_apis::restore::TimeseriesDBRestore;
use futures::{FutureExt, StreamExt};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};

use crate::destination::locations::Locations;
use crate::http::Http;
use crate::http::transport::Connector;
use crate::secrets::SecretSource;
use jobs::Jobs;

/// What the reconcilers and jobs share.
pub struct Context {
    pub client: Client,
    /// The operator's named locations (`--locations`, `--backup-dir`).
    pub locations: Arc<Locations>,
    /// The HTTP client of endpoints without TLS settings or credentials (timeouts, piece limit).
    pub http: Http,
    /// Builds the transports of endpoints with TLS settings.
    pub connector: Arc<Connector>,
    /// Where CA bundles and credentials are read.
    pub secrets: Arc<dyn SecretSource>,
    pub backoff: Backoff,
    pub jobs: Arc<Jobs>,
    /// The deadline of a backup or restore without `spec.timeout`.
    pub default_timeout: Duration,
    pub metrics: Arc<metrics::Metrics>,
    pub events: events::Events,
}

/// How often a running job writes its progress to status, at most.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// How often the metrics of deleted objects are dropped.
const PRUNE_METRICS: Duration = Duration::from_secs(10);
/// How often a reconcile looks at the object of a job in flight (to stop it when the object changed or is gone).
pub const WATCH_IN_FLIGHT: Duration = Duration::from_secs(1);
/// Reconciles at once, per kind: each is a few requests, so hundreds of objects changing at once (a restart with
/// 400 backups due) queue here rather than each holding a request's buffers.
const RECONCILES: u16 = 16;
/// How long shutdown waits for stopped jobs to report.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long shutdown waits for the reconciles in flight (a few requests each) before dropping them.
const RECONCILE_GRACE: Duration = Duration::from_secs(5);

/// A reconcile failure that kube-runtime should retry: the API server could not be reached or refused a write.
/// (A failed backup or restore is not one: it is reported in status and retried by [`Backoff`].)
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error(#[from] kube::Error);

/// Runs both reconcilers until `shutdown` completes or forever; at shutdown, stops the jobs in flight and waits (a
/// few seconds at most) for them to report.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (backups, restores): (Api<TimeseriesDBBackup>, Api<TimeseriesDBRestore>) = match namespace {
        Some(ns) => (Api::namespaced(ctx.client.clone(), ns), Api::namespaced(ctx.client.clone(), ns)),
        None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
    };
    // Dropped when this future is (the controller killed, in tests): its jobs end with it.
    let _abort_jobs = AbortJobs(ctx.jobs.clone());
    let jobs = ctx.jobs.clone();
    let shutdown = futures::FutureExt::shared(Box::pin(async move {
        shutdown.await;
        jobs.shutdown();
    }));
    let config = || kube::runtime::controller::Config::default().concurrency(RECONCILES);
    let backups = Controller::new(backups, watcher::Config::default()).with_config(config());
    let restores = Controller::new(restores, watcher::Config::default()).with_config(config());
    let _prune = jobs::AbortOnDrop::spawn(prune_metrics(ctx.metrics.clone(), backups.store(), restores.store()));
    let backups =
        backups.graceful_shutdown_on(shutdown.clone()).run(backup::reconcile, error_policy, ctx.clone()).for_each({
            let metrics = ctx.metrics.clone();
            move |result| {
                log(&metrics, jobs::JobKind::Backup, result.map(|(obj, _)| obj.name));
                futures::future::ready(())
            }
        });
    let restores =
        restores.graceful_shutdown_on(shutdown.clone()).run(restore::reconcile, error_policy, ctx.clone()).for_each({
            let metrics = ctx.metrics.clone();
            move |result| {
                log(&metrics, jobs::JobKind::Restore, result.map(|(obj, _)| obj.name));
                futures::future::ready(())
            }
        });
    // kube-runtime's graceful shutdown lets the reconciles in flight finish, but one that starts before the first
    // list of the objects never ends (its runner waits for a store that the stopped watch will never fill): a
    // shutdown right after taking the lease. So the wait is bounded; dropping the streams aborts the reconciles.
    let drained = async {
        shutdown.await;
        tokio::time::sleep(RECONCILE_GRACE).await;
    };
    tokio::select! {
        _ = futures::future::join(backups, restores) => {}
        () = drained => tracing::warn!("reconciles still running {RECONCILE_GRACE:?} after the shutdown; stopping them"),
    }
    if !ctx.jobs.idle(SHUTDOWN_GRACE).await {
        tracing::warn!(jobs = ctx.jobs.count(), "jobs still stopping after {SHUTDOWN_GRACE:?}; exiting");
    }
}

struct AbortJobs(Arc<Jobs>);

impl Drop for AbortJobs {
    fn drop(&mut self) {
        self.0.abort_all();
    }
}

fn log<E: std::fmt::Display>(metrics: &metrics::Metrics, kind: jobs::JobKind, result: Result<String, E>) {
    let kind = kind.object_kind();
    match result {
        Ok(name) => tracing::debug!(kind, name, "reconciled"),
        Err(e) => {
            metrics.reconcile_error(kind);
            tracing::warn!(kind, error = %e, "reconcile failed");
        }
    }
}

/// Drops the metrics of deleted objects, every [`PRUNE_METRICS`], once the watches have listed the objects.
async fn prune_metrics(
    metrics: Arc<metrics::Metrics>,
    backups: kube::runtime::reflector::Store<TimeseriesDBBackup>,
    restores: kube::runtime::reflector::Store<TimeseriesDBRestore>,
) {
    use kube::runtime::reflector::ObjectRef;
    // kube-runtime's readiness wakes only its last waiter (the controller's own): look again every second.
    for store_ready in [backups.wait_until_ready().boxed(), restores.wait_until_ready().boxed()] {
        let mut store_ready = store_ready;
        loop {
            match tokio::time::timeout(Duration::from_secs(1), &mut store_ready).await {
                Ok(Ok(())) => break,
                Ok(Err(_)) => return,
                Err(_) => {}
            }
        }
    }
    loop {
        tokio::time::sleep(PRUNE_METRICS).await;
        metrics.retain(jobs::JobKind::Backup, |ns, name| backups.get(&ObjectRef::new(name).within(ns)).is_some());
        metrics.retain(jobs::JobKind::Restore, |ns, name| restores.get(&ObjectRef::new(name).within(ns)).is_some());
    }
}

fn error_policy<K>(_obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %error, "API request failed; retrying");
    Action::requeue(ctx.backoff.min * 5)
}

/// Exponential backoff of failed backups and restores: after `n` consecutive failures, the next attempt waits
/// `min·2^(n-1)`, at most `max`. The count and the time of the next attempt are kept in status.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max }
    }

    /// The delay after `failures` consecutive failures (at least one).
    pub fn delay(&self, failures: u32) -> Duration {
        self.min.saturating_mul(1 << failures.saturating_sub(1).min(20)).min(self.max)
    }
}

/// How long from now until `t`, at least 10 ms.
pub fn until(t: jiff::Timestamp) -> Duration {
    let d = t.duration_since(jiff::Timestamp::now());
    Duration::try_from(d).unwrap_or_default().max(Duration::from_millis(10))
}

/// `now + d`, as a status time.
pub fn after(d: Duration) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    let now = jiff::Timestamp::now();
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::SignedDuration::try_from(d).ok().and_then(|d| now.checked_add(d).ok()).unwrap_or(now),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_max() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let delays: Vec<u64> = (1..=5).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        assert_eq!(b.delay(0).as_secs(), 1);
        assert_eq!(b.delay(u32::MAX).as_secs(), 5);
    }
}
