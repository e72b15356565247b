//! The server under test as a process of its own: started from the release binary (standalone, on the bench's
//! etcd or the embedded store), read from /proc (CPU time, resident memory and its high-water mark), asked for
//! `/readyz` and `/metrics`, and stopped when dropped (SIGTERM, as a pod is stopped, so that a build instrumented
//! for profile-guided optimization writes its profile; SIGKILL after 10 s).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use super::BoxError;

/// The server process, stopped on drop.
pub struct ServerProcess {
    child: Child,
    /// HTTP/1.1 with a pool of connections, as kubectl and client-go's REST client use it.
    pub client: kube::Client,
    pub kubeconfig: PathBuf,
    /// From the exec to the first `/readyz` 200.
    pub ready_after: Duration,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: a signal to our own child, which has not been reaped (the pid is still ours).
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// Start `binary` with `args` (the store, `--watch-cache=false`…) and wait until `/readyz` answers 200 (20 s
    /// at most).
    pub async fn start(binary: &Path, dir: &Path, args: &[String]) -> Result<Self, BoxError> {
        let kubeconfig = dir.join("bench.kubeconfig");
        let _ = std::fs::remove_file(&kubeconfig);
        let began = Instant::now();
        let child = Command::new(binary)
            .args(["--standalone", "--secure-port", "0", "--write-kubeconfig"])
            .arg(&kubeconfig)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let deadline = began + Duration::from_secs(20);
        // The kubeconfig appears once the server listens: poll it, then /readyz, every 2 ms.
        let client = loop {
            if Instant::now() > deadline {
                return Err("the server did not write its kubeconfig within 20 s".into());
            }
            if let Ok(kc) = kube::config::Kubeconfig::read_from(&kubeconfig)
                && let Ok(config) = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await
            {
                break kube::Client::try_from(config)?;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let mut server = Self { child, client, kubeconfig, ready_after: Duration::ZERO };
        loop {
            if Instant::now() > deadline {
                return Err("the server was not ready within 20 s".into());
            }
            if server.get("/readyz").await.is_ok_and(|(code, _)| code == 200) {
                server.ready_after = began.elapsed();
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// GET `path`: the status and body.
    pub async fn get(&self, path: &str) -> Result<(u16, bytes::Bytes), BoxError> {
        self.get_encoded(path, false).await
    }

    /// GET `path`, with `Accept-Encoding: gzip` when `gzip` (as kubectl and Go clients ask): the status and the
    /// body as sent (not decompressed).
    pub async fn get_encoded(&self, path: &str, gzip: bool) -> Result<(u16, bytes::Bytes), BoxError> {
        let mut req = http::Request::builder().uri(path);
        if gzip {
            req = req.header(http::header::ACCEPT_ENCODING, "gzip");
        }
        let req = req.body(kube::client::Body::empty())?;
        let resp = self.client.send(req).await?;
        let code = resp.status().as_u16();
        Ok((code, resp.into_body().collect().await?.to_bytes()))
    }

    /// The first sample of `name` in `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let Ok((_, body)) = self.get("/metrics").await else { return 0.0 };
        let text = String::from_utf8_lossy(&body);
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|line| {
                let rest = line.strip_prefix(name)?;
                let value = rest.strip_prefix(' ').or_else(|| rest.split_once("} ").map(|(_, v)| v))?;
                value.trim().parse().ok()
            })
            .unwrap_or(0.0)
    }

    /// Wait until the metric `name` is at least `value` (at most `limit`); how long that took.
    pub async fn wait_metric(&self, name: &str, value: f64, limit: Duration) -> Option<Duration> {
        let began = Instant::now();
        while began.elapsed() < limit {
            if self.metric(name).await >= value {
                return Some(began.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }

    pub fn cpu(&self) -> Duration {
        cpu_time(self.pid())
    }

    /// Resident memory in MiB.
    pub fn rss_mib(&self) -> f64 {
        status_mib(self.pid(), "VmRSS:")
    }

    /// The high-water mark of resident memory in MiB.
    pub fn hwm_mib(&self) -> f64 {
        status_mib(self.pid(), "VmHWM:")
    }
}

/// User plus system CPU time of a process, from /proc/<pid>/stat (clock ticks of 10 ms).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// A `kB` line of /proc/<pid>/status in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
