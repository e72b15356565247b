//! Progress of a running backup: `status.progress` (samples and bytes so far, their rates, when) written at most
//! every 5 seconds while it runs, shown by `kubectl tsdb status`, removed when it ends; the outcome in the
//! controller's metrics.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::Duration;

use backup_apis::database::DatabaseType::VictoriaMetrics;
use backup_apis::status::Phase;
use backup_controller::testing::dataset::float_series;
use backup_controller::testing::proxy::Proxy;
use backup_controller::testing::stack::{Stack, backup_spec};
use backup_controller::testing::victoria::Victoria;
use backup_controller::testing::wait_for;

const TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_backup_reports_its_progress() {
    let mut stack = Stack::start().await;
    let source = Victoria::start().await;
    source.load(&float_series(9, 100, 1000, false)).await;
    let samples = source.export().await.len() as u64;
    // Slow answers: the backup runs for many seconds.
    let proxy = Proxy::start(source.port, 150_000).await;
    stack.start_controller();
    stack.create_backup("slow", backup_spec(VictoriaMetrics, &proxy.url, None)).await;
    let api = stack.backups();
    let progress_after = |after: Option<jiff::Timestamp>| {
        let api = api.clone();
        async move {
            wait_for("a progress update", TIMEOUT, || async {
                let obj = api.get("slow").await.map_err(|e| e.to_string())?;
                let status = obj.status.clone().unwrap_or_default();
                match &status.progress {
                    Some(p) if p.samples.unwrap_or(0) > 0 && p.update_time.as_ref().map(|t| t.0) > after => {
                        Ok((obj.clone(), p.clone()))
                    }
                    _ => Err(format!("{:?} {:?}", status.phase, status.progress)),
                }
            })
            .await
        }
    };
    let (obj, first) = progress_after(None).await;
    assert_eq!(obj.status.as_ref().unwrap().phase, Some(Phase::Running));
    assert!(first.samples.unwrap() < samples, "{first:?}");
    assert!(first.samples_per_second.unwrap() > 0, "{first:?}");
    assert!(first.bytes.is_some() && first.bytes_per_second.is_some(), "{first:?}");
    let table = backup_controller::plugin::table(&[obj], false, false, jiff::Timestamp::now());
    assert!(table.contains("Running (") && table.contains("samples/s"), "kubectl tsdb status:\n{table}");

    // The next update comes no sooner than 5 s later, with more samples.
    let t1 = first.update_time.clone().unwrap().0;
    let (_, second) = progress_after(Some(t1)).await;
    let t2 = second.update_time.clone().unwrap().0;
    let apart = Duration::try_from(t2.duration_since(t1)).unwrap();
    assert!(apart >= Duration::from_millis(4900), "updates {apart:?} apart");
    assert!(second.samples.unwrap() >= first.samples.unwrap(), "{first:?} then {second:?}");

    // Done: no progress left in status; the figures in the metrics.
    proxy.set_rate(1 << 30);
    let done = stack.wait_backup("slow", Phase::Succeeded, TIMEOUT).await;
    let status = done.status.unwrap();
    assert_eq!(status.progress, None);
    assert_eq!(status.last_backup.as_ref().unwrap().samples, Some(samples));
    let metrics = stack.metrics.encode();
    let line = format!(r#"backup_controller_backup_last_samples{{namespace="default",name="slow"}} {samples}"#);
    assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    assert!(
        metrics.contains(r#"backup_controller_backup_last_success_timestamp_seconds{namespace="default",name="slow"}"#)
    );
    stack.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_deleted_objects_go() {
    let mut stack = Stack::start().await;
    let source = Victoria::start().await;
    source.load(&float_series(10, 5, 100, false)).await;
    stack.start_controller();
    stack.create_backup("gone", backup_spec(VictoriaMetrics, &source.url, None)).await;
    stack.create_backup("stays", backup_spec(VictoriaMetrics, &source.url, None)).await;
    stack.wait_backup("gone", Phase::Succeeded, TIMEOUT).await;
    stack.wait_backup("stays", Phase::Succeeded, TIMEOUT).await;
    assert!(stack.metrics.encode().contains(r#"name="gone""#));
    stack.backups().delete("gone", &Default::default()).await.unwrap();
    let metrics = stack.metrics.clone();
    wait_for("the deleted backup's series to go", Duration::from_secs(30), || async {
        let text = metrics.encode();
        if text.contains(r#"name="gone""#) { Err(text) } else { Ok(()) }
    })
    .await;
    assert!(stack.metrics.encode().contains(r#"name="stays""#));
    stack.stop_controller().await;
}

/// The binary against the standalone server (no `events.k8s.io`, no `--leader-elect`): it says once that it writes
/// no Events, leads, answers its probes, and backs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_standalone_skips_events_and_answers_probes() {
    let stack = Stack::start().await;
    let source = Victoria::start().await;
    source.load(&float_series(12, 5, 100, false)).await;
    let port = backup_controller::testing::free_port();
    let log = stack.tmp.path().join("controller.log");
    let args = vec![
        format!("--kubeconfig={}", stack.tmp.path().join("kubeconfig").display()),
        format!("--backup-dir={}", stack.backup_dir.display()),
        format!("--secrets-dir={}", stack.secrets_dir.display()),
        format!("--metrics-bind-address=127.0.0.1:{port}"),
    ];
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_backup-controller"));
    let mut controller = backup_controller::testing::Process::spawn(binary, &args, log.clone());
    let http = backup_controller::testing::http();
    let base = format!("http://127.0.0.1:{port}");
    controller.wait_ready(&http, &format!("{base}/readyz"), "backup-controller").await;
    let text = |path: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let body = http.get(&format!("{base}{path}")).await.unwrap();
            String::from_utf8(body.bytes(1 << 20).await.unwrap().to_vec()).unwrap()
        }
    };
    assert_eq!(text("/healthz").await, "ok");
    assert!(text("/metrics").await.contains("backup_controller_leader 1"));
    stack.create_backup("bin", backup_spec(VictoriaMetrics, &source.url, None)).await;
    stack.wait_backup("bin", Phase::Succeeded, TIMEOUT).await;
    let metrics = text("/metrics").await;
    assert!(
        metrics.contains(r#"backup_controller_backup_last_success_timestamp_seconds{namespace="default",name="bin"}"#),
        "{metrics}"
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(log.matches("no Events are written").count(), 1, "one line says Events are skipped:\n{log}");
}
