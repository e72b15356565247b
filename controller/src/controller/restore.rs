//! The TimeseriesDBRestore reconciler: finds the referenced backup (`spec.backupRef.id`, or the latest successful
//! one), verifies its file, writes it into `spec.target` and reports the series and samples restored.
//!
//! API → **controller: restores (this file)** → backup file / destination → engine → database.
//!
//! A restore runs once per generation. Failures writing to the target are retried with backoff (a retry rewrites
//! the samples already written: Prometheus and InfluxDB take identical samples again without change); a backup that
//! is missing, corrupt or of an incompatible engine fails for good.

use std::sync::Arc;
use std::time::Duration;

use backup_apis::backup::{BackupRecord, TimeseriesDBBackup};
use backup_apis::restore::{TimeseriesDBRestore, TimeseriesDBRestoreStatus};
use backup_apis::status::{ConditionStatus, Phase};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::runtime::controller::Action;

use super::status::{self, READY, RUNNING, set_condition};
use super::{Context, Error};
use crate::engine;
use crate::format::BackupReader;

const STATUS_KEYS: &[&str] =
    &["phase", "observedGeneration", "conditions", "startTime", "completionTime", "series", "samples", "message"];

/// The reason of a failure not worth retrying.
const INVALID: &str = "BackupUnusable";
/// How often to look again for a backup that does not exist yet.
const WAIT_FOR_BACKUP: Duration = Duration::from_secs(10);

pub async fn reconcile(obj: Arc<TimeseriesDBRestore>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (Some(ns), Some(name)) = (obj.metadata.namespace.as_deref(), obj.metadata.name.as_deref()) else {
        return Ok(Action::await_change());
    };
    let api: Api<TimeseriesDBRestore> = Api::namespaced(ctx.client.clone(), ns);
    let key = format!("restore/{ns}/{name}");
    // The watch cache may not have our last status write yet; decide on what the server holds.
    let Some(obj) = api.get_opt(name).await? else { return Ok(Action::await_change()) };
    let mut status = obj.status.clone().unwrap_or_default();
    let current = status.observed_generation == obj.metadata.generation;
    let ready_reason = status.conditions.iter().flatten().find(|c| c.r#type == READY).and_then(|c| c.reason.clone());
    let finished = match status.phase {
        Some(Phase::Succeeded) => true,
        Some(Phase::Failed) => ready_reason.as_deref() == Some(INVALID),
        _ => false,
    };
    if current && finished {
        return Ok(Action::await_change());
    }
    let wait = ctx.backoff.wait(&key);
    if !wait.is_zero() {
        return Ok(Action::requeue(wait));
    }
    let interrupted = status.phase == Some(Phase::Running);
    status.observed_generation = obj.metadata.generation;

    let backups: Api<TimeseriesDBBackup> = Api::namespaced(ctx.client.clone(), ns);
    let backup_name = &obj.spec.backup_ref.name;
    let record = match find_record(backups.get_opt(backup_name).await?, obj.spec.backup_ref.id.as_deref()) {
        Ok(record) => record,
        Err(waiting) => {
            status.phase = Some(Phase::Pending);
            status.message = Some(format!("waiting: {waiting}"));
            if obj.status.as_ref() != Some(&status) {
                status::patch(&api, name, &status, STATUS_KEYS).await?;
            }
            return Ok(Action::requeue(WAIT_FOR_BACKUP));
        }
    };
    let Some(location) = record.location.clone() else {
        return fail(&api, name, &mut status, INVALID, &format!("backup {} has no location", record.id)).await;
    };

    let mut started = format!("restoring backup {} of {backup_name} into {}", record.id, obj.spec.target.url);
    if interrupted {
        started.push_str(", again after a controller restart interrupted the previous attempt");
    }
    status.phase = Some(Phase::Running);
    status.start_time = Some(Time(jiff::Timestamp::now()));
    status.completion_time = None;
    status.message = Some(started.clone());
    set_condition(
        status.conditions.get_or_insert_default(),
        RUNNING,
        ConditionStatus::True,
        "RestoreStarted",
        &started,
    );
    status::patch(&api, name, &status, STATUS_KEYS).await?;
    tracing::info!(%key, %location, "restore started");

    let mut reader = match BackupReader::open_verified(ctx.destination.as_ref(), &location).await {
        Ok(reader) => reader,
        Err(e) => return fail(&api, name, &mut status, INVALID, &format!("backup {}: {e:#}", record.id)).await,
    };
    if let Err(reason) = engine::check_compatible(reader.header(), &obj.spec.target) {
        return fail(&api, name, &mut status, INVALID, &reason).await;
    }
    match engine::restore(&ctx.http, &mut reader, &obj.spec.target).await {
        Ok(restored) => {
            let message =
                format!("restored backup {}: {} series, {} samples", record.id, restored.series, restored.samples);
            tracing::info!(%key, %message, "restore succeeded");
            let conditions = status.conditions.get_or_insert_default();
            set_condition(conditions, RUNNING, ConditionStatus::False, "RestoreSucceeded", &message);
            set_condition(conditions, READY, ConditionStatus::True, "RestoreSucceeded", &message);
            status.phase = Some(Phase::Succeeded);
            status.completion_time = Some(Time(jiff::Timestamp::now()));
            status.series = Some(restored.series);
            status.samples = Some(restored.samples);
            status.message = Some(message);
            status::patch(&api, name, &status, STATUS_KEYS).await?;
            ctx.backoff.succeeded(&key);
            Ok(Action::await_change())
        }
        Err(e) => {
            let delay = ctx.backoff.failed(&key);
            let message = format!("restore of backup {} failed: {e:#}", record.id);
            tracing::warn!(%key, error = %message, retry_in = ?delay, "restore failed");
            fail(&api, name, &mut status, "RestoreFailed", &message).await?;
            Ok(Action::requeue(delay))
        }
    }
}

/// The backup record to restore, or why there is none yet.
fn find_record(backup: Option<TimeseriesDBBackup>, id: Option<&str>) -> Result<BackupRecord, String> {
    let Some(backup) = backup else { return Err("the TimeseriesDBBackup does not exist".into()) };
    let status = backup.status.unwrap_or_default();
    match id {
        Some(id) => status
            .backups
            .into_iter()
            .flatten()
            .find(|b| b.id == id)
            .ok_or_else(|| format!("the TimeseriesDBBackup has no backup {id}")),
        None => status.last_backup.ok_or_else(|| "the TimeseriesDBBackup has no successful backup yet".into()),
    }
}

async fn fail(
    api: &Api<TimeseriesDBRestore>,
    name: &str,
    status: &mut TimeseriesDBRestoreStatus,
    reason: &str,
    message: &str,
) -> Result<Action, Error> {
    let conditions = status.conditions.get_or_insert_default();
    set_condition(conditions, RUNNING, ConditionStatus::False, reason, message);
    set_condition(conditions, READY, ConditionStatus::False, reason, message);
    status.phase = Some(Phase::Failed);
    status.message = Some(message.to_owned());
    status::patch(api, name, status, STATUS_KEYS).await?;
    Ok(Action::await_change())
}
