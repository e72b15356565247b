//! What the API accepts is what the controller does: a schedule that never fires is refused at create; an edited
//! schedule takes effect at once; `timeZone` moves the runs; `suspend` defers a single backup and the message clears
//! when it is lifted; a database's hostile bytes reach status escaped and capped.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::Duration;

use backup_apis::backup::{TimeseriesDBBackup, TimeseriesDBBackupSpec};
use backup_apis::database::DatabaseType::VictoriaMetrics;
use backup_apis::status::Phase;
use backup_controller::testing::dataset::float_series;
use backup_controller::testing::fake::{Behaviour, FakeDatabase};
use backup_controller::testing::stack::{NAMESPACE, Stack, backup_spec};
use backup_controller::testing::victoria::Victoria;
use backup_controller::testing::wait_for;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_time_zones_and_edits() {
    let mut stack = Stack::start().await;
    let source = Victoria::start().await;
    source.load(&float_series(51, 5, 20, false)).await;
    stack.start_controller();

    // Refused at create, with the reason.
    let never = TimeseriesDBBackupSpec {
        schedule: Some("0 0 30 2 *".into()),
        ..backup_spec(VictoriaMetrics, &source.url, None)
    };
    let err = stack
        .backups()
        .create(&PostParams::default(), &TimeseriesDBBackup::new(NAMESPACE, "never", never))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("never fires"), "{err}");

    // 03:00 in Tokyo is 18:00 UTC.
    let tokyo = TimeseriesDBBackupSpec {
        schedule: Some("0 3 * * *".into()),
        time_zone: Some("Asia/Tokyo".into()),
        ..backup_spec(VictoriaMetrics, &source.url, None)
    };
    stack.create_backup("tokyo", tokyo).await;
    let next = wait_for("tokyo's next run", TIMEOUT, || async {
        let obj = stack.backups().get("tokyo").await.map_err(|e| e.to_string())?;
        obj.status.and_then(|s| s.next_schedule_time).map(|t| t.0).ok_or_else(|| "none".to_string())
    })
    .await;
    assert_eq!(next.strftime("%H:%M:%S").to_string(), "18:00:00", "{next}");

    // Once a year, then every second: the next run is computed again at once, not in months.
    let yearly = TimeseriesDBBackupSpec {
        schedule: Some("0 0 1 1 *".into()),
        ..backup_spec(VictoriaMetrics, &source.url, None)
    };
    stack.create_backup("edited", yearly).await;
    wait_for("the yearly next run", TIMEOUT, || async {
        let obj = stack.backups().get("edited").await.map_err(|e| e.to_string())?;
        match obj.status.and_then(|s| s.next_schedule_time) {
            Some(t) if t.0 > jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let patch = json!({"spec": {"schedule": "* * * * * *"}});
    stack.backups().patch("edited", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    let done = stack.wait_backup("edited", Phase::Succeeded, Duration::from_secs(10)).await;
    assert!(done.status.unwrap().last_backup.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_defers_a_single_backup() {
    let mut stack = Stack::start().await;
    let source = Victoria::start().await;
    source.load(&float_series(52, 5, 20, false)).await;
    stack.start_controller();
    let spec = TimeseriesDBBackupSpec { suspend: true, ..backup_spec(VictoriaMetrics, &source.url, None) };
    stack.create_backup("later", spec).await;
    let waiting = stack.wait_backup("later", Phase::Pending, TIMEOUT).await;
    let message = waiting.status.unwrap().message.unwrap_or_default();
    assert!(message.starts_with("suspended"), "{message}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(stack.files().is_empty(), "no backup while suspended: {:?}", stack.files());
    let patch = json!({"spec": {"suspend": false}});
    stack.backups().patch("later", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    let done = stack.wait_backup("later", Phase::Succeeded, TIMEOUT).await;
    let message = done.status.unwrap().message.unwrap_or_default();
    assert!(!message.contains("suspended"), "{message}");
    assert_eq!(stack.files().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_from_a_database_reach_status_escaped_and_capped() {
    let mut stack = Stack::start().await;
    let mut body = b"\x1b[2J\x1b]0;pwned\x07 \x00\x01\xff\xfe garbage ".to_vec();
    body.extend(std::iter::repeat_n(b'A', 100_000));
    let db = FakeDatabase::start(Behaviour::Answer { status: 500, content_type: "text/plain", body }).await;
    stack.start_controller();
    stack.create_backup("hostile", backup_spec(VictoriaMetrics, &db.url, None)).await;
    let failed = stack.wait_backup("hostile", Phase::Failed, TIMEOUT).await;
    let status = failed.status.unwrap();
    let message = status.message.unwrap();
    assert!(!message.chars().any(char::is_control), "control characters in {message:?}");
    assert!(message.contains("\\x1b[2J"), "{message}");
    assert!(message.chars().count() <= 1025, "{} characters", message.chars().count());
    for condition in status.conditions.unwrap() {
        let text = condition.message.unwrap_or_default();
        assert!(!text.chars().any(char::is_control) && text.chars().count() <= 1025);
    }
}
