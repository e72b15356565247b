//! api-bench: what the API server costs, beside raw etcd in the same run.
//!
//! Starts a throw-away etcd and runs the release `backup-apiserver` binary as a separate process (standalone, on
//! that etcd or the embedded store, with its watch cache or `--watch-cache=false`), then measures, each phase
//! bounded in count and time, loopback only:
//!
//! - `requests`: creates, gets and updates (merge patches) over HTTP/1.1 at concurrency 1, 8 and 32: throughput,
//!   p50/p99, the server's CPU per request (from /proc); raw etcd-client create transactions for the limit;
//! - `lists`: lists of 1k and 10k objects, resourceVersion unset and "0", and gzip-encoded ([`lists`]), beside
//!   etcd ranges;
//! - `fanout`: 1,000 and 10,000 watchers, delivery latency from each create's acknowledgement ([`fanout`]);
//! - `memory`: RSS idle, with 10k objects, with 1k watches more, the high-water mark after sustained updates,
//!   and exec → ready with 10k objects stored ([`memory`]).
//!
//! Run it with `hack/bench-api.sh` (`--only requests,lists,fanout,memory`; `--sustain SECONDS`, default 60;
//! `--targets cache,direct,embedded` for the request phase's servers; `--watchers 1000,10000` and
//! `--event-gap-ms 20` for the fan-out's watcher counts and the time between its creates).

mod fanout;
mod h2;
mod lists;
mod memory;
mod process;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_storage::testing::EtcdServer;
use http_body_util::BodyExt;
use serde_json::json;

use process::ServerProcess;

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
    target: String,
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

