//! The TimeseriesDBBackup reconciler: decides whether a backup is due (once, on `spec.schedule`, on the
//! `backup.extend-k8s.io/run-now` annotation, or to redo one a controller restart interrupted), runs it, applies
//! retention and reports everything in status.
//!
//! API → **controller: backups (this file)** → backup file / destination → engine → database.
//!
//! Restart safety: status says Running before a file is created, and Succeeded only after the file is complete,
//! durable and renamed to its final name. A reconcile that finds Running inherits a backup interrupted by a restart:
//! it removes the leftovers (files of this object that are partial or not in `status.backups`) and runs again.

use std::collections::HashSet;
use std::sync::Arc;

use backup_apis::backup::{BackupRecord, BackupSource, TimeseriesDBBackup, TimeseriesDBBackupStatus};
use backup_apis::status::{ConditionStatus, Phase};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;

use super::status::{self, READY, RUNNING, set_condition};
use super::{Context, Error, schedule};
use crate::engine;
use crate::format::{BackupWriter, Header};

/// An annotation (any value) asking for a backup now; removed once it succeeded. `kubectl tsdb backup now` sets it.
pub const RUN_NOW: &str = "backup.extend-k8s.io/run-now";

const STATUS_KEYS: &[&str] =
    &["phase", "observedGeneration", "conditions", "lastBackup", "backups", "nextScheduleTime", "message"];

pub async fn reconcile(obj: Arc<TimeseriesDBBackup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (Some(ns), Some(name)) = (obj.metadata.namespace.as_deref(), obj.metadata.name.as_deref()) else {
        return Ok(Action::await_change());
    };
    let api: Api<TimeseriesDBBackup> = Api::namespaced(ctx.client.clone(), ns);
    let key = format!("backup/{ns}/{name}");
    // The watch cache may not have our last status write yet; decide on what the server holds.
    let Some(obj) = api.get_opt(name).await? else { return Ok(Action::await_change()) };
    let mut status = obj.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let run_now = obj.metadata.annotations.as_ref().and_then(|a| a.get(RUN_NOW)).cloned();
    let interrupted = status.phase == Some(Phase::Running);

    let next = match (&obj.spec.schedule, obj.spec.suspend) {
        (Some(_), false) => match &status.next_schedule_time {
            Some(t) => Some(t.0),
            None => match schedule::next_after(&obj.spec, now) {
                Ok(t) => t,
                Err(e) => {
                    status.phase = Some(Phase::Failed);
                    status.message = Some(format!("{e:#}"));
                    status::patch(&api, name, &status, STATUS_KEYS).await?;
                    return Ok(Action::await_change());
                }
            },
        },
        _ => None,
    };
    let due = run_now.is_some()
        || interrupted
        || match &obj.spec.schedule {
            None => status.last_backup.is_none(),
            Some(_) => next.is_some_and(|t| t <= now),
        };
    if !due {
        let next = next.map(Time);
        if status.next_schedule_time != next || status.phase.is_none() {
            status.next_schedule_time = next;
            status.phase.get_or_insert(Phase::Pending);
            if obj.spec.suspend {
                status.message = Some("suspended".into());
            }
            status::patch(&api, name, &status, STATUS_KEYS).await?;
        }
        return Ok(match &status.next_schedule_time {
            Some(t) => Action::requeue(until(t.0)),
            None => Action::await_change(),
        });
    }
    let wait = ctx.backoff.wait(&key);
    if !wait.is_zero() {
        return Ok(Action::requeue(wait));
    }
    if status.phase.is_none() {
        status.phase = Some(Phase::Pending);
        status::patch(&api, name, &status, STATUS_KEYS).await?;
    }

    let id = backup_id(now, &status);
    let dir = obj.destination_path();
    let location = format!("{dir}/{name}.{id}.tsdb");
    let mut started = format!("backup {id} started");
    if interrupted {
        tracing::warn!(%key, "a backup was interrupted (controller restart); running it again");
        started.push_str(", replacing one interrupted by a controller restart");
    }
    status.phase = Some(Phase::Running);
    status.observed_generation = obj.metadata.generation;
    status.message = Some(format!("backup {id} running"));
    set_condition(status.conditions.get_or_insert_default(), RUNNING, ConditionStatus::True, "BackupStarted", &started);
    status::patch(&api, name, &status, STATUS_KEYS).await?;

    tracing::info!(%key, %location, "backup started");
    let result = async {
        remove_leftovers(&ctx, &dir, name, &status).await?;
        run(&ctx, &obj.spec.database, &location).await
    }
    .await;
    let conditions = status.conditions.get_or_insert_default();
    match result {
        Ok((header, size)) => {
            let message =
                format!("backup {id}: {} series, {} samples, {}", header.series, header.samples, status::bytes(size));
            tracing::info!(%key, %message, "backup succeeded");
            set_condition(conditions, RUNNING, ConditionStatus::False, "BackupSucceeded", &message);
            set_condition(conditions, READY, ConditionStatus::True, "BackupSucceeded", &message);
            let record = BackupRecord {
                id,
                start_time: Some(Time(header.started_at)),
                completion_time: Some(Time(header.completed_at)),
                series: Some(header.series),
                samples: Some(header.samples),
                bytes: Some(size),
                location: Some(location),
                sha256: Some(header.payload_sha256),
            };
            let problems = retain(&ctx, &obj, &mut status, record).await;
            status.phase = Some(Phase::Succeeded);
            status.message = Some(if problems.is_empty() { message } else { format!("{message}; {problems}") });
            status.next_schedule_time = match obj.spec.suspend {
                false => schedule::next_after(&obj.spec, Timestamp::now()).ok().flatten().map(Time),
                true => None,
            };
            status::patch(&api, name, &status, STATUS_KEYS).await?;
            if let Some(value) = run_now {
                clear_run_now(&api, name, &value).await?;
            }
            ctx.backoff.succeeded(&key);
            Ok(match &status.next_schedule_time {
                Some(t) => Action::requeue(until(t.0)),
                None => Action::await_change(),
            })
        }
        Err(e) => {
            let message = format!("backup {id} failed: {e:#}");
            set_condition(conditions, RUNNING, ConditionStatus::False, "BackupFailed", &message);
            set_condition(conditions, READY, ConditionStatus::False, "BackupFailed", &message);
            status.phase = Some(Phase::Failed);
            status.message = Some(message.clone());
            status::patch(&api, name, &status, STATUS_KEYS).await?;
            let delay = ctx.backoff.failed(&key);
            tracing::warn!(%key, error = %message, retry_in = ?delay, "backup failed");
            Ok(Action::requeue(delay))
        }
    }
}

