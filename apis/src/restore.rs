//! The TimeseriesDBRestore kind: write one backup of a TimeseriesDBBackup into a database. Typed structs for
//! clients and the controller, and [`RestoreKind`], the strategy the server runs.
//!
//! filters → endpoints → registry store → **strategy (this file: schema, validation, columns of
//! `timeseriesdbrestores`)** → storage → etcd.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::columns::{CellSource, ColumnType, PrinterColumn};
use crate::database::{DatabaseEndpoint, endpoint_properties, endpoint_schema, validate_endpoint};
use crate::field::{ErrorList, FieldError};
use crate::json::at;
use crate::kind::{Kind, SelectableField};
use crate::objectmeta::is_dns1123_subdomain;
use crate::resource::{ResourceInfo, impl_namespaced_resource};
use crate::schema::{SchemaExt, date_time, int64, kind_root, obj, string};
use crate::status::{
    Condition, Phase, Progress, conditions_schema, observed_generation_schema, phase_schema, progress_schema,
    retry_properties, timeout_schema, validate_timeout,
};

/// Names and shape of `timeseriesdbrestores`.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: crate::GROUP,
    version: crate::VERSION,
    kind: "TimeseriesDBRestore",
    list_kind: "TimeseriesDBRestoreList",
    plural: "timeseriesdbrestores",
    singular: "timeseriesdbrestore",
    short_names: &["tsdbr"],
    categories: &["backups"],
    namespaced: true,
    status_subresource: true,
};

/// A restore of one backup into a database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeseriesDBRestore {
    /// `backup.extend-k8s.io/v1`.
    pub api_version: String,
    /// `TimeseriesDBRestore`.
    pub kind: String,
    /// Standard object metadata.
    pub metadata: ObjectMeta,
    /// Which backup to restore, and into which database.
    pub spec: TimeseriesDBRestoreSpec,
    /// What the controller observed; written through the status subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TimeseriesDBRestoreStatus>,
}

impl_namespaced_resource!(TimeseriesDBRestore, RESOURCE);

/// The desired state of a TimeseriesDBRestore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeseriesDBRestoreSpec {
    /// The backup to restore.
    pub backup_ref: BackupRef,
    /// The database to restore into.
    pub target: DatabaseEndpoint,
    /// Deadline of the restore (a duration such as `30m`); the controller's `--default-timeout` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// Which backup: a TimeseriesDBBackup in the same namespace and one of its backups; or, with `location`, the
/// backup files a TimeseriesDBBackup of that name in this namespace left in a location, found there without the
/// object (a cluster rebuilt after a loss, an object deleted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupRef {
    /// The TimeseriesDBBackup's name (same namespace).
    pub name: String,
    /// A backup id (`status.backups[].id`, or the id in a file's name); the latest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Read the backup from this location's files instead of the TimeseriesDBBackup's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// With `location`: the backup's `spec.destination.path` (its directory under `<namespace>/`); `name` when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// The observed state of a TimeseriesDBRestore.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeseriesDBRestoreStatus {
    /// Where the restore is: Pending, Running, Succeeded, Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The `metadata.generation` this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and `Running` conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// When the restore started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the restore completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Number of series restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<u64>,
    /// Number of samples restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
    /// Why the restore failed, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Failed attempts since the last success; the retry delay doubles with each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// When a failed restore is tried again (kept here, so a controller restart does not retry at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_time: Option<Time>,
    /// How far the running restore is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

impl TimeseriesDBRestore {
    /// A TimeseriesDBRestore `namespace/name` with `spec` and no status.
    pub fn new(namespace: &str, name: &str, spec: TimeseriesDBRestoreSpec) -> Self {
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
}

/// The strategy of `timeseriesdbrestores`.
pub struct RestoreKind;

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
        name: "Backup",
        column_type: ColumnType::String,
        format: "",
        description: "The TimeseriesDBBackup restored from.",
        priority: 0,
        source: CellSource::Pointer("/spec/backupRef/name"),
    },
    PrinterColumn {
        name: "Target",
        column_type: ColumnType::String,
        format: "",
        description: "The URL of the database restored into.",
        priority: 0,
        source: CellSource::Pointer("/spec/target/url"),
    },
    PrinterColumn {
        name: "Phase",
        column_type: ColumnType::String,
        format: "",
        description: "Where the restore is in its life.",
        priority: 0,
        source: CellSource::Pointer("/status/phase"),
    },
    PrinterColumn {
        name: "Samples",
        column_type: ColumnType::Integer,
        format: "",
        description: "Samples written so far.",
        priority: 0,
        source: CellSource::Pointer("/status/samples"),
    },
    PrinterColumn {
        name: "Age",
        column_type: ColumnType::Date,
        format: "",
        description: "Time since the object was created.",
        priority: 0,
        source: CellSource::Age("/metadata/creationTimestamp"),
    },
];

