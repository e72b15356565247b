//! The `backup-controller` binary: flags, logging, the API client, the metrics and health endpoint, leader election
//! (with `--leader-elect`), then [`backup_controller::controller::run`] while leading.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backup_controller::controller::events::Events;
use backup_controller::controller::jobs::{Jobs, Limits};
use backup_controller::controller::leader::{self, Elector, Timing};
use backup_controller::controller::metrics::Metrics;
use backup_controller::controller::serve::{self, Health};
use backup_controller::controller::{self, Backoff, Context};
use backup_controller::destination::locations::Locations;
use backup_controller::http::Http;
use backup_controller::http::transport::Connector;
use backup_controller::secrets::{KubeSecrets, SecretSource, SecretsDir};
use clap::Parser;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio_util::sync::CancellationToken;

/// Backs up and restores Prometheus, VictoriaMetrics and InfluxDB for TimeseriesDBBackup and TimeseriesDBRestore
/// objects.
#[derive(Debug, Parser)]
#[command(name = "backup-controller", version)]
struct Options {
    /// Directory holding the backup files (a persistent volume in a deployment): the location named default.
    #[arg(long, env = "BACKUP_DIR", required_unless_present = "locations")]
    backup_dir: Option<PathBuf>,
    /// The locations backups go to, by name (YAML; a Secret in a deployment); see the README.
    #[arg(long, env = "BACKUP_LOCATIONS")]
    locations: Option<PathBuf>,
    /// Kubeconfig to use; default: $KUBECONFIG, ~/.kube/config or the in-cluster service account.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Watch only this namespace (default: all).
    #[arg(long)]
    namespace: Option<String>,
    /// Read the Secrets and ConfigMaps that endpoints name from this directory, laid out as mounted ones
    /// (DIR/<namespace>/secrets/<name>/<key>, DIR/<namespace>/configmaps/<name>/<key>), instead of through the
    /// Kubernetes API: for the standalone server, which serves only backup.extend-k8s.io.
    #[arg(long)]
    secrets_dir: Option<PathBuf>,
    /// Seconds to wait for a database's answer, and between two pieces of a streamed answer.
    #[arg(long, default_value_t = 60)]
    http_timeout: u64,
    /// Deadline of a backup or restore without spec.timeout, as a duration (90s, 45m, 2h).
    #[arg(long, default_value = "1h", value_parser = parse_timeout)]
    default_timeout: Duration,
    /// Backups running at once; more wait in a queue (status says so).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent_backups: u16,
    /// Restores running at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent_restores: u16,
    /// Backups and restores running at once against one database (scheme, host and port of its URL).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent_per_database: u16,
    /// Longest piece of a database's answer held in memory: a VictoriaMetrics export line (one whole series, ~35
    /// bytes a sample), a Prometheus remote-read frame, an InfluxDB chunk of 10,000 rows. A backup needs about twice
    /// this at most.
    #[arg(long, default_value_t = 32 << 20, value_parser = clap::value_parser!(u64).range(1 << 16..=1 << 32))]
    max_piece_bytes: u64,
    /// First retry delay after a failed backup or restore, in seconds; doubled on each failure.
    #[arg(long, default_value_t = 5)]
    min_backoff: u64,
    /// Longest retry delay, in seconds.
    #[arg(long, default_value_t = 300)]
    max_backoff: u64,
    /// Where to serve /metrics, /healthz and /readyz (plain HTTP); port 0 picks one (logged); "off" serves none.
    #[arg(long, default_value = "0.0.0.0:8080", value_parser = parse_bind_address)]
    metrics_bind_address: BindAddress,
    /// Run only while holding a coordination.k8s.io/v1 Lease, so that of several replicas one reconciles.
    #[arg(long, default_value_t = false)]
    leader_elect: bool,
    /// How long a standby waits, from the last renewal it saw, before taking over the Lease.
    #[arg(long, default_value = "15s", value_parser = parse_timeout)]
    leader_elect_lease_duration: Duration,
    /// How long the leader tries to renew the Lease before it stops leading (less than the lease duration).
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    leader_elect_renew_deadline: Duration,
    /// How often to try to acquire or renew the Lease.
    #[arg(long, default_value = "2s", value_parser = parse_timeout)]
    leader_elect_retry_period: Duration,
    /// The Lease's name.
    #[arg(long, default_value = "backup-controller")]
    leader_elect_resource_name: String,
    /// The Lease's namespace (default: the kubeconfig's namespace; in a pod, its own).
    #[arg(long)]
    leader_elect_resource_namespace: Option<String>,
}

/// `--metrics-bind-address`.
#[derive(Debug, Clone, Copy)]
enum BindAddress {
    Off,
    At(SocketAddr),
}

fn parse_bind_address(text: &str) -> Result<BindAddress, String> {
    match text {
        "off" | "0" => Ok(BindAddress::Off),
        _ => text.parse().map(BindAddress::At).map_err(|e| format!("{e}: give host:port, e.g. 0.0.0.0:8080")),
    }
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match backup_apis::duration::parse_duration(text)? {
        d if d.is_zero() => Err("must be positive".into()),
        d => Ok(d),
    }
}

