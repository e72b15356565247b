//! The backups and restores in flight: at most one per object, started by the reconcilers and run as tasks of their
//! own, so that a reconcile never waits on one and can stop it. Work is bounded here: a job runs only with a slot of
//! its kind (`--max-concurrent-backups`, `--max-concurrent-restores`) and one of its database
//! (`--max-concurrent-per-database`), and a database is the target of one restore at a time.
//!
//! API → controller: reconcilers → **jobs (this file)** → backup / restore → engine → database.
//!
//! Stopping: every job has a [`Stop`], a cancellation token (a child of the controller's shutdown token) with the
//! first reason given. A reconcile stops a job whose object changed (spec, run-now request) or is gone; shutdown
//! (SIGTERM, or a lost leader election) stops them all. The job's future is then dropped where it stands, which
//! removes a partial file, and the job reports why in status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Which kind of object a job belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    Backup,
    Restore,
}

/// The object a job belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobKey {
    pub kind: JobKind,
    pub namespace: String,
    pub name: String,
}

impl JobKey {
    pub fn new(kind: JobKind, namespace: &str, name: &str) -> Self {
        Self { kind, namespace: namespace.to_owned(), name: name.to_owned() }
    }
}

impl std::fmt::Display for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            JobKind::Backup => "backup",
            JobKind::Restore => "restore",
        };
        write!(f, "{kind}/{}/{}", self.namespace, self.name)
    }
}

/// Why a job was stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The spec the job runs changed (a new generation).
    SpecChanged,
    /// A new run-now request.
    RunNow,
    /// The object was deleted (or replaced by one of the same name).
    Deleted,
    /// The controller is shutting down, or lost its leadership.
    Shutdown,
}

impl JobKind {
    /// The kind of the objects of this job kind.
    pub fn object_kind(self) -> &'static str {
        match self {
            JobKind::Backup => "TimeseriesDBBackup",
            JobKind::Restore => "TimeseriesDBRestore",
        }
    }
}

impl StopReason {
    /// The condition reason.
    pub fn reason(self) -> &'static str {
        match self {
            StopReason::SpecChanged => "SpecChanged",
            StopReason::RunNow => "RunNowRequested",
            StopReason::Deleted => "Deleted",
            StopReason::Shutdown => "ControllerShutdown",
        }
    }

    /// What happened, in words.
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::SpecChanged => "the spec changed; starting again with the new one",
            StopReason::RunNow => "a new run-now request; starting again",
            StopReason::Deleted => "the object was deleted",
            StopReason::Shutdown => "the controller is shutting down; it runs again when the controller is back",
        }
    }
}

/// A job's cancellation: a token and the first reason given.
#[derive(Clone)]
pub struct Stop {
    token: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
}

impl Stop {
    /// Stops the job for `reason` (the first reason given is kept).
    pub fn stop(&self, reason: StopReason) {
        lock(&self.reason).get_or_insert(reason);
        self.token.cancel();
    }

    /// Completes when the job is stopped, with the reason.
    pub async fn stopped(&self) -> StopReason {
        self.token.cancelled().await;
        self.reason()
    }

    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The reason given; a stop without one came from the shutdown token.
    fn reason(&self) -> StopReason {
        lock(&self.reason).unwrap_or(StopReason::Shutdown)
    }
}

/// The limits on work in flight.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub backups: usize,
    pub restores: usize,
    pub per_database: usize,
}

/// What runs, and the slots.
pub struct Jobs {
    limits: Limits,
    shutdown: CancellationToken,
    backups: Arc<Semaphore>,
    restores: Arc<Semaphore>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    running: HashMap<JobKey, InFlight>,
    /// Slots per database (scheme, host and port), while some job holds or waits for one.
    databases: HashMap<String, Arc<Semaphore>>,
    /// Restore targets in use, and by which restore.
    targets: HashMap<String, JobKey>,
    /// The tasks running jobs, to abort them with the controller.
    tasks: HashMap<JobKey, tokio::task::AbortHandle>,
}

/// What a reconcile sees of a job in flight.
#[derive(Clone)]
pub struct InFlight {
    /// The object's UID.
    pub uid: String,
    /// A hash of what the job runs (the parts of the spec it uses).
    pub fingerprint: u64,
    /// The run-now request it honours.
    pub request: Option<String>,
    pub stop: Stop,
    /// Whether it holds its slots (else it waits for them).
    pub running: Arc<std::sync::atomic::AtomicBool>,
}

