//! The TimeseriesDBRestore reconciler: finds the referenced backup (`spec.backupRef.id`, or the latest successful
//! one) in its TimeseriesDBBackup's status, or, with `spec.backupRef.location`, among the files in that location
//! (when the object is gone: a cluster rebuilt after a loss), starts the restore as a job (one restore per target
//! database at a time), and reports the series and samples verified in the target.
//!
//! API → **controller: restores (this file)** → jobs → restore → backup file / destination; engine → database.
//!
//! A restore runs once per generation. A restore that can never run (its TimeseriesDBBackup or backup id does not
//! exist) fails at once; so does one whose backup is unusable or whose result does not verify. Others (the target
//! unreachable, or its settings unsuitable) are retried with backoff kept in status; every attempt writes only what
//! the target lacks ([`crate::restore`]), so retries and a resumed crash neither duplicate nor lose samples. A
//! `Failed` phase without `nextRetryTime` is final for the generation.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use backup_apis::backup::{BackupRecord, TimeseriesDBBackup};
use backup_apis::duration::{format_duration, parse_duration};
use backup_apis::restore::{BackupRef, TimeseriesDBRestore, TimeseriesDBRestoreStatus};
use backup_apis::status::{ConditionStatus, Phase};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::runtime::controller::Action;

use super::events::{Severity, reference};
use super::jobs::{Busy, Job, JobKey, JobKind, Run, StopReason, target_key};
use super::metrics::RunOutcome;
use super::status::{self, READY, RUNNING, set_condition};
use super::{Context, Error, PROGRESS_INTERVAL, WATCH_IN_FLIGHT, after, until};
use crate::destination::confine::{FoundFile, Prefix, find_file, not_found, search_dir};
use crate::destination::{Entry, locations};
use crate::restore::{Failure, Restored};
use crate::sanitize;

const STATUS_KEYS: &[&str] = &[
    "phase",
    "observedGeneration",
    "conditions",
    "startTime",
    "completionTime",
    "series",
    "samples",
    "message",
    "consecutiveFailures",
    "nextRetryTime",
    "progress",
];

