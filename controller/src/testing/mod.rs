//! The test and benchmark harness (feature `testing`): real databases from Debian packages on free loopback ports
//! with temporary directories, the API server in-process, the controller in-process, known datasets and exports to
//! compare.
//!
//! Tests → **harness (this module)** → API server, controller, databases.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

pub mod dataset;
pub mod fake;
pub mod influx;
pub mod moto;
pub mod prometheus;
pub mod proxy;
pub mod s3;
pub mod stack;
pub mod tls;
pub mod victoria;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::http::Http;

/// Panics with the Debian package to install when `binary` is not on PATH.
pub fn require(binary: &str, package: &str) -> PathBuf {
    on_path(binary).unwrap_or_else(|| {
        panic!("`{binary}` not found on PATH: install the Debian package `{package}` (apt-get install {package})")
    })
}

/// Where `binary` is on PATH, if it is.
pub fn on_path(binary: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local address").port()
}

/// A database process, killed when dropped; its output goes to `log`.
pub struct Process {
    pub child: tokio::process::Child,
    pub log: PathBuf,
}

impl Process {
    /// Starts `binary`; on the CPUs listed in `TSDB_TEST_CPUS` (as `taskset -c` takes them) when set, which the
    /// benchmark uses to give a database cores of its own.
    pub fn spawn(binary: &Path, args: &[String], log: PathBuf) -> Process {
        let out = std::fs::File::create(&log).expect("creating a log file");
        let err = out.try_clone().expect("cloning a file handle");
        let mut command = match std::env::var("TSDB_TEST_CPUS") {
            Ok(cpus) => {
                let mut taskset = tokio::process::Command::new("taskset");
                taskset.arg("-c").arg(cpus).arg(binary);
                taskset
            }
            Err(_) => tokio::process::Command::new(binary),
        };
        let child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        Process { child, log }
    }

    /// The end of the process' output, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Waits until `GET url` succeeds, or panics with the log.
    pub async fn wait_ready(&mut self, http: &Http, url: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http.get(url).await.is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{what} exited ({status}) before becoming ready:\n{}", self.log_tail());
            }
            assert!(Instant::now() < deadline, "{what} not ready within 60 s:\n{}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Polls `check` every 100 ms until it returns `Ok`, for at most `timeout`; panics naming `what` and the last state
/// seen (the `Err`) otherwise.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(seen) => {
                assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}; last seen: {seen}")
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A short-timeout client for the harness' own requests.
pub fn http() -> Http {
    Http::plain(Duration::from_secs(30)).expect("an HTTP client")
}
