//! Lists of 1k and 10k objects (one namespace each) at concurrency 1, with resourceVersion unset (a consistent
//! read) and "0", and gzip-encoded as kubectl and Go clients ask for them: latency, the server's CPU and etcd's per
//! list; beside raw etcd-client ranges of the same keys.

use std::time::{Duration, Instant};

use super::BoxError;
use super::process::{ServerProcess, cpu_time};

const LISTS: usize = 200;
const LIST_TIME: Duration = Duration::from_secs(15);

/// One list cell.
pub struct ListCell {
    pub from: String,
    pub objects: usize,
    pub rv: &'static str,
    pub lists: usize,
    /// Sorted, ms.
    latencies: Vec<f64>,
    pub server_cpu_ms: Option<f64>,
    pub etcd_cpu_ms: f64,
}

impl ListCell {
    pub fn ms(&self, p: f64) -> String {
        let n = self.latencies.len();
        let at = ((n as f64 * p) as usize).min(n.saturating_sub(1));
        self.latencies.get(at).map_or("-".into(), |v| format!("{v:.2}"))
    }
}

fn cell(from: String, objects: usize, rv: &'static str, mut latencies: Vec<f64>) -> ListCell {
    latencies.sort_by(f64::total_cmp);
    ListCell { from, objects, rv, lists: latencies.len(), latencies, server_cpu_ms: None, etcd_cpu_ms: 0.0 }
}

/// Lists of namespace `ns` (holding `objects` objects) through `server`.
pub async fn through_server(
    name: &str,
    server: &ServerProcess,
    etcd_pid: u32,
    ns: &str,
    objects: usize,
    rv: &'static str,
    gzip: bool,
) -> Result<ListCell, BoxError> {
    let query = if rv.is_empty() { String::new() } else { format!("?resourceVersion={rv}") };
    let path = format!("/apis/backup.extend-k8s.io/v1/namespaces/{ns}/timeseriesdbbackups{query}");
    // One list first, so that the cell does not count a cold cache or connection.
    let (code, body) = server.get_encoded(&path, gzip).await?;
    let least = if gzip { objects * 10 } else { objects * 100 };
    if code != 200 || body.len() < least {
        return Err(format!("GET {path}: {code}, {} bytes", body.len()).into());
    }
    let (cpu, etcd_cpu) = (server.cpu(), cpu_time(etcd_pid));
    let deadline = Instant::now() + LIST_TIME;
    let mut latencies = Vec::new();
    while latencies.len() < LISTS && Instant::now() < deadline {
        let began = Instant::now();
        server.get_encoded(&path, gzip).await?;
        latencies.push(began.elapsed().as_secs_f64() * 1e3);
    }
    let n = latencies.len().max(1) as f64;
    let mut cell = cell(name.to_string(), objects, rv, latencies);
    cell.server_cpu_ms = Some(server.cpu().saturating_sub(cpu).as_secs_f64() * 1e3 / n);
    cell.etcd_cpu_ms = cpu_time(etcd_pid).saturating_sub(etcd_cpu).as_secs_f64() * 1e3 / n;
    Ok(cell)
}

/// Ranges over the keys of namespace `ns` straight from etcd (what the server would read without its cache).
pub async fn through_etcd(endpoint: &str, etcd_pid: u32, ns: &str, objects: usize) -> Result<ListCell, BoxError> {
    let client = etcd_client::Client::connect([endpoint], None).await?;
    let kv = client.kv_client().max_decoding_message_size(i32::MAX as usize);
    let prefix = format!("/registry/backup.extend-k8s.io/timeseriesdbbackups/{ns}/");
    let options = || etcd_client::GetOptions::new().with_prefix();
    let etcd_cpu = cpu_time(etcd_pid);
    let deadline = Instant::now() + LIST_TIME;
    let mut latencies = Vec::new();
    while latencies.len() < LISTS && Instant::now() < deadline {
        let began = Instant::now();
        let got = kv.clone().get(prefix.as_str(), Some(options())).await?.kvs().len();
        latencies.push(began.elapsed().as_secs_f64() * 1e3);
        if got != objects {
            return Err(format!("etcd returned {got} of {objects} objects").into());
        }
    }
    let n = latencies.len().max(1) as f64;
    let mut cell = cell("raw etcd-client range".into(), objects, "-", latencies);
    cell.etcd_cpu_ms = cpu_time(etcd_pid).saturating_sub(etcd_cpu).as_secs_f64() * 1e3 / n;
    Ok(cell)
}
