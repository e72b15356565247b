//! Kubernetes Events about TimeseriesDBBackups and TimeseriesDBRestores (events.k8s.io/v1, with kube-runtime's
//! `Recorder`): backups and restores started, succeeded and failed, backups deleted by retention, status locations
//! retention refused and backups `spec.verify` could not read back, as `kubectl describe` and `kubectl events` show
//! them.
//!
//! API ← **events (this file)** ← controller: jobs.
//!
//! Events live in kube-apiserver, `regarding` our aggregated kind. The standalone server serves only our group: with
//! no `events.k8s.io/v1` on the API server, Events are skipped (said once, at start). An Event that cannot be
//! written is logged and otherwise ignored: it never holds up or fails a backup.

use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// The reporting controller's name.
pub const REPORTER: &str = "backup-controller";
/// The longest wait for one Event to be written.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes Events, or nothing in standalone mode.
#[derive(Clone)]
pub struct Events {
    recorder: Option<Recorder>,
}

/// An Event's severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

impl Events {
    /// Events through `client` when its API server serves `events.k8s.io/v1`; `instance` names this replica.
    pub async fn new(client: &Client, instance: &str) -> Self {
        match client.list_api_group_resources("events.k8s.io/v1").await {
            Ok(_) => {
                let reporter = Reporter { controller: REPORTER.into(), instance: Some(instance.to_owned()) };
                Self { recorder: Some(Recorder::new(client.clone(), reporter)) }
            }
            Err(e) => {
                tracing::info!(
                    error = %e,
                    "the API server does not serve events.k8s.io/v1 (standalone mode?): no Events are written"
                );
                Self::disabled()
            }
        }
    }

    /// No Events.
    pub fn disabled() -> Self {
        Self { recorder: None }
    }

    /// Publishes an Event about `regarding`; `action` is what was done (`Backup`, `Restore`, `Retention`).
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        severity: Severity,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let Some(recorder) = &self.recorder else { return };
        let event = Event {
            type_: match severity {
                Severity::Normal => EventType::Normal,
                Severity::Warning => EventType::Warning,
            },
            reason: reason.to_owned(),
            note: Some(note_of(note)),
            action: action.to_owned(),
            secondary: None,
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, recorder.publish(&event, regarding)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(reason, error = %e, "could not write an Event"),
            Err(_) => tracing::warn!(reason, "could not write an Event in {PUBLISH_TIMEOUT:?}"),
        }
    }
}

/// The note, sanitised and cut to what events.k8s.io/v1 takes (1 kB).
fn note_of(text: &str) -> String {
    const MAX_BYTES: usize = 1024;
    let mut note = crate::sanitize::text(text, MAX_BYTES);
    if note.len() > MAX_BYTES {
        let mut end = MAX_BYTES - '…'.len_utf8();
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    note
}

/// The reference of an object of ours, for `regarding`.
pub fn reference(kind: &str, metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some(format!("{}/{}", backup_apis::GROUP, backup_apis::VERSION)),
        kind: Some(kind.to_owned()),
        namespace: metadata.namespace.clone(),
        name: metadata.name.clone(),
        uid: metadata.uid.clone(),
        resource_version: metadata.resource_version.clone(),
        field_path: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_fit_in_a_kilobyte() {
        assert_eq!(note_of("backup 1 failed:\n\x1b[31m"), "backup 1 failed: \\x1b[31m");
        let long = "ü".repeat(1000);
        let note = note_of(&long);
        assert!(note.len() <= 1024 && note.ends_with('…'), "{}", note.len());
    }
}
