//! The `backup-controller` binary: flags, logging, the API client, then [`backup_controller::controller::run`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backup_controller::controller::jobs::{Jobs, Limits};
use backup_controller::controller::{self, Backoff, Context};
use backup_controller::destination::locations::Locations;
use backup_controller::http::Http;
use backup_controller::http::transport::Connector;
use backup_controller::secrets::{KubeSecrets, SecretSource, SecretsDir};
use clap::Parser;

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
    let (client, _) = backup_controller::client::connect(opts.kubeconfig.as_deref()).await?;
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
    let ctx = Arc::new(Context {
        client,
        locations: Arc::new(locations),
        http,
        connector,
        secrets,
        backoff: Backoff::new(Duration::from_secs(opts.min_backoff), Duration::from_secs(opts.max_backoff)),
        jobs: Jobs::new(limits),
        default_timeout: opts.default_timeout,
    });
    tracing::info!(
        locations = ?names,
        ?limits,
        default_timeout = ?opts.default_timeout,
        max_piece_bytes = opts.max_piece_bytes,
        "backup-controller starting"
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down: stopping the backups and restores in flight");
    };
    controller::run(ctx, opts.namespace.as_deref(), shutdown).await;
    Ok(())
}
