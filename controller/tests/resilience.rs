//! The controller killed in the middle of a backup, a database that is down, and an object deleted and created
//! again: backups end Succeeded with a verified file or Failed with a clear message, never Succeeded with a broken
//! file; and an object's cleanup touches only its own (UID's) files.

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
use kube::api::DeleteParams;

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
    let uid = obj.metadata.uid.clone().expect("uid");
    let status = obj.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Running), "killed while running");
    assert!(status.last_backup.is_none());
    // What a crash leaves (an abort cleans up after itself; a killed process does not): a partial file and a
    // complete file the status never recorded, both with this object's UID. Beside them, files that are not its
    // own: another object's, an earlier object's of the same name (another UID), and one from before UIDs were
    // recorded.
    let dir = stack.backup_dir.join("default/slow");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("slow.{uid}.20260101T000000000Z.tsdb.partial")), b"half").unwrap();
    std::fs::write(dir.join(format!("slow.{uid}.20260101T000001000Z.tsdb")), b"unrecorded").unwrap();
    let others = [
        "other.6f1c0a52-7d0e-4d8f-9a51-1f2e3d4c5b6a.20260101T000000000Z.tsdb",
        "slow.0b7c6d5e-4f3a-4b2c-8d1e-9f8a7b6c5d4e.20260101T000000000Z.tsdb",
        "slow.0b7c6d5e-4f3a-4b2c-8d1e-9f8a7b6c5d4e.20260101T000002000Z.tsdb.partial",
        "slow.20260101T000000000Z.tsdb",
    ];
    for file in others {
        std::fs::write(dir.join(file), b"not ours").unwrap();
    }

    proxy.set_rate(1 << 30);
    stack.start_controller();
    // Found Running without a job: counted as a failure (a crash loop backs off), then run again.
    let obj = stack.wait_backup("slow", Phase::Succeeded, TIMEOUT).await;
    let status = obj.status.expect("status");
    let last = status.last_backup.expect("lastBackup");
    assert_eq!(last.samples, Some(samples));
    let location = last.location.expect("location");
    assert!(location.starts_with(&format!("default/slow/slow.{uid}.")), "{location}");
    let mut want: Vec<String> = others.iter().map(|f| format!("default/slow/{f}")).collect();
    want.push(location.clone());
    want.sort();
    assert_eq!(stack.files(), want);
    let reader = BackupReader::open_verified(&LocalDir::new(&stack.backup_dir), &location, None).await.unwrap();
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

/// `kubectl delete` and the same manifest applied again: the new object starts a new history beside the old one's
/// files, which no cleanup touches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreated_object_keeps_the_earlier_backups() {
    let mut stack = Stack::start().await;
    let source = Victoria::start().await;
    source.load(&float_series(7, 10, 100, false)).await;
    stack.start_controller();
    let spec = backup_spec(VictoriaMetrics, &source.url, None);
    let first = stack.create_backup("vm-good", spec.clone()).await;
    let first_uid = first.metadata.uid.expect("uid");
    let done = stack.wait_backup("vm-good", Phase::Succeeded, TIMEOUT).await;
    let first_file = done.status.and_then(|s| s.last_backup).and_then(|l| l.location).expect("location");
    assert!(first_file.contains(&first_uid), "{first_file}");
    // A crash of the first object's last run left a partial file.
    let partial = format!("default/vm-good/vm-good.{first_uid}.20260101T000000000Z.tsdb.partial");
    std::fs::write(stack.backup_dir.join(&partial), b"half").unwrap();

    stack.backups().delete("vm-good", &DeleteParams::default()).await.unwrap();
    wait_for("the object to be gone", TIMEOUT, || async {
        match stack.backups().get_opt("vm-good").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let second = stack.create_backup("vm-good", spec).await;
    let second_uid = second.metadata.uid.expect("uid");
    assert_ne!(first_uid, second_uid);
    let done = wait_for("the new object's backup", TIMEOUT, || async {
        let obj = stack.backups().get("vm-good").await.map_err(|e| e.to_string())?;
        let location = obj.status.as_ref().and_then(|s| s.last_backup.as_ref()).and_then(|l| l.location.clone());
        match location {
            Some(l) if l.contains(&second_uid) => Ok(l),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let mut want = vec![first_file, partial, done];
    want.sort();
    assert_eq!(stack.files(), want, "the earlier object's files are kept");
    assert_eq!(want.iter().filter(|f| f.contains(&first_uid)).count(), 2);
}
