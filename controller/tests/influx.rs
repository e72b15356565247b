//! InfluxDB end to end: points of every field type (sparse, with names that need escaping), in the default retention
//! policy and in another one, backed up through a TimeseriesDBBackup, restored through a TimeseriesDBRestore into a
//! fresh instance, and compared with the source's own answers to `SHOW FIELD KEYS` and `SELECT * ... GROUP BY *`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::Duration;

use backup_apis::database::DatabaseType::{InfluxDB, Prometheus};
use backup_apis::status::Phase;
use backup_controller::testing::dataset::influx_lines;
use backup_controller::testing::influx::Influx;
use backup_controller::testing::stack::{Stack, backup_spec, restore_spec};

const TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_are_lossless() {
    let mut stack = Stack::start().await;
    let source = Influx::start().await;
    let (lines, values) = influx_lines(2, 0, 200, 250);
    assert!(values >= 100_000, "{values} field values");
    source.load("metrics", &lines).await;
    let want = source.dump("metrics").await;
    assert_eq!(want.len(), 4, "measurements");
    // A second retention policy (a name that needs quoting) with its own series.
    const POLICY: &str = "long \"term\"";
    source
        .query("metrics", r#"CREATE RETENTION POLICY "long \"term\"" ON "metrics" DURATION 5200w REPLICATION 1"#)
        .await;
    let (kept_lines, kept_values) = influx_lines(9, 1000, 20, 50);
    source.write("metrics", Some(POLICY), &kept_lines).await;
    let want_kept = source.dump_policy("metrics", Some(POLICY)).await;
    assert_eq!(want_kept.len(), 4, "measurements in {POLICY}");
    let (series, values) = (220, values + kept_values);

    stack.start_controller();
    stack.create_backup("influx", backup_spec(InfluxDB, &source.url, Some("metrics"))).await;
    let backup = stack.wait_backup("influx", Phase::Succeeded, TIMEOUT).await;
    let last = backup.status.and_then(|s| s.last_backup).expect("lastBackup");
    assert_eq!((last.series, last.samples), (Some(series), Some(values)));

    let target = Influx::start().await;
    stack.create_restore("influx-restore", restore_spec("influx", InfluxDB, &target.url, Some("copy"))).await;
    let restore = stack.wait_restore("influx-restore", Phase::Succeeded, TIMEOUT).await;
    let status = restore.status.expect("status");
    assert_eq!((status.series, status.samples), (Some(series), Some(values)));
    for (policy, want) in [(None, &want), (Some(POLICY), &want_kept)] {
        let got = target.dump_policy("copy", policy).await;
        for ((name, want_fields, want_points), (got_name, got_fields, got_points)) in want.iter().zip(&got) {
            assert_eq!(name, got_name);
            assert_eq!(want_fields, got_fields, "field types of {name} in {policy:?}");
            assert!(want_points == got_points, "points of {name} in {policy:?} differ");
        }
        assert_eq!(got.len(), want.len());
    }

    // An InfluxDB backup does not go into Prometheus: refused for good, with the reason.
    stack.create_restore("wrong-engine", restore_spec("influx", Prometheus, "http://127.0.0.1:9", None)).await;
    let refused = stack.wait_restore("wrong-engine", Phase::Failed, TIMEOUT).await;
    let message = refused.status.and_then(|s| s.message).unwrap_or_default();
    assert!(message.contains("cannot be restored into Prometheus"), "{message}");
}