fn main() -> anyhow::Result<()> {
    backup_controller::allocator::keep_freed_memory();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let opts = Options::parse();
    let timing = Timing {
        lease_duration: opts.leader_elect_lease_duration,
        renew_deadline: opts.leader_elect_renew_deadline,
        retry_period: opts.leader_elect_retry_period,
    };
    if opts.leader_elect {
        timing.validate().map_err(anyhow::Error::msg)?;
    }
    let (client, default_namespace) = backup_controller::client::connect(opts.kubeconfig.as_deref()).await?;
    let identity = leader::identity();

    // Stopped by SIGTERM or Ctrl-C.
    let terminate = CancellationToken::new();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let on_signal = terminate.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down: stopping the backups and restores in flight");
        on_signal.cancel();
    });

    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let serving = CancellationToken::new();
    if let BindAddress::At(addr) = opts.metrics_bind_address {
        let bound = serve::serve(addr, metrics.clone(), health.clone(), serving.clone()).await?;
        tracing::info!(%bound, "serving /metrics, /healthz and /readyz");
    }
    // Ready once the API server answers (a standby too: it is there to take over).
    match client.apiserver_version().await {
        Ok(_) => health.set_ready(true),
        Err(e) => tracing::warn!(error = %e, "the API server does not answer yet"),
    }
    let events = Events::new(&client, &identity).await;

    let timeout = Duration::from_secs(opts.http_timeout);
    let connector = Arc::new(Connector::new(timeout)?);
    let mut http = Http::new(connector.default_transport(), timeout);
    http.piece_limit = usize::try_from(opts.max_piece_bytes)?;
    let secrets: Arc<dyn SecretSource> = match &opts.secrets_dir {
        Some(dir) => Arc::new(SecretsDir::new(dir)),
        None => Arc::new(KubeSecrets::new(client.clone())),
    };
    let limits = Limits {
        backups: opts.max_concurrent_backups.into(),
        restores: opts.max_concurrent_restores.into(),
        per_database: opts.max_concurrent_per_database.into(),
    };
    let mut locations = match &opts.locations {
        Some(file) => Locations::load(file, connector.default_transport(), timeout)?,
        None => Locations::default(),
    };
    if let Some(dir) = &opts.backup_dir {
        locations = locations.with_default_local(dir);
    }
    let names: Vec<String> = locations.names().map(String::from).collect();
    let locations = Arc::new(locations);
    // A new context (fresh jobs and slots) for each term of leadership.
    let context = || {
        Arc::new(Context {
            client: client.clone(),
            locations: locations.clone(),
            http: http.clone(),
            connector: connector.clone(),
            secrets: secrets.clone(),
            backoff: Backoff::new(Duration::from_secs(opts.min_backoff), Duration::from_secs(opts.max_backoff)),
            jobs: Jobs::new(limits),
            default_timeout: opts.default_timeout,
            metrics: metrics.clone(),
            events: events.clone(),
        })
    };
    tracing::info!(
        locations = ?names,
        ?limits,
        default_timeout = ?opts.default_timeout,
        max_piece_bytes = opts.max_piece_bytes,
        leader_elect = opts.leader_elect,
        %identity,
        "backup-controller starting"
    );
    let namespace = opts.namespace.as_deref();
    if !opts.leader_elect {
        metrics.set_leader(true);
        controller::run(context(), namespace, terminate.clone().cancelled_owned()).await;
        serving.cancel();
        return Ok(());
    }

    let lease_namespace = opts.leader_elect_resource_namespace.clone().unwrap_or(default_namespace);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &lease_namespace);
    let elector = Elector::new(leases, &opts.leader_elect_resource_name, &identity, timing);
    let (leading_tx, mut leading) = tokio::sync::watch::channel(false);
    let release = CancellationToken::new();
    let election = tokio::spawn(elector.run(leading_tx, release.clone()));
    tracing::info!(lease = %format!("{lease_namespace}/{}", opts.leader_elect_resource_name), "campaigning for the lease");
    loop {
        tokio::select! {
            _ = terminate.cancelled() => break,
            changed = leading.wait_for(|l| *l) => if changed.is_err() { break },
        }
        health.set_ready(true);
        metrics.set_leader(true);
        let mut lost = leading.clone();
        let terminated = terminate.clone();
        let stop = async move {
            tokio::select! {
                _ = terminated.cancelled() => {}
                _ = lost.wait_for(|l| !*l) => {
                    tracing::warn!("lost the lease: stopping the backups and restores in flight; standing by");
                }
            }
        };
        controller::run(context(), namespace, stop).await;
        metrics.set_leader(false);
        metrics.clear_objects();
        if terminate.is_cancelled() {
            break;
        }
    }
    // The lease goes once the jobs stopped: no two leaders run jobs at once.
    release.cancel();
    let _ = election.await;
    serving.cancel();
    Ok(())
}
