//! The `kubectl tsdb` plugin's commands, a thin layer over the typed client: `backup now` (the run-now annotation
//! the backup reconciler honours), `restore` (creates a TimeseriesDBRestore with a generated, unique name) and
//! `status` (a table of backups, or the objects as JSON or YAML), `verify` (a backup read back whole from its
//! location, with the operator's locations file; found by its status, or by name among the location's files);
//! and errors as kubectl prints them.
//!
//! **kubectl plugin (this file)** → API → controller.

use std::collections::BTreeMap;

use anyhow::{Context, bail, ensure};
use backup_apis::backup::TimeseriesDBBackup;
use backup_apis::database::{DatabaseEndpoint, DatabaseType};
use backup_apis::restore::{BackupRef, TimeseriesDBRestore, TimeseriesDBRestoreSpec};
use jiff::Timestamp;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::controller::backup::RUN_NOW;
use crate::controller::status::bytes;
use crate::destination::confine::{Prefix, find_file, not_found, search_dir};
use crate::destination::locations::Locations;

/// Asks the controller for a backup of `name` now; returns the request's stamp.
pub async fn backup_now(api: &Api<TimeseriesDBBackup>, name: &str) -> anyhow::Result<String> {
    let stamp = Timestamp::now().to_string();
    let patch = json!({"metadata": {"annotations": {RUN_NOW: stamp}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(stamp)
}

/// Where `verify` finds the backup: in its TimeseriesDBBackup's status, or among the files in a location.
#[derive(Debug, Clone, Default)]
pub struct InLocation {
    pub location: String,
    /// The TimeseriesDBBackup's `spec.destination.path`; default: its name.
    pub path: Option<String>,
}

/// Reads backup `id` (default: the latest) of `name` back from its location in `locations`, after checking its
/// status location against the object's prefix, or, with `in_location`, found among the files of `name` there (the
/// object may be gone); returns what was verified.
pub async fn verify(
    api: &Api<TimeseriesDBBackup>,
    name: &str,
    id: Option<&str>,
    locations: &Locations,
    in_location: Option<InLocation>,
) -> anyhow::Result<String> {
    if let Some(found) = in_location {
        let namespace = api.namespace().unwrap_or("default");
        let store = locations.get(&found.location).map_err(anyhow::Error::msg)?;
        let dir = search_dir(namespace, name, found.path.as_deref()).map_err(anyhow::Error::msg)?;
        let entries = store.store.list(&dir).await?;
        let Some(file) = find_file(&entries, name, id) else {
            bail!(not_found(&found.location, namespace, name, &dir, id));
        };
        let verified = crate::format::reader::verify(store.store.as_ref(), store.keys.as_deref(), &file.location)
            .await
            .with_context(|| format!("backup {} in {} does not verify", file.id, file.location))?;
        return Ok(verified_message(&file.id, &format!("{} in location {}", file.location, found.location), &verified));
    }
    let backup = api.get(name).await?;
    let status = backup.status.clone().unwrap_or_default();
    let record = match id {
        Some(id) => status.backups.iter().flatten().find(|b| b.id == id).cloned(),
        None => status.last_backup.clone(),
    };
    let Some(record) = record else {
        bail!("TimeseriesDBBackup {name} has no backup {}", id.unwrap_or("yet"));
    };
    let location = record.location.as_deref().with_context(|| format!("backup {} has no location", record.id))?;
    let namespace = backup.metadata.namespace.as_deref().unwrap_or_default();
    let uid = backup.metadata.uid.as_deref().unwrap_or_default();
    Prefix::new(namespace, name, uid, name).and_then(|p| p.check(location, &record.id)).map_err(anyhow::Error::msg)?;
    let store = locations
        .get(record.destination.as_deref().unwrap_or(crate::destination::locations::DEFAULT))
        .map_err(anyhow::Error::msg)?;
    let verified = crate::format::reader::verify(store.store.as_ref(), store.keys.as_deref(), location)
        .await
        .with_context(|| format!("backup {} of {namespace}/{name} does not verify", record.id))?;
    if let Some(sha) = &record.sha256 {
        ensure!(
            *sha == verified.header.payload_sha256,
            "backup {}: the file's SHA-256 {} is not the one status recorded ({sha})",
            record.id,
            verified.header.payload_sha256
        );
    }
    Ok(verified_message(&record.id, &format!("{namespace}/{name}"), &verified))
}

fn verified_message(id: &str, of: &str, verified: &crate::format::reader::Verified) -> String {
    format!(
        "backup {id} of {of} verified: {} series, {} samples in {} records, SHA-256 {}{}",
        verified.header.series,
        verified.samples,
        verified.records,
        verified.header.payload_sha256,
        match &verified.header.encryption {
            Some(e) => format!(", encrypted with key {}", e.key_id),
            None => String::new(),
        }
    )
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
    /// Default: `<backup>-restore-` and a suffix the server generates (unique).
    pub name: Option<String>,
    /// Find the backup among this location's files instead of in the TimeseriesDBBackup's status (which may be
    /// gone): `spec.backupRef.location`. Needs `type`.
    pub location: Option<String>,
    /// With `location`: the TimeseriesDBBackup's `spec.destination.path`.
    pub path: Option<String>,
}

/// Creates a TimeseriesDBRestore; returns its name.
pub async fn restore(
    backups: &Api<TimeseriesDBBackup>,
    restores: &Api<TimeseriesDBRestore>,
    req: RestoreRequest,
) -> anyhow::Result<String> {
    // From a location the TimeseriesDBBackup may be gone (a cluster rebuilt after a loss): nothing is read from it.
    let (r#type, database) = match (&req.location, req.r#type) {
        (Some(_), Some(r#type)) => (r#type, req.database),
        (Some(location), None) => {
            bail!("--type is needed with --location {location}: the TimeseriesDBBackup may be gone")
        }
        (None, r#type) => {
            let backup = backups.get(&req.backup).await?;
            let source = backup.spec.database.endpoint;
            (r#type.unwrap_or(source.r#type), req.database.or(source.database))
        }
    };
    let backup_ref = BackupRef { name: req.backup.clone(), id: req.id, location: req.location, path: req.path };
    let spec =
        TimeseriesDBRestoreSpec { backup_ref, target: DatabaseEndpoint::new(r#type, req.to, database), timeout: None };
    let namespace = restores.namespace().unwrap_or("default").to_string();
    let mut restore = TimeseriesDBRestore::new(&namespace, req.name.as_deref().unwrap_or_default(), spec);
    if req.name.is_none() {
        restore.metadata.name = None;
        restore.metadata.generate_name = Some(format!("{}-restore-", req.backup));
    }
    let created = restores.create(&PostParams::default(), &restore).await?;
    created.metadata.name.context("the server returned no name")
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

/// How `status` prints, as kubectl's `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    #[default]
    Table,
    /// The table with the URL and the status message.
    Wide,
    /// A `List` of the objects.
    Json,
    Yaml,
}

/// Parses `-o`.
pub fn parse_output(s: &str) -> anyhow::Result<Output> {
    Ok(match s {
        "wide" => Output::Wide,
        "json" => Output::Json,
        "yaml" => Output::Yaml,
        other => bail!(
            "unable to match a printer suitable for the output format {other:?}, allowed formats are: json, wide, yaml"
        ),
    })
}

/// The backups of `api`, printed as `output`.
pub async fn status(api: &Api<TimeseriesDBBackup>, all_namespaces: bool, output: Output) -> anyhow::Result<String> {
    let list = api.list(&ListParams::default()).await?;
    let mut items = list.items;
    items.sort_by(|a, b| (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name)));
    let as_list = || json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items});
    Ok(match output {
        Output::Table | Output::Wide => table(&items, all_namespaces, output == Output::Wide, Timestamp::now()),
        Output::Json => format!("{}\n", serde_json::to_string_pretty(&as_list())?),
        Output::Yaml => serde_saphyr::to_string(&as_list())?,
    })
}

/// An error as kubectl prints one: `Error from server (NotFound): ...` for the API server's refusals, the chain of
/// causes otherwise.
pub fn describe_error(error: &anyhow::Error) -> String {
    match error.chain().find_map(|e| e.downcast_ref::<kube::Error>()) {
        Some(kube::Error::Api(status)) => {
            let reason = if status.reason.is_empty() { "Unknown" } else { status.reason.as_str() };
            format!("Error from server ({reason}): {}", status.message)
        }
        _ => format!("error: {error:#}"),
    }
}

pub fn table(backups: &[TimeseriesDBBackup], all_namespaces: bool, wide: bool, now: Timestamp) -> String {
    let mut header = vec!["NAME", "DATABASE", "SCHEDULE", "PHASE", "LAST RUN", "SAMPLES", "SIZE", "NEXT RUN", "KEPT"];
    if wide {
        header.extend(["URL", "MESSAGE"]);
    }
    let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
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
            phase(&status),
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
        if wide {
            row.push(b.spec.database.endpoint.url.clone());
            row.push(status.message.as_deref().map_or("-".into(), |m| crate::sanitize::text(m, 80)));
        }
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

/// The phase; for a running backup, with its progress: `Running (120000 samples, 1.5 MiB; 40000 samples/s, 512.0
/// KiB/s)`.
fn phase(status: &backup_apis::backup::TimeseriesDBBackupStatus) -> String {
    let Some(phase) = status.phase else { return "-".into() };
    match (&status.progress, phase) {
        (Some(p), backup_apis::status::Phase::Running) => format!(
            "{phase:?} ({} samples, {}; {} samples/s, {}/s)",
            p.samples.unwrap_or(0),
            bytes(p.bytes.unwrap_or(0)),
            p.samples_per_second.unwrap_or(0),
            bytes(p.bytes_per_second.unwrap_or(0)),
        ),
        _ => format!("{phase:?}"),
    }
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
            verify: false,
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
        let out = table(&[b.clone(), fresh], false, false, now);
        assert_eq!(
            out,
            "NAME      DATABASE     SCHEDULE    PHASE       LAST RUN   SAMPLES   SIZE      NEXT RUN   KEPT\n\
             adhoc     Prometheus   -           -           -          -         -         -          0\n\
             nightly   Prometheus   0 2 * * *   Succeeded   9h ago     1000000   3.0 MiB   in 14h     3\n"
        );
        let wide = table(&[b.clone()], false, true, now);
        assert!(wide.lines().next().unwrap().ends_with("KEPT   URL             MESSAGE"), "{wide}");
        assert!(wide.lines().nth(1).unwrap().ends_with("3      http://p:9090   -"), "{wide}");
        let mut running = b.status.clone().unwrap();
        running.phase = Some(Phase::Running);
        running.progress = Some(backup_apis::status::Progress {
            samples: Some(120_000),
            bytes: Some(3 << 19),
            samples_per_second: Some(40_000),
            bytes_per_second: Some(512 << 10),
            update_time: None,
        });
        assert_eq!(phase(&running), "Running (120000 samples, 1.5 MiB; 40000 samples/s, 512.0 KiB/s)");
        assert_eq!(parse_type("vm").unwrap(), DatabaseType::VictoriaMetrics);
        assert_eq!(parse_output("yaml").unwrap(), Output::Yaml);
        assert!(parse_output("xml").unwrap_err().to_string().contains("allowed formats are: json, wide, yaml"));
        assert!(parse_type("mysql").is_err());
    }
}
