//! config/monitoring/: the alert rules pass `promtool check rules`, and their unit tests (`promtool test rules`:
//! overdue, failing and never-succeeded backups, no leader) pass; the metric names they use are the ones the
//! controller serves.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::path::{Path, PathBuf};
use std::process::Command;

use backup_apis::backup::TimeseriesDBBackup;
use backup_controller::controller::metrics::Metrics;

fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/monitoring")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool").args(args).current_dir(monitoring_dir()).output().unwrap_or_else(|e| {
        panic!("promtool not found ({e}): it comes with Debian's prometheus package (hack/test.sh installs it)")
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn rules_check_and_their_unit_tests_pass() {
    let checked = promtool(&["check", "rules", "backup-controller.rules.yaml"]);
    assert!(checked.contains("SUCCESS: 4 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "backup-controller.rules.test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn rules_use_metrics_the_controller_serves() {
    let rules = std::fs::read_to_string(monitoring_dir().join("backup-controller.rules.yaml")).unwrap();
    // A controller that has seen a scheduled backup with a success and failures since.
    let metrics = Metrics::new();
    let backup: TimeseriesDBBackup = serde_json::from_value(serde_json::json!({
        "apiVersion": "backup.extend-k8s.io/v1",
        "kind": "TimeseriesDBBackup",
        "metadata": {"namespace": "ns", "name": "nightly", "creationTimestamp": "2026-12-01T00:00:00Z"},
        "spec": {"database": {"type": "VictoriaMetrics", "url": "http://vm:8428"}, "schedule": "0 3 * * *"},
        "status": {
            "consecutiveFailures": 1,
            "lastBackup": {"id": "x", "startTime": "2026-12-02T03:00:00Z", "completionTime": "2026-12-02T03:00:30Z"},
        },
    }))
    .unwrap();
    metrics.observe_backup(&backup);
    metrics.set_leader(true);
    let served = metrics.encode();
    let used: std::collections::BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("backup_controller_"))
        .collect();
    assert!(used.len() >= 5, "{used:?}");
    for metric in used {
        assert!(
            served.contains(&format!("# TYPE {metric} ")),
            "{metric} is not a metric the controller serves:\n{served}"
        );
    }
}
