//! The reconcilers, run by kube-runtime's `Controller` over the typed client: [`backup`] for TimeseriesDBBackup,
//! [`restore`] for TimeseriesDBRestore; with [`status`] (conditions, status patches) and [`schedule`] (cron).
//!
//! API → **controller (this module)** → backup file / destination → engine → database.
//!
//! Status is written only through the status subresource. Failures are shown in status and retried with exponential
//! backoff ([`Backoff`]); the reconcilers are idempotent, so the status writes they cause (which trigger another
//! reconcile) and a controller restart in the middle of a run are harmless.

pub mod backup;
pub mod restore;
pub mod schedule;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backup_apis::backup::TimeseriesDBBackup;
use backup_apis::restore::TimeseriesDBRestore;
use futures::StreamExt;
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};

use crate::destination::Destination;
use crate::http::Http;

/// What the reconcilers share.
pub struct Context {
    pub client: Client,
    pub destination: Arc<dyn Destination>,
    pub http: Http,
    pub backoff: Backoff,
}

/// A reconcile failure that kube-runtime should retry: the API server could not be reached or refused a write.
/// (A failed backup or restore is not one: it is reported in status and retried by [`Backoff`].)
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error(#[from] kube::Error);

/// Runs both reconcilers until `shutdown` completes (then finishing the reconciles in flight) or forever.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (backups, restores): (Api<TimeseriesDBBackup>, Api<TimeseriesDBRestore>) = match namespace {
        Some(ns) => (Api::namespaced(ctx.client.clone(), ns), Api::namespaced(ctx.client.clone(), ns)),
        None => (Api::all(ctx.client.clone()), Api::all(ctx.client.clone())),
    };
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let backups = Controller::new(backups, watcher::Config::default())
        .graceful_shutdown_on(shutdown.clone())
        .run(backup::reconcile, error_policy, ctx.clone())
        .for_each(|result| async move { log("TimeseriesDBBackup", result.map(|(obj, _)| obj.name)) });
    let restores = Controller::new(restores, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(restore::reconcile, error_policy, ctx)
        .for_each(|result| async move { log("TimeseriesDBRestore", result.map(|(obj, _)| obj.name)) });
    futures::future::join(backups, restores).await;
}

fn log<E: std::fmt::Display>(kind: &str, result: Result<String, E>) {
    match result {
        Ok(name) => tracing::debug!(kind, name, "reconciled"),
        Err(e) => tracing::warn!(kind, error = %e, "reconcile failed"),
    }
}

fn error_policy<K>(_obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %error, "API request failed; retrying");
    Action::requeue(ctx.backoff.min * 5)
}

/// Exponential backoff per object, in memory: after a failure, the next attempt waits `min·2^(n-1)`, at most `max`.
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
    state: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max, state: Mutex::new(HashMap::new()) }
    }

    /// Records a failure of `key`; returns how long to wait before the next attempt.
    pub fn failed(&self, key: &str) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let attempts = state.get(key).map_or(0, |(n, _)| *n) + 1;
        let delay = self.min.saturating_mul(1 << (attempts - 1).min(20)).min(self.max);
        state.insert(key.to_owned(), (attempts, Instant::now() + delay));
        delay
    }

    /// How long until `key` may be attempted again; zero if now.
    pub fn wait(&self, key: &str) -> Duration {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.get(key).map_or(Duration::ZERO, |(_, at)| at.saturating_duration_since(Instant::now()))
    }

    pub fn succeeded(&self, key: &str) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_max() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        assert_eq!(b.wait("a"), Duration::ZERO);
        let delays: Vec<u64> = (0..5).map(|_| b.failed("a").as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        assert!(b.wait("a") > Duration::from_secs(4));
        assert_eq!(b.wait("b"), Duration::ZERO);
        b.succeeded("a");
        assert_eq!(b.wait("a"), Duration::ZERO);
        assert_eq!(b.failed("a").as_secs(), 1);
    }
}
