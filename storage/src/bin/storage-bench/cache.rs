//! The watch cache's part of storage-bench: watch fan-out to 1,000 and 10,000 watchers, lists of 1k and 10k
//! objects from the cache against EtcdStorage and raw etcd-client, and the memory the cache takes for 10k
//! objects. Loopback only; every loop bounded in count and time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backup_storage::cacher::{CachedPrefix, Cacher, CacherConfig, Freshness};
use backup_storage::etcd::EtcdStorage;
use backup_storage::testing::EtcdServer;
use backup_storage::{ListOptions, Storage};
use bytes::Bytes;
use etcd_client::{GetOptions, KvClient};
use futures::StreamExt;

use super::{BoxError, PREFIX, VALUE_BYTES, range_end};

/// Events written per fan-out cell, one every `EVENT_GAP`.
const FANOUT_EVENTS: usize = 100;
const EVENT_GAP: Duration = Duration::from_millis(20);
const FANOUT_TIMEOUT: Duration = Duration::from_secs(120);
/// Lists per list cell (or `LIST_TIME`, whichever ends first).
const LISTS: usize = 200;
const LIST_TIME: Duration = Duration::from_secs(10);

/// Run every cache cell; the markdown to print.
pub async fn bench(etcd: &EtcdServer, kv: &KvClient) -> Result<String, BoxError> {
    let storage: Arc<dyn Storage> = Arc::new(EtcdStorage::connect(&etcd.config(PREFIX)).await?);
    let mut out = String::new();
    out += "\n### Lists (concurrency 1; CPU per list: this process, and etcd's)\n\n";
    out += "| objects | from | lists | p50 ms | p99 ms | our CPU ms/list | etcd CPU ms/list |\n|---:|---|---:|---:|---:|---:|---:|\n";
    for objects in [1_000, 10_000] {
        out += &lists(etcd, kv, storage.clone(), objects).await?;
    }
    out += "\n### Watch fan-out (one write every 20 ms, 100 writes; latency from the create's acknowledgement)\n\n";
    out += "| watchers | through | events delivered | missed | p50 ms | p99 ms | max ms |\n|---:|---|---:|---:|---:|---:|---:|\n";
    for watchers in [1_000, 10_000] {
        eprintln!("fan-out to {watchers} watchers through the cache");
        out += &fanout(storage.clone(), watchers, true).await?;
    }
    eprintln!("fan-out to 1000 etcd watches (no cache)");
    out += &fanout(storage.clone(), 1_000, false).await?;

    Ok(out)
}

/// Create `n` objects under `prefix` with 32 concurrent writers.
async fn fill(storage: &Arc<dyn Storage>, prefix: &str, n: usize) -> Result<(), BoxError> {
    let value = Bytes::from(vec![b'x'; VALUE_BYTES]);
    let tasks: Vec<_> = (0..32)
        .map(|w| {
            let (storage, value, prefix) = (storage.clone(), value.clone(), prefix.to_string());
            tokio::spawn(async move {
                for i in (w..n).step_by(32) {
                    storage.create(&format!("{prefix}ns{}/k{i:06}", i % 10), value.clone()).await?;
                }
                Ok::<_, BoxError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// `watchers` watches of one prefix (through a cache, or each its own etcd watch); one create every 20 ms.
async fn fanout(storage: Arc<dyn Storage>, watchers: usize, cached: bool) -> Result<String, BoxError> {
    let prefix = format!("/bench-cache/fanout{watchers}{}/", if cached { "c" } else { "e" });
    let cacher = Arc::new(Cacher::new(storage.clone(), CacherConfig::new([CachedPrefix::new(prefix.clone())]))?);
    if !cacher.wait_ready(Duration::from_secs(10)).await {
        return Err("the cache did not list within 10 s".into());
    }
    let through: Arc<dyn Storage> = if cached { cacher.clone() } else { storage.clone() };
    let start = storage.current_revision().await? + 1;
    // Acknowledgement time of each write (µs since `epoch`, 0 = not yet), by revision - start.
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..FANOUT_EVENTS * 2).map(|_| AtomicU64::new(0)).collect());
    let epoch = Instant::now();
    let mut tasks = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let mut stream = through.watch(&prefix, start).await?;
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(FANOUT_EVENTS);
            while latencies.len() < FANOUT_EVENTS {
                let Ok(Some(Ok(event))) = tokio::time::timeout(FANOUT_TIMEOUT, stream.next()).await else { break };
                let now = epoch.elapsed().as_micros() as u64;
                let index = usize::try_from(event.revision() - start).unwrap_or(usize::MAX);
                let ack = acked.get(index).map_or(0, |a| a.load(Ordering::Acquire));
                latencies.push(if ack == 0 { 0 } else { now.saturating_sub(ack) as u32 });
            }
            latencies
        }));
    }
    let value = Bytes::from(vec![b'x'; VALUE_BYTES]);
    let mut ticker = tokio::time::interval(EVENT_GAP);
    for i in 0..FANOUT_EVENTS {
        ticker.tick().await;
        let kv = storage.create(&format!("{prefix}ns/k{i:04}"), value.clone()).await?;
        let index = usize::try_from(kv.mod_revision - start)?;
        if let Some(slot) = acked.get(index) {
            slot.store(epoch.elapsed().as_micros().max(1) as u64, Ordering::Release);
        }
    }
    let mut latencies = Vec::with_capacity(watchers * FANOUT_EVENTS);
    for task in tasks {
        latencies.extend(task.await?);
    }
    latencies.sort_unstable();
    let delivered = latencies.len();
    let pick = |p: f64| latencies.get(((delivered as f64 * p) as usize).min(delivered.saturating_sub(1))).copied();
    let ms = |v: Option<u32>| v.map_or("-".into(), |v| format!("{:.2}", f64::from(v) / 1e3));
    let metrics = cacher.metrics().snapshot();
    eprintln!("  cache metrics: {metrics:?}");
    Ok(format!(
        "| {watchers} | {} | {delivered} | {} | {} | {} | {} |\n",
        if cached { "watch cache (1 etcd watch)" } else { "EtcdStorage (1 etcd watch each)" },
        watchers * FANOUT_EVENTS - delivered,
        ms(pick(0.50)),
        ms(pick(0.99)),
        ms(latencies.last().copied()),
    ))
}

