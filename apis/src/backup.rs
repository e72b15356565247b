//! The TimeseriesDBBackup kind: back up a Prometheus, VictoriaMetrics or InfluxDB database once or on a cron
//! schedule, keeping the last N backups. Typed structs for clients and the controller, and [`BackupKind`], the
//! strategy the server runs.
//!
//! filters → endpoints → registry store → **strategy (this file: schema, defaults, validation, columns of
//! `timeseriesdbbackups`)** → storage → etcd.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::columns::{CellSource, ColumnType, PrinterColumn};
use crate::database::{DatabaseEndpoint, endpoint_properties, endpoint_schema, validate_endpoint};
use crate::field::{ErrorList, FieldError};
use crate::json::{at, at_mut};
use crate::kind::{Kind, SelectableField};
use crate::resource::{ResourceInfo, impl_namespaced_resource};
use crate::schema::{SchemaExt, array_of, boolean, date_time, int64, kind_root, obj, string};
use crate::status::{
    Condition, Phase, Progress, conditions_schema, observed_generation_schema, phase_schema, progress_schema,
    retry_properties, timeout_schema, validate_timeout,
};

/// `spec.destination.location` when not given.
pub const DEFAULT_LOCATION: &str = "default";

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
    /// Where the backup files go: a location the controller's operator named (`default` when absent), under
    /// `<namespace>/<path or name>/` there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// Cron expression; absent for a single backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA time zone of `schedule` (`Europe/Berlin`); UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// How many backups to keep.
    #[serde(default)]
    pub retention: Retention,
    /// No new backups while true (scheduled or single); a running one finishes, a run-now request still runs.
    #[serde(default)]
    pub suspend: bool,
    /// Deadline of one backup (a duration such as `30m`); the controller's `--default-timeout` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Read each backup back from its location once written (checksum, every record) and report it in the
    /// `Verified` condition.
    #[serde(default)]
    pub verify: bool,
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
    /// The name of one of the locations the controller's operator defined; [`DEFAULT_LOCATION`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Relative to `<namespace>/` in the location; see [`TimeseriesDBBackup::destination_path`].
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
    /// Failed runs since the last success; the retry delay doubles with each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// When a failed backup is tried again (kept here, so a controller restart does not retry at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_time: Option<Time>,
    /// How far the running backup is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
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
    /// The named location the backup was written to ([`DEFAULT_LOCATION`] when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Where the backup is in that location: `<namespace>/<path>/<name>.<uid>.<id>.tsdb`.
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

    /// `spec.destination.path` (normalised), or its default, the object's name. The controller puts it under
    /// `<namespace>/`: it is never read as a path from the location's root.
    pub fn destination_path(&self) -> String {
        match self.spec.destination.as_ref().and_then(|d| d.path.as_deref()) {
            Some(path) => normalize_path(path),
            None => self.metadata.name.clone().unwrap_or_default(),
        }
    }

    /// `spec.destination.location`, or [`DEFAULT_LOCATION`].
    pub fn destination_location(&self) -> &str {
        self.spec.destination.as_ref().and_then(|d| d.location.as_deref()).unwrap_or(DEFAULT_LOCATION)
    }
}

/// `path` with `.` segments, repeated and trailing slashes removed (`./a//b/` → `a/b`); a leading `/` is kept, for
/// validation to refuse.
pub fn normalize_path(path: &str) -> String {
    let relative = path.split('/').filter(|part| !part.is_empty() && *part != ".").collect::<Vec<_>>().join("/");
    if path.starts_with('/') { format!("/{relative}") } else { relative }
}

/// Longest path segment most filesystems and object stores take.
const MAX_SEGMENT: usize = 255;

