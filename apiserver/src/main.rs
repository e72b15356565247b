//! The `backup-apiserver` binary: parse flags, start the server, stop it on SIGTERM/SIGINT.

use clap::Parser;

use backup_apiserver::options::Options;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    // One crypto provider for the whole process: ring (rustls would otherwise ask which).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let opts = Options::parse();
    let standalone = opts.standalone;
    let store = if opts.etcd_servers.is_empty() { "embedded store" } else { "etcd" };
    let server = backup_apiserver::start(opts).await?;
    tracing::info!(address = %server.addr, "serving");
    if standalone && let Some(kc) = &server.kubeconfig {
        println!("backup-apiserver is serving on https://{} (standalone, {store})", server.addr);
        println!("Try:\n  kubectl --kubeconfig {} get timeseriesdbbackups", kc.display());
        println!("  kubectl --kubeconfig {} api-resources --api-group=backup.extend-k8s.io", kc.display());
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    server.shutdown().await
}
