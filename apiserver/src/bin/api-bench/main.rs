//! api-bench: what the API server costs per request, beside raw etcd in the same run.
//!
//! Starts a throw-away etcd, measures raw etcd-client create transactions (the limit), then runs the release
//! `backup-apiserver` binary as a separate process (standalone, once on that etcd and once on the embedded store)
//! and drives creates, gets and lists over HTTP/2 at several concurrencies. Prints throughput, p50/p99 latency,
//! the server's CPU time per request (from /proc) and its resident memory idle and after the load. Loopback only;
//! every phase is bounded in count and time. Run it with `hack/bench-api.sh`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_storage::testing::EtcdServer;
use http_body_util::BodyExt;
use serde_json::json;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const OPS_PER_CELL: usize = 2000;
const CELL_TIME_LIMIT: Duration = Duration::from_secs(20);
const CONCURRENCIES: [usize; 3] = [1, 8, 32];
const NAMESPACE_PATH: &str = "/apis/backup.extend-k8s.io/v1/namespaces/bench/timeseriesdbbackups";

/// A request's object: a realistic TimeseriesDBBackup of about 600 bytes once stored.
fn object(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "backup.extend-k8s.io/v1", "kind": "TimeseriesDBBackup",
        "metadata": {"name": name, "labels": {"app": "metrics", "tier": "gold", "team": "observability"},
                     "annotations": {"owner": "sre@example.com"}},
        "spec": {"database": {"type": "Prometheus", "url": "http://prometheus.monitoring.svc:9090", "selector": "{job=\"node\"}"},
                 "schedule": "0 2 * * *", "retention": {"keepLast": 14}},
    })
}

struct Cell {
    target: &'static str,
    op: &'static str,
    concurrency: usize,
    ops: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    cpu: Option<Duration>,
}

impl Cell {
    fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut l = self.latencies.clone();
        l.sort();
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1))).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }
}

/// Run `op(i)` for i in 0..OPS_PER_CELL with `concurrency` workers, bounded by CELL_TIME_LIMIT.
async fn drive<F, Fut>(concurrency: usize, op: F) -> (usize, Duration, Vec<Duration>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), BoxError>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (op, next) = (op.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= OPS_PER_CELL || start.elapsed() > CELL_TIME_LIMIT {
                    return lat;
                }
                let t = Instant::now();
                if let Err(e) = op(i).await {
                    eprintln!("request failed: {e}");
                    return lat;
                }
                lat.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.unwrap_or_default());
    }
    (latencies.len(), start.elapsed(), latencies)
}