/// Upstream's `validateLocalDescendingPath` messages, plus non-empty, printable, and segments a filesystem takes.
pub(crate) fn validate_relative_path(path: &str, field: &str) -> ErrorList {
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
    if path.chars().any(|c| c.is_control() || c == '\\') {
        errs.push(FieldError::invalid(field, json!(path), "must not contain control characters or backslashes"));
    }
    if path.split('/').any(|part| part.len() > MAX_SEGMENT) {
        errs.push(FieldError::invalid(field, json!(path), format!("each segment must be at most {MAX_SEGMENT} bytes")));
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
            ("destination", string("The named location the backup was written to (default when absent).")),
            ("location", string("Where the backup is in that location: <namespace>/<path>/<name>.<uid>.<id>.tsdb.")),
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
                        "Where backups are written: <namespace>/<path>/ in a location the controller's operator \
                         defined.",
                        [
                            (
                                "location",
                                string(
                                    "The name of a location defined in the controller's locations file (an object \
                                     store or a volume). Defaults to default.",
                                )
                                .with("default", json!(DEFAULT_LOCATION)),
                            ),
                            (
                                "path",
                                string(
                                    "Directory for this object's backups under <namespace>/ in the location (no \
                                     leading '/', no '..'; './a//b/' is stored as 'a/b'). Defaults to <name>.",
                                ),
                            ),
                        ],
                        &[],
                    ),
                ),
                (
                    "schedule",
                    string(
                        "Cron schedule of backups, e.g. \"0 3 * * *\" (minute hour day-of-month month day-of-week; \
                         an optional leading seconds field and @daily-style shorthands are accepted), evaluated in \
                         timeZone (UTC by default). It must fire at least once more. Absent: a single backup.",
                    ),
                ),
                (
                    "timeZone",
                    string(
                        "The time zone of schedule, an IANA name such as Europe/Berlin (see \
                         https://en.wikipedia.org/wiki/List_of_tz_database_time_zones). Defaults to UTC. TZ= and \
                         CRON_TZ= prefixes in schedule are not accepted: use this field.",
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
                    boolean(
                        "Suspends backups: no scheduled backup starts, and a single backup not taken yet waits until \
                         this is false again. A running backup completes; a run-now request still runs.",
                    )
                    .with("default", json!(false)),
                ),
                ("timeout", timeout_schema("backup")),
                (
                    "verify",
                    boolean(
                        "Reads each backup back from its location once written (its SHA-256, every record decoded \
                         and, if encrypted, authenticated) and reports the result in the Verified condition.",
                    )
                    .with("default", json!(false)),
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
            ]
            .into_iter()
            .chain(retry_properties("backup"))
            .chain([("progress", progress_schema("backup"))]),
            &[],
        );
        kind_root(
            "TimeseriesDBBackup backs up a Prometheus, VictoriaMetrics or InfluxDB database, once or on a schedule.",
            spec,
            status,
        )
    }

    /// Normalises `spec.destination.path` (`./a//b/` → `a/b`), or fills it with `<name>` when absent (once the
    /// name is known); fills `spec.destination.location` with `default`.
    fn default(&self, obj: &mut Value) {
        if let Some(path) = at_mut(obj, "/spec/destination/path")
            && let Some(text) = path.as_str()
        {
            *path = Value::String(normalize_path(text));
        }
        let meta = |key: &str| obj.get("metadata").and_then(|m| m.get(key)).and_then(Value::as_str).unwrap_or("");
        let (namespace, name) = (meta("namespace"), meta("name"));
        if namespace.is_empty() || name.is_empty() {
            return;
        }
        let path = name.to_string();
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
            && let Some(destination) = spec.entry("destination").or_insert_with(|| json!({})).as_object_mut()
        {
            destination.entry("location").or_insert(Value::String(DEFAULT_LOCATION.into()));
            destination.entry("path").or_insert(Value::String(path));
        }
    }

    fn validate(&self, obj: &Value) -> ErrorList {
        let mut errs = validate_endpoint(at(obj, "/spec/database"), "spec.database");
        let text = |pointer: &str| at(obj, pointer).and_then(Value::as_str);
        errs.extend(crate::schedule::validate(text("/spec/schedule"), text("/spec/timeZone")));
        errs.extend(validate_timeout(obj));
        if let Some(path) = at(obj, "/spec/destination/path").and_then(Value::as_str) {
            errs.extend(validate_relative_path(path, "spec.destination.path"));
        }
        if let Some(location) = at(obj, "/spec/destination/location").and_then(Value::as_str) {
            for msg in crate::objectmeta::is_dns1123_label(location) {
                errs.push(FieldError::invalid("spec.destination.location", json!(location), msg));
            }
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
