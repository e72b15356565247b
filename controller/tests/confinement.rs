//! Tenant confinement (issue 14): two namespaces, a TimeseriesDBBackup of the same name in each, one with an
//! adversarial `spec.destination.path` pointing at the other's directory and with tampered
//! `status.backups[].location`s. Each keeps its backups intact, and each backup is readable only by restores of its
//! own object.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::Duration;

use backup_apis::backup::{Destination, Retention, TimeseriesDBBackup};
use backup_apis::database::DatabaseType::VictoriaMetrics;
use backup_apis::restore::TimeseriesDBRestore;
use backup_apis::status::Phase;
use backup_controller::controller::backup::RUN_NOW;
use backup_controller::plugin::backup_now;
use backup_controller::testing::dataset::float_series;
use backup_controller::testing::stack::{Stack, backup_spec, restore_spec};
use backup_controller::testing::victoria::Victoria;
use backup_controller::testing::wait_for;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(120);

async fn wait_backup(
    api: &Api<TimeseriesDBBackup>,
    name: &str,
    check: impl Fn(&TimeseriesDBBackup) -> bool,
) -> TimeseriesDBBackup {
    wait_for(&format!("TimeseriesDBBackup {name}"), TIMEOUT, || async {
        let obj = api.get(name).await.map_err(|e| e.to_string())?;
        match check(&obj) {
            true => Ok(obj),
            false => Err(format!("{:?}", obj.status)),
        }
    })
    .await
}

async fn wait_restore(api: &Api<TimeseriesDBRestore>, name: &str, phase: Phase) -> TimeseriesDBRestore {
    wait_for(&format!("TimeseriesDBRestore {name} {phase:?}"), TIMEOUT, || async {
        let obj = api.get(name).await.map_err(|e| e.to_string())?;
        let status = obj.status.clone().unwrap_or_default();
        match status.phase == Some(phase) {
            true => Ok(obj),
            false => Err(format!("{:?}: {:?}", status.phase, status.message)),
        }
    })
    .await
}

