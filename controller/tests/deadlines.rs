//! Deadlines and stopping: a database that trickles fails the backup at its deadline; a spec change, a run-now
//! request, a deletion and a controller shutdown stop a running backup promptly, remove its partial file and say
//! why.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::{Duration, Instant};

use backup_apis::backup::TimeseriesDBBackupSpec;
use backup_apis::database::DatabaseType::VictoriaMetrics;
use backup_apis::status::Phase;
use backup_controller::controller::Backoff;
use backup_controller::controller::backup::RUN_NOW;
use backup_controller::testing::dataset::float_series;
use backup_controller::testing::fake::{Behaviour, FakeDatabase};
use backup_controller::testing::proxy::Proxy;
use backup_controller::testing::stack::{Stack, backup_spec};
use backup_controller::testing::victoria::Victoria;
use backup_controller::testing::wait_for;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);

/// A database that sends a byte every 2 s: each read comes well within the per-read timeout, so only the deadline
/// of the whole backup ends it.
async fn trickling() -> FakeDatabase {
    let body = br#"{"metric":{"__name__":"m"},"values":[1,2,3],"timestamps":[1,2,3]}"#.repeat(10);
    FakeDatabase::start(Behaviour::Trickle { interval: Duration::from_secs(2), body }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_database_fails_at_the_deadline() {
    let mut stack = Stack::start().await;
    // Failed stays long enough to be seen (not retried at once).
    stack.settings.backoff = Backoff::new(Duration::from_secs(30), Duration::from_secs(30));
    let db = trickling().await;
    stack.start_controller();
    let spec = TimeseriesDBBackupSpec { timeout: Some("3s".into()), ..backup_spec(VictoriaMetrics, &db.url, None) };
    let started = Instant::now();
    stack.create_backup("trickle", spec).await;
    let failed = stack.wait_backup("trickle", Phase::Failed, TIMEOUT).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(8), "failed {elapsed:?} after creation, with a 3 s deadline");
    let message = failed.status.unwrap().message.unwrap();
    assert!(message.contains("did not complete within 3s (spec.timeout)"), "{message}");
    assert!(stack.files().is_empty(), "the partial file is removed: {:?}", stack.files());
}

/// A slow backup (a throttled VictoriaMetrics) and what it was started with.
async fn slow_backup(stack: &mut Stack, name: &str) -> (Victoria, Proxy) {
    let source = Victoria::start().await;
    source.load(&float_series(21, 40, 500, false)).await;
    let proxy = Proxy::start(source.port, 20_000).await;
    stack.start_controller();
    stack.create_backup(name, backup_spec(VictoriaMetrics, &proxy.url, None)).await;
    wait_for("a partial file", TIMEOUT, || async {
        let files = stack.files();
        if files.iter().any(|f| f.ends_with(".partial")) { Ok(()) } else { Err(format!("{files:?}")) }
    })
    .await;
    (source, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_change_stops_the_running_backup_and_starts_one_with_the_new_spec() {
    let mut stack = Stack::start().await;
    let (source, _proxy) = slow_backup(&mut stack, "fixed").await;
    let samples = source.export().await.len() as u64;
    // The URL fixed (here: no more throttling proxy): the running backup stops, a new one runs against the new URL.
    let started = Instant::now();
    let patch = json!({"spec": {"database": {"url": source.url}}});
    stack.backups().patch("fixed", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    let done = stack.wait_backup("fixed", Phase::Succeeded, TIMEOUT).await;
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let status = done.status.unwrap();
    assert_eq!(status.last_backup.unwrap().samples, Some(samples));
    let running = status.conditions.unwrap().into_iter().find(|c| c.r#type == "Running").unwrap();
    assert_eq!(running.reason.as_deref(), Some("BackupSucceeded"));
    assert_eq!(stack.files().len(), 1, "{:?}", stack.files());
    assert!(stack.files().iter().all(|f| !f.ends_with(".partial")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_now_request_restarts_the_running_backup() {
    let mut stack = Stack::start().await;
    let (source, proxy) = slow_backup(&mut stack, "again").await;
    let first = stack.backups().get("again").await.unwrap().status.unwrap().message.unwrap();
    assert!(first.ends_with("running"), "{first}");
    proxy.set_rate(1 << 30);
    let annotation = json!({"metadata": {"annotations": {RUN_NOW: "now"}}});
    stack.backups().patch("again", &PatchParams::default(), &Patch::Merge(annotation)).await.unwrap();
    let done = wait_for("the requested backup", TIMEOUT, || async {
        let obj = stack.backups().get("again").await.map_err(|e| e.to_string())?;
        let annotated = obj.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(RUN_NOW));
        let phase = obj.status.as_ref().and_then(|s| s.phase);
        if !annotated && phase == Some(Phase::Succeeded) { Ok(obj) } else { Err(format!("{annotated} {phase:?}")) }
    })
    .await;
    let last = done.status.unwrap().last_backup.unwrap();
    assert_eq!(last.samples, Some(source.export().await.len() as u64));
    assert!(!first.contains(&last.id), "a new run: {first} / {}", last.id);
    assert_eq!(stack.files().len(), 1, "{:?}", stack.files());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_object_stops_its_backup() {
    let mut stack = Stack::start().await;
    let (_source, _proxy) = slow_backup(&mut stack, "gone").await;
    stack.backups().delete("gone", &DeleteParams::default()).await.unwrap();
    let started = Instant::now();
    wait_for("the partial file to go", Duration::from_secs(5), || async {
        let files = stack.files();
        if files.is_empty() { Ok(()) } else { Err(format!("{files:?}")) }
    })
    .await;
    // Nothing is committed for the deleted object afterwards either.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(stack.files().is_empty(), "{:?}", stack.files());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_running_backup_and_says_so() {
    let mut stack = Stack::start().await;
    let (source, proxy) = slow_backup(&mut stack, "interrupted").await;
    let took = stack.stop_controller().await;
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    let status = stack.backups().get("interrupted").await.unwrap().status.unwrap();
    assert_eq!(status.phase, Some(Phase::Pending));
    let message = status.message.unwrap();
    assert!(
        message.contains("the controller is shutting down; it runs again when the controller is back"),
        "{message}"
    );
    assert!(stack.files().is_empty(), "the partial file is removed: {:?}", stack.files());
    // Not a failure: the next controller runs it at once.
    assert_eq!(status.consecutive_failures, None);
    proxy.set_rate(1 << 30);
    stack.start_controller();
    let done = stack.wait_backup("interrupted", Phase::Succeeded, TIMEOUT).await;
    assert_eq!(done.status.unwrap().last_backup.unwrap().samples, Some(source.export().await.len() as u64));
}
