//! Pieces both kinds share: the phase, conditions, observed generation and retry state the controller reports, and
//! `spec.timeout`.
//!
//! filters → endpoints → registry store → **strategy (this file: status schema fragments and types, used by
//! `backup.rs` and `restore.rs`)** → storage → etcd.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::duration::parse_duration;
use crate::field::{ErrorList, FieldError};
use crate::json::at;
use crate::schema::{SchemaExt, date_time, enum_of, int64, map_list, obj, string};

/// Where a backup or restore is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Accepted, not started yet.
    Pending,
    /// In progress.
    Running,
    /// The last run completed.
    Succeeded,
    /// The last run failed (see the conditions and `message`).
    Failed,
}

impl Phase {
    /// Every phase, as serialized: the schema's `enum`.
    pub const NAMES: &[&str] = &["Pending", "Running", "Succeeded", "Failed"];
}

/// A condition's truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet.
    Unknown,
}

/// One entry of `status.conditions`, unique by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's type, e.g. `Ready`; unique in the list.
    pub r#type: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// A machine-readable CamelCase reason for the last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A human-readable message about the last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

/// `status.phase`.
pub fn phase_schema(description: &str) -> Value {
    enum_of(description, Phase::NAMES)
}

/// `status.observedGeneration`.
pub fn observed_generation_schema() -> Value {
    int64("The metadata.generation of the spec the controller last acted on.").with("minimum", 0.into())
}

/// `status.conditions`: a list-map keyed by `type`.
pub fn conditions_schema() -> Value {
    let condition = obj(
        "A condition: one aspect of the object's state.",
        [
            ("type", string("The aspect this condition describes, e.g. Ready.")),
            ("status", enum_of("Whether the condition holds: True, False or Unknown.", &["True", "False", "Unknown"])),
            ("reason", string("A CamelCase machine-readable reason for the last transition.")),
            ("message", string("A human-readable explanation of the last transition.")),
            ("lastTransitionTime", date_time("When status last changed.")),
        ],
        &["type", "status"],
    );
    map_list("The latest observations of the object's state, one per type.", condition, &["type"])
}

/// `status.consecutiveFailures` and `status.nextRetryTime` of a kind whose runs are called `what`s.
pub fn retry_properties(what: &str) -> [(&'static str, Value); 2] {
    [
        (
            "consecutiveFailures",
            int64(&format!(
                "Failed {what}s since the last success; the delay before the next retry doubles with each."
            ))
            .with("minimum", 0.into()),
        ),
        (
            "nextRetryTime",
            date_time(&format!(
                "When a failed {what} is tried again. Kept in status, so a controller restart does not retry at once."
            )),
        ),
    ]
}

/// How far a running backup or restore is; written at most every few seconds while it runs, removed when it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Samples read (a backup: from the database; a restore: from the backup) so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
    /// Bytes so far (a backup: written to the backup file, compressed; a restore: read from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Samples a second, on average since the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_per_second: Option<u64>,
    /// Bytes a second, on average since the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_second: Option<u64>,
    /// When these figures were taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_time: Option<Time>,
}

/// `status.progress` of a kind whose runs are called `what`s.
pub fn progress_schema(what: &str) -> Value {
    let count = |d: &str| int64(d).with("minimum", 0.into());
    obj(
        &format!("How far the running {what} is; updated at most every 5 seconds while it runs, removed when it ends."),
        [
            ("samples", count("Samples so far.")),
            (
                "bytes",
                count("Bytes so far (a backup: written to its file, compressed; a restore: read from the backup)."),
            ),
            ("samplesPerSecond", count("Samples a second, on average since the start.")),
            ("bytesPerSecond", count("Bytes a second, on average since the start.")),
            ("updateTime", date_time("When these figures were taken.")),
        ],
        &[],
    )
}

/// `spec.timeout` of a kind whose runs are called `what`s.
pub fn timeout_schema(what: &str) -> Value {
    string(&format!(
        "Deadline of one {what}, from its start (time waiting for a free slot does not count), as a duration such as \
         \"45m\" or \"2h30m\". A {what} still running then is stopped and fails with this reason. Defaults to the \
         controller's --default-timeout (1h)."
    ))
}

/// `spec.timeout` must be a positive duration.
pub fn validate_timeout(obj: &Value) -> ErrorList {
    let mut errs = ErrorList::default();
    if let Some(text) = at(obj, "/spec/timeout").and_then(Value::as_str) {
        match parse_duration(text) {
            Ok(d) if d.is_zero() => errs.push(FieldError::invalid("spec.timeout", json!(text), "must be positive")),
            Ok(_) => {}
            Err(e) => errs.push(FieldError::invalid("spec.timeout", json!(text), e)),
        }
    }
    errs
}
