//! The `kubectl tsdb` plugin's commands, a thin layer over the typed client: `backup now` (the run-now annotation
//! the backup reconciler honours), `restore` (creates a TimeseriesDBRestore) and `status` (a table of backups).
//!
//! **kubectl plugin (this file)** → API → controller.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use backup_apis::backup::TimeseriesDBBackup;
use backup_apis::database::{DatabaseEndpoint, DatabaseType};
use backup_apis::restore::{BackupRef, TimeseriesDBRestore, TimeseriesDBRestoreSpec};
use jiff::Timestamp;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::controller::backup::RUN_NOW;
use crate::controller::status::bytes;

/// Asks the controller for a backup of `name` now; returns the request's stamp.
pub async fn backup_now(api: &Api<TimeseriesDBBackup>, name: &str) -> anyhow::Result<String> {
    let stamp = Timestamp::now().to_string();
    let patch = json!({"metadata": {"annotations": {RUN_NOW: stamp}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.with_context(|| format!("backup {name}"))?;
    Ok(stamp)
}

/// What `restore` creates.
#[derive(Debug, Clone, Default)]
pub struct RestoreRequest {
    pub backup: String,
    pub to: String,
    /// Default: the backed-up database's type.
    pub r#type: Option<DatabaseType>,
    /// InfluxDB database; default: the backed-up one.
    pub database: Option<String>,
    /// A backup id; default: the latest successful backup.
    pub id: Option<String>,
    /// Default: `<backup>-restore-<time>`.
    pub name: Option<String>,
}

/// Creates a TimeseriesDBRestore; returns its name.
pub async fn restore(
    backups: &Api<TimeseriesDBBackup>,
    restores: &Api<TimeseriesDBRestore>,
    req: RestoreRequest,
) -> anyhow::Result<String> {
    let backup = backups.get(&req.backup).await.with_context(|| format!("backup {}", req.backup))?;
    let source = &backup.spec.database.endpoint;
    let name =
        req.name.unwrap_or_else(|| format!("{}-restore-{}", req.backup, Timestamp::now().strftime("%Y%m%d%H%M%S")));
    let spec = TimeseriesDBRestoreSpec {
        backup_ref: BackupRef { name: req.backup.clone(), id: req.id },
        target: DatabaseEndpoint::new(
            req.r#type.unwrap_or(source.r#type),
            req.to,
            req.database.or_else(|| source.database.clone()),
        ),
        timeout: None,
    };
    let namespace = backup.metadata.namespace.as_deref().unwrap_or("default");
    restores.create(&PostParams::default(), &TimeseriesDBRestore::new(namespace, &name, spec)).await?;
    Ok(name)
}

/// Parses a database type, case-insensitively.
pub fn parse_type(s: &str) -> anyhow::Result<DatabaseType> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "prometheus" => DatabaseType::Prometheus,
        "victoriametrics" | "vm" => DatabaseType::VictoriaMetrics,
        "influxdb" | "influx" => DatabaseType::InfluxDB,
        _ => bail!("unknown database type {s:?}: Prometheus, VictoriaMetrics or InfluxDB"),
    })
}

/// The backups of `api` as a table: name, database, schedule, phase, last run, samples, size, next run, kept.
pub async fn status(api: &Api<TimeseriesDBBackup>, all_namespaces: bool) -> anyhow::Result<String> {
    let list = api.list(&ListParams::default()).await?;
    Ok(table(&list.items, all_namespaces, Timestamp::now()))
}

pub fn table(backups: &[TimeseriesDBBackup], all_namespaces: bool, now: Timestamp) -> String {
    let mut rows = vec![
        vec!["NAME", "DATABASE", "SCHEDULE", "PHASE", "LAST RUN", "SAMPLES", "SIZE", "NEXT RUN", "KEPT"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>(),
    ];
    if all_namespaces {
        rows[0].insert(0, "NAMESPACE".into());
    }
    let sorted: BTreeMap<_, _> =
        backups.iter().map(|b| ((b.metadata.namespace.clone(), b.metadata.name.clone()), b)).collect();
    for ((namespace, name), b) in sorted {
        let status = b.status.clone().unwrap_or_default();
        let last = status.last_backup.as_ref();
        let mut row = vec![
            name.unwrap_or_default(),
            format!("{:?}", b.spec.database.endpoint.r#type),
            b.spec.schedule.clone().unwrap_or_else(|| "-".into()),
            status.phase.map_or("-".into(), |p| format!("{p:?}")),
            last.and_then(|l| l.completion_time.as_ref()).map_or("-".into(), |t| format!("{} ago", age(now, t.0))),
            last.and_then(|l| l.samples).map_or("-".into(), |n| n.to_string()),
            last.and_then(|l| l.bytes).map_or("-".into(), bytes),
            match (&status.next_schedule_time, b.spec.suspend) {
                (_, true) => "suspended".into(),
                (Some(t), false) => format!("in {}", age(t.0, now)),
                (None, false) => "-".into(),
            },
            status.backups.map_or(0, |v| v.len()).to_string(),
        ];
        if all_namespaces {
            row.insert(0, namespace.unwrap_or_default());
        }
        rows.push(row);
    }
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// `later - earlier` as kubectl shows ages: 45s, 12m, 3h, 2d.
fn age(later: Timestamp, earlier: Timestamp) -> String {
    let secs = later.duration_since(earlier).as_secs().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use backup_apis::backup::{
        BackupRecord, BackupSource, Retention, TimeseriesDBBackupSpec, TimeseriesDBBackupStatus,
    };
    use backup_apis::status::Phase;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    #[test]
    fn status_table() {
        let now: Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
        let spec = TimeseriesDBBackupSpec {
            database: BackupSource {
                endpoint: DatabaseEndpoint::new(DatabaseType::Prometheus, "http://p:9090", None),
                selector: None,
            },
            destination: None,
            schedule: Some("0 2 * * *".into()),
            time_zone: None,
            retention: Retention::default(),
            suspend: false,
            timeout: None,
        };
        let mut b = TimeseriesDBBackup::new("ns", "nightly", spec.clone());
        b.status = Some(TimeseriesDBBackupStatus {
            phase: Some(Phase::Succeeded),
            last_backup: Some(BackupRecord {
                id: "x".into(),
                completion_time: Some(Time("2026-11-28T02:00:40Z".parse().unwrap())),
                samples: Some(1_000_000),
                bytes: Some(3 << 20),
                ..Default::default()
            }),
            backups: Some(vec![BackupRecord::default(); 3]),
            next_schedule_time: Some(Time("2026-11-29T02:00:00Z".parse().unwrap())),
            ..Default::default()
        });
        let fresh = TimeseriesDBBackup::new("ns", "adhoc", TimeseriesDBBackupSpec { schedule: None, ..spec });
        let out = table(&[b, fresh], false, now);
        assert_eq!(
            out,
            "NAME      DATABASE     SCHEDULE    PHASE       LAST RUN   SAMPLES   SIZE      NEXT RUN   KEPT\n\
             adhoc     Prometheus   -           -           -          -         -         -          0\n\
             nightly   Prometheus   0 2 * * *   Succeeded   9h ago     1000000   3.0 MiB   in 14h     3\n"
        );
        assert_eq!(parse_type("vm").unwrap(), DatabaseType::VictoriaMetrics);
        assert!(parse_type("mysql").is_err());
    }
}