fn succeeded_with(n: usize) -> impl Fn(&TimeseriesDBBackup) -> bool {
    move |o| {
        let s = o.status.clone().unwrap_or_default();
        s.phase == Some(Phase::Succeeded) && s.backups.map(|b| b.len()) == Some(n)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_cannot_reach_each_others_backups() {
    let mut stack = Stack::start().await;
    let source = Victoria::start().await;
    source.load(&float_series(3, 20, 100, false)).await;
    stack.start_controller();
    let (a, b): (Api<TimeseriesDBBackup>, Api<TimeseriesDBBackup>) =
        (Api::namespaced(stack.client.clone(), "team-a"), Api::namespaced(stack.client.clone(), "team-b"));

    // team-a's backup, at team-a/prod/.
    let spec = backup_spec(VictoriaMetrics, &source.url, None);
    a.create(&PostParams::default(), &TimeseriesDBBackup::new("team-a", "prod", spec.clone())).await.unwrap();
    let prod_a = wait_backup(&a, "prod", succeeded_with(1)).await;
    let uid_a = prod_a.metadata.uid.clone().unwrap();
    let record_a = prod_a.status.unwrap().last_backup.unwrap();
    let location_a = record_a.location.clone().unwrap();
    assert!(location_a.starts_with(&format!("team-a/prod/prod.{uid_a}.")), "{location_a}");
    let file_a = std::fs::read(stack.backup_dir.join(&location_a)).unwrap();

    // team-b's `prod` aims its path at team-a's directory: it lands under team-b/ all the same. A file of its
    // name in team-a's directory (as if its own leftover) is not touched by its cleanup.
    let decoy =
        stack.backup_dir.join(format!("team-a/prod/prod.{}.1.tsdb.partial", "0a1b2c3d-7d0e-4d8f-9a51-1f2e3d4c5b6a"));
    std::fs::write(&decoy, b"not team-b's").unwrap();
    let adversarial = backup_apis::backup::TimeseriesDBBackupSpec {
        destination: Some(Destination { location: None, path: Some("team-a/prod".into()) }),
        retention: Retention { keep_last: 1 },
        ..spec.clone()
    };
    b.create(&PostParams::default(), &TimeseriesDBBackup::new("team-b", "prod", adversarial)).await.unwrap();
    let prod_b = wait_backup(&b, "prod", succeeded_with(1)).await;
    let uid_b = prod_b.metadata.uid.clone().unwrap();
    let location_b = prod_b.status.as_ref().unwrap().last_backup.as_ref().unwrap().location.clone().unwrap();
    assert!(location_b.starts_with(&format!("team-b/team-a/prod/prod.{uid_b}.")), "{location_b}");
    assert!(decoy.exists(), "cleanup stays in its own prefix");

    // team-b's status tampered: its backups name team-a's file (and a path that climbs out). The next run expires
    // them (keepLast 1): refused, not deleted, and said so.
    let mut backups = prod_b.status.as_ref().unwrap().backups.clone().unwrap();
    backups.push(backup_apis::backup::BackupRecord {
        id: record_a.id.clone(),
        location: Some(location_a.clone()),
        ..record_a.clone()
    });
    backups.push(backup_apis::backup::BackupRecord {
        id: "escape".into(),
        location: Some(format!("team-b/../team-a/prod/prod.{uid_b}.escape.tsdb")),
        ..Default::default()
    });
    b.patch_status("prod", &PatchParams::default(), &Patch::Merge(json!({"status": {"backups": backups}})))
        .await
        .unwrap();
    backup_now(&b, "prod").await.unwrap();
    let refused = wait_backup(&b, "prod", |o| {
        o.status.as_ref().and_then(|s| s.phase) == Some(Phase::Failed)
            && o.metadata.annotations.as_ref().is_none_or(|a| !a.contains_key(RUN_NOW))
            && o.status.as_ref().and_then(|s| s.last_backup.as_ref()).map(|l| l.location.clone())
                != Some(Some(location_b.clone()))
    })
    .await;
    let status = refused.status.unwrap();
    let ready = status.conditions.unwrap().into_iter().find(|c| c.r#type == "Ready").unwrap();
    let message = ready.message.unwrap_or_default();
    assert_eq!(ready.reason.as_deref(), Some("LocationOutsidePrefix"), "{message}");
    assert!(message.contains(&location_a) && message.contains("nothing was"), "{message}");
    assert_eq!(status.backups.as_ref().map(Vec::len), Some(1), "the refused records are dropped from status");
    assert_eq!(std::fs::read(stack.backup_dir.join(&location_a)).unwrap(), file_a, "team-a's backup is intact");
    assert!(!stack.backup_dir.join(&location_b).exists(), "team-b's own expired backup is deleted");

    // A restore of team-b naming team-a's backup through tampered status: refused before reading anything.
    let mut tampered = status.backups.clone().unwrap();
    tampered.push(backup_apis::backup::BackupRecord {
        id: "stolen".into(),
        location: Some(location_a.clone()),
        ..Default::default()
    });
    b.patch_status("prod", &PatchParams::default(), &Patch::Merge(json!({"status": {"backups": tampered}})))
        .await
        .unwrap();
    let target = Victoria::start().await;
    let restores_b: Api<TimeseriesDBRestore> = Api::namespaced(stack.client.clone(), "team-b");
    let mut steal = restore_spec("prod", VictoriaMetrics, &target.url, None);
    steal.backup_ref.id = Some("stolen".into());
    restores_b.create(&PostParams::default(), &TimeseriesDBRestore::new("team-b", "steal", steal)).await.unwrap();
    let failed = wait_restore(&restores_b, "steal", Phase::Failed).await.status.unwrap();
    let ready = failed.conditions.unwrap().into_iter().find(|c| c.r#type == "Ready").unwrap();
    assert_eq!(ready.reason.as_deref(), Some("LocationOutsidePrefix"), "{:?}", ready.message);
    assert!(failed.next_retry_time.is_none(), "final");
    assert!(target.export().await.is_empty(), "nothing was written into the target");

    // team-a's own restore reads its backup.
    let restores_a: Api<TimeseriesDBRestore> = Api::namespaced(stack.client.clone(), "team-a");
    let own = restore_spec("prod", VictoriaMetrics, &target.url, None);
    restores_a.create(&PostParams::default(), &TimeseriesDBRestore::new("team-a", "own", own)).await.unwrap();
    let done = wait_restore(&restores_a, "own", Phase::Succeeded).await.status.unwrap();
    assert_eq!(done.samples, record_a.samples);
    stack.kill_controller().await;
}
