//! Prometheus end to end: a dataset with staleness markers and float edge values remote-written into Prometheus,
//! backed up (remote read, streamed XOR chunks) through a TimeseriesDBBackup, restored (remote write) through a
//! TimeseriesDBRestore into a fresh Prometheus, compared bit for bit with the source's own remote read answer; and
//! the same backup restored into VictoriaMetrics.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::Duration;

use backup_apis::database::DatabaseType::{Prometheus as PrometheusType, VictoriaMetrics};
use backup_apis::status::Phase;
use backup_controller::engine::STALE_NAN;
use backup_controller::testing::dataset::float_series;
use backup_controller::testing::prometheus::Prometheus;
use backup_controller::testing::stack::{Stack, backup_spec, restore_spec};
use backup_controller::testing::victoria::Victoria;

const TIMEOUT: Duration = Duration::from_secs(180);
const NAMES: &[&str] = &["http_requests_total", "node_cpu_seconds_total", "weird:metric_name", "temperature_celsius"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_are_lossless() {
    let mut stack = Stack::start().await;
    let source = Prometheus::start().await;
    source.load(&float_series(3, 200, 500, true)).await;
    let want = source.export(NAMES).await;
    assert!(want.len() >= 99_000, "dataset loaded: {} samples", want.len());
    assert!(want.iter().any(|s| s.2 == STALE_NAN.to_bits()), "staleness markers in the dataset");
    assert!(want.iter().any(|s| f64::from_bits(s.2).is_nan() && s.2 != STALE_NAN.to_bits()), "plain NaN");

    stack.start_controller();
    stack.create_backup("prom", backup_spec(PrometheusType, &source.url, None)).await;
    let backup = stack.wait_backup("prom", Phase::Succeeded, TIMEOUT).await;
    let last = backup.status.and_then(|s| s.last_backup).expect("lastBackup");
    assert_eq!((last.series, last.samples), (Some(200), Some(want.len() as u64)));

    let target = Prometheus::start().await;
    stack.create_restore("prom-restore", restore_spec("prom", PrometheusType, &target.url, None)).await;
    let restore = stack.wait_restore("prom-restore", Phase::Succeeded, TIMEOUT).await;
    let status = restore.status.expect("status");
    assert_eq!((status.series, status.samples), (Some(200), Some(want.len() as u64)));
    let got = target.export(NAMES).await;
    assert_eq!(got.len(), want.len());
    assert!(got == want, "restored samples differ from the source's");

    // Same data model: the Prometheus backup restores into VictoriaMetrics (which keeps no plain NaN).
    let vm = Victoria::start().await;
    stack.create_restore("prom-to-vm", restore_spec("prom", VictoriaMetrics, &vm.url, None)).await;
    stack.wait_restore("prom-to-vm", Phase::Succeeded, TIMEOUT).await;
    let plain_nan = want.iter().filter(|s| f64::from_bits(s.2).is_nan() && s.2 != STALE_NAN.to_bits()).count();
    assert_eq!(vm.export().await.len(), want.len() - plain_nan);
}
