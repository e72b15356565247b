//! The TimeseriesDBBackup kind: back up a Prometheus, VictoriaMetrics or InfluxDB database once or on a cron
//! schedule, keeping the last N backups. Typed structs for clients and the controller, and [`BackupKind`], the
//! strategy the server runs.
//!
//! filters → endpoints → registry store → **strategy (this file: schema, defaults, validation, columns of
//! `timeseriesdbbackups`)** → storage → etcd.

use croner::Cron;
use croner::errors::CronError;
use croner::parser::CronParser;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::columns::{CellSource, ColumnType, PrinterColumn};
use crate::database::{DatabaseEndpoint, endpoint_properties, endpoint_schema, validate_endpoint};
use crate::field::{ErrorList, FieldError};
use crate::kind::{Kind, SelectableField};
use crate::resource::{ResourceInfo, impl_namespaced_resource};
use crate::schema::{SchemaExt, array_of, boolean, date_time, int64, kind_root, obj, string};
use crate::status::{Condition, Phase, conditions_schema, observed_generation_schema, phase_schema};

/// `spec.retention.keepLast` when not given.
pub const DEFAULT_KEEP_LAST: i64 = 7;

/// Names and shape of `timeseriesdbbackups`.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: crate::GROUP,
    version: crate::VERSION,
    kind: "TimeseriesDBBackup",
    list_kind: "TimeseriesDBBackupList",
    plural: "timeseriesdbbackups",
    singular: "timeseriesdbbackup",
    short_names: &["tsdbb"],
    categories: &["backups"],
    namespaced: true,
    status_subresource: true,
};

/// A backup of a time-series database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeseriesDBBackup {
    /// `backup.extend-k8s.io/v1`.
    pub api_version: String,
    /// `TimeseriesDBBackup`.
    pub kind: String,
    /// Standard object metadata.
    pub metadata: ObjectMeta,
    /// What to back up, where to, when, and how many backups to keep.
    pub spec: TimeseriesDBBackupSpec,
    /// What the controller observed; written through the status subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TimeseriesDBBackupStatus>,
}

impl_namespaced_resource!(TimeseriesDBBackup, RESOURCE);

/// The desired state of a TimeseriesDBBackup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeseriesDBBackupSpec {
    /// The database to back up.
    pub database: BackupSource,
    /// Where the backup files go; `<namespace>/<name>` on the controller's volume when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// Cron expression; absent for a single backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// How many backups to keep.
    #[serde(default)]
    pub retention: Retention,
    /// No new scheduled backups while true; a running one finishes.
    #[serde(default)]
    pub suspend: bool,
}

/// The database to back up and which series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupSource {
    /// Type, URL and (InfluxDB) database name.
    #[serde(flatten)]
    pub endpoint: DatabaseEndpoint,
    /// Series matcher such as `{job="node"}`; all series when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// Where a backup's files are written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// Relative to the controller's backup volume; see [`TimeseriesDBBackup::destination_path`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Which backups are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// How many of the newest successful backups to keep (at least 1); older files and entries are deleted.
    pub keep_last: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Self { keep_last: DEFAULT_KEEP_LAST }
    }
}

/// The observed state of a TimeseriesDBBackup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeseriesDBBackupStatus {
    /// Where the backup is in its life: Pending, Running, Succeeded, Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The `metadata.generation` this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and `Running` conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// The most recent successful backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<BackupRecord>,
    /// The backups kept, newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<Vec<BackupRecord>>,
    /// When the next scheduled backup runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// Why the last run failed, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One backup: what it holds and where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupRecord {
    /// The backup's identifier, unique within its TimeseriesDBBackup.
    pub id: String,
    /// When the backup started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the backup completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Number of series in the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<u64>,
    /// Number of samples in the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
    /// Size of the backup file in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Where the backup is, relative to the controller's backup volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// SHA-256 of the backup's content, hex-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl TimeseriesDBBackup {
    /// A TimeseriesDBBackup `namespace/name` with `spec` and no status.
    pub fn new(namespace: &str, name: &str, spec: TimeseriesDBBackupSpec) -> Self {
        Self {
            api_version: crate::API_VERSION.to_string(),
            kind: RESOURCE.kind.to_string(),
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        }
    }

    /// `spec.destination.path`, or its default.
    pub fn destination_path(&self) -> String {
        match self.spec.destination.as_ref().and_then(|d| d.path.clone()) {
            Some(path) => path,
            None => default_destination(
                self.metadata.namespace.as_deref().unwrap_or(""),
                self.metadata.name.as_deref().unwrap_or(""),
            ),
        }
    }
}

