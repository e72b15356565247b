//! The server as its own process, for what an in-process server can't show: whether the process survives, its
//! resident memory and CPU time, its log as a pod would keep it, and how it ends on SIGTERM.
//!
//! The binary is `$BACKUP_APISERVER_BIN` (hack/test.sh points it at the release build), else the workspace's
//! `target/release` or `target/debug` build, whichever is newer; a missing binary fails the test with a message.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::http::Http;
use crate::process::ChildProcess;

/// A standalone server process on the in-memory store, killed when dropped.
pub struct ServerProcess {
    child: ChildProcess,
    pub url: String,
    pub ca_pem: String,
    pub token: String,
    pub log: PathBuf,
    dir: tempfile::TempDir,
}

/// The server binary to run.
pub fn server_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("BACKUP_APISERVER_BIN") {
        return PathBuf::from(bin);
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target");
    let built = |profile: &str| {
        let path = target.join(profile).join("backup-apiserver");
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
        Some((modified, path))
    };
    match (built("release"), built("debug")) {
        (Some(r), Some(d)) => std::cmp::max(r, d).1,
        (Some((_, p)), None) | (None, Some((_, p))) => p,
        (None, None) => panic!(
            "no backup-apiserver binary: build it (cargo build -p backup-apiserver, or --release) or set \
             $BACKUP_APISERVER_BIN; hack/test.sh does"
        ),
    }
}

impl ServerProcess {
    /// Start one on the in-memory store with these extra flags (after `--standalone --secure-port 0`).
    pub async fn start(extra: &[&str]) -> Self {
        let mut args = vec!["--in-memory"];
        args.extend_from_slice(extra);
        Self::start_with(&args).await
    }

    /// Start one whose flags (after `--standalone --secure-port 0`) choose the store, e.g. `--data-dir D`.
    pub async fn start_with(extra: &[&str]) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::Builder::new().prefix("backup-proc-").tempdir().expect("a temporary directory");
        let kubeconfig = dir.path().join("kubeconfig");
        let log = dir.path().join("server.log");
        let mut command = Command::new(server_binary());
        command
            .args(["--standalone", "--secure-port", "0", "--write-kubeconfig"])
            .arg(&kubeconfig)
            .args(extra)
            .current_dir(dir.path())
            .stdin(Stdio::null());
        let mut child = ChildProcess::spawn("backup-apiserver", command, &log);
        let deadline = Instant::now() + Duration::from_secs(30);
        let text = loop {
            if let Ok(text) = std::fs::read_to_string(&kubeconfig)
                && text.contains("token:")
            {
                break text;
            }
            if let Some(status) = child.exited() {
                panic!("backup-apiserver exited ({status}) before serving:\n{}", child.log_tail(30));
            }
            assert!(Instant::now() < deadline, "backup-apiserver did not start in 30 s:\n{}", child.log_tail(30));
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("no {key} in the kubeconfig:\n{text}"))
        };
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD
            .decode(field("certificate-authority-data:"))
            .expect("the kubeconfig's CA is base64");
        let ca_pem = String::from_utf8(ca).expect("the CA is PEM");
        Self { url: field("server:"), token: field("token:"), ca_pem, log, child, dir }
    }

    /// A kube client for this server with `token` (or none); no retries, so every answer is seen as it is.
    pub fn client_with_token(&self, token: Option<&str>) -> kube::Client {
        crate::client_for(&self.url, &self.ca_pem, token)
    }

    /// Raw HTTPS as the admin.
    pub fn http(&self) -> Http {
        Http::new(self.client_with_token(Some(&self.token)))
    }

    /// Raw HTTPS without credentials.
    pub fn anonymous(&self) -> Http {
        Http::new(self.client_with_token(None))
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        self.url.trim_start_matches("https://").to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Resident memory in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        proc_status(self.pid(), "VmRSS:")
    }

    /// Peak resident memory in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status(self.pid(), "VmHWM:")
    }

    /// CPU time used so far (user + system).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("/proc/<pid>/stat");
        // Fields after the command name (which is in parentheses): utime and stime are the 12th and 13th.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
        // SAFETY: sysconf(_SC_CLK_TCK) reads a constant of the system.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        self.child.exited().is_none()
    }

    /// Set the process's soft open-files limit (`prlimit(2)`), as a container's ulimit would (capped by the hard
    /// limit); returns the previous soft limit.
    pub fn set_open_files_limit(&self, n: u64) -> u64 {
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid");
        let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: prlimit(2) reading the limit of a child this harness started.
        let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
        assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
        let limit = libc::rlimit { rlim_cur: n.min(old.rlim_max), rlim_max: old.rlim_max };
        // SAFETY: as above, setting a soft limit within the hard one.
        let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
        assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
        old.rlim_cur
    }

    /// What the server logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send `signal` (e.g. `libc::SIGTERM`) to the server.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid");
        // SAFETY: kill(2) with the pid of the child this harness started.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// Wait (bounded) for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.exited() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within {within:?}:\n{}", self.child.log_tail(30));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `TCP_NODELAY` of each of the server's TCP sockets whose peer is one of `peers`, read from the server's own
    /// sockets: each is duplicated into this process with `pidfd_getfd(2)` (Linux 5.6; allowed to the parent of the
    /// process) and asked with `getsockopt(2)`. Panics, saying why, when the kernel refuses.
    pub fn nodelay_of_connections_from(&self, peers: &[SocketAddr]) -> Vec<(SocketAddr, bool)> {
        use std::os::fd::{FromRawFd, OwnedFd};
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid");
        // SAFETY: pidfd_open(2) of the child this harness started; the result is checked.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        assert!(pidfd >= 0, "pidfd_open: {} (Linux 5.3 or later needed)", std::io::Error::last_os_error());
        // SAFETY: a new descriptor that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
        let mut found = Vec::new();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc/<pid>/fd");
        for entry in fds.flatten() {
            let is_socket = std::fs::read_link(entry.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"));
            let Some(target) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            if !is_socket {
                continue;
            }
            // SAFETY: pidfd_getfd(2) with a pidfd this function owns; the result is checked.
            let fd =
                unsafe { libc::syscall(libc::SYS_pidfd_getfd, std::os::fd::AsRawFd::as_raw_fd(&pidfd), target, 0) };
            assert!(
                fd >= 0,
                "pidfd_getfd: {} (Linux 5.6 or later, and ptrace rights over the server, are needed)",
                std::io::Error::last_os_error()
            );
            // SAFETY: a new descriptor (a duplicate of the server's socket) that nothing else owns.
            let socket = std::net::TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            // Not a connected TCP socket (the listener, a Unix socket): no peer.
            let Ok(peer) = socket.peer_addr() else { continue };
            if peers.contains(&peer) {
                found.push((peer, socket.nodelay().expect("getsockopt(TCP_NODELAY)")));
            }
        }
        found
    }

    /// The temporary directory of this server (kubeconfig, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn proc_status(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix(key).map(|v| v.trim().trim_end_matches(" kB").to_string())))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
