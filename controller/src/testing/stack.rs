//! The API server and the controller, in-process, for tests: the server standalone with the in-memory store on a
//! free port, a kube client from the kubeconfig it writes, and a controller task that can be killed and restarted.
//!
//! Tests → harness → **API server and controller (this file)**.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use backup_apis::backup::{BackupSource, Retention, TimeseriesDBBackup, TimeseriesDBBackupSpec};
use backup_apis::database::{DatabaseEndpoint, DatabaseType};
use backup_apis::restore::{BackupRef, TimeseriesDBRestore, TimeseriesDBRestoreSpec};
use backup_apis::status::Phase;
use kube::api::PostParams;
use kube::{Api, Client};

use super::wait_for;
use crate::controller::jobs::{Jobs, Limits};
use crate::controller::{self, Backoff, Context};
use crate::destination::locations::{Locations, LocationsFile};
use crate::http::Http;
use crate::http::transport::Connector;
use crate::secrets::SecretsDir;

pub const NAMESPACE: &str = "default";

/// The controller's settings in tests: fast backoff (200 ms doubling to 2 s), the production limits.
#[derive(Debug, Clone)]
pub struct Settings {
    pub limits: Limits,
    pub backoff: Backoff,
    pub default_timeout: Duration,
    pub http_timeout: Duration,
    pub piece_limit: usize,
    /// Locations besides `default` (the [`Stack::backup_dir`]), as a locations file defines them.
    pub locations: Option<LocationsFile>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits { backups: 4, restores: 2, per_database: 2 },
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(2)),
            default_timeout: Duration::from_secs(120),
            http_timeout: Duration::from_secs(30),
            piece_limit: crate::http::DEFAULT_PIECE_LIMIT,
            locations: None,
        }
    }
}

/// A running API server, a client, a backup directory, a secrets directory (as `--secrets-dir`), and (maybe) a
/// controller.
pub struct Stack {
    pub tmp: tempfile::TempDir,
    pub server: Option<backup_apiserver::Server>,
    pub client: Client,
    pub backup_dir: PathBuf,
    pub secrets_dir: PathBuf,
    /// Used by the next [`Stack::start_controller`].
    pub settings: Settings,
    /// The controllers' metrics (kept across restarts, as a process keeps them across leadership terms).
    pub metrics: Arc<crate::controller::metrics::Metrics>,
    controller: Option<(tokio::task::JoinHandle<()>, tokio::sync::oneshot::Sender<()>)>,
}

impl Stack {
    pub async fn start() -> Stack {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tmp = tempfile::tempdir().expect("temp dir");
        let kubeconfig = tmp.path().join("kubeconfig");
        let opts = backup_apiserver::options::Options::ephemeral(&kubeconfig);
        let server = backup_apiserver::start(opts).await.expect("starting backup-apiserver");
        let (client, _) = crate::client::connect(Some(&kubeconfig)).await.expect("client from the kubeconfig");
        let backup_dir = tmp.path().join("backups");
        let secrets_dir = tmp.path().join("secrets");
        Stack {
            tmp,
            server: Some(server),
            client,
            backup_dir,
            secrets_dir,
            settings: Settings::default(),
            metrics: Arc::default(),
            controller: None,
        }
    }

