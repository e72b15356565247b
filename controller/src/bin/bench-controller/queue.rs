//! `bench-controller --queue N`: the controller binary (a process of its own, as deployed) given N backups at once
//! against one VictoriaMetrics. Measures its peak RSS (`VmHWM`), the most connections it held to the database (a
//! counting proxy in between), the most backups Running at once, and the time until all N succeeded.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use backup_apis::backup::TimeseriesDBBackup;
use backup_apis::database::DatabaseType;
use backup_apis::status::Phase;
use backup_controller::testing::dataset::float_series;
use backup_controller::testing::proxy::Proxy;
use backup_controller::testing::stack::{NAMESPACE, backup_spec};
use backup_controller::testing::victoria::Victoria;
use kube::Api;
use kube::api::{ListParams, PostParams};

/// Series and samples per series of the database every backup reads.
const SERIES: usize = 100;
const PER_SERIES: usize = 1000;

pub async fn queue(n: usize) -> anyhow::Result<String> {
    let controller_binary = std::env::current_exe()?.with_file_name("backup-controller");
    anyhow::ensure!(
        controller_binary.is_file(),
        "{} not found: build it beside the bench (cargo build --release -p backup-controller --features testing --bins)",
        controller_binary.display()
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir()?;
    let kubeconfig = tmp.path().join("kubeconfig");
    let _server = backup_apiserver::start(backup_apiserver::options::Options::ephemeral(&kubeconfig)).await?;
    let (client, _) = backup_controller::client::connect(Some(&kubeconfig)).await?;
    let source = Victoria::start().await;
    for first in (0..SERIES).step_by(100) {
        source.load(&float_series(first as u64, 100.min(SERIES - first), PER_SERIES, false)).await;
    }
    let proxy = Proxy::start(source.port, 1 << 30).await;

    let backups: Api<TimeseriesDBBackup> = Api::namespaced(client, NAMESPACE);
    for i in 0..n {
        let obj = TimeseriesDBBackup::new(
            NAMESPACE,
            &format!("b{i:04}"),
            backup_spec(DatabaseType::VictoriaMetrics, &proxy.url, None),
        );
        backups.create(&PostParams::default(), &obj).await.context("creating a TimeseriesDBBackup")?;
    }
    let backup_dir = tmp.path().join("backups");
    let mut controller = tokio::process::Command::new(&controller_binary)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--backup-dir")
        .arg(&backup_dir)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", controller_binary.display()))?;
    let pid = controller.id().context("the controller's pid")?;
    let started = Instant::now();
    let mut most_running = 0;
    let samples = loop {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "{n} backups not done within 10 minutes");
        if let Some(status) = controller.try_wait()? {
            anyhow::bail!("the controller exited: {status}");
        }
        let list = backups.list(&ListParams::default()).await?;
        let phase = |p: Phase| list.items.iter().filter(|b| b.status.as_ref().and_then(|s| s.phase) == Some(p)).count();
        most_running = most_running.max(phase(Phase::Running));
        if phase(Phase::Succeeded) == n {
            let last = list.items.first().and_then(|b| b.status.as_ref()?.last_backup.as_ref()?.samples);
            break last.unwrap_or(0);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let elapsed = started.elapsed();
    let peak = rss_kib(pid, "VmHWM:");
    let now = rss_kib(pid, "VmRSS:");
    controller.kill().await?;
    Ok(format!(
        "| {n} | {samples} | {:.1} s | {:.0} | {} MiB | {} MiB | {} | {most_running} |",
        elapsed.as_secs_f64(),
        (n as u64 * samples) as f64 / elapsed.as_secs_f64(),
        peak / 1024,
        now / 1024,
        proxy.most_connections(),
    ))
}

fn rss_kib(pid: u32, key: &str) -> u64 {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let status = std::fs::read_to_string(path).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