/// User plus system CPU time of a process, from /proc/<pid>/stat (clock ticks of 10 ms).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Resident memory of a process in MiB, from /proc/<pid>/status.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The server process, killed on drop.
struct ServerProcess {
    child: Child,
    client: kube::Client,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_server(binary: &Path, dir: &Path, store_args: &[String]) -> Result<ServerProcess, BoxError> {
    let kubeconfig = dir.join("bench.kubeconfig");
    let _ = std::fs::remove_file(&kubeconfig);
    let child = Command::new(binary)
        .args(["--standalone", "--secure-port", "0", "--write-kubeconfig"])
        .arg(&kubeconfig)
        .args(store_args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !kubeconfig.exists() {
        if Instant::now() > deadline {
            return Err("the server did not write its kubeconfig within 20s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(ServerProcess { child, client: kube::Client::try_from(config)? })
}

async fn send(client: &kube::Client, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<(), BoxError> {
    let mut req = http::Request::builder().method(method).uri(path);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let resp = client.send(req.body(kube::client::Body::from(body.unwrap_or_default()))?).await?;
    let status = resp.status();
    let _ = resp.into_body().collect().await?;
    if !status.is_success() {
        return Err(format!("{method} {path}: {status}").into());
    }
    Ok(())
}

async fn bench_server(target: &'static str, server: &ServerProcess, cells: &mut Vec<Cell>) {
    let pid = server.child.id();
    for &c in &CONCURRENCIES {
        for op in ["create", "get", "list"] {
            let client = server.client.clone();
            let cpu_before = cpu_time(pid);
            let (ops, elapsed, latencies) = drive(c, move |i| {
                let client = client.clone();
                async move {
                    match op {
                        "create" => {
                            let body = serde_json::to_vec(&object(&format!("c{c}-{i}")))?;
                            send(&client, "POST", NAMESPACE_PATH, Some(body)).await
                        }
                        "get" => send(&client, "GET", &format!("{NAMESPACE_PATH}/c{c}-{}", i % 500), None).await,
                        _ => send(&client, "GET", &format!("{NAMESPACE_PATH}?limit=100"), None).await,
                    }
                }
            })
            .await;
            let cpu = cpu_time(pid).saturating_sub(cpu_before);
            cells.push(Cell { target, op, concurrency: c, ops, elapsed, latencies, cpu: Some(cpu) });
        }
    }
}

async fn bench_raw_etcd(endpoint: &str, cells: &mut Vec<Cell>) -> Result<(), BoxError> {
    use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
    let client = etcd_client::Client::connect([endpoint], None).await?;
    let value = serde_json::to_vec(&object("raw"))?;
    for &c in &CONCURRENCIES {
        let (client, value) = (client.clone(), value.clone());
        let (ops, elapsed, latencies) = drive(c, move |i| {
            let (mut client, value) = (client.clone(), value.clone());
            async move {
                let key = format!("/raw/backup.extend-k8s.io/timeseriesdbbackups/bench/c{c}-{i}");
                let txn = Txn::new()
                    .when([Compare::mod_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key, value, Some(PutOptions::new()))]);
                client.txn(txn).await?;
                Ok(())
            }
        })
        .await;
        cells.push(Cell {
            target: "raw etcd-client",
            op: "create",
            concurrency: c,
            ops,
            elapsed,
            latencies,
            cpu: None,
        });
    }
    Ok(())
}

fn print(cells: &[Cell]) {
    println!(
        "| target | op | concurrency | ops | ops/s | p50 ms | p99 ms | server CPU per op | ops/s vs raw etcd create |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for c in cells {
        let raw = cells.iter().find(|r| r.target == "raw etcd-client" && r.concurrency == c.concurrency);
        let ratio = match (raw, c.op) {
            (Some(r), "create") if c.target != r.target => format!("{:.2}", c.per_second() / r.per_second()),
            _ => "-".into(),
        };
        let cpu = c.cpu.map_or("-".into(), |t| format!("{:.3} ms", t.as_secs_f64() * 1e3 / c.ops.max(1) as f64));
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {} | {} |",
            c.target,
            c.op,
            c.concurrency,
            c.ops,
            c.per_second(),
            c.percentile(0.5),
            c.percentile(0.99),
            cpu,
            ratio
        );
    }
}

/// `$API_BENCH_SERVER` (to compare two builds in one session), else the `backup-apiserver` beside this binary.
fn server_binary() -> Result<PathBuf, BoxError> {
    let bin = match std::env::var_os("API_BENCH_SERVER") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()?.with_file_name("backup-apiserver"),
    };
    if !bin.exists() {
        return Err(format!("{} not found: build it first (hack/bench-api.sh does)", bin.display()).into());
    }
    Ok(bin)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let binary = server_binary()?;
    let dir = tempfile::tempdir()?;
    let etcd = EtcdServer::start().await;
    let mut cells = Vec::new();
    bench_raw_etcd(&etcd.endpoint(), &mut cells).await?;
    let mut memory = Vec::new();
    for (target, args) in [
        ("apiserver on etcd", vec!["--etcd-servers".to_string(), etcd.endpoint()]),
        ("apiserver on embedded", vec!["--data-dir".to_string(), dir.path().join("data").display().to_string()]),
    ] {
        let server = start_server(&binary, dir.path(), &args).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = rss_mib(server.child.id());
        bench_server(target, &server, &mut cells).await;
        memory.push((target, idle, rss_mib(server.child.id())));
    }
    print(&cells);
    println!();
    println!("| target | RSS idle | RSS after the load |");
    println!("|---|---|---|");
    for (target, idle, after) in memory {
        println!("| {target} | {idle:.1} MiB | {after:.1} MiB |");
    }
    Ok(())
}
