//! storage-bench: create/get/list throughput and latency of the storage backends against raw etcd-client calls
//! (the limit), at concurrency 1, 8 and 32, on loopback with a throw-away etcd (feature `testing`); then the
//! watch cache ([`cache`]): watch fan-out, lists from memory, its memory.
//!
//! `cargo run --release -p backup-storage --features testing --bin storage-bench -- [--ops N] [--seconds S]
//! [--only backends|cache]` (or `hack/bench-storage.sh`). Each cell runs N operations (default 5,000) or S
//! seconds (default 10), whichever ends first. Values are 600 bytes; a list reads 100 keys. Backends take turns
//! cell by cell; at the end the keys are deleted and etcd compacted (etcd 3.4 slows down a lot until deleted keys
//! are compacted).

mod cache;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use backup_storage::embedded::EmbeddedStorage;
use backup_storage::etcd::EtcdStorage;
use backup_storage::testing::EtcdServer;
use backup_storage::{ListOptions, Storage};
use bytes::Bytes;
use etcd_client::{Compare, CompareOp, DeleteOptions, GetOptions, KvClient, Txn, TxnOp};

const CONCURRENCY: [usize; 3] = [1, 8, 32];
const VALUE_BYTES: usize = 600;
const LIST_KEYS: usize = 100;
const PREFIX: &str = "/registry";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Create,
    Get,
    List,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Get => "get",
            Op::List => "list",
        }
    }
}

#[derive(Clone)]
enum Backend {
    /// etcd-client calls shaped like the storage's (create-if-absent txn, get, range): the limit.
    Raw(Box<KvClient>),
    Storage(Arc<dyn Storage>),
}

impl Backend {
    async fn run(&self, op: Op, key: &str, value: &Bytes) -> Result<(), BoxError> {
        match (self, op) {
            (Backend::Raw(kv), Op::Create) => {
                let full = format!("{PREFIX}{key}");
                let txn = Txn::new()
                    .when([Compare::mod_revision(full.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(full, value.to_vec(), None)]);
                kv.clone().txn(txn).await?;
            }
            (Backend::Raw(kv), Op::Get) => {
                kv.clone().get(format!("{PREFIX}{key}"), None).await?;
            }
            (Backend::Raw(kv), Op::List) => {
                let options = GetOptions::new().with_range(format!("{PREFIX}{}", range_end(key)));
                kv.clone().get(format!("{PREFIX}{key}"), Some(options)).await?;
            }
            (Backend::Storage(s), Op::Create) => {
                s.create(key, value.clone()).await?;
            }
            (Backend::Storage(s), Op::Get) => {
                s.get(key).await?;
            }
            (Backend::Storage(s), Op::List) => {
                s.list(key, ListOptions::default()).await?;
            }
        }
        Ok(())
    }
}

fn range_end(prefix: &str) -> String {
    backup_storage::key::prefix_end(prefix)
}

struct Cell {
    backend: &'static str,
    op: Op,
    concurrency: usize,
    ops: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

impl Cell {
    fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

struct Limits {
    ops: usize,
    time: Duration,
    backends: bool,
    cache: bool,
}

/// Run `op` `limits.ops` times (or for `limits.time`) from `concurrency` tasks; key `i` is `keys(i)`.
async fn cell(
    name: &'static str,
    backend: &Backend,
    op: Op,
    concurrency: usize,
    limits: &Limits,
    keys: Arc<dyn Fn(usize) -> String + Send + Sync>,
) -> Result<Cell, BoxError> {
    let next = Arc::new(AtomicUsize::new(0));
    let value = Bytes::from(vec![b'x'; VALUE_BYTES]);
    let deadline = Instant::now() + limits.time;
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (backend, next, keys, value, total) =
                (backend.clone(), next.clone(), keys.clone(), value.clone(), limits.ops);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total || Instant::now() > deadline {
                        return Ok::<_, BoxError>(latencies);
                    }
                    let began = Instant::now();
                    backend.run(op, &keys(i), &value).await?;
                    latencies.push(began.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let percentile =
        |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)));
    Ok(Cell {
        backend: name,
        op,
        concurrency,
        ops: latencies.len(),
        elapsed,
        p50: percentile(0.50).copied().unwrap_or_default(),
        p99: percentile(0.99).copied().unwrap_or_default(),
    })
}

/// Every cell, backends interleaved per (concurrency, op) so that they see the same machine load: for each
/// concurrency, creates of fresh keys, gets of those keys, lists of one 100-key prefix.
async fn bench(backends: &[(&'static str, Backend)], limits: &Limits) -> Result<Vec<Cell>, BoxError> {
    let value = Bytes::from(vec![b'x'; VALUE_BYTES]);
    for (n, (_, backend)) in backends.iter().enumerate() {
        for i in 0..LIST_KEYS {
            backend.run(Op::Create, &format!("/bench/b{n}/list/ns/k{i:03}"), &value).await?;
        }
    }
    let mut cells = Vec::new();
    for concurrency in CONCURRENCY {
        let mut written = vec![0; backends.len()];
        for op in [Op::Create, Op::Get, Op::List] {
            for (n, (name, backend)) in backends.iter().enumerate() {
                eprintln!("{name}: {} at concurrency {concurrency}", op.name());
                let created = written[n].max(1);
                let keys: Arc<dyn Fn(usize) -> String + Send + Sync> = match op {
                    Op::Create => Arc::new(move |i| format!("/bench/b{n}/c{concurrency}/ns/k{i:06}")),
                    Op::Get => Arc::new(move |i| format!("/bench/b{n}/c{concurrency}/ns/k{:06}", i % created)),
                    Op::List => Arc::new(move |_| format!("/bench/b{n}/list/ns/")),
                };
                let result = cell(name, backend, op, concurrency, limits, keys).await?;
                if op == Op::Create {
                    written[n] = result.ops;
                }
                cells.push(result);
            }
        }
    }
    Ok(cells)
}

/// Delete everything the benchmark wrote to etcd and compact, so the next backend starts from a fast etcd.
async fn clean_etcd(kv: &mut KvClient) -> Result<(), BoxError> {
    let start = format!("{PREFIX}/bench/");
    let options = DeleteOptions::new().with_range(format!("{PREFIX}{}", range_end("/bench/")));
    let deleted = kv.delete(start, Some(options)).await?;
    if let (true, Some(header)) = (deleted.deleted() > 0, deleted.header()) {
        kv.compact(header.revision(), None).await?;
    }
    Ok(())
}

fn parse_args() -> Result<Limits, BoxError> {
    let mut limits = Limits { ops: 5000, time: Duration::from_secs(10), backends: true, cache: true };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let number = |v: Option<String>| -> Result<u64, BoxError> { Ok(v.ok_or("missing value")?.parse()?) };
        match arg.as_str() {
            "--ops" => limits.ops = usize::try_from(number(args.next())?)?,
            "--seconds" => limits.time = Duration::from_secs(number(args.next())?),
            "--only" => match args.next().as_deref() {
                Some("backends") => limits.cache = false,
                Some("cache") => limits.backends = false,
                other => return Err(format!("--only backends|cache, not {other:?}").into()),
            },
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: storage-bench [--ops N] [--seconds S] [--only backends|cache]"
                )
                .into());
            }
        }
    }
    Ok(limits)
}

