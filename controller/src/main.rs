//! The `backup-controller` binary: flags, logging, the API client, then [`backup_controller::controller::run`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backup_controller::controller::{self, Backoff, Context};
use backup_controller::destination::local::LocalDir;
use backup_controller::http::Http;
use clap::Parser;

/// Backs up and restores Prometheus, VictoriaMetrics and InfluxDB for TimeseriesDBBackup and TimeseriesDBRestore
/// objects.
#[derive(Debug, Parser)]
#[command(name = "backup-controller", version)]
struct Options {
    /// Directory holding the backup files (a persistent volume in a deployment).
    #[arg(long, env = "BACKUP_DIR")]
    backup_dir: PathBuf,
    /// Kubeconfig to use; default: $KUBECONFIG, ~/.kube/config or the in-cluster service account.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Watch only this namespace (default: all).
    #[arg(long)]
    namespace: Option<String>,
    /// Seconds to wait for a database's answer, and between two pieces of a streamed answer.
    #[arg(long, default_value_t = 60)]
    http_timeout: u64,
    /// First retry delay after a failed backup or restore, in seconds; doubled on each failure.
    #[arg(long, default_value_t = 5)]
    min_backoff: u64,
    /// Longest retry delay, in seconds.
    #[arg(long, default_value_t = 300)]
    max_backoff: u64,
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
    let ctx = Arc::new(Context {
        client,
        destination: Arc::new(LocalDir::new(&opts.backup_dir)),
        http: Http::plain(Duration::from_secs(opts.http_timeout)),
        backoff: Backoff::new(Duration::from_secs(opts.min_backoff), Duration::from_secs(opts.max_backoff)),
    });
    tracing::info!(backup_dir = %opts.backup_dir.display(), "backup-controller starting");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down after the reconciles in flight");
    };
    controller::run(ctx, opts.namespace.as_deref(), shutdown).await;
    Ok(())
}