/// CPU seconds (user + system) of process `pid` (`self` for this one), from /proc.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces): state is the 3rd field, utime the 14th, stime the 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Resident memory of this process in MiB.
pub fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[derive(Clone, Copy)]
enum From {
    Raw,
    Etcd,
    CacheConsistent,
    CacheAny,
}

/// Lists of `objects` objects, each way; the table rows. Also the cache's memory for them.
async fn lists(
    etcd: &EtcdServer,
    kv: &KvClient,
    storage: Arc<dyn Storage>,
    objects: usize,
) -> Result<String, BoxError> {
    let prefix = format!("/bench-cache/list{objects}/");
    eprintln!("writing {objects} objects");
    fill(&storage, &prefix, objects).await?;
    let rss_before = rss_mib();
    let started = Instant::now();
    let cacher = Cacher::new(storage.clone(), CacherConfig::new([CachedPrefix::new(prefix.clone())]))?;
    if !cacher.wait_ready(Duration::from_secs(30)).await {
        return Err("the cache did not list within 30 s".into());
    }
    let ready_ms = started.elapsed().as_secs_f64() * 1e3;
    let rss_after = rss_mib();
    let etcd_pid = etcd.pid().map(|p| p.to_string()).unwrap_or_default();
    // A list of 10k objects is over tonic's 4 MiB default message limit.
    let kv = kv.clone().max_decoding_message_size(i32::MAX as usize);
    let mut out = String::new();
    for from in [From::Raw, From::Etcd, From::CacheConsistent, From::CacheAny] {
        let (name, count) = match from {
            From::Raw => ("raw etcd-client range", LISTS),
            From::Etcd => ("EtcdStorage", LISTS),
            From::CacheConsistent => ("cache, consistent (rv unset)", LISTS * 5),
            From::CacheAny => ("cache, not older than 0 (rv=0)", LISTS * 5),
        };
        eprintln!("{name}: lists of {objects}");
        let (cpu_ours, cpu_etcd) = (cpu_seconds("self"), cpu_seconds(&etcd_pid));
        let deadline = Instant::now() + LIST_TIME;
        let mut latencies = Vec::new();
        while latencies.len() < count && Instant::now() < deadline {
            let began = Instant::now();
            let n = match from {
                From::Raw => {
                    let options = GetOptions::new().with_range(format!("{PREFIX}{}", range_end(&prefix)));
                    kv.clone().get(format!("{PREFIX}{prefix}"), Some(options)).await?.kvs().len()
                }
                From::Etcd => storage.list(&prefix, ListOptions::default()).await?.items.len(),
                From::CacheConsistent => {
                    cacher.list_cached(&prefix, ListOptions::default(), Freshness::Consistent).await?.items.len()
                }
                From::CacheAny => {
                    cacher.list_cached(&prefix, ListOptions::default(), Freshness::NotOlderThan(0)).await?.items.len()
                }
            };
            latencies.push(began.elapsed());
            if n != objects {
                return Err(format!("{name}: listed {n} objects, expected {objects}").into());
            }
        }
        let lists = latencies.len() as f64;
        let (ours, theirs) = (cpu_seconds("self") - cpu_ours, cpu_seconds(&etcd_pid) - cpu_etcd);
        latencies.sort();
        let pick = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        out += &format!(
            "| {objects} | {name} | {} | {:.2} | {:.2} | {:.3} | {:.3} |\n",
            latencies.len(),
            pick(0.50).as_secs_f64() * 1e3,
            pick(0.99).as_secs_f64() * 1e3,
            ours * 1e3 / lists,
            theirs * 1e3 / lists,
        );
    }
    let metrics = cacher.metrics().snapshot();
    out += &format!(
        "\nCache of {objects} objects ({VALUE_BYTES} B values): ready {ready_ms:.0} ms after construction; \
         {:.1} MiB of objects counted; process RSS {rss_before:.1} → {rss_after:.1} MiB \
         (+{:.1} MiB); backend fallbacks {}.\n\n",
        metrics.object_bytes as f64 / 1048576.0,
        rss_after - rss_before,
        metrics.backend_fallbacks,
    );
    if objects < 10_000 {
        out += "| objects | from | lists | p50 ms | p99 ms | our CPU ms/list | etcd CPU ms/list |\n|---:|---|---:|---:|---:|---:|---:|\n";
    }
    Ok(out)
}