impl InFlight {
    pub fn is_running(&self) -> bool {
        self.running.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// What a job runs, for [`Jobs::start`].
pub struct Run {
    pub uid: String,
    pub fingerprint: u64,
    pub request: Option<String>,
}

/// Why a job could not start.
#[derive(Debug, PartialEq, Eq)]
pub enum Busy {
    /// The object has a job already.
    Running,
    /// Another restore writes into the same database.
    Target(JobKey),
}

impl Jobs {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            shutdown: CancellationToken::new(),
            backups: Arc::new(Semaphore::new(limits.backups.max(1))),
            restores: Arc::new(Semaphore::new(limits.restores.max(1))),
            state: Mutex::new(State::default()),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The job of `key`, if one is in flight.
    pub fn in_flight(&self, key: &JobKey) -> Option<InFlight> {
        lock(&self.state).running.get(key).cloned()
    }

    /// Registers a job for `key` (`what`: the object's UID, what it runs, the request it honours) against the
    /// database at `database` (a URL); a restore also claims its `target` (see [`target_key`]).
    pub fn start(
        self: &Arc<Self>,
        key: JobKey,
        what: Run,
        database: &str,
        target: Option<String>,
    ) -> Result<Job, Busy> {
        let mut state = lock(&self.state);
        if state.running.contains_key(&key) {
            return Err(Busy::Running);
        }
        if let Some(target) = &target {
            if let Some(holder) = state.targets.get(target) {
                return Err(Busy::Target(holder.clone()));
            }
            state.targets.insert(target.clone(), key.clone());
        }
        let database = database_key(database);
        let slots = state
            .databases
            .entry(database.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.limits.per_database.max(1))))
            .clone();
        let stop = Stop { token: self.shutdown.child_token(), reason: Arc::default() };
        let Run { uid, fingerprint, request } = what;
        let running = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let entry = InFlight { uid, fingerprint, request, stop: stop.clone(), running: running.clone() };
        state.running.insert(key.clone(), entry);
        Ok(Job { jobs: self.clone(), key, stop, running, database, database_slots: slots, target })
    }

    /// Runs `job` as a task of its own (aborted by [`Jobs::abort_all`]).
    pub fn spawn<F>(&self, job: Job, body: impl FnOnce(Job) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let key = job.key.clone();
        let mut state = lock(&self.state);
        let task = tokio::spawn(body(job));
        state.tasks.insert(key, task.abort_handle());
    }

    /// Stops every job (SIGTERM; a lost leader election) and refuses none: new jobs stop at once.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Aborts every job's task where it stands, as a crash would (the controller's run ends).
    pub fn abort_all(&self) {
        for task in lock(&self.state).tasks.values() {
            task.abort();
        }
    }

    /// Waits until no job is in flight, at most `timeout`; whether none is.
    pub async fn idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if lock(&self.state).running.is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Jobs in flight (running or waiting for a slot).
    pub fn count(&self) -> usize {
        lock(&self.state).running.len()
    }
}

/// A job in flight; dropping it ends it (its slots, its target, its entry).
pub struct Job {
    jobs: Arc<Jobs>,
    pub key: JobKey,
    pub stop: Stop,
    running: Arc<std::sync::atomic::AtomicBool>,
    database: String,
    database_slots: Arc<Semaphore>,
    target: Option<String>,
}

impl Job {
    /// Stops the job when its object is gone (deleted, or replaced by one with another UID), looking every
    /// `interval` until the returned guard is dropped: for running jobs only (a few), not queued ones (maybe
    /// hundreds), which look once when they get their slots. (kube-runtime does not reconcile deleted objects, so
    /// the reconciler cannot see this itself.)
    pub fn stop_when_gone<K>(&self, api: kube::Api<K>, name: &str, uid: &str, interval: Duration) -> AbortOnDrop
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    {
        let (stop, name, uid) = (self.stop.clone(), name.to_owned(), uid.to_owned());
        AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                if !exists(&api, &name, &uid).await {
                    stop.stop(StopReason::Deleted);
                    return;
                }
            }
        }))
    }
}

/// Whether the object `name` with `uid` exists and is not being deleted (when the API server cannot say: yes).
pub async fn exists<K>(api: &kube::Api<K>, name: &str, uid: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await {
        Ok(Some(o)) => o.meta().uid.as_deref() == Some(uid) && o.meta().deletion_timestamp.is_none(),
        Ok(None) => false,
        Err(_) => true,
    }
}

