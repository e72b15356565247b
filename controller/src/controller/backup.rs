//! The TimeseriesDBBackup reconciler: decides whether a backup is due (once, on `spec.schedule` in `spec.timeZone`,
//! on the `backup.extend-k8s.io/run-now` annotation, or to retry a failed one), starts it as a job, applies
//! retention and reports everything in status.
//!
//! API → **controller: backups (this file)** → jobs → backup file / destination → engine → database.
//!
//! Restart safety: status says Running before a file is created, and Succeeded only after the file is complete,
//! durable and renamed to its final name. A reconcile that finds Running with no job in this process inherits a
//! backup a crash interrupted: a failure, retried after the backoff. Each run first removes this object's own
//! leftovers: files with its UID, in its directory, that are partial or not in `status.backups`. Files of other UIDs
//! (an earlier object of the same name) are never touched.
//!
//! Confinement: files go to `<namespace>/<path or name>/` in the named location ([`Prefix`]); retention deletes a
//! status location only after [`Prefix::check`] (status is writable by namespace admins): a location that is not
//! this object's is dropped from status, not deleted, and the backup reports it (`LocationOutsidePrefix`).
//!
//! One backup per schedule tick: a scheduled backup's id is its tick's time (a single backup's, its object's
//! creation time), the same for every replica and retry; a tick whose id is in `status.backups` is done, and the
//! write that marks a run Running carries the resourceVersion read, so of two writers (a leader that lost its lease
//! and the new one) only one runs it.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use backup_apis::backup::{BackupRecord, TimeseriesDBBackup, TimeseriesDBBackupStatus};
use backup_apis::duration::{format_duration, parse_duration};
use backup_apis::status::{ConditionStatus, Phase};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;

use super::events::{Severity, reference};
use super::jobs::{Job, JobKey, JobKind, Run, Stop, StopReason};
use super::metrics::RunOutcome;
use super::status::{self, EMPTY, READY, RUNNING, set_condition};
use super::{Context, Error, PROGRESS_INTERVAL, WATCH_IN_FLIGHT, after, schedule, until};
use crate::destination::confine::Prefix;
use crate::destination::locations::{self, Location};
use crate::engine;
use crate::format::{BackupWriter, Header, Owner};
use crate::sanitize;

/// An annotation (any value) asking for a backup now; removed once it succeeded. `kubectl tsdb backup now` sets it.
/// A new value while a backup runs stops that one and starts another.
pub const RUN_NOW: &str = "backup.extend-k8s.io/run-now";

const STATUS_KEYS: &[&str] = &[
    "phase",
    "observedGeneration",
    "conditions",
    "lastBackup",
    "backups",
    "nextScheduleTime",
    "message",
    "consecutiveFailures",
    "nextRetryTime",
    "progress",
];

/// The condition `spec.verify` adds: whether the last backup read back whole from its location.
pub const VERIFIED: &str = "Verified";

/// The message of a backup that waits for `spec.suspend` to be false.
const SUSPENDED: &str = "suspended (spec.suspend): no backup starts until it is false";