/// The default `spec.destination.path`: `<namespace>/<name>`.
pub fn default_destination(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Parses `spec.schedule` as the server validates it and the controller runs it: croner's default parser, i.e.
/// standard 5-field cron (`minute hour day-of-month month day-of-week`), optionally with a leading seconds field and
/// a trailing year field, names (`MON`, `JAN`), `L`/`W`/`#`, and `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
pub fn parse_schedule(expr: &str) -> Result<Cron, CronError> {
    CronParser::new().parse(expr)
}

/// Schedules already parsed successfully: parsing one costs more than the rest of a create's validation, and most
/// objects share a handful of schedules.
static KNOWN_VALID_SCHEDULES: ValidSchedules = ValidSchedules(std::sync::Mutex::new(Vec::new()));

/// A small memo of valid cron expressions (bounded; a miss just parses again).
struct ValidSchedules(std::sync::Mutex<Vec<String>>);

impl ValidSchedules {
    const CAPACITY: usize = 64;

    /// Whether `expr` is known valid; if not, parse it and remember it when it is.
    fn contains(&self, expr: &str) -> bool {
        if self.0.lock().is_ok_and(|known| known.iter().any(|k| k == expr)) {
            return true;
        }
        if parse_schedule(expr).is_err() {
            return false;
        }
        if let Ok(mut known) = self.0.lock() {
            if known.len() >= Self::CAPACITY {
                known.remove(0);
            }
            known.push(expr.to_string());
        }
        true
    }
}

/// Upstream's `validateLocalDescendingPath` messages, plus non-empty.
fn validate_relative_path(path: &str, field: &str) -> ErrorList {
    let mut errs = ErrorList::default();
    if path.is_empty() {
        errs.push(FieldError::invalid(field, json!(path), "must not be empty"));
    }
    if path.starts_with('/') {
        errs.push(FieldError::invalid(field, json!(path), "must be a relative path"));
    }
    if path.split('/').any(|part| part == "..") {
        errs.push(FieldError::invalid(field, json!(path), "must not contain '..'"));
    }
    errs
}

/// A backup record's schema (`status.lastBackup`, `status.backups[]`).
fn record_schema(description: &str) -> Value {
    obj(
        description,
        [
            ("id", string("The backup's identifier, unique within this TimeseriesDBBackup.")),
            ("startTime", date_time("When the backup started.")),
            ("completionTime", date_time("When the backup completed.")),
            ("series", int64("Number of series in the backup.").with("minimum", json!(0))),
            ("samples", int64("Number of samples in the backup.").with("minimum", json!(0))),
            ("bytes", int64("Size of the backup in bytes.").with("minimum", json!(0))),
            ("location", string("Where the backup is, relative to the controller's backup volume.")),
            ("sha256", string("SHA-256 of the backup's content, hex-encoded.")),
        ],
        &["id"],
    )
}

/// The strategy of `timeseriesdbbackups`.
pub struct BackupKind;

const COLUMNS: &[PrinterColumn] = &[
    PrinterColumn {
        name: "Name",
        column_type: ColumnType::String,
        format: "name",
        description: "Name must be unique within a namespace.",
        priority: 0,
        source: CellSource::Name,
    },
    PrinterColumn {
        name: "Database",
        column_type: ColumnType::String,
        format: "",
        description: "The type of the database backed up.",
        priority: 0,
        source: CellSource::Pointer("/spec/database/type"),
    },
    PrinterColumn {
        name: "Phase",
        column_type: ColumnType::String,
        format: "",
        description: "Where the backup is in its life.",
        priority: 0,
        source: CellSource::Pointer("/status/phase"),
    },
    PrinterColumn {
        name: "Last Backup",
        column_type: ColumnType::Date,
        format: "",
        description: "When the last successful backup completed.",
        priority: 0,
        source: CellSource::Age("/status/lastBackup/completionTime"),
    },
    PrinterColumn {
        name: "Samples",
        column_type: ColumnType::Integer,
        format: "",
        description: "Samples in the last successful backup.",
        priority: 0,
        source: CellSource::Pointer("/status/lastBackup/samples"),
    },
    PrinterColumn {
        name: "Size",
        column_type: ColumnType::String,
        format: "",
        description: "Size of the last successful backup.",
        priority: 0,
        source: CellSource::Bytes("/status/lastBackup/bytes"),
    },
    PrinterColumn {
        name: "Age",
        column_type: ColumnType::Date,
        format: "",
        description: "Time since the object was created.",
        priority: 0,
        source: CellSource::Age("/metadata/creationTimestamp"),
    },
    PrinterColumn {
        name: "URL",
        column_type: ColumnType::String,
        format: "",
        description: "The database's URL.",
        priority: 1,
        source: CellSource::Pointer("/spec/database/url"),
    },
    PrinterColumn {
        name: "Schedule",
        column_type: ColumnType::String,
        format: "",
        description: "The cron schedule; empty for a single backup.",
        priority: 1,
        source: CellSource::Pointer("/spec/schedule"),
    },
];

const SELECTABLE: &[SelectableField] = &[
    SelectableField { name: "spec.database.type", pointer: "/spec/database/type" },
    SelectableField { name: "status.phase", pointer: "/status/phase" },
];

impl Kind for BackupKind {
    fn resource(&self) -> &ResourceInfo {
        &RESOURCE
    }

    fn schema(&self) -> Value {
        let mut database = endpoint_properties("back up");
        database.push((
            "selector",
            string("Which series to back up, as a series selector such as {job=\"node\"}. All series when absent."),
        ));
        let spec = obj(
            "What to back up, where, when and how many backups to keep.",
            [
                ("database", endpoint_schema("The database to back up.", database)),
                (
                    "destination",
                    obj(
                        "Where backups are written.",
                        [(
                            "path",
                            string(
                                "Directory for this object's backups, relative to the controller's backup volume \
                                 (no leading '/', no '..'). Defaults to <namespace>/<name>.",
                            ),
                        )],
                        &[],
                    ),
                ),
                (
                    "schedule",
                    string(
                        "Cron schedule of backups, e.g. \"0 3 * * *\" (minute hour day-of-month month day-of-week; \
                         an optional leading seconds field and @daily-style shorthands are accepted). Absent: a \
                         single backup.",
                    ),
                ),
                (
                    "retention",
                    obj(
                        "Which backups to keep.",
                        [(
                            "keepLast",
                            int64("How many of the newest successful backups to keep; older ones are deleted.")
                                .with("default", json!(DEFAULT_KEEP_LAST))
                                .with("minimum", json!(1)),
                        )],
                        &[],
                    )
                    .with("default", json!({})),
                ),
                (
                    "suspend",
                    boolean("Suspends scheduled backups; a running backup completes.").with("default", json!(false)),
                ),
            ],
            &["database"],
        );
        let status = obj(
            "What the controller observed and did. Written through the status subresource.",
            [
                ("phase", phase_schema("Where the backup is: Pending, Running, Succeeded or Failed.")),
                ("observedGeneration", observed_generation_schema()),
                ("conditions", conditions_schema()),
                ("lastBackup", record_schema("The most recent successful backup.")),
                ("backups", array_of("The backups kept, newest first.", record_schema("One backup kept."))),
                ("nextScheduleTime", date_time("When the next scheduled backup starts.")),
                ("message", string("A human-readable account of the last failure or progress.")),
            ],
            &[],
        );
        kind_root(
            "TimeseriesDBBackup backs up a Prometheus, VictoriaMetrics or InfluxDB database, once or on a schedule.",
            spec,
            status,
        )
    }

    /// Fills `spec.destination.path` with `<namespace>/<name>` when absent (once the name is known).
    fn default(&self, obj: &mut Value) {
        let meta = |key: &str| obj.pointer(&format!("/metadata/{key}")).and_then(Value::as_str).unwrap_or("");
        let (namespace, name) = (meta("namespace"), meta("name"));
        if namespace.is_empty() || name.is_empty() {
            return;
        }
        let path = default_destination(namespace, name);
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
            && let Some(destination) = spec.entry("destination").or_insert_with(|| json!({})).as_object_mut()
        {
            destination.entry("path").or_insert(Value::String(path));
        }
    }

    fn validate(&self, obj: &Value) -> ErrorList {
        let mut errs = validate_endpoint(obj.pointer("/spec/database"), "spec.database");
        if let Some(schedule) = obj.pointer("/spec/schedule").and_then(Value::as_str)
            && !KNOWN_VALID_SCHEDULES.contains(schedule)
            && let Err(e) = parse_schedule(schedule)
        {
            let detail = format!(
                "must be a cron expression such as \"0 3 * * *\" (minute hour day-of-month month day-of-week, \
                 optionally preceded by seconds) or @hourly, @daily, @weekly, @monthly or @yearly: {e}"
            );
            errs.push(FieldError::invalid("spec.schedule", json!(schedule), detail));
        }
        if let Some(path) = obj.pointer("/spec/destination/path").and_then(Value::as_str) {
            errs.extend(validate_relative_path(path, "spec.destination.path"));
        }
        errs
    }

    fn printer_columns(&self) -> &[PrinterColumn] {
        COLUMNS
    }

    fn selectable_fields(&self) -> &[SelectableField] {
        SELECTABLE
    }
}

#[cfg(test)]
mod tests;