/// How often to look again for a backup that does not exist yet, or a target another restore writes into.
const WAIT_FOR_BACKUP: std::time::Duration = std::time::Duration::from_secs(10);
const WAIT_FOR_TARGET: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn reconcile(obj: Arc<TimeseriesDBRestore>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (Some(ns), Some(name)) = (obj.metadata.namespace.as_deref(), obj.metadata.name.as_deref()) else {
        return Ok(Action::await_change());
    };
    let api: Api<TimeseriesDBRestore> = Api::namespaced(ctx.client.clone(), ns);
    let key = JobKey::new(JobKind::Restore, ns, name);
    if let Some(job) = ctx.jobs.in_flight(&key) {
        let reason = match api.get_opt(name).await? {
            None => Some(StopReason::Deleted),
            Some(o) if o.metadata.uid.as_deref() != Some(&job.uid) || o.metadata.deletion_timestamp.is_some() => {
                Some(StopReason::Deleted)
            }
            Some(o) if fingerprint(&o) != job.fingerprint => Some(StopReason::SpecChanged),
            Some(_) => None,
        };
        if let Some(reason) = reason
            && !job.stop.is_stopped()
        {
            tracing::info!(%key, reason = reason.reason(), "stopping the running restore");
            job.stop.stop(reason);
        }
        // A running job's end (its outcome written, then its slot freed) is looked at again shortly; a queued one
        // needs no look until its object changes.
        return Ok(match job.is_running() {
            true => Action::requeue(WATCH_IN_FLIGHT),
            false => Action::await_change(),
        });
    }
    let Some(obj) = api.get_opt(name).await? else { return Ok(Action::await_change()) };
    if obj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    ctx.metrics.observe_restore(&obj);
    let regarding = reference(JobKind::Restore.object_kind(), &obj.metadata);
    let mut status = obj.status.clone().unwrap_or_default();
    let before = status.clone();
    let now = jiff::Timestamp::now();
    if status.observed_generation != obj.metadata.generation {
        // A new spec: a new restore, tried at once.
        status = TimeseriesDBRestoreStatus {
            observed_generation: obj.metadata.generation,
            conditions: status.conditions.take(),
            ..TimeseriesDBRestoreStatus::default()
        };
    } else {
        match status.phase {
            Some(Phase::Succeeded) => return Ok(Action::await_change()),
            Some(Phase::Failed) if status.next_retry_time.is_none() => return Ok(Action::await_change()),
            Some(Phase::Running) => {
                // Running, but not here: a crash or restart cut it short. A failure (so a crash loop backs off);
                // the next attempt writes only what is missing.
                let failures = status.consecutive_failures.unwrap_or(0).saturating_add(1);
                let delay = ctx.backoff.delay(failures);
                let message = format!(
                    "the restore was interrupted (the controller restarted or crashed); resuming in {}",
                    status::duration(delay)
                );
                fail(&mut status, "Interrupted", &message, Some((failures, delay)));
                status::patch(&api, name, &status, STATUS_KEYS).await?;
                ctx.events.publish(&regarding, Severity::Warning, "RestoreInterrupted", "Restore", &message).await;
                return Ok(Action::requeue(delay));
            }
            _ => {}
        }
    }
    if let Some(retry) = status.next_retry_time.as_ref().map(|t| t.0)
        && retry > now
    {
        return Ok(Action::requeue(until(retry)));
    }

    let backup_ref = &obj.spec.backup_ref;
    let found = match backup_ref.location.as_deref() {
        Some(location) => find_in_location(&ctx, ns, backup_ref, location).await,
        None => {
            let backups: Api<TimeseriesDBBackup> = Api::namespaced(ctx.client.clone(), ns);
            find_record(backups.get_opt(&backup_ref.name).await?, ns, &backup_ref.name, backup_ref.id.as_deref())
        }
    };
    let record = match found {
        Found::Record(record, backup_uid) => (record, backup_uid),
        Found::Never(reason, message) => {
            tracing::info!(%key, %message, "the restore can never run");
            fail(&mut status, reason, &message, None);
            status::patch(&api, name, &status, STATUS_KEYS).await?;
            ctx.events.publish(&regarding, Severity::Warning, reason, "Restore", &message).await;
            return Ok(Action::await_change());
        }
        Found::NotYet(message) => {
            status.phase = Some(Phase::Pending);
            status.message = Some(sanitize::message(&message));
            if status != before {
                status::patch(&api, name, &status, STATUS_KEYS).await?;
            }
            return Ok(Action::requeue(WAIT_FOR_BACKUP));
        }
    };
    let target = &obj.spec.target;
    let run = Run { uid: obj.metadata.uid.clone().unwrap_or_default(), fingerprint: fingerprint(&obj), request: None };
    let claim = target_key(&target.url, target.database.as_deref());
    let job = match ctx.jobs.start(key, run, &target.url, Some(claim)) {
        Ok(job) => job,
        Err(Busy::Target(holder)) => {
            status.phase = Some(Phase::Pending);
            let same_namespace = holder.namespace == ns;
            status.message = Some(match same_namespace {
                true => format!("waiting: restore {} is writing into the same database", holder.name),
                false => "waiting: another restore is writing into the same database".to_string(),
            });
            if status != before {
                status::patch(&api, name, &status, STATUS_KEYS).await?;
            }
            return Ok(Action::requeue(WAIT_FOR_TARGET));
        }
        Err(Busy::Running) => return Ok(Action::requeue(WATCH_IN_FLIGHT)),
    };
    let limits = ctx.jobs.limits();
    status.phase = Some(Phase::Pending);
    status.message = Some(format!(
        "queued: waiting for a restore slot (at most {} restores at once, {} jobs per database)",
        limits.restores, limits.per_database
    ));
    status::patch(&api, name, &status, STATUS_KEYS).await?;
    let ctx2 = ctx.clone();
    ctx.jobs.spawn(job, move |job| run_job(ctx2, api, obj, status, job, record.0, record.1));
    Ok(Action::requeue(WATCH_IN_FLIGHT))
}

/// What the job runs: the whole spec.
fn fingerprint(obj: &TimeseriesDBRestore) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    serde_json::to_string(&obj.spec).unwrap_or_default().hash(&mut hasher);
    hasher.finish()
}

