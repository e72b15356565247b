//! Test support (feature `testing`): a throw-away etcd server for this crate's tests, other crates' tests and the
//! storage benchmark.
//!
//! [`EtcdServer::start`] runs the `etcd` binary (from `$ETCD_BIN`, else `PATH`) on free loopback ports with a
//! temporary data directory ([`EtcdServer::start_tls`]: serving TLS, requiring client certificates); it panics
//! when etcd is missing or does not become healthy, so etcd tests never skip.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::etcd::EtcdConfig;

const NOT_FOUND: &str =
    "etcd not found on PATH: install Debian's etcd-server (apt-get install etcd-server) — .ci/run does this";
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// PEM files of an etcd that serves TLS and requires client certificates signed by `ca`.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One single-member etcd on 127.0.0.1, killed (and its data removed) when dropped.
pub struct EtcdServer {
    binary: PathBuf,
    dir: tempfile::TempDir,
    tls: Option<EtcdTls>,
    client_port: u16,
    peer_port: u16,
    /// Plain HTTP `/health` (and metrics), whatever the client URL's TLS.
    metrics_port: u16,
    child: Option<Child>,
}

impl EtcdServer {
    /// Start etcd and wait until it is healthy (at most 10 s). Panics when it cannot.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Start etcd serving TLS with `tls.cert`/`tls.key` and requiring client certificates signed by `tls.ca`.
    pub async fn start_tls(tls: EtcdTls) -> Self {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<EtcdTls>) -> Self {
        let binary = find_etcd();
        let dir = tempfile::Builder::new().prefix("etcd-test-").tempdir().expect("create a temporary directory");
        let mut server = Self { binary, dir, tls, client_port: 0, peer_port: 0, metrics_port: 0, child: None };
        let mut failure = String::new();
        // A free port can be taken by someone else before etcd binds it: try other ports.
        for _ in 0..3 {
            [server.client_port, server.peer_port, server.metrics_port] = free_ports();
            let _ = std::fs::remove_dir_all(server.dir.path().join("data"));
            match server.launch().await {
                Ok(()) => return server,
                Err(e) => failure = e,
            }
        }
        panic!("etcd did not start: {failure}");
    }

    /// The client URL, e.g. `http://127.0.0.1:40123` (`https://` with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// A configuration for this server with `prefix`, no periodic compaction and short timeouts (2 s to connect,
    /// 5 s per request), so tests see an unreachable etcd quickly.
    pub fn config(&self, prefix: &str) -> EtcdConfig {
        EtcdConfig {
            prefix: prefix.to_string(),
            compaction_interval: Duration::ZERO,
            dial_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            ..EtcdConfig::new([self.endpoint()])
        }
    }

    /// etcd's Prometheus metrics as text (plain HTTP on its metrics port), e.g. to read
    /// `etcd_debugging_mvcc_watcher_total`. Panics when etcd does not answer within 5 s.
    pub async fn metrics(&self) -> String {
        let port = self.metrics_port;
        let fetch = async move {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
            let request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut response = String::new();
            stream.read_to_string(&mut response).await.ok()?;
            Some(response)
        };
        tokio::time::timeout(Duration::from_secs(5), fetch).await.ok().flatten().expect("etcd's /metrics")
    }

    /// One metric's value from [`Self::metrics`] (the first sample of that name).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| {
                let rest = line.strip_prefix(name)?;
                let value = rest.strip_prefix(' ').or_else(|| rest.split_once("} ").map(|(_, v)| v))?;
                value.trim().parse().ok()
            })
            .unwrap_or_else(|| panic!("etcd has no metric {name}"))
    }

    /// The etcd process's id while it runs (to read its CPU time in a benchmark, or for harnesses that must kill
    /// it at exit).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The temporary directory holding etcd's data and log (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kill etcd (as a crash would); the data directory stays.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
    }

    /// Stop etcd if it runs, then start it again on the same ports and data. Panics when it does not come back.
    pub async fn restart(&mut self) {
        self.stop().await;
        if let Err(e) = self.launch().await {
            panic!("etcd did not restart: {e}");
        }
    }

    async fn launch(&mut self) -> Result<(), String> {
        let log_path = self.dir.path().join("etcd.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let stderr = log.try_clone().map_err(|e| e.to_string())?;
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = Command::new(&self.binary);
        if let Some(tls) = &self.tls {
            command
                .arg(format!("--cert-file={}", tls.cert.display()))
                .arg(format!("--key-file={}", tls.key.display()))
                .arg(format!("--trusted-ca-file={}", tls.ca.display()))
                .arg("--client-cert-auth");
        }
        let child = command
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg(format!("--listen-metrics-urls=http://127.0.0.1:{}", self.metrics_port))
            // Progress notifications every second to idle watches (default 10 min): on etcd before 3.4.31/3.5.13
            // the only ones in order with the events, so a watch cache of a quiet prefix still advances.
            .arg("--experimental-watch-progress-notify-interval=1s")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if healthy(self.metrics_port).await {
                return Ok(());
            }
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                self.stop().await;
                let what = exited.map_or(format!("not healthy within {READY_TIMEOUT:?}"), |s| format!("exited ({s})"));
                return Err(format!("{what}; log:\n{}", tail(&log_path)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `$ETCD_BIN`, else `etcd` on `PATH`.
fn find_etcd() -> PathBuf {
    if let Some(binary) = std::env::var_os("ETCD_BIN") {
        return PathBuf::from(binary);
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join("etcd")).find(|p| is_executable(p)))
        .unwrap_or_else(|| panic!("{NOT_FOUND}"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Distinct free loopback ports, none handed out before in this process. The kernel may give a port that was just
/// released to the next `bind(0)`: without the record, two etcds started at once by parallel tests could be given
/// the same port; one of them would then exit, and its health probe could be answered by the other.
fn free_ports<const N: usize>() -> [u16; N] {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut held = Vec::new();
    let mut ports = Vec::with_capacity(N);
    while ports.len() < N {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port on 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        if !given.contains(&port) {
            given.push(port);
            ports.push(port);
        }
        held.push(listener);
    }
    std::array::from_fn(|i| ports[i])
}

/// Whether etcd's `/health` answers `"health":"true"`.
async fn healthy(port: u16) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        Some(response.contains(r#""health":"true""#))
    };
    tokio::time::timeout(Duration::from_secs(1), probe).await.ok().flatten().unwrap_or(false)
}

fn tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
