//! The controller killed in the middle of a backup, and a database that is down: backups end Succeeded with a
//! verified file or Failed with a clear message, never Succeeded with a broken file.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::Duration;

use backup_apis::database::DatabaseType::VictoriaMetrics;
use backup_apis::status::Phase;
use backup_controller::destination::local::LocalDir;
use backup_controller::format::BackupReader;
use backup_controller::testing::dataset::float_series;
use backup_controller::testing::proxy::Proxy;
use backup_controller::testing::stack::{Stack, backup_spec};
use backup_controller::testing::victoria::Victoria;
use backup_controller::testing::{free_port, wait_for};

const TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_backup_then_restarted() {
    let mut stack = Stack::start().await;
    let source = Victoria::start().await;
    source.load(&float_series(5, 100, 1000, false)).await;
    let samples = source.export().await.len() as u64;
    // Slow answers: the backup takes many seconds, so the kill lands in the middle.
    let proxy = Proxy::start(source.port, 50_000).await;
    stack.start_controller();
    stack.create_backup("slow", backup_spec(VictoriaMetrics, &proxy.url, None)).await;
    stack.wait_backup("slow", Phase::Running, TIMEOUT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.kill_controller().await;

    let obj = stack.backups().get("slow").await.unwrap();
    let status = obj.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Running), "killed while running");
    assert!(status.last_backup.is_none());
    // What a crash leaves (an abort cleans up after itself; a killed process does not): a partial file and a
    // complete file the status never recorded.
    let dir = stack.backup_dir.join("default/slow");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("slow.20260101T000000000Z.tsdb.partial"), b"half").unwrap();
    std::fs::write(dir.join("slow.20260101T000001000Z.tsdb"), b"unrecorded").unwrap();
    std::fs::write(dir.join("other.20260101T000000000Z.tsdb"), b"not ours").unwrap();

    proxy.set_rate(1 << 30);
    stack.start_controller();
    let obj = stack.wait_backup("slow", Phase::Succeeded, TIMEOUT).await;
    let status = obj.status.expect("status");
    let last = status.last_backup.expect("lastBackup");
    assert_eq!(last.samples, Some(samples));
    let location = last.location.expect("location");
    assert_eq!(stack.files(), ["default/slow/other.20260101T000000000Z.tsdb".to_string(), location.clone()]);
    let reader = BackupReader::open_verified(&LocalDir::new(&stack.backup_dir), &location).await.unwrap();
    assert_eq!(reader.header().samples, samples);
    assert_eq!(Some(reader.header().payload_sha256.clone()), last.sha256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_then_back() {
    let mut stack = Stack::start().await;
    let port = free_port();
    stack.start_controller();
    stack.create_backup("later", backup_spec(VictoriaMetrics, &format!("http://127.0.0.1:{port}"), None)).await;
    let obj = stack.wait_backup("later", Phase::Failed, TIMEOUT).await;
    let status = obj.status.expect("status");
    let message = status.message.unwrap_or_default();
    assert!(message.contains("failed") && message.contains(&format!("127.0.0.1:{port}")), "{message}");
    let ready = status.conditions.unwrap_or_default().into_iter().find(|c| c.r#type == "Ready").expect("Ready");
    assert_eq!(ready.reason.as_deref(), Some("BackupFailed"));
    assert!(stack.files().is_empty(), "no file from a failed backup: {:?}", stack.files());

    let source = Victoria::start_on(port).await;
    source.load(&float_series(6, 10, 100, false)).await;
    let obj = stack.wait_backup("later", Phase::Succeeded, TIMEOUT).await;
    let status = obj.status.expect("status");
    let ready = status.conditions.unwrap_or_default().into_iter().find(|c| c.r#type == "Ready").expect("Ready");
    assert_eq!(ready.reason.as_deref(), Some("BackupSucceeded"));
    wait_for("one file", TIMEOUT, || async {
        let files = stack.files();
        if files.len() == 1 { Ok(()) } else { Err(format!("{files:?}")) }
    })
    .await;
}