/// Writes one backup file; returns its header and size.
async fn run(ctx: &Context, source: &BackupSource, location: &str) -> anyhow::Result<(Header, u64)> {
    let file = ctx.destination.create(location).await?;
    let mut writer = BackupWriter::new(file, engine::source_of(source))?;
    engine::backup(&ctx.http, source, &mut writer).await?;
    writer.finish().await
}

/// Puts `record` first in the history and deletes the backups beyond `spec.retention.keepLast`, file first. A
/// backup whose file cannot be deleted stays listed; the problems are returned for the status message.
async fn retain(
    ctx: &Context,
    obj: &TimeseriesDBBackup,
    status: &mut TimeseriesDBBackupStatus,
    record: BackupRecord,
) -> String {
    let keep = usize::try_from(obj.spec.retention.keep_last).unwrap_or(1).max(1);
    let mut kept = vec![record.clone()];
    kept.extend(status.backups.take().unwrap_or_default());
    let expired = kept.split_off(keep.min(kept.len()));
    let mut problems = Vec::new();
    for old in expired {
        if let Some(location) = &old.location
            && let Err(e) = ctx.destination.delete(location).await
        {
            problems.push(format!("could not delete expired backup {}: {e:#}", old.id));
            kept.push(old);
        }
    }
    status.last_backup = Some(record);
    status.backups = Some(kept);
    problems.join("; ")
}

/// Deletes this object's files under `dir` that are partial or not in `status.backups`: what an interrupted backup
/// left behind.
async fn remove_leftovers(
    ctx: &Context,
    dir: &str,
    name: &str,
    status: &TimeseriesDBBackupStatus,
) -> anyhow::Result<()> {
    let kept: HashSet<&str> = status.backups.iter().flatten().filter_map(|b| b.location.as_deref()).collect();
    for entry in ctx.destination.list(dir).await? {
        let file = entry.location.rsplit('/').next().unwrap_or_default();
        let ours = file.strip_suffix(".tsdb").and_then(|s| s.rsplit_once('.')).is_some_and(|(n, _)| n == name);
        if ours && (!entry.committed || !kept.contains(entry.location.as_str())) {
            tracing::info!(location = %entry.location, "removing a leftover of an interrupted backup");
            ctx.destination.delete(&entry.location).await?;
        }
    }
    Ok(())
}

/// Removes the run-now annotation if it still has the value this run honoured (a newer request stays).
async fn clear_run_now(api: &Api<TimeseriesDBBackup>, name: &str, value: &str) -> Result<(), Error> {
    let path = format!("/metadata/annotations/{}", RUN_NOW.replace('~', "~0").replace('/', "~1"));
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "test", "path": path, "value": value},
        {"op": "remove", "path": path},
    ]))
    .map_err(kube::Error::SerdeError)?;
    match api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch)).await {
        Ok(_) => Ok(()),
        // The annotation changed meanwhile: a new request, honoured by the next reconcile.
        Err(kube::Error::Api(e)) if e.code == 422 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `20261128T223000123Z`: the start time to the millisecond, made unique among the kept backups.
fn backup_id(now: Timestamp, status: &TimeseriesDBBackupStatus) -> String {
    let taken: HashSet<&str> = status.backups.iter().flatten().map(|b| b.id.as_str()).collect();
    let mut t = now;
    loop {
        let id = format!("{}{:03}Z", t.strftime("%Y%m%dT%H%M%S"), t.subsec_millisecond());
        if !taken.contains(id.as_str()) {
            return id;
        }
        t += jiff::SignedDuration::from_millis(1);
    }
}

fn until(t: Timestamp) -> std::time::Duration {
    let d = t.duration_since(Timestamp::now());
    std::time::Duration::try_from(d).unwrap_or_default().max(std::time::Duration::from_millis(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let t: Timestamp = "2026-11-28T22:30:00.123Z".parse().unwrap();
        let mut status = TimeseriesDBBackupStatus::default();
        assert_eq!(backup_id(t, &status), "20261128T223000123Z");
        status.backups = Some(vec![BackupRecord { id: "20261128T223000123Z".into(), ..Default::default() }]);
        assert_eq!(backup_id(t, &status), "20261128T223000124Z");
    }
}