/// A restore job: waits for its slots, runs under its deadline, writes the outcome.
async fn run_job(
    ctx: Arc<Context>,
    api: Api<TimeseriesDBRestore>,
    obj: TimeseriesDBRestore,
    mut status: TimeseriesDBRestoreStatus,
    job: Job,
    record: BackupRecord,
    backup_uid: String,
) {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let ns = obj.metadata.namespace.clone().unwrap_or_default();
    let key = job.key.to_string();
    let uid = obj.metadata.uid.clone().unwrap_or_default();
    let regarding = reference(JobKind::Restore.object_kind(), &obj.metadata);
    let slots = match job.slots().await {
        Ok(slots) => slots,
        Err(reason) => return stopped(&api, &name, status, reason).await,
    };
    // Deleted (or replaced) while it waited: nothing to do. From here on, a deletion stops it within a second.
    if !super::jobs::exists(&api, &name, &uid).await {
        return;
    }
    let _watch = job.stop_when_gone(api.clone(), &name, &uid, WATCH_IN_FLIGHT);
    let target = &obj.spec.target;
    let mut started = format!("restoring backup {} of {} into {}", record.id, obj.spec.backup_ref.name, target.url);
    if status.consecutive_failures.is_some() {
        started.push_str(" (writing only what an earlier attempt did not)");
    }
    status.phase = Some(Phase::Running);
    status.start_time = Some(Time(jiff::Timestamp::now()));
    status.completion_time = None;
    status.message = Some(sanitize::message(&started));
    set_condition(
        status.conditions.get_or_insert_default(),
        RUNNING,
        ConditionStatus::True,
        "RestoreStarted",
        &started,
    );
    if let Err(e) = status::patch(&api, &name, &status, STATUS_KEYS).await {
        tracing::warn!(%key, error = %e, "could not mark the restore running");
        return;
    }
    let timeout = match obj.spec.timeout.as_deref().map(parse_duration) {
        Some(Ok(t)) if !t.is_zero() => t,
        _ => ctx.default_timeout,
    };
    tracing::info!(%key, location = ?record.location, ?timeout, "restore started");
    ctx.events.publish(&regarding, Severity::Normal, "RestoreStarted", "Restore", &started).await;
    let begun = Instant::now();
    let progress = Arc::new(crate::progress::Progress::default());
    let reporting = status::report_progress(api.clone(), &name, progress.clone(), PROGRESS_INTERVAL);
    let run = async {
        let location = record
            .location
            .as_deref()
            .ok_or_else(|| Failure::Unusable(format!("backup {} has no location", record.id)))?;
        // Status is writable by namespace admins: only this backup object's own files are read.
        let backup_name = &obj.spec.backup_ref.name;
        Prefix::new(&ns, backup_name, &backup_uid, backup_name)
            .and_then(|prefix| prefix.check(location, &record.id))
            .map_err(Failure::OutsidePrefix)?;
        let store = ctx
            .locations
            .get(record.destination.as_deref().unwrap_or(locations::DEFAULT))
            .map_err(Failure::Unusable)?;
        let http = super::connect::connect(&ctx, target, &ns, "spec.target").await.map_err(Failure::Failed)?;
        crate::restore::run(&http, store.store.as_ref(), store.keys.as_deref(), location, target, progress).await
    };
    let outcome = tokio::select! {
        reason = job.stop.stopped() => Err(Ok(reason)),
        result = tokio::time::timeout(timeout, run) => match result {
            Err(_) => Err(Err(Failure::Failed(anyhow::anyhow!(
                "did not complete within {} ({}); what was written stays, and the next attempt writes the rest",
                format_duration(timeout),
                if obj.spec.timeout.is_some() { "spec.timeout" } else { "the controller's --default-timeout" }
            )))),
            Ok(result) => result.map_err(Err),
        },
    };
    drop(reporting);
    status.progress = None;
    match outcome {
        Err(Ok(reason)) => return stopped(&api, &name, status, reason).await,
        Err(Err(failure)) => {
            let message = format!("restore of backup {} failed: {failure}", record.id);
            let retry = failure.retry().then(|| {
                let failures = status.consecutive_failures.unwrap_or(0).saturating_add(1);
                (failures, ctx.backoff.delay(failures))
            });
            let message = match retry {
                Some((n, delay)) => format!("{message} (failure {n}; retrying in {})", status::duration(delay)),
                None => message,
            };
            tracing::warn!(%key, error = %sanitize::message(&message), "restore failed");
            fail(&mut status, failure.reason(), &message, retry);
            ctx.events.publish(&regarding, Severity::Warning, "RestoreFailed", "Restore", &message).await;
            let outcome = RunOutcome {
                succeeded: false,
                duration: begun.elapsed(),
                samples: 0,
                bytes: 0,
                consecutive_failures: retry.map_or(1, |(n, _)| n),
            };
            ctx.metrics.finished(JobKind::Restore, &ns, &name, &outcome);
        }
        Ok(restored) => {
            let message = succeeded(&record, &restored);
            tracing::info!(%key, %message, elapsed = ?begun.elapsed(), "restore succeeded");
            ctx.events.publish(&regarding, Severity::Normal, "RestoreSucceeded", "Restore", &message).await;
            let outcome = RunOutcome {
                succeeded: true,
                duration: begun.elapsed(),
                samples: restored.samples,
                bytes: record.bytes.unwrap_or(0),
                consecutive_failures: 0,
            };
            ctx.metrics.finished(JobKind::Restore, &ns, &name, &outcome);
            let conditions = status.conditions.get_or_insert_default();
            set_condition(conditions, RUNNING, ConditionStatus::False, "RestoreSucceeded", &message);
            set_condition(conditions, READY, ConditionStatus::True, "RestoreSucceeded", &message);
            status.phase = Some(Phase::Succeeded);
            status.completion_time = Some(Time(jiff::Timestamp::now()));
            status.series = Some(restored.series);
            status.samples = Some(restored.samples);
            status.message = Some(sanitize::message(&message));
            status.consecutive_failures = None;
            status.next_retry_time = None;
        }
    }
    write_final(&api, &name, &status).await;
    // Held until the outcome is in status: no more restores show Running than there are slots.
    drop(slots);
}

