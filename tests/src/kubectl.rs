//! The real `kubectl` (from `$KUBECTL`, else `PATH`) against a test server: `--kubeconfig` and a per-server
//! `--cache-dir`, run through tokio::process with a timeout. A missing kubectl fails the test; it never skips.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::STEP_TIMEOUT;

const NOT_FOUND: &str = "kubectl not found: install kubectl (v1.32 or newer) on PATH or set $KUBECTL; the \
                         end-to-end tests drive the real kubectl";

/// Runs kubectl with one kubeconfig and cache directory.
pub struct Kubectl {
    binary: PathBuf,
    kubeconfig: PathBuf,
    cache_dir: PathBuf,
}

/// What a finished kubectl run printed.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    /// The exit code (None when kubectl was killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    /// kubectl for `kubeconfig`, caching discovery under `dir`.
    pub fn new(kubeconfig: PathBuf, dir: &Path) -> Self {
        Self { binary: find_kubectl(), kubeconfig, cache_dir: dir.join("kubectl-cache") }
    }

    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Run `kubectl <args>` with `stdin` and extra environment variables; bounded by [`STEP_TIMEOUT`].
    pub async fn run_with(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
        let mut child = self.command(args, env).spawn().unwrap_or_else(|e| panic!("{NOT_FOUND} ({e})"));
        let mut input = child.stdin.take().expect("kubectl's stdin");
        input.write_all(stdin.as_bytes()).await.expect("write kubectl's stdin");
        drop(input);
        let out = tokio::time::timeout(STEP_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within {STEP_TIMEOUT:?}"))
            .expect("wait for kubectl");
        Output {
            success: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, "", &[]).await
    }

    /// Run and insist on success; its stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        self.run(args).await.expect_success(args)
    }

    /// Run with `stdin` and insist on success; its stdout.
    pub async fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        self.run_with(args, stdin, &[]).await.expect_success(args)
    }

    /// Run and insist on failure; its stderr.
    pub async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(!out.success, "kubectl {args:?} should have failed; stdout:\n{}", out.stdout);
        out.stderr
    }

    /// Start a long-running kubectl (e.g. `get -w`); it is killed when dropped.
    pub fn spawn(&self, args: &[&str]) -> Running {
        let mut child = self.command(args, &[]).spawn().unwrap_or_else(|e| panic!("{NOT_FOUND} ({e})"));
        let stdout = child.stdout.take().expect("kubectl's stdout");
        Running { child, lines: BufReader::new(stdout).lines() }
    }
}

impl Output {
    /// Panic (showing the output) unless kubectl succeeded; its stdout.
    pub fn expect_success(self, args: &[&str]) -> String {
        assert!(self.success, "kubectl {args:?} failed:\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self.stdout
    }
}

/// A running kubectl whose output is read line by line.
pub struct Running {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Running {
    /// The next line of output, or None when kubectl ended; panics when none comes within `timeout`.
    pub async fn next_line(&mut self, timeout: Duration) -> Option<String> {
        tokio::time::timeout(timeout, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("kubectl printed no line within {timeout:?}"))
            .expect("read kubectl's output")
    }

    /// Read lines until one contains every one of `words`; the lines read. Panics at the end of the output or
    /// after `timeout`.
    pub async fn until(&mut self, words: &[&str], timeout: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let line = match tokio::time::timeout(left, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(Ok(None)) | Ok(Err(_)) => {
                    panic!("kubectl ended before printing a line with {words:?}; it printed:\n{}", seen.join("\n"))
                }
                Err(_) => panic!(
                    "kubectl printed no line with {words:?} within {timeout:?}; it printed:\n{}",
                    seen.join("\n")
                ),
            };
            let found = words.iter().all(|w| line.contains(w));
            seen.push(line);
            if found {
                return seen;
            }
        }
    }

    /// Stop kubectl.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn find_kubectl() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBECTL") {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join("kubectl")).find(|p| p.is_file()))
        .unwrap_or_else(|| panic!("{NOT_FOUND}"))
}
