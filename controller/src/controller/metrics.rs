//! The controller's metrics, served on `/metrics` ([`super::serve`]): per TimeseriesDBBackup and
//! TimeseriesDBRestore the last success and failure, duration, samples and bytes; the backup's schedule interval
//! and creation time (what the alerts of `config/monitoring/` compare); reconcile errors; database HTTP errors by
//! engine; whether this replica leads.
//!
//! API → controller: reconcilers and jobs → **metrics (this file)** → `/metrics`.
//!
//! The per-object figures are set from status on every reconcile (so a restarted or newly elected controller shows
//! them at once) and from each job's outcome. Their labels are the namespace and name of existing objects only:
//! [`Metrics::retain`] drops the labels of deleted objects, and a replica that stops leading drops them all (the
//! leader reports them).

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};

use backup_apis::backup::TimeseriesDBBackup;
use backup_apis::restore::TimeseriesDBRestore;
use backup_apis::status::{ConditionStatus, Phase};
use jiff::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::jobs::JobKind;
use super::schedule;

type FloatGauge = Gauge<f64, AtomicU64>;

/// The labels of a per-object series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EngineLabels {
    engine: String,
}

/// The last run's figures of one kind, per object.
#[derive(Default)]
struct Runs {
    last_success: Family<ObjectLabels, FloatGauge>,
    last_failure: Family<ObjectLabels, FloatGauge>,
    duration: Family<ObjectLabels, FloatGauge>,
    samples: Family<ObjectLabels, Gauge>,
    bytes: Family<ObjectLabels, Gauge>,
    consecutive_failures: Family<ObjectLabels, Gauge>,
    created: Family<ObjectLabels, FloatGauge>,
}

impl Runs {
    fn register(&self, registry: &mut Registry, kind: &str) {
        let name = |what: &str| format!("backup_controller_{kind}_{what}");
        registry.register(
            name("last_success_timestamp_seconds"),
            format!("When the last successful {kind} completed (Unix seconds)"),
            self.last_success.clone(),
        );
        registry.register(
            name("last_failure_timestamp_seconds"),
            format!("When the last failed {kind} ended (Unix seconds)"),
            self.last_failure.clone(),
        );
        registry.register(
            name("last_duration_seconds"),
            format!("How long the last successful {kind} took"),
            self.duration.clone(),
        );
        registry.register(name("last_samples"), format!("Samples of the last successful {kind}"), self.samples.clone());
        registry.register(
            name("last_bytes"),
            format!("Bytes of the last successful {kind} (the backup file's size)"),
            self.bytes.clone(),
        );
        registry.register(
            name("consecutive_failures"),
            format!("Failed {kind}s since the last success (0: the last one succeeded or none ran yet)"),
            self.consecutive_failures.clone(),
        );
        registry.register(
            name("created_timestamp_seconds"),
            format!("When the {kind} object was created (Unix seconds); one series per existing object"),
            self.created.clone(),
        );
    }

    fn remove(&self, labels: &ObjectLabels) {
        self.last_success.remove(labels);
        self.last_failure.remove(labels);
        self.duration.remove(labels);
        self.samples.remove(labels);
        self.bytes.remove(labels);
        self.consecutive_failures.remove(labels);
        self.created.remove(labels);
    }
}

/// What a finished run reports.
pub struct RunOutcome {
    pub succeeded: bool,
    pub duration: std::time::Duration,
    pub samples: u64,
    pub bytes: u64,
    pub consecutive_failures: u32,
}