/// A task aborted when this is dropped.
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    /// Runs `task` until this is dropped.
    pub fn spawn(task: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(tokio::spawn(task))
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The slots a running job holds.
pub struct Slots {
    _database: OwnedSemaphorePermit,
    _kind: OwnedSemaphorePermit,
}

impl Job {
    /// Waits for a slot of the job's database, then one of its kind (always in this order, so no two jobs wait on
    /// each other); the stop reason if the job is stopped first.
    pub async fn slots(&self) -> Result<Slots, StopReason> {
        let kind = match self.key.kind {
            JobKind::Backup => self.jobs.backups.clone(),
            JobKind::Restore => self.jobs.restores.clone(),
        };
        let acquire = async {
            let database = self.database_slots.clone().acquire_owned().await;
            let kind = kind.acquire_owned().await;
            (database, kind)
        };
        tokio::select! {
            reason = self.stop.stopped() => Err(reason),
            (Ok(database), Ok(kind)) = acquire => {
                self.running.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(Slots { _database: database, _kind: kind })
            }
            else => Err(StopReason::Shutdown),
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let mut state = lock(&self.jobs.state);
        state.running.remove(&self.key);
        state.tasks.remove(&self.key);
        if let Some(target) = &self.target
            && state.targets.get(target) == Some(&self.key)
        {
            state.targets.remove(target);
        }
        // The map's and this job's references: nobody else waits on the database's slots.
        if Arc::strong_count(&self.database_slots) <= 2 {
            state.databases.remove(&self.database);
        }
    }
}

/// Scheme, host and port of a database URL, lower case, with the scheme's default port: what the per-database limit
/// counts by.
pub fn database_key(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri) => {
            let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
            let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
            let host = uri.host().unwrap_or_default().to_ascii_lowercase();
            format!("{scheme}://{host}:{port}")
        }
        Err(_) => url.to_owned(),
    }
}

/// A restore target: the database and, for InfluxDB, the database name in it.
pub fn target_key(url: &str, database: Option<&str>) -> String {
    let path = url.parse::<http::Uri>().map(|u| u.path().trim_end_matches('/').to_owned()).unwrap_or_default();
    format!("{}{path}#{}", database_key(url), database.unwrap_or(""))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> JobKey {
        JobKey::new(JobKind::Backup, "ns", name)
    }

    fn run() -> Run {
        Run { uid: "u".into(), fingerprint: 1, request: None }
    }

    #[test]
    fn keys() {
        assert_eq!(database_key("http://VM:8428/select/0"), "http://vm:8428");
        assert_eq!(database_key("https://vm.example.com"), "https://vm.example.com:443");
        assert_eq!(database_key("http://vm"), database_key("http://vm:80/"));
        assert_eq!(target_key("http://influx:8086/", Some("db")), "http://influx:8086#db");
        assert_ne!(target_key("http://influx:8086", Some("a")), target_key("http://influx:8086", Some("b")));
    }

    #[tokio::test]
    async fn slots_limit_per_database_and_kind() {
        let jobs = Jobs::new(Limits { backups: 3, restores: 1, per_database: 2 });
        let a = jobs.start(key("a"), run(), "http://db1:1", None).unwrap();
        assert_eq!(jobs.start(key("a"), run(), "http://db1:1", None).err(), Some(Busy::Running));
        let b = jobs.start(key("b"), run(), "http://DB1:1/x", None).unwrap();
        let c = jobs.start(key("c"), run(), "http://db1:1", None).unwrap();
        let d = jobs.start(key("d"), run(), "http://db2:1", None).unwrap();
        let (sa, sb) = (a.slots().await.unwrap(), b.slots().await.unwrap());
        // db1 has two slots, both taken: c waits although a backup slot is free.
        assert!(tokio::time::timeout(Duration::from_millis(50), c.slots()).await.is_err());
        let sd = d.slots().await.unwrap();
        drop(sa);
        let sc = tokio::time::timeout(Duration::from_secs(1), c.slots()).await.unwrap().unwrap();
        // Three backups hold slots: a fourth waits for its kind, and is stopped while waiting.
        let e = jobs.start(key("e"), run(), "http://db3:1", None).unwrap();
        let waiting = e.stop.clone();
        tokio::spawn(async move { waiting.stop(StopReason::Deleted) });
        assert_eq!(e.slots().await.err(), Some(StopReason::Deleted));
        drop((sb, sc, sd, a, b, c, d, e));
        assert_eq!(jobs.count(), 0);
        assert!(lock(&jobs.state).databases.is_empty());
    }

    #[tokio::test]
    async fn targets_and_shutdown() {
        let jobs = Jobs::new(Limits { backups: 1, restores: 1, per_database: 1 });
        let restore = |name: &str| JobKey::new(JobKind::Restore, "ns", name);
        let target = target_key("http://vm:8428", None);
        let r1 = jobs.start(restore("r1"), run(), "http://vm:8428", Some(target.clone())).unwrap();
        assert_eq!(
            jobs.start(restore("r2"), run(), "http://vm:8428", Some(target.clone())).err(),
            Some(Busy::Target(restore("r1")))
        );
        drop(r1);
        let r2 = jobs.start(restore("r2"), run(), "http://vm:8428", Some(target)).unwrap();
        r2.stop.stop(StopReason::SpecChanged);
        r2.stop.stop(StopReason::Deleted);
        assert_eq!(r2.stop.stopped().await, StopReason::SpecChanged, "the first reason is kept");
        let b = jobs.start(key("b"), run(), "http://vm:8428", None).unwrap();
        jobs.shutdown();
        assert_eq!(b.stop.stopped().await, StopReason::Shutdown);
        assert!(!jobs.idle(Duration::from_millis(30)).await);
        drop((r2, b));
        assert!(jobs.idle(Duration::from_millis(30)).await);
    }
}