fn succeeded(record: &BackupRecord, r: &Restored) -> String {
    let mut message = format!(
        "restored backup {}: {} series, {} samples, all verified in the target",
        record.id, r.series, r.samples
    );
    if r.present > 0 {
        message.push_str(&format!(" ({} of them were there already, from an earlier attempt)", r.present));
    }
    if r.dropped > 0 {
        message.push_str(&format!(
            "; {} NaN samples not restored: VictoriaMetrics stores no NaN but staleness markers",
            r.dropped
        ));
    }
    message
}

/// Status for a job stopped before its end (nothing for a deleted object).
async fn stopped(
    api: &Api<TimeseriesDBRestore>,
    name: &str,
    mut status: TimeseriesDBRestoreStatus,
    reason: StopReason,
) {
    if reason == StopReason::Deleted {
        return;
    }
    let message = format!("the restore stopped: {}; what was written stays", reason.describe());
    set_condition(
        status.conditions.get_or_insert_default(),
        RUNNING,
        ConditionStatus::False,
        reason.reason(),
        &message,
    );
    status.phase = Some(Phase::Pending);
    status.message = Some(sanitize::message(&message));
    write_final(api, name, &status).await;
}

/// Writes the outcome; retried a few times (the API server may be restarting).
async fn write_final(api: &Api<TimeseriesDBRestore>, name: &str, status: &TimeseriesDBRestoreStatus) {
    for attempt in 1..=3 {
        match status::patch(api, name, status, STATUS_KEYS).await {
            Ok(()) => return,
            Err(e) if status::is_not_found(&e) => return,
            Err(e) => {
                tracing::warn!(name, attempt, error = %e, "could not write the restore's outcome");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

/// Marks a failure: final without `retry`, else retried after its delay.
fn fail(
    status: &mut TimeseriesDBRestoreStatus,
    reason: &str,
    message: &str,
    retry: Option<(u32, std::time::Duration)>,
) {
    let conditions = status.conditions.get_or_insert_default();
    set_condition(conditions, RUNNING, ConditionStatus::False, reason, message);
    set_condition(conditions, READY, ConditionStatus::False, reason, message);
    status.phase = Some(Phase::Failed);
    status.message = Some(sanitize::message(message));
    status.consecutive_failures = retry.map(|(n, _)| n);
    status.next_retry_time = retry.map(|(_, delay)| after(delay));
}

/// The backup to restore, or why there is none.
enum Found {
    /// The record, and the UID of the TimeseriesDBBackup holding it.
    Record(BackupRecord, String),
    /// Never (for this spec): the condition reason and message.
    Never(&'static str, String),
    /// Not yet: why.
    NotYet(String),
}

/// `spec.backupRef` with a location: the newest backup file (or the one with `id`) of a TimeseriesDBBackup named
/// `name` in this namespace, in `<namespace>/<path or name>/` of the location, whatever its UID; its header is
/// checked when it is read, as any backup's.
async fn find_in_location(ctx: &Context, ns: &str, backup_ref: &BackupRef, location: &str) -> Found {
    let name = &backup_ref.name;
    let store = match ctx.locations.get(location) {
        Ok(store) => store,
        Err(e) => return Found::Never("LocationNotFound", format!("spec.backupRef.location: {e}")),
    };
    let path = backup_ref.path.as_deref().unwrap_or(name);
    // Only under this namespace: the path is checked as a backup's own is (no '..', nothing absolute).
    let dir = match search_dir(ns, name, Some(path)) {
        Ok(dir) => dir,
        Err(e) => return Found::Never("LocationOutsidePrefix", e),
    };
    match store.store.list(&dir).await {
        Ok(entries) => pick_file(&entries, ns, name, location, &dir, backup_ref.id.as_deref()),
        Err(e) => Found::NotYet(format!("cannot list {dir}/ in location {location}: {e:#}")),
    }
}

/// The newest committed backup file of `name` among `entries` (the one with `id` if given), as a record.
fn pick_file(entries: &[Entry], ns: &str, name: &str, location: &str, dir: &str, id: Option<&str>) -> Found {
    match find_file(entries, name, id) {
        Some(FoundFile { id, uid, location: path }) => {
            let record = BackupRecord {
                id,
                destination: Some(location.to_string()),
                location: Some(path),
                ..BackupRecord::default()
            };
            Found::Record(record, uid)
        }
        None => Found::Never(
            if id.is_some() { "BackupIdNotFound" } else { "BackupNotFound" },
            format!("{}: check spec.backupRef.name, path and id", not_found(location, ns, name, dir, id)),
        ),
    }
}

fn find_record(backup: Option<TimeseriesDBBackup>, ns: &str, name: &str, id: Option<&str>) -> Found {
    let Some(backup) = backup else {
        return Found::Never(
            "BackupNotFound",
            format!(
                "TimeseriesDBBackup {ns}/{name} does not exist: create it, or set spec.backupRef.name to an \
                 existing one (in this namespace)"
            ),
        );
    };
    let uid = backup.metadata.uid.clone().unwrap_or_default();
    let status = backup.status.unwrap_or_default();
    match id {
        Some(id) => match status.backups.iter().flatten().find(|b| b.id == id) {
            Some(record) => Found::Record(record.clone(), uid),
            None => {
                let ids: Vec<&str> = status.backups.iter().flatten().map(|b| b.id.as_str()).take(5).collect();
                let kept = match ids.is_empty() {
                    true => "it keeps none".to_string(),
                    false => format!("it keeps {}", ids.join(", ")),
                };
                Found::Never(
                    "BackupIdNotFound",
                    format!(
                        "TimeseriesDBBackup {ns}/{name} has no backup {id} ({kept}): set spec.backupRef.id to one of them, or leave it out for the latest"
                    ),
                )
            }
        },
        None => match status.last_backup {
            Some(record) => Found::Record(record, uid),
            None => Found::NotYet(format!("waiting for the first successful backup of {name}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "0a1b2c3d-7d0e-4d8f-9a51-1f2e3d4c5b6a";
    const NEW: &str = "6f1c0a52-7d0e-4d8f-9a51-1f2e3d4c5b6a";

    fn entry(file: &str, committed: bool) -> Entry {
        Entry { location: format!("team-a/vm/{file}"), committed }
    }

    fn picked(entries: &[Entry], id: Option<&str>) -> Result<(String, String, String), String> {
        match pick_file(entries, "team-a", "vm", "offsite", "team-a/vm", id) {
            Found::Record(r, uid) => Ok((r.id, uid, r.location.unwrap_or_default())),
            Found::Never(reason, message) => Err(format!("{reason}: {message}")),
            Found::NotYet(message) => Err(message),
        }
    }

    #[test]
    fn the_newest_committed_file_of_the_name_whatever_its_uid() {
        let entries = [
            entry(&format!("vm.{OLD}.20261201T000000000Z.tsdb"), true),
            entry(&format!("vm.{NEW}.20261203T000000000Z.tsdb"), true),
            entry(&format!("vm.{NEW}.20261205T000000000Z.tsdb"), false),
            entry(&format!("vmx.{NEW}.20261209T000000000Z.tsdb"), true),
            entry("vm.20261210T000000000Z.tsdb", true),
            entry("notes.txt", true),
        ];
        let (id, uid, location) = picked(&entries, None).unwrap();
        assert_eq!(
            (id.as_str(), uid.as_str()),
            ("20261203T000000000Z", NEW),
            "not the partial, another name's, or a file without a UID"
        );
        assert_eq!(location, format!("team-a/vm/vm.{NEW}.20261203T000000000Z.tsdb"));
        assert_eq!(picked(&entries, Some("20261201T000000000Z")).unwrap().1, OLD, "an earlier object's, by id");
        let none = picked(&entries, Some("20261205T000000000Z")).unwrap_err();
        assert!(none.starts_with("BackupIdNotFound") && none.contains("team-a/vm/"), "{none}");
        assert!(picked(&[], None).unwrap_err().starts_with("BackupNotFound"));
    }
}