    /// Starts the controller in-process with [`Stack::settings`], reading Secrets and ConfigMaps from
    /// [`Stack::secrets_dir`].
    pub fn start_controller(&mut self) {
        assert!(self.controller.is_none(), "controller already running");
        let settings = self.settings.clone();
        let connector = Arc::new(Connector::new(settings.http_timeout).expect("TLS connector"));
        let mut http = Http::new(connector.default_transport(), settings.http_timeout);
        http.piece_limit = settings.piece_limit;
        let locations = match settings.locations.clone() {
            Some(file) => Locations::from_file(file, connector.default_transport(), settings.http_timeout)
                .expect("the test's locations"),
            None => Locations::default(),
        }
        .with_default_local(&self.backup_dir);
        let ctx = Arc::new(Context {
            client: self.client.clone(),
            locations: Arc::new(locations),
            http,
            connector,
            secrets: Arc::new(SecretsDir::new(&self.secrets_dir)),
            backoff: settings.backoff,
            jobs: Jobs::new(settings.limits),
            default_timeout: settings.default_timeout,
            metrics: self.metrics.clone(),
            events: crate::controller::events::Events::disabled(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            controller::run(ctx, None, async move {
                let _ = stopped.await;
            })
            .await;
        });
        self.controller = Some((handle, stop));
    }

    /// Kills the controller as a crash would: its reconciles and jobs stop wherever they are.
    pub async fn kill_controller(&mut self) {
        if let Some((handle, _)) = self.controller.take() {
            handle.abort();
            let _ = handle.await;
        }
    }

    /// Stops the controller as SIGTERM does; returns how long it took.
    pub async fn stop_controller(&mut self) -> Duration {
        let started = std::time::Instant::now();
        if let Some((handle, stop)) = self.controller.take() {
            let _ = stop.send(());
            tokio::time::timeout(Duration::from_secs(30), handle)
                .await
                .expect("the controller stops within 30 s")
                .expect("the controller task");
        }
        started.elapsed()
    }

    /// Writes a key of a Secret in [`NAMESPACE`], as the controller reads it (`--secrets-dir`).
    pub fn put_secret(&self, name: &str, key: &str, value: &[u8]) {
        self.put("secrets", name, key, value);
    }

    /// Writes a key of a ConfigMap in [`NAMESPACE`].
    pub fn put_config_map(&self, name: &str, key: &str, value: &[u8]) {
        self.put("configmaps", name, key, value);
    }

    fn put(&self, kind: &str, name: &str, key: &str, value: &[u8]) {
        let dir = self.secrets_dir.join(NAMESPACE).join(kind).join(name);
        std::fs::create_dir_all(&dir).expect("creating a secrets directory");
        std::fs::write(dir.join(key), value).expect("writing a secret");
    }

    pub fn backups(&self) -> Api<TimeseriesDBBackup> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    pub fn restores(&self) -> Api<TimeseriesDBRestore> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    pub async fn create_backup(&self, name: &str, spec: TimeseriesDBBackupSpec) -> TimeseriesDBBackup {
        let obj = TimeseriesDBBackup::new(NAMESPACE, name, spec);
        self.backups().create(&PostParams::default(), &obj).await.expect("creating a TimeseriesDBBackup")
    }

    pub async fn create_restore(&self, name: &str, spec: TimeseriesDBRestoreSpec) -> TimeseriesDBRestore {
        let obj = TimeseriesDBRestore::new(NAMESPACE, name, spec);
        self.restores().create(&PostParams::default(), &obj).await.expect("creating a TimeseriesDBRestore")
    }

    /// Waits until the backup's phase is `phase` (and, for Succeeded, it has a last backup).
    pub async fn wait_backup(&self, name: &str, phase: Phase, timeout: Duration) -> TimeseriesDBBackup {
        let api = self.backups();
        wait_for(&format!("TimeseriesDBBackup {name} to be {phase:?}"), timeout, || async {
            let obj = api.get(name).await.map_err(|e| e.to_string())?;
            let status = obj.status.clone().unwrap_or_default();
            if status.phase == Some(phase) && (phase != Phase::Succeeded || status.last_backup.is_some()) {
                Ok(obj)
            } else {
                Err(format!("{:?}: {}", status.phase, status.message.unwrap_or_default()))
            }
        })
        .await
    }

    pub async fn wait_restore(&self, name: &str, phase: Phase, timeout: Duration) -> TimeseriesDBRestore {
        let api = self.restores();
        wait_for(&format!("TimeseriesDBRestore {name} to be {phase:?}"), timeout, || async {
            let obj = api.get(name).await.map_err(|e| e.to_string())?;
            let status = obj.status.clone().unwrap_or_default();
            if status.phase == Some(phase) {
                Ok(obj)
            } else {
                Err(format!("{:?}: {}", status.phase, status.message.unwrap_or_default()))
            }
        })
        .await
    }

    /// The backup files under the backup directory (relative paths), partial ones included.
    pub fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        collect(&self.backup_dir, &self.backup_dir, &mut out);
        out.sort();
        out
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some((handle, _)) = self.controller.take() {
            handle.abort();
        }
    }
}

/// A backup spec of `url` (an InfluxDB one needs `database`).
pub fn backup_spec(r#type: DatabaseType, url: &str, database: Option<&str>) -> TimeseriesDBBackupSpec {
    TimeseriesDBBackupSpec {
        database: BackupSource { endpoint: endpoint(r#type, url, database), selector: None },
        destination: None,
        schedule: None,
        time_zone: None,
        retention: Retention::default(),
        suspend: false,
        verify: false,
        timeout: None,
    }
}

/// A restore of the latest backup of `backup` into `url`.
pub fn restore_spec(backup: &str, r#type: DatabaseType, url: &str, database: Option<&str>) -> TimeseriesDBRestoreSpec {
    TimeseriesDBRestoreSpec {
        backup_ref: BackupRef { name: backup.into(), ..BackupRef::default() },
        target: endpoint(r#type, url, database),
        timeout: None,
    }
}

fn endpoint(r#type: DatabaseType, url: &str, database: Option<&str>) -> DatabaseEndpoint {
    DatabaseEndpoint::new(r#type, url, database.map(Into::into))
}
