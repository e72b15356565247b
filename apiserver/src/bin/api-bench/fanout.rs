//! Watch fan-out: N watchers of one resource through the HTTP server (multiplexed HTTP/2, as informers), or N
//! watches on etcd itself through etcd-client; then 100 creates, one every 20 ms; each event's delivery latency
//! is taken from the create's acknowledgement to its line's arrival at each watcher (an arrival before the
//! writer saw the acknowledgement counts as 0), and events that never arrive are counted as missed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use http_body_util::BodyExt;

use super::h2::{H2, line_resource_version};
use super::process::{ServerProcess, cpu_time};
use super::{BoxError, object};

const EVENTS: usize = 100;
/// How long watchers may take to receive everything after the last create.
const DRAIN: Duration = Duration::from_secs(60);

/// One fan-out cell's figures.
pub struct FanOut {
    pub through: String,
    pub watchers: usize,
    pub delivered: usize,
    pub missed: usize,
    /// Sorted latencies, µs.
    latencies: Vec<u32>,
    /// Server CPU for the whole cell (opening the watches excepted).
    pub cpu: Option<Duration>,
    /// This process's CPU over the same span: the watchers reading and the writer creating.
    pub client_cpu: Duration,
}

impl FanOut {
    pub fn ms(&self, p: f64) -> String {
        let n = self.latencies.len();
        let at = ((n as f64 * p) as usize).min(n.saturating_sub(1));
        self.latencies.get(at).map_or("-".into(), |v| format!("{:.2}", f64::from(*v) / 1e3))
    }
}

/// Acknowledgement times (µs since `epoch`; 0 = not yet) by revision - start.
struct Acks {
    epoch: Instant,
    start: i64,
    at: Vec<AtomicU64>,
}

impl Acks {
    fn new(start: i64) -> Arc<Self> {
        Arc::new(Self { epoch: Instant::now(), start, at: (0..EVENTS * 4).map(|_| AtomicU64::new(0)).collect() })
    }

    fn acked(&self, revision: i64) {
        if let Some(slot) = usize::try_from(revision - self.start).ok().and_then(|i| self.at.get(i)) {
            slot.store(self.epoch.elapsed().as_micros().max(1) as u64, Ordering::Release);
        }
    }

    fn latency(&self, revision: i64) -> u32 {
        let now = self.epoch.elapsed().as_micros() as u64;
        let ack = usize::try_from(revision - self.start).ok().and_then(|i| self.at.get(i));
        match ack.map(|a| a.load(Ordering::Acquire)) {
            Some(ack) if ack > 0 => u32::try_from(now.saturating_sub(ack)).unwrap_or(u32::MAX),
            _ => 0,
        }
    }
}

/// `watchers` watches through the server, in namespace `ns`.
pub async fn through_server(
    server: &ServerProcess,
    watchers: usize,
    ns: &str,
    gap: Duration,
) -> Result<FanOut, BoxError> {
    let h2 = H2::connect(&server.kubeconfig, watchers).await?;
    let collection = format!("/apis/backup.extend-k8s.io/v1/namespaces/{ns}/timeseriesdbbackups");
    let list: serde_json::Value = serde_json::from_slice(&h2.get_body(&format!("{collection}?limit=1")).await?)?;
    let rv: i64 = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").parse()?;
    let acks = Acks::new(rv + 1);
    let path = format!("{collection}?watch=true&resourceVersion={rv}&timeoutSeconds=600");
    let mut tasks = Vec::with_capacity(watchers);
    for chunk in 0..watchers.div_ceil(200) {
        let opened = futures::future::join_all((0..200.min(watchers - chunk * 200)).map(|_| h2.get(&path))).await;
        for resp in opened {
            let body = resp?.into_body();
            let acks = acks.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(EVENTS);
                // One timer for the whole watch (not one per frame): the watchers share the server's cores.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
                let _ = tokio::time::timeout_at(deadline, read_lines(body, &acks, &mut latencies)).await;
                latencies
            }));
        }
    }
    let cpu_before = server.cpu();
    let client_before = cpu_time(std::process::id());
    let writer = server.client.clone();
    let mut ticker = tokio::time::interval(gap);
    for i in 0..EVENTS {
        ticker.tick().await;
        let body = serde_json::to_vec(&object(&format!("fan{watchers}-{i}")))?;
        let req = http::Request::post(collection.as_str())
            .header("content-type", "application/json")
            .body(kube::client::Body::from(body))?;
        let resp = writer.send(req).await?;
        let created: serde_json::Value = serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?;
        let revision: i64 = created["metadata"]["resourceVersion"].as_str().unwrap_or("0").parse()?;
        acks.acked(revision);
    }
    let through = format!("HTTP server, {} HTTP/2 connections", watchers.div_ceil(200));
    let cell = collect(through, watchers, tasks, client_before).await;
    Ok(FanOut { cpu: Some(server.cpu().saturating_sub(cpu_before)), ..cell })
}