fn print(cells: &[Cell]) {
    println!("| backend | op | concurrency | ops | ops/s | p50 ms | p99 ms | ops/s vs raw etcd |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for c in cells {
        let raw =
            cells.iter().find(|r| r.backend == "raw etcd-client" && r.op == c.op && r.concurrency == c.concurrency);
        let ratio = raw.map_or("-".to_string(), |r| format!("{:.2}", c.per_second() / r.per_second()));
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {} |",
            c.backend,
            c.op.name(),
            c.concurrency,
            c.ops,
            c.per_second(),
            c.p50.as_secs_f64() * 1e3,
            c.p99.as_secs_f64() * 1e3,
            ratio
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let limits = parse_args()?;
    let etcd = EtcdServer::start().await;
    let config = etcd.config(PREFIX);
    let mut kv = etcd_client::Client::connect([etcd.endpoint()], None).await?.kv_client();
    let dir = tempfile::tempdir()?;
    let backends: [(&'static str, Backend); 3] = [
        ("raw etcd-client", Backend::Raw(Box::new(kv.clone()))),
        ("EtcdStorage", Backend::Storage(Arc::new(EtcdStorage::connect(&config).await?))),
        ("EmbeddedStorage (file)", Backend::Storage(Arc::new(EmbeddedStorage::open(dir.path().join("bench.redb"))?))),
    ];
    if limits.backends {
        let mut cells = bench(&backends, &limits).await?;
        clean_etcd(&mut kv).await?;
        cells.sort_by_key(|c| backends.iter().position(|(name, _)| *name == c.backend));
        println!(
            "{} ops or {} s per cell, {VALUE_BYTES} B values, lists of {LIST_KEYS} keys, {} cores, {}",
            limits.ops,
            limits.time.as_secs(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            etcd_version()
        );
        print(&cells);
    }
    if limits.cache {
        let rss = cache::rss_mib();
        let report = cache::bench(&etcd, &kv).await?;
        println!("\n## Watch cache ({}; RSS {rss:.1} MiB before)\n{report}", etcd_version());
    }
    Ok(())
}

fn etcd_version() -> String {
    let binary = std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into());
    std::process::Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "etcd version unknown".into())
}