const SELECTABLE: &[SelectableField] = &[
    SelectableField { name: "spec.target.type", pointer: "/spec/target/type" },
    SelectableField { name: "status.phase", pointer: "/status/phase" },
];

impl Kind for RestoreKind {
    fn resource(&self) -> &ResourceInfo {
        &RESOURCE
    }

    fn schema(&self) -> Value {
        let spec = obj(
            "Which backup to restore, and into which database.",
            [
                (
                    "backupRef",
                    obj(
                        "The backup to restore.",
                        [
                            ("name", string("Name of a TimeseriesDBBackup in this namespace.")),
                            (
                                "id",
                                string(
                                    "The id of one of its backups (status.backups[].id). Defaults to the latest successful backup.",
                                ),
                            ),
                            (
                                "location",
                                string(
                                    "Find the backup in this location's files (<namespace>/<path>/<name>.<uid>.<id>.tsdb,                                      whatever the UID) instead of in the TimeseriesDBBackup's status: to restore when                                      the TimeseriesDBBackup is gone, e.g. in a cluster rebuilt after a loss. Only this                                      namespace's files are read.",
                                ),
                            ),
                            (
                                "path",
                                string(
                                    "With location: the TimeseriesDBBackup's spec.destination.path (its directory                                      under <namespace>/). Defaults to name.",
                                ),
                            ),
                        ],
                        &["name"],
                    ),
                ),
                (
                    "target",
                    endpoint_schema(
                        "The database to write the backup into. Before writing, the controller checks that its \
                         retention (and, for Prometheus, its out-of-order window) keeps the backup's samples; after \
                         writing, it reads back the samples of every series over the backup's time range and \
                         reports Succeeded only when they all landed, once. At most one restore writes into a \
                         database at a time.",
                        endpoint_properties("restore into"),
                    ),
                ),
                ("timeout", timeout_schema("restore")),
            ],
            &["backupRef", "target"],
        );
        let status = obj(
            "What the controller observed and did. Written through the status subresource.",
            [
                ("phase", phase_schema("Where the restore is: Pending, Running, Succeeded or Failed.")),
                ("observedGeneration", observed_generation_schema()),
                ("conditions", conditions_schema()),
                ("startTime", date_time("When the restore started.")),
                ("completionTime", date_time("When the restore completed.")),
                ("series", int64("Number of series restored.").with("minimum", json!(0))),
                ("samples", int64("Number of samples restored, verified in the target.").with("minimum", json!(0))),
                ("message", string("A human-readable account of the last failure or progress.")),
            ]
            .into_iter()
            .chain(retry_properties("restore"))
            .chain([("progress", progress_schema("restore"))]),
            &[],
        );
        kind_root("TimeseriesDBRestore writes one backup of a TimeseriesDBBackup into a database.", spec, status)
    }

    fn validate(&self, obj: &Value) -> ErrorList {
        let mut errs = validate_endpoint(at(obj, "/spec/target"), "spec.target");
        errs.extend(validate_timeout(obj));
        if let Some(name) = at(obj, "/spec/backupRef/name").and_then(Value::as_str) {
            for msg in is_dns1123_subdomain(name) {
                errs.push(FieldError::invalid("spec.backupRef.name", json!(name), msg));
            }
        }
        let location = at(obj, "/spec/backupRef/location").and_then(Value::as_str);
        if let Some(location) = location {
            for msg in crate::objectmeta::is_dns1123_label(location) {
                errs.push(FieldError::invalid("spec.backupRef.location", json!(location), msg));
            }
        }
        if let Some(path) = at(obj, "/spec/backupRef/path").and_then(Value::as_str) {
            errs.extend(crate::backup::validate_relative_path(path, "spec.backupRef.path"));
            if location.is_none() {
                errs.push(FieldError::forbidden("spec.backupRef.path", "may only be set with spec.backupRef.location"));
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
