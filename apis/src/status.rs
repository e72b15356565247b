//! Status pieces both kinds share: the phase, conditions and observed generation the controller reports.
//!
//! filters → endpoints → registry store → **strategy (this file: status schema fragments and types, used by
//! `backup.rs` and `restore.rs`)** → storage → etcd.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