/// The registry and the series the controller keeps.
pub struct Metrics {
    registry: Registry,
    backups: Runs,
    restores: Runs,
    schedule_interval: Family<ObjectLabels, FloatGauge>,
    reconcile_errors: Family<KindLabels, Counter>,
    engine_errors: Family<EngineLabels, Counter>,
    leader: Gauge,
    /// The objects that have series, to remove them when the objects are gone.
    known: Mutex<HashSet<(JobKind, ObjectLabels)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let (backups, restores) = (Runs::default(), Runs::default());
        backups.register(&mut registry, "backup");
        restores.register(&mut registry, "restore");
        let schedule_interval = Family::default();
        registry.register(
            "backup_controller_backup_schedule_interval_seconds",
            "Seconds between two runs of the backup's schedule (the next two); absent for a single backup or a \
             suspended one",
            schedule_interval.clone(),
        );
        let reconcile_errors = Family::default();
        registry.register(
            "backup_controller_reconcile_errors",
            "Reconciles that failed (the API server unreachable or refusing a write), by kind",
            reconcile_errors.clone(),
        );
        let engine_errors = Family::default();
        registry.register(
            "backup_controller_engine_http_errors",
            "Requests to databases that failed (no connection, timeout, or a non-2xx answer), by engine",
            engine_errors.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "backup_controller_leader",
            "1 while this replica leads (reconciles); 0 on a standby",
            leader.clone(),
        );
        Self {
            registry,
            backups,
            restores,
            schedule_interval,
            reconcile_errors,
            engine_errors,
            leader,
            known: Mutex::default(),
        }
    }

    /// The text exposition (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    fn runs(&self, kind: JobKind) -> &Runs {
        match kind {
            JobKind::Backup => &self.backups,
            JobKind::Restore => &self.restores,
        }
    }

    fn labels(&self, kind: JobKind, namespace: &str, name: &str) -> ObjectLabels {
        let labels = ObjectLabels { namespace: namespace.to_owned(), name: name.to_owned() };
        lock(&self.known).insert((kind, labels.clone()));
        labels
    }

    /// Sets a backup's series from its object (its status, schedule and creation time).
    pub fn observe_backup(&self, obj: &TimeseriesDBBackup) {
        let (Some(ns), Some(name)) = (obj.metadata.namespace.as_deref(), obj.metadata.name.as_deref()) else {
            return;
        };
        let labels = self.labels(JobKind::Backup, ns, name);
        let runs = &self.backups;
        if let Some(created) = &obj.metadata.creation_timestamp {
            runs.created.get_or_create(&labels).set(seconds(created.0));
        }
        let interval = match obj.spec.suspend {
            true => None,
            false => schedule::next_after(&obj.spec, Timestamp::now()).ok().flatten().and_then(|next| {
                let after = schedule::next_after(&obj.spec, next).ok().flatten()?;
                Some(after.duration_since(next).as_secs_f64())
            }),
        };
        match interval {
            Some(s) => {
                self.schedule_interval.get_or_create(&labels).set(s);
            }
            None => {
                self.schedule_interval.remove(&labels);
            }
        }
        let Some(status) = &obj.status else { return };
        if let Some(last) = &status.last_backup
            && let Some(done) = &last.completion_time
        {
            runs.last_success.get_or_create(&labels).set(seconds(done.0));
            // Status has whole seconds: a duration the job measured is kept.
            if let Some(start) = &last.start_time
                && runs.duration.get(&labels).is_none()
            {
                runs.duration.get_or_create(&labels).set(done.0.duration_since(start.0).as_secs_f64().max(0.0));
            }
            runs.samples.get_or_create(&labels).set(gauge_value(last.samples.unwrap_or(0)));
            runs.bytes.get_or_create(&labels).set(gauge_value(last.bytes.unwrap_or(0)));
        }
        runs.consecutive_failures.get_or_create(&labels).set(failures(status.consecutive_failures, status.phase));
        if status.phase == Some(Phase::Failed) {
            self.failed_since(runs, &labels, status.conditions.as_deref());
        }
    }

    /// Sets a restore's series from its object.
    pub fn observe_restore(&self, obj: &TimeseriesDBRestore) {
        let (Some(ns), Some(name)) = (obj.metadata.namespace.as_deref(), obj.metadata.name.as_deref()) else {
            return;
        };
        let labels = self.labels(JobKind::Restore, ns, name);
        let runs = &self.restores;
        if let Some(created) = &obj.metadata.creation_timestamp {
            runs.created.get_or_create(&labels).set(seconds(created.0));
        }
        let Some(status) = &obj.status else { return };
        if status.phase == Some(Phase::Succeeded)
            && let Some(done) = &status.completion_time
        {
            runs.last_success.get_or_create(&labels).set(seconds(done.0));
            if let Some(start) = &status.start_time
                && runs.duration.get(&labels).is_none()
            {
                runs.duration.get_or_create(&labels).set(done.0.duration_since(start.0).as_secs_f64().max(0.0));
            }
            runs.samples.get_or_create(&labels).set(gauge_value(status.samples.unwrap_or(0)));
        }
        runs.consecutive_failures.get_or_create(&labels).set(failures(status.consecutive_failures, status.phase));
        if status.phase == Some(Phase::Failed) {
            self.failed_since(runs, &labels, status.conditions.as_deref());
        }
    }

    /// A failure known from status only (after a restart): the time its `Ready=False` began, unless one is known.
    fn failed_since(&self, runs: &Runs, labels: &ObjectLabels, conditions: Option<&[backup_apis::status::Condition]>) {
        let since = conditions
            .into_iter()
            .flatten()
            .find(|c| c.r#type == super::status::READY && c.status == ConditionStatus::False)
            .and_then(|c| c.last_transition_time.as_ref());
        if let Some(t) = since
            && runs.last_failure.get(labels).is_none_or(|g| g.get() < seconds(t.0))
        {
            runs.last_failure.get_or_create(labels).set(seconds(t.0));
        }
    }

    /// A job's outcome, as it ends.
    pub fn finished(&self, kind: JobKind, namespace: &str, name: &str, outcome: &RunOutcome) {
        let labels = self.labels(kind, namespace, name);
        let runs = self.runs(kind);
        let now = seconds(Timestamp::now());
        runs.consecutive_failures.get_or_create(&labels).set(i64::from(outcome.consecutive_failures));
        if !outcome.succeeded {
            runs.last_failure.get_or_create(&labels).set(now);
            return;
        }
        runs.last_success.get_or_create(&labels).set(now);
        runs.duration.get_or_create(&labels).set(outcome.duration.as_secs_f64());
        runs.samples.get_or_create(&labels).set(gauge_value(outcome.samples));
        runs.bytes.get_or_create(&labels).set(gauge_value(outcome.bytes));
    }

    /// Drops the series of the objects of `kind` for which `exists` is false.
    pub fn retain(&self, kind: JobKind, exists: impl Fn(&str, &str) -> bool) {
        let mut known = lock(&self.known);
        known.retain(|(k, labels)| {
            if *k != kind || exists(&labels.namespace, &labels.name) {
                return true;
            }
            self.runs(kind).remove(labels);
            if kind == JobKind::Backup {
                self.schedule_interval.remove(labels);
            }
            false
        });
    }

    /// Drops every per-object series (this replica stopped leading: the leader reports them).
    pub fn clear_objects(&self) {
        for kind in [JobKind::Backup, JobKind::Restore] {
            self.retain(kind, |_, _| false);
        }
    }

    pub fn reconcile_error(&self, kind: &str) {
        self.reconcile_errors.get_or_create(&KindLabels { kind: kind.to_owned() }).inc();
    }

    /// The counter of failed requests to databases of `engine` (`Prometheus`, `VictoriaMetrics`, `InfluxDB`).
    pub fn engine_errors(&self, engine: &str) -> Counter {
        self.engine_errors.get_or_create(&EngineLabels { engine: engine.to_owned() }).clone()
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// How many objects have series (for tests of the bound).
    pub fn objects(&self) -> usize {
        lock(&self.known).len()
    }
}

/// Failures since the last success: a failed phase is at least one (a restore that can never run keeps no count).
fn failures(count: Option<u32>, phase: Option<Phase>) -> i64 {
    let count = i64::from(count.unwrap_or(0));
    match phase {
        Some(Phase::Failed) => count.max(1),
        _ => count,
    }
}

fn seconds(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use backup_apis::backup::{BackupRecord, TimeseriesDBBackupStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn backup(name: &str, schedule: Option<&str>) -> TimeseriesDBBackup {
        let mut obj: TimeseriesDBBackup = serde_json::from_value(serde_json::json!({
            "apiVersion": "backup.extend-k8s.io/v1",
            "kind": "TimeseriesDBBackup",
            "metadata": {"namespace": "ns", "name": name, "creationTimestamp": "2026-12-01T00:00:00Z"},
            "spec": {"database": {"type": "VictoriaMetrics", "url": "http://vm:8428"}},
        }))
        .unwrap();
        obj.spec.schedule = schedule.map(str::to_owned);
        obj
    }

    #[test]
    fn series_follow_status_and_objects() {
        let m = Metrics::new();
        let mut b = backup("nightly", Some("0 3 * * *"));
        m.observe_backup(&b);
        let text = m.encode();
        assert!(
            text.contains(
                r#"backup_controller_backup_created_timestamp_seconds{namespace="ns",name="nightly"} 1796083200.0"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"backup_controller_backup_schedule_interval_seconds{namespace="ns",name="nightly"} 86400.0"#
            ),
            "{text}"
        );
        assert!(!text.contains("backup_controller_backup_last_success_timestamp_seconds{"), "no backup yet: {text}");

        b.status = Some(TimeseriesDBBackupStatus {
            last_backup: Some(BackupRecord {
                id: "x".into(),
                start_time: Some(Time("2026-12-02T03:00:00Z".parse().unwrap())),
                completion_time: Some(Time("2026-12-02T03:00:30Z".parse().unwrap())),
                samples: Some(1000),
                bytes: Some(4096),
                ..Default::default()
            }),
            consecutive_failures: Some(2),
            ..Default::default()
        });
        m.observe_backup(&b);
        m.observe_backup(&backup("once", None));
        let text = m.encode();
        for line in [
            r#"backup_controller_backup_last_success_timestamp_seconds{namespace="ns",name="nightly"} 1796180430.0"#,
            r#"backup_controller_backup_last_duration_seconds{namespace="ns",name="nightly"} 30.0"#,
            r#"backup_controller_backup_last_samples{namespace="ns",name="nightly"} 1000"#,
            r#"backup_controller_backup_last_bytes{namespace="ns",name="nightly"} 4096"#,
            r#"backup_controller_backup_consecutive_failures{namespace="ns",name="nightly"} 2"#,
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        assert!(!text.contains(r#"schedule_interval_seconds{namespace="ns",name="once"}"#), "{text}");

        m.finished(
            JobKind::Backup,
            "ns",
            "once",
            &RunOutcome {
                succeeded: false,
                duration: Default::default(),
                samples: 0,
                bytes: 0,
                consecutive_failures: 1,
            },
        );
        assert!(
            m.encode()
                .contains(r#"backup_controller_backup_last_failure_timestamp_seconds{namespace="ns",name="once"}"#)
        );
        m.engine_errors("VictoriaMetrics").inc();
        m.reconcile_error("TimeseriesDBBackup");
        let text = m.encode();
        assert!(text.contains(r#"backup_controller_engine_http_errors_total{engine="VictoriaMetrics"} 1"#), "{text}");
        assert!(text.contains(r#"backup_controller_reconcile_errors_total{kind="TimeseriesDBBackup"} 1"#), "{text}");

        // Deleted objects lose their series; the others keep them.
        assert_eq!(m.objects(), 2);
        m.retain(JobKind::Backup, |_, name| name == "nightly");
        let text = m.encode();
        assert!(!text.contains(r#"name="once""#), "{text}");
        assert!(text.contains(r#"name="nightly""#), "{text}");
        m.clear_objects();
        assert_eq!(m.objects(), 0);
        assert!(!m.encode().contains("namespace="), "{}", m.encode());
    }
}
