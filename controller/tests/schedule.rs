//! Scheduled backups with retention, and the kubectl plugin's commands, against VictoriaMetrics.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use backup_apis::backup::{Retention, TimeseriesDBBackupSpec};
use backup_apis::database::DatabaseType::VictoriaMetrics;
use backup_apis::status::Phase;
use backup_controller::controller::backup::RUN_NOW;
use backup_controller::plugin::{self, RestoreRequest};
use backup_controller::testing::dataset::float_series;
use backup_controller::testing::stack::{Stack, backup_spec};
use backup_controller::testing::victoria::{Victoria, assert_same};
use backup_controller::testing::wait_for;
use kube::api::{Patch, PatchParams};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_second_keeps_the_last_two() {
    let mut stack = Stack::start().await;
    let source = Victoria::start().await;
    source.load(&float_series(4, 20, 100, false)).await;
    stack.start_controller();
    let spec = TimeseriesDBBackupSpec {
        schedule: Some("* * * * * *".into()),
        retention: Retention { keep_last: 2 },
        ..backup_spec(VictoriaMetrics, &source.url, None)
    };
    stack.create_backup("often", spec).await;

    let api = stack.backups();
    let mut seen = BTreeSet::new();
    let mut next_times = BTreeSet::new();
    let deadline = Instant::now() + TIMEOUT;
    while seen.len() < 3 {
        assert!(Instant::now() < deadline, "three scheduled backups within {TIMEOUT:?}: saw {seen:?}");
        let status = api.get("often").await.unwrap().status.unwrap_or_default();
        next_times.extend(status.next_schedule_time.map(|t| t.0));
        seen.extend(status.last_backup.map(|l| l.id));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(next_times.len() >= 2, "nextScheduleTime moves on: {next_times:?}");

    api.patch("often", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspend": true}}))).await.unwrap();
    let obj = wait_for("the schedule to stop", TIMEOUT, || async {
        let obj = api.get("often").await.map_err(|e| e.to_string())?;
        let status = obj.status.clone().unwrap_or_default();
        let stopped = status.phase == Some(Phase::Succeeded) && status.next_schedule_time.is_none();
        if stopped { Ok(obj) } else { Err(format!("{:?} {:?}", status.phase, status.next_schedule_time)) }
    })
    .await;
    let status = obj.status.expect("status");
    let kept = status.backups.expect("backups");
    assert_eq!(kept.len(), 2, "keepLast 2");
    assert_eq!(Some(&kept[0]), status.last_backup.as_ref(), "newest first");
    let mut locations: Vec<String> = kept.iter().filter_map(|b| b.location.clone()).collect();
    locations.sort();
    assert_eq!(stack.files(), locations, "expired files are deleted");

    // `kubectl tsdb backup now` on the suspended schedule: one more backup, the annotation cleared, still two kept.
    plugin::backup_now(&api, "often").await.unwrap();
    let before = status.last_backup.expect("lastBackup").id;
    let obj = wait_for("the requested backup", TIMEOUT, || async {
        let obj = api.get("often").await.map_err(|e| e.to_string())?;
        let annotated = obj.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(RUN_NOW));
        let last = obj.status.as_ref().and_then(|s| s.last_backup.as_ref()).map(|l| l.id.clone());
        if !annotated && last.as_ref() != Some(&before) { Ok(obj) } else { Err(format!("{annotated} {last:?}")) }
    })
    .await;
    assert_eq!(obj.status.and_then(|s| s.backups).map(|b| b.len()), Some(2));
    assert_eq!(stack.files().len(), 2);

    let table = plugin::status(&api, false, plugin::Output::Table).await.unwrap();
    assert!(table.lines().nth(1).is_some_and(|l| l.starts_with("often") && l.contains("suspended")), "{table}");

    // `kubectl tsdb restore often --to URL`: the type comes from the backup.
    let target = Victoria::start().await;
    let req = RestoreRequest { backup: "often".into(), to: target.url.clone(), ..Default::default() };
    let name = plugin::restore(&api, &stack.restores(), req).await.unwrap();
    let restore = stack.wait_restore(&name, Phase::Succeeded, TIMEOUT).await;
    assert_eq!(restore.spec.target.r#type, VictoriaMetrics);
    assert_same(&target.export().await, &source.export().await);
}