/// Read a watch's lines until `EVENTS` have come (or the stream ends), each line's latency into `latencies`: the
/// resourceVersion found by a SIMD search, each line's bytes scanned once, as cheaply as the watchers can be on the
/// cores they share with the server.
async fn read_lines(mut body: hyper::body::Incoming, acks: &Acks, latencies: &mut Vec<u32>) {
    let mut buf = Vec::new();
    while latencies.len() < EVENTS {
        let Some(Ok(frame)) = body.frame().await else { return };
        let Ok(data) = frame.into_data() else { continue };
        buf.extend_from_slice(&data);
        let mut start = 0;
        while let Some(end) = memchr::memchr(b'\n', &buf[start..]) {
            if let Some(revision) = line_resource_version(&buf[start..start + end]) {
                latencies.push(acks.latency(revision));
            }
            start += end + 1;
        }
        buf.drain(..start);
    }
}

/// `watchers` etcd watches through etcd-client (the limit without our server), on a prefix of their own.
pub async fn through_etcd(endpoint: &str, watchers: usize, gap: Duration) -> Result<FanOut, BoxError> {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp, WatchOptions};
    let client = etcd_client::Client::connect([endpoint], None).await?;
    let prefix = format!("/raw-fanout/{watchers}/");
    let start = client.kv_client().get("x", None).await?.header().map_or(0, |h| h.revision()) + 1;
    let acks = Acks::new(start);
    let mut tasks = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let options = WatchOptions::new().with_prefix().with_start_revision(start);
        let mut stream = client.watch_client().watch(prefix.clone(), Some(options)).await?;
        let acks = acks.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(EVENTS);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
            while latencies.len() < EVENTS {
                let Ok(Some(Ok(resp))) = tokio::time::timeout_at(deadline, stream.next()).await else { break };
                for event in resp.events() {
                    if let Some(kv) = event.kv() {
                        latencies.push(acks.latency(kv.mod_revision()));
                    }
                }
            }
            latencies
        }));
    }
    let value = serde_json::to_vec(&object("raw"))?;
    let mut kv = client.kv_client();
    let client_before = cpu_time(std::process::id());
    let mut ticker = tokio::time::interval(gap);
    for i in 0..EVENTS {
        ticker.tick().await;
        let key = format!("{prefix}k{i:04}");
        let txn = Txn::new().when([Compare::mod_revision(key.clone(), CompareOp::Equal, 0)]).and_then([TxnOp::put(
            key,
            value.clone(),
            None,
        )]);
        let resp = kv.txn(txn).await?;
        acks.acked(resp.header().map_or(0, |h| h.revision()));
    }
    Ok(collect("raw etcd-client, one etcd watch each".into(), watchers, tasks, client_before).await)
}

async fn collect(
    through: String,
    watchers: usize,
    tasks: Vec<tokio::task::JoinHandle<Vec<u32>>>,
    client_before: Duration,
) -> FanOut {
    let drained = tokio::time::Instant::now() + DRAIN;
    let mut latencies = Vec::with_capacity(watchers * EVENTS);
    for mut task in tasks {
        match tokio::time::timeout_at(drained, &mut task).await {
            Ok(Ok(l)) => latencies.extend(l),
            _ => task.abort(),
        }
    }
    latencies.sort_unstable();
    let delivered = latencies.len();
    FanOut {
        through,
        watchers,
        delivered,
        missed: watchers * EVENTS - delivered.min(watchers * EVENTS),
        latencies,
        cpu: None,
        client_cpu: cpu_time(std::process::id()).saturating_sub(client_before),
    }
}