pub async fn reconcile(obj: Arc<TimeseriesDBBackup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (Some(ns), Some(name)) = (obj.metadata.namespace.as_deref(), obj.metadata.name.as_deref()) else {
        return Ok(Action::await_change());
    };
    let api: Api<TimeseriesDBBackup> = Api::namespaced(ctx.client.clone(), ns);
    let key = JobKey::new(JobKind::Backup, ns, name);
    // The watch cache may not have our last status write yet; decide on what the server holds. (The job is looked
    // up first: a job that ended wrote its status before leaving, so what is read after is its outcome.)
    if let Some(job) = ctx.jobs.in_flight(&key) {
        let current = api.get_opt(name).await?;
        let reason = match &current {
            None => Some(StopReason::Deleted),
            Some(o) if o.metadata.uid.as_deref() != Some(&job.uid) || o.metadata.deletion_timestamp.is_some() => {
                Some(StopReason::Deleted)
            }
            Some(o) if fingerprint(o) != job.fingerprint => Some(StopReason::SpecChanged),
            Some(o) if run_now(o).is_some_and(|r| Some(&r) != job.request.as_ref()) => Some(StopReason::RunNow),
            Some(_) => None,
        };
        if let Some(reason) = reason
            && !job.stop.is_stopped()
        {
            tracing::info!(%key, reason = reason.reason(), "stopping the running backup");
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
    ctx.metrics.observe_backup(&obj);
    let mut status = obj.status.clone().unwrap_or_default();
    let before = status.clone();
    let now = Timestamp::now();
    let run_now = run_now(&obj);

    if status.phase == Some(Phase::Running) {
        // Running, but not here: a crash or restart cut it short. A failure, so a crash loop backs off.
        let failures = status.consecutive_failures.unwrap_or(0).saturating_add(1);
        let delay = ctx.backoff.delay(failures);
        let message = format!(
            "the backup was interrupted (the controller restarted or crashed); retrying in {}",
            status::duration(delay)
        );
        tracing::warn!(%key, "{message}");
        fail(&mut status, "Interrupted", &message, failures, delay);
        status::patch(&api, name, &status, STATUS_KEYS).await?;
        let regarding = reference(JobKind::Backup.object_kind(), &obj.metadata);
        ctx.events.publish(&regarding, Severity::Warning, "BackupInterrupted", "Backup", &message).await;
        return Ok(Action::requeue(delay));
    }
    if status.observed_generation != obj.metadata.generation {
        // A new spec: the schedule counts again from now (an edited schedule takes effect at once), and a failed
        // backup is tried again at once (the fix may be in the spec).
        status.observed_generation = obj.metadata.generation;
        status.next_schedule_time = None;
        status.next_retry_time = None;
    }
    let next = match obj.spec.suspend {
        true => None,
        false => match status.next_schedule_time.as_ref().map(|t| t.0) {
            Some(t) => Some(t),
            None => match schedule::next_after(&obj.spec, now) {
                Ok(next) => next,
                Err(e) => {
                    // Only a schedule stored before the server checked it gets here.
                    let message = format!("{e:#}");
                    set_condition(
                        status.conditions.get_or_insert_default(),
                        READY,
                        ConditionStatus::False,
                        "InvalidSchedule",
                        &message,
                    );
                    status.phase = Some(Phase::Failed);
                    status.message = Some(sanitize::message(&message));
                    status.next_retry_time = None;
                    status::patch(&api, name, &status, STATUS_KEYS).await?;
                    return Ok(Action::await_change());
                }
            },
        },
    };
    status.next_schedule_time = next.map(Time);
    let due = run_now.is_some()
        || (!obj.spec.suspend
            && match &obj.spec.schedule {
                None => status.last_backup.is_none(),
                Some(_) => next.is_some_and(|t| t <= now),
            });
    if !due {
        status.phase.get_or_insert(Phase::Pending);
        if obj.spec.suspend {
            status.message = Some(SUSPENDED.into());
        } else if status.message.as_deref() == Some(SUSPENDED) {
            status.message = None;
        }
        if status != before {
            status::patch(&api, name, &status, STATUS_KEYS).await?;
        }
        return Ok(match next {
            Some(t) => Action::requeue(until(t)),
            None => Action::await_change(),
        });
    }
    if let Some(retry) = status.next_retry_time.as_ref().map(|t| t.0)
        && retry > now
    {
        if status != before {
            status::patch(&api, name, &status, STATUS_KEYS).await?;
        }
        return Ok(Action::requeue(until(retry)));
    }

    // The run's id: its tick's (deterministic), or, asked to run now, the time it starts.
    let tick = match (&run_now, &obj.spec.schedule) {
        (Some(_), _) => None,
        (None, Some(_)) => next,
        (None, None) => obj.metadata.creation_timestamp.as_ref().map(|t| t.0),
    };
    if let Some(t) = tick
        && has_backup(&status, &tick_id(t))
    {
        // Another writer did this tick: on to the next one.
        tracing::info!(%key, id = %tick_id(t), "this tick's backup exists already");
        status.next_schedule_time = schedule::next_after(&obj.spec, now).ok().flatten().map(Time);
        status::patch(&api, name, &status, STATUS_KEYS).await?;
        return Ok(Action::requeue(WATCH_IN_FLIGHT));
    }
    let uid = obj.metadata.uid.clone().unwrap_or_default();
    let run = Run { uid, fingerprint: fingerprint(&obj), request: run_now.clone() };
    let Ok(job) = ctx.jobs.start(key, run, &obj.spec.database.endpoint.url, None) else {
        return Ok(Action::requeue(WATCH_IN_FLIGHT));
    };
    let limits = ctx.jobs.limits();
    status.phase = Some(Phase::Pending);
    status.message = Some(format!(
        "queued: waiting for a backup slot (at most {} backups at once, {} per database)",
        limits.backups, limits.per_database
    ));
    status::patch(&api, name, &status, STATUS_KEYS).await?;
    let ctx2 = ctx.clone();
    ctx.jobs.spawn(job, move |job| run_job(ctx2, api, obj, status, job, run_now, tick));
    Ok(Action::requeue(WATCH_IN_FLIGHT))
}

/// What a job runs: a change stops the job (and a new one starts with it). Schedule, time zone, retention and
/// suspension apply to the next run and do not stop one.
fn fingerprint(obj: &TimeseriesDBBackup) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    serde_json::to_string(&obj.spec.database).unwrap_or_default().hash(&mut hasher);
    serde_json::to_string(&obj.spec.destination).unwrap_or_default().hash(&mut hasher);
    obj.spec.timeout.hash(&mut hasher);
    hasher.finish()
}

fn run_now(obj: &TimeseriesDBBackup) -> Option<String> {
    obj.metadata.annotations.as_ref().and_then(|a| a.get(RUN_NOW)).cloned()
}

/// How a job ended.
enum Outcome {
    Done(Box<Header>, u64),
    Failed(anyhow::Error),
    Stopped(StopReason),
}

/// A backup job: waits for its slots, runs under its deadline, writes the outcome.
async fn run_job(
    ctx: Arc<Context>,
    api: Api<TimeseriesDBBackup>,
    obj: TimeseriesDBBackup,
    mut status: TimeseriesDBBackupStatus,
    job: Job,
    run_now: Option<String>,
    tick: Option<Timestamp>,
) {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let ns = obj.metadata.namespace.clone().unwrap_or_default();
    let key = job.key.to_string();
    let uid = obj.metadata.uid.clone().unwrap_or_default();
    let regarding = reference(JobKind::Backup.object_kind(), &obj.metadata);
    let slots = match job.slots().await {
        Ok(slots) => slots,
        Err(reason) => return stopped(&api, &name, status, reason, "the queued backup").await,
    };
    // Deleted (or replaced) while it waited: nothing to do. From here on, a deletion stops it within a second.
    let current = match api.get_opt(&name).await {
        Ok(Some(o)) if o.metadata.uid.as_deref() == Some(&uid) && o.metadata.deletion_timestamp.is_none() => Some(o),
        Ok(_) => return,
        // The API server cannot say: the Running write below finds out.
        Err(_) => None,
    };
    let id = match tick {
        Some(t) => tick_id(t),
        None => backup_id(Timestamp::now(), &status),
    };
    let current_status = current.as_ref().and_then(|o| o.status.as_ref());
    if current_status.is_some_and(|s| has_backup(s, &id) || s.phase == Some(Phase::Running)) {
        tracing::info!(%key, %id, "another writer has run or runs this backup");
        return;
    }
    let _watch = job.stop_when_gone(api.clone(), &name, &uid, WATCH_IN_FLIGHT);
    let place = ctx
        .locations
        .get(obj.destination_location())
        .cloned()
        .and_then(|store| Ok(Place { store, prefix: Prefix::new(&ns, &name, &uid, &obj.destination_path())? }));
    let location = match &place {
        Ok(place) => place.prefix.location(&id),
        Err(_) => String::new(),
    };
    status.phase = Some(Phase::Running);
    status.message = Some(format!("backup {id} running"));
    set_condition(
        status.conditions.get_or_insert_default(),
        RUNNING,
        ConditionStatus::True,
        "BackupStarted",
        &format!("backup {id} started"),
    );
    let resource_version = current.as_ref().and_then(|o| o.metadata.resource_version.as_deref());
    if let Err(e) = status::patch_at(&api, &name, &status, STATUS_KEYS, resource_version).await {
        // The next reconcile starts it again (a 409: another writer changed it first, and the reconcile sees what).
        tracing::warn!(%key, error = %e, "could not mark the backup running");
        return;
    }
    let timeout = match obj.spec.timeout.as_deref().map(parse_duration) {
        Some(Ok(t)) if !t.is_zero() => t,
        _ => ctx.default_timeout,
    };
    tracing::info!(%key, %location, ?timeout, "backup started");
    let note = format!(
        "backup {id} of {:?} {} started, into {location}",
        obj.spec.database.endpoint.r#type,
        crate::http::redact(&obj.spec.database.endpoint.url)
    );
    ctx.events.publish(&regarding, Severity::Normal, "BackupStarted", "Backup", &note).await;
    let started = Instant::now();
    let progress = Arc::new(crate::progress::Progress::default());
    let reporting = status::report_progress(api.clone(), &name, progress.clone(), PROGRESS_INTERVAL);
    let outcome = match &place {
        Err(message) => Outcome::Failed(anyhow::anyhow!("{message}")),
        Ok(place) => tokio::select! {
        reason = job.stop.stopped() => Outcome::Stopped(reason),
        result = tokio::time::timeout(timeout, backup(&ctx, &obj, place, &location, &status, &job.stop, progress)) => match result {
            Err(_) => Outcome::Failed(anyhow::anyhow!(
                "did not complete within {} ({})",
                format_duration(timeout),
                if obj.spec.timeout.is_some() { "spec.timeout" } else { "the controller's --default-timeout" }
            )),
            Ok(Ok((header, size))) => Outcome::Done(Box::new(header), size),
            Ok(Err(e)) => Outcome::Failed(e),
        },
        },
    };
    drop(reporting);
    status.progress = None;
    let conditions = status.conditions.get_or_insert_default();
    // A backup written honours its run-now request, even when retention then refused a status location.
    let backed_up = matches!(outcome, Outcome::Done(..));
    match outcome {
        Outcome::Stopped(reason) => {
            let what = format!("backup {id}, after {},", status::duration(started.elapsed()));
            return stopped(&api, &name, status, reason, &what).await;
        }
        Outcome::Failed(e) => {
            let failures = status.consecutive_failures.unwrap_or(0).saturating_add(1);
            let delay = ctx.backoff.delay(failures);
            let message = sanitize::message(&format!(
                "backup {id} failed: {e:#} (failure {failures}; retrying in {})",
                status::duration(delay)
            ));
            tracing::warn!(%key, error = %message, "backup failed");
            fail(&mut status, "BackupFailed", &message, failures, delay);
            ctx.events.publish(&regarding, Severity::Warning, "BackupFailed", "Backup", &message).await;
            let outcome = RunOutcome {
                succeeded: false,
                duration: started.elapsed(),
                samples: 0,
                bytes: 0,
                consecutive_failures: failures,
            };
            ctx.metrics.finished(JobKind::Backup, &ns, &name, &outcome);
        }
        Outcome::Done(header, size) => {
            let message =
                format!("backup {id}: {} series, {} samples, {}", header.series, header.samples, status::bytes(size));
            tracing::info!(%key, %message, elapsed = ?started.elapsed(), "backup succeeded");
            set_condition(conditions, RUNNING, ConditionStatus::False, "BackupSucceeded", &message);
            set_condition(conditions, READY, ConditionStatus::True, "BackupSucceeded", &message);
            if header.samples == 0 {
                let warning = format!(
                    "backup {id} holds no sample: the database answered with no series{}; check spec.database",
                    header.selector.as_deref().map(|s| format!(" for selector {s}")).unwrap_or_default()
                );
                set_condition(conditions, EMPTY, ConditionStatus::True, "NoSamples", &warning);
            } else {
                status::remove_condition(conditions, EMPTY);
            }
            if obj.spec.verify
                && let Ok(place) = &place
            {
                let (state, reason, text) = verify(&place.store, &location, &header.payload_sha256).await;
                let text = format!("backup {id} {text}");
                if state != ConditionStatus::True {
                    ctx.events.publish(&regarding, Severity::Warning, reason, "Verify", &text).await;
                }
                set_condition(conditions, VERIFIED, state, reason, &text);
            }
            let outcome = RunOutcome {
                succeeded: true,
                duration: started.elapsed(),
                samples: header.samples,
                bytes: size,
                consecutive_failures: 0,
            };
            let record = BackupRecord {
                id: id.clone(),
                start_time: Some(Time(header.started_at)),
                completion_time: Some(Time(header.completed_at)),
                series: Some(header.series),
                samples: Some(header.samples),
                bytes: Some(size),
                destination: Some(obj.destination_location().to_string()),
                location: Some(location),
                sha256: Some(header.payload_sha256),
            };
            let Retained { deleted, problems, refused } = match &place {
                Ok(place) => retain(&ctx, &obj, &place.prefix, &mut status, record).await,
                Err(e) => Retained { problems: e.clone(), ..Retained::default() },
            };
            ctx.events.publish(&regarding, Severity::Normal, "BackupSucceeded", "Backup", &message).await;
            ctx.metrics.finished(JobKind::Backup, &ns, &name, &outcome);
            if !deleted.is_empty() {
                let note = format!(
                    "retention (keepLast {}) deleted {} backup{}: {}",
                    obj.spec.retention.keep_last,
                    deleted.len(),
                    if deleted.len() == 1 { "" } else { "s" },
                    deleted.join(", ")
                );
                ctx.events.publish(&regarding, Severity::Normal, "BackupsDeleted", "Retention", &note).await;
            }
            if !problems.is_empty() {
                ctx.events.publish(&regarding, Severity::Warning, "RetentionFailed", "Retention", &problems).await;
            }
            status.phase = Some(Phase::Succeeded);
            status.message = Some(sanitize::message(&match (header.samples, problems.is_empty()) {
                (0, _) => format!("{message} (empty: see the Empty condition){problems}"),
                (_, true) => message,
                (_, false) => format!("{message}; {problems}"),
            }));
            status.consecutive_failures = None;
            status.next_retry_time = None;
            status.next_schedule_time = match obj.spec.suspend {
                false => schedule::next_after(&obj.spec, Timestamp::now()).ok().flatten().map(Time),
                true => None,
            };
            if !refused.is_empty() {
                // Not an action: a Failed condition, with what was refused.
                let message = sanitize::message(&format!(
                    "backup {id} succeeded, but status.backups named locations that are not this object's; they \
                     were dropped from status and nothing was deleted: {}",
                    refused.join("; ")
                ));
                tracing::warn!(%key, %message, "refused status locations");
                ctx.events.publish(&regarding, Severity::Warning, "LocationOutsidePrefix", "Retention", &message).await;
                let conditions = status.conditions.get_or_insert_default();
                set_condition(conditions, READY, ConditionStatus::False, "LocationOutsidePrefix", &message);
                status.phase = Some(Phase::Failed);
                status.message = Some(message);
            }
        }
    }
    let written = write_final(&api, &name, &status).await;
    // Held until the outcome is in status: no more backups show Running than there are slots.
    drop(slots);
    if written
        && backed_up
        && let Some(value) = run_now
        && let Err(e) = clear_run_now(&api, &name, &value).await
    {
        tracing::warn!(%key, error = %e, "could not remove the run-now annotation");
    }
}

/// Status for a job stopped before its end (nothing for a deleted object).
async fn stopped(
    api: &Api<TimeseriesDBBackup>,
    name: &str,
    mut status: TimeseriesDBBackupStatus,
    reason: StopReason,
    what: &str,
) {
    if reason == StopReason::Deleted {
        return;
    }
    let message = format!("{what} stopped: {}", reason.describe());
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

/// Writes the outcome; retried a few times (the API server may be restarting). Whether it was written.
async fn write_final(api: &Api<TimeseriesDBBackup>, name: &str, status: &TimeseriesDBBackupStatus) -> bool {
    for attempt in 1..=3 {
        match status::patch(api, name, status, STATUS_KEYS).await {
            Ok(()) => return true,
            Err(e) if status::is_not_found(&e) => return false,
            Err(e) => {
                tracing::warn!(name, attempt, error = %e, "could not write the backup's outcome");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
    false
}

/// Marks a failed run: phase, conditions, message, and when to retry.
fn fail(status: &mut TimeseriesDBBackupStatus, reason: &str, message: &str, failures: u32, delay: std::time::Duration) {
    let conditions = status.conditions.get_or_insert_default();
    set_condition(conditions, RUNNING, ConditionStatus::False, reason, message);
    set_condition(conditions, READY, ConditionStatus::False, reason, message);
    status.phase = Some(Phase::Failed);
    status.message = Some(sanitize::message(message));
    status.consecutive_failures = Some(failures);
    status.next_retry_time = Some(after(delay));
}

/// Reads a backup just written back from its location (`spec.verify`): the condition's status, reason and text.
async fn verify(store: &Location, location: &str, sha256: &str) -> (ConditionStatus, &'static str, String) {
    match crate::format::reader::verify(store.store.as_ref(), store.keys.as_deref(), location).await {
        Ok(v) if v.header.payload_sha256 == sha256 => (
            ConditionStatus::True,
            "BackupVerified",
            format!(
                "read back from location {}: {} records, {} samples, SHA-256 {sha256}",
                store.name, v.records, v.samples
            ),
        ),
        Ok(v) => (
            ConditionStatus::False,
            "ChecksumMismatch",
            format!("read back from location {}: SHA-256 {}, written {sha256}", store.name, v.header.payload_sha256),
        ),
        Err(e) => (
            ConditionStatus::False,
            "VerificationFailed",
            format!("could not be read back from location {}: {e:#}", store.name),
        ),
    }
}

/// Writes one backup file at `location` in `store`; returns its header and size.
async fn backup(
    ctx: &Context,
    obj: &TimeseriesDBBackup,
    Place { store, prefix }: &Place,
    location: &str,
    status: &TimeseriesDBBackupStatus,
    stop: &Stop,
    progress: Arc<crate::progress::Progress>,
) -> anyhow::Result<(Header, u64)> {
    let ns = obj.metadata.namespace.clone().unwrap_or_default();
    let name = obj.metadata.name.clone().unwrap_or_default();
    let uid = obj.metadata.uid.clone().unwrap_or_default();
    remove_leftovers(store, prefix, status).await?;
    let source = &obj.spec.database;
    let http = super::connect::connect(ctx, &source.endpoint, &ns, "spec.database").await?;
    let file = store.store.create(location).await?;
    let owner = Owner { namespace: ns, name, uid };
    let key = store.keys.as_ref().map(|k| &k.current);
    let mut writer = BackupWriter::new(file, engine::source_of(source, Some(owner)))?.encrypt_with(key)?;
    writer.count_into(progress);
    engine::backup(&http, source, &mut writer).await?;
    // A stop that came during the last read: no file is committed for a changed or deleted object.
    anyhow::ensure!(!stop.is_stopped(), "stopped");
    writer.finish().await
}

/// Where one backup's file goes: the named location, and the object's prefix in it.
struct Place {
    store: Location,
    prefix: Prefix,
}

/// What retention did.
#[derive(Debug, Default)]
struct Retained {
    /// The ids of the expired backups deleted (or dropped from status: they had no file).
    deleted: Vec<String>,
    /// The deletions that failed, for the status message.
    problems: String,
    /// Why expired records were dropped from status without a deletion: their locations are not this object's.
    refused: Vec<String>,
}

/// Puts `record` first in the history and deletes the backups beyond `spec.retention.keepLast`, file first. A
/// backup whose file cannot be deleted stays listed. Expired records whose location is not this object's
/// ([`Prefix::check`]) are dropped without a deletion.
async fn retain(
    ctx: &Context,
    obj: &TimeseriesDBBackup,
    prefix: &Prefix,
    status: &mut TimeseriesDBBackupStatus,
    record: BackupRecord,
) -> Retained {
    let keep = usize::try_from(obj.spec.retention.keep_last).unwrap_or(1).max(1);
    let mut kept = vec![record.clone()];
    kept.extend(status.backups.take().unwrap_or_default());
    let expired = kept.split_off(keep.min(kept.len()));
    let (mut retained, mut problems) = (Retained::default(), Vec::new());
    for old in expired {
        let Some(location) = &old.location else {
            retained.deleted.push(old.id);
            continue;
        };
        if let Err(why) = prefix.check(location, &old.id) {
            // Files of controllers before UIDs were recorded (`<name>.<id>.tsdb`) expire from status only.
            if !prefix.is_legacy(location, &old.id) {
                retained.refused.push(why);
            }
            continue;
        }
        let deleted = match ctx.locations.get(old.destination.as_deref().unwrap_or(locations::DEFAULT)) {
            Ok(store) => store.store.delete(location).await.map_err(|e| format!("{e:#}")),
            Err(e) => Err(e),
        };
        match deleted {
            Ok(()) => retained.deleted.push(old.id),
            Err(e) => {
                problems.push(format!("could not delete expired backup {}: {e}", old.id));
                kept.push(old);
            }
        }
    }
    status.last_backup = Some(record);
    status.backups = Some(kept);
    retained.problems = problems.join("; ");
    retained
}

/// The id of the backup of the schedule tick (or single backup) at `t`: `20261128T223000000Z`.
fn tick_id(t: Timestamp) -> String {
    format!("{}{:03}Z", t.strftime("%Y%m%dT%H%M%S"), t.subsec_millisecond())
}

/// Whether status lists backup `id`.
fn has_backup(status: &TimeseriesDBBackupStatus, id: &str) -> bool {
    status.backups.iter().flatten().any(|b| b.id == id)
}

/// Deletes the files in the object's directory with its name and UID that are partial or not in
/// `status.backups`: what an interrupted backup left behind. Nothing outside the prefix is listed or deleted.
async fn remove_leftovers(store: &Location, prefix: &Prefix, status: &TimeseriesDBBackupStatus) -> anyhow::Result<()> {
    let kept: HashSet<&str> = status.backups.iter().flatten().filter_map(|b| b.location.as_deref()).collect();
    for entry in store.store.list(prefix.dir()).await.context("listing the backup directory")? {
        let file = entry.location.rsplit('/').next().unwrap_or_default();
        if prefix.owns_file(file) && (!entry.committed || !kept.contains(entry.location.as_str())) {
            tracing::info!(location = %entry.location, "removing a leftover of an interrupted backup");
            store.store.delete(&entry.location).await?;
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
        // A tick's id is its time, whoever runs it.
        let tick: Timestamp = "2026-11-28T22:30:00Z".parse().unwrap();
        assert_eq!(tick_id(tick), "20261128T223000000Z");
        assert!(!has_backup(&status, &tick_id(tick)));
        status.backups.as_mut().unwrap().push(BackupRecord { id: tick_id(tick), ..Default::default() });
        assert!(has_backup(&status, "20261128T223000000Z"));
    }
}
