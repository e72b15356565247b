//! VictoriaMetrics end to end: a known dataset backed up through a TimeseriesDBBackup and restored through a
//! TimeseriesDBRestore into a fresh instance, compared sample by sample with the source's own export (see
//! `assert_same` for the one thing VictoriaMetrics itself may change: the last digit of a value it re-encodes).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::collections::BTreeMap;
use std::time::Duration;

use backup_apis::database::DatabaseType::VictoriaMetrics;
use backup_apis::status::Phase;
use backup_controller::destination::local::LocalDir;
use backup_controller::format::{BackupReader, Record};
use backup_controller::testing::dataset::float_series;
use backup_controller::testing::stack::{Stack, backup_spec, restore_spec};
use backup_controller::testing::victoria::{Victoria, assert_same};

const TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_are_lossless() {
    let mut stack = Stack::start().await;
    let source = Victoria::start().await;
    source.load(&float_series(1, 200, 500, false)).await;
    let want = source.export().await;
    assert!(want.len() >= 99_000, "dataset loaded: {} samples", want.len());
    assert!(want.iter().any(|(_, _, v)| v == "null"), "staleness markers in the dataset");

    stack.start_controller();
    stack.create_backup("vm", backup_spec(VictoriaMetrics, &source.url, None)).await;
    let backup = stack.wait_backup("vm", Phase::Succeeded, TIMEOUT).await;
    let status = backup.status.expect("status");
    let last = status.last_backup.expect("lastBackup");
    assert_eq!(last.samples, Some(want.len() as u64));
    assert_eq!(last.series, Some(200));
    assert_eq!(status.backups.map(|b| b.len()), Some(1));
    let location = last.location.expect("location");
    assert_eq!(stack.files(), std::slice::from_ref(&location));
    assert!(location.starts_with("default/vm/vm."), "{location}");

    // The file holds exactly what the source exports.
    let mut reader = BackupReader::open_verified(&LocalDir::new(&stack.backup_dir), &location, None).await.unwrap();
    let (mut in_file, mut labels) = (Vec::new(), String::new());
    while let Some(record) = reader.next().await.unwrap() {
        match record {
            Record::Series(l) => labels = serde_json::to_string(&l.into_iter().collect::<BTreeMap<_, _>>()).unwrap(),
            Record::Samples { timestamps, .. } => in_file.extend(timestamps.into_iter().map(|t| (labels.clone(), t))),
            other => panic!("unexpected {other:?}"),
        }
    }
    in_file.sort();
    let exported: Vec<(String, i64)> = want.iter().map(|s| (s.0.clone(), s.1)).collect();
    assert!(in_file == exported, "the backup file's samples differ from the source's export");

    let target = Victoria::start().await;
    stack.create_restore("vm-restore", restore_spec("vm", VictoriaMetrics, &target.url, None)).await;
    let restore = stack.wait_restore("vm-restore", Phase::Succeeded, TIMEOUT).await;
    let status = restore.status.expect("status");
    assert_eq!((status.series, status.samples), (Some(200), Some(want.len() as u64)));
    let rerounded = assert_same(&target.export().await, &want);
    assert!(rerounded * 1000 < want.len(), "{rerounded} values re-rounded by VictoriaMetrics");
}