async fn send(client: &kube::Client, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<(), BoxError> {
    let content_type = if method == "PATCH" { "application/merge-patch+json" } else { "application/json" };
    let mut req = http::Request::builder().method(method).uri(path);
    if body.is_some() {
        req = req.header("content-type", content_type);
    }
    let resp = client.send(req.body(kube::client::Body::from(body.unwrap_or_default()))?).await?;
    let status = resp.status();
    let _ = resp.into_body().collect().await?;
    if !status.is_success() {
        return Err(format!("{method} {path}: {status}").into());
    }
    Ok(())
}

async fn bench_server(target: &str, server: &ServerProcess, cells: &mut Vec<Cell>) {
    for &c in &CONCURRENCIES {
        let mut created = OPS_PER_CELL;
        for op in ["create", "get", "update"] {
            let client = server.client.clone();
            let cpu_before = server.cpu();
            let objects = created.clamp(1, 500);
            let (ops, elapsed, latencies) = drive(c, move |i| {
                let client = client.clone();
                async move {
                    match op {
                        "create" => {
                            let body = serde_json::to_vec(&object(&format!("c{c}-{i}")))?;
                            send(&client, "POST", NAMESPACE_PATH, Some(body)).await
                        }
                        "get" => send(&client, "GET", &format!("{NAMESPACE_PATH}/c{c}-{}", i % objects), None).await,
                        _ => {
                            let patch = json!({"metadata": {"labels": {"round": i.to_string()}}});
                            let path = format!("{NAMESPACE_PATH}/c{c}-{}", i % objects);
                            send(&client, "PATCH", &path, Some(serde_json::to_vec(&patch)?)).await
                        }
                    }
                }
            })
            .await;
            if op == "create" {
                created = ops;
            }
            let cpu = server.cpu().saturating_sub(cpu_before);
            cells.push(Cell { target: target.into(), op, concurrency: c, ops, elapsed, latencies, cpu: Some(cpu) });
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
        let target = "raw etcd-client".into();
        cells.push(Cell { target, op: "create", concurrency: c, ops, elapsed, latencies, cpu: None });
    }
    Ok(())
}

fn print_requests(cells: &[Cell]) {
    println!("### Requests (HTTP/1.1, 2,000 per cell or 20 s)\n");
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
    println!();
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

/// Create `objects` objects in namespace `ns` with 32 concurrent writers.
async fn fill(server: &ServerProcess, ns: &str, objects: usize) -> Result<(), BoxError> {
    let path = format!("/apis/backup.extend-k8s.io/v1/namespaces/{ns}/timeseriesdbbackups");
    let writers: Vec<_> = (0..32)
        .map(|w| {
            let (client, path, ns) = (server.client.clone(), path.clone(), ns.to_string());
            tokio::spawn(async move {
                for i in (w..objects).step_by(32) {
                    send(&client, "POST", &path, Some(serde_json::to_vec(&object(&format!("{ns}-{i:05}")))?)).await?;
                }
                Ok::<_, BoxError>(())
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    Ok(())
}

async fn bench_lists(binary: &std::path::Path, dir: &std::path::Path, etcd: &EtcdServer) -> Result<(), BoxError> {
    let etcd_pid = etcd.pid().unwrap_or(0);
    let args = vec!["--etcd-servers".to_string(), etcd.endpoint()];
    let cached = ServerProcess::start(binary, dir, &args).await?;
    for (ns, n) in [("list1k", 1_000), ("list10k", 10_000)] {
        eprintln!("filling {n} objects");
        fill(&cached, ns, n).await?;
    }
    let dir_off = dir.join("off");
    std::fs::create_dir_all(&dir_off)?;
    let direct =
        ServerProcess::start(binary, &dir_off, &[args.clone(), vec!["--watch-cache=false".into()]].concat()).await?;
    let mut cells = Vec::new();
    for (ns, n) in [("list1k", 1_000), ("list10k", 10_000)] {
        eprintln!("lists of {n}");
        cells.push(lists::through_etcd(&etcd.endpoint(), etcd_pid, ns, n).await?);
        for rv in ["", "0"] {
            cells.push(lists::through_server("server, watch cache", &cached, etcd_pid, ns, n, rv, false).await?);
            cells
                .push(lists::through_server("server, --watch-cache=false", &direct, etcd_pid, ns, n, rv, false).await?);
        }
        cells.push(lists::through_server("server, watch cache, gzip", &cached, etcd_pid, ns, n, "", true).await?);
    }
    println!("### Lists (concurrency 1, JSON, HTTP/1.1; 200 lists or 15 s per cell)\n");
    println!("| objects | from | resourceVersion | lists | p50 ms | p99 ms | server CPU ms/list | etcd CPU ms/list |");
    println!("|---:|---|---|---:|---:|---:|---:|---:|");
    for c in &cells {
        let server = c.server_cpu_ms.map_or("-".into(), |v| format!("{v:.2}"));
        let rv = if c.rv.is_empty() { "unset" } else { c.rv };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.2} |",
            c.objects,
            c.from,
            rv,
            c.lists,
            c.ms(0.5),
            c.ms(0.99),
            server,
            c.etcd_cpu_ms
        );
    }
    println!();
    Ok(())
}

/// The fan-out cells: `watchers` through the server with its cache and through etcd's own watches, one create per
/// `gap`; then 1,000 watchers without the cache.
async fn bench_fanout(
    binary: &std::path::Path,
    dir: &std::path::Path,
    etcd: &EtcdServer,
    watchers: &[usize],
    gap: Duration,
) -> Result<(), BoxError> {
    let args = vec!["--etcd-servers".to_string(), etcd.endpoint()];
    let cached = ServerProcess::start(binary, dir, &args).await?;
    let mut cells = Vec::new();
    for &watchers in watchers {
        eprintln!("fan-out to {watchers} watchers through the server");
        cells.push(("watch cache", fanout::through_server(&cached, watchers, &format!("fan{watchers}"), gap).await?));
        eprintln!("fan-out to {watchers} etcd watches");
        cells.push(("-", fanout::through_etcd(&etcd.endpoint(), watchers, gap).await?));
    }
    drop(cached);
    let direct = ServerProcess::start(binary, dir, &[args, vec!["--watch-cache=false".into()]].concat()).await?;
    eprintln!("fan-out to 1000 watchers through the server without its cache");
    cells.push(("--watch-cache=false", fanout::through_server(&direct, 1_000, "fan1000off", gap).await?));
    println!(
        "### Watch fan-out (100 creates, one every {} ms; latency from each create's acknowledgement)\n",
        gap.as_millis()
    );
    println!(
        "| watchers | through | server | delivered | missed | p50 ms | p99 ms | max ms | server CPU | bench CPU |"
    );
    println!("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (server, c) in &cells {
        let cpu = c.cpu.map_or("-".into(), |t| format!("{:.2} s", t.as_secs_f64()));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} s |",
            c.watchers,
            c.through,
            server,
            c.delivered,
            c.missed,
            c.ms(0.5),
            c.ms(0.99),
            c.ms(1.0),
            cpu,
            c.client_cpu.as_secs_f64()
        );
    }
    println!();
    Ok(())
}

async fn bench_memory(binary: &std::path::Path, dir: &std::path::Path, sustain: Duration) -> Result<(), BoxError> {
    let mut rows = Vec::new();
    for watch_cache in [true, false] {
        eprintln!("memory, watch cache {watch_cache}");
        rows.push(memory::run(binary, dir, watch_cache, 10_000, 1_000, sustain).await?);
    }
    println!("### Memory and start (fresh etcd; 10k objects; 1k watches over HTTP/2; sustained updates)\n");
    println!(
        "| watch cache | RSS idle | exec → ready (10k stored) | exec → cache full | RSS with 10k | + 1k watches | updates | events received | RSS after | HWM |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for m in &rows {
        println!(
            "| {} | {:.1} MiB | {:.0} ms | {} | {:.1} MiB | {:.1} MiB | {} in {:?} | {} | {:.1} MiB | {:.1} MiB |",
            if m.watch_cache { "on" } else { "off" },
            m.idle_mib,
            m.ready_ms,
            m.cache_full_ms.map_or("-".into(), |v| format!("{v:.0} ms")),
            m.with_objects_mib,
            m.with_watchers_mib,
            m.updates,
            m.sustained,
            m.events_received,
            m.after_updates_mib,
            m.hwm_mib
        );
    }
    println!();
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let only = value("--only").unwrap_or_else(|| "requests,lists,fanout,memory".into());
    let sustain = Duration::from_secs(value("--sustain").and_then(|s| s.parse().ok()).unwrap_or(60));
    let targets = value("--targets").unwrap_or_else(|| "cache,direct,embedded".into());
    // At least 1 ms: an interval needs a period.
    let gap = Duration::from_millis(value("--event-gap-ms").and_then(|s| s.parse().ok()).unwrap_or(20).max(1));
    let watchers: Vec<usize> =
        value("--watchers").unwrap_or_else(|| "1000,10000".into()).split(',').filter_map(|n| n.parse().ok()).collect();
    let phases: Vec<&str> = only.split(',').collect();
    let binary = server_binary()?;
    let dir = tempfile::tempdir()?;
    let etcd = EtcdServer::start().await;
    if phases.contains(&"requests") {
        let mut cells = Vec::new();
        bench_raw_etcd(&etcd.endpoint(), &mut cells).await?;
        let data = dir.path().join("data").display().to_string();
        for (key, target, args) in [
            ("cache", "apiserver on etcd, watch cache", vec!["--etcd-servers".to_string(), etcd.endpoint()]),
            (
                "direct",
                "apiserver on etcd, --watch-cache=false",
                vec!["--etcd-servers".to_string(), etcd.endpoint(), "--watch-cache=false".into()],
            ),
            ("embedded", "apiserver on embedded, watch cache", vec!["--data-dir".to_string(), data]),
        ] {
            if !targets.split(',').any(|t| t == key) {
                continue;
            }
            eprintln!("requests: {target}");
            let server = ServerProcess::start(&binary, dir.path(), &args).await?;
            bench_server(target, &server, &mut cells).await;
            // The next server writes the same names: start from an empty namespace.
            let objects = "/apis/backup.extend-k8s.io/v1/namespaces/bench/timeseriesdbbackups";
            send(&server.client, "DELETE", objects, None).await?;
        }
        print_requests(&cells);
    }
    if phases.contains(&"lists") {
        bench_lists(&binary, dir.path(), &etcd).await?;
    }
    if phases.contains(&"fanout") {
        bench_fanout(&binary, dir.path(), &etcd, &watchers, gap).await?;
    }
    if phases.contains(&"memory") {
        bench_memory(&binary, dir.path(), sustain).await?;
    }
    Ok(())
}
