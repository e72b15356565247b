//! Child processes of the real-cluster harness (etcd, kube-apiserver, kube-controller-manager) and the temporary
//! directories they use: nothing outlives the test binary.
//!
//! - [`ChildProcess`] kills its process by pid when dropped.
//! - A cluster shared by a whole test binary lives in a `static`, which Rust never drops: its pids and directories
//!   are [registered](register_pid) and an `atexit` hook kills and removes them when the binary exits.
//! - Processes started here also get `PR_SET_PDEATHSIG(SIGKILL)`: the kernel kills them when the thread that
//!   started them ends, which covers a test binary killed by a signal (Ctrl-C), where no hook runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, Once};

static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static HOOK: Once = Once::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

extern "C" fn at_exit() {
    let pids: Vec<u32> = lock(&PIDS).drain(..).collect();
    for pid in &pids {
        kill(*pid);
    }
    for pid in pids {
        reap(pid);
    }
    for dir in lock(&DIRS).drain(..) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn install_hook() {
    // SAFETY: `at_exit` is an `extern "C" fn()` that never unwinds (it only kills processes and removes files).
    HOOK.call_once(|| unsafe {
        libc::atexit(at_exit);
    });
}

fn kill(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    // SAFETY: kill(2) with a pid this harness started and a valid signal number.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Wait for a killed child, so that it does not linger as a zombie until this process is gone.
fn reap(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    // SAFETY: waitpid(2) on a child of this process, without a status pointer.
    unsafe {
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

/// Kill `pid` when the test binary exits (unless [`unregister_pid`] comes first).
pub fn register_pid(pid: u32) {
    install_hook();
    lock(&PIDS).push(pid);
}

/// The process ended (or was killed) already: nothing to do at exit.
pub fn unregister_pid(pid: u32) {
    lock(&PIDS).retain(|p| *p != pid);
}

/// Remove `dir` when the test binary exits.
pub fn remove_at_exit(dir: &Path) {
    install_hook();
    lock(&DIRS).push(dir.to_path_buf());
}

/// A running child process with its output in a log file; killed (SIGKILL, by pid) when dropped.
pub struct ChildProcess {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ChildProcess {
    /// Start `command` with stdin closed and stdout and stderr appended to `log`. Panics when it cannot start.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Self {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let err = out.try_clone().expect("duplicate the log file");
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: prctl(2) is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot run {name} ({:?}): {e}", command.get_program()));
        register_pid(child.id());
        Self { name: name.to_string(), child, log: log.to_path_buf() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `lines` lines of the process's output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        format!(
            "{} log ({}), last lines:\n{}",
            self.name,
            self.log.display(),
            all[all.len().saturating_sub(lines)..].join("\n")
        )
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        unregister_pid(self.child.id());
    }
}

/// A process stopped with `SIGSTOP` (a server that stops answering: the one failure some tests inject), continued
/// with `SIGCONT` when [resumed](Paused::resume) or dropped.
pub struct Paused {
    pid: libc::pid_t,
}

impl Paused {
    /// Stop process `pid` and wait (at most 10 s) until every thread of it has stopped. `kill(2)` returns before
    /// that: the kernel wakes one thread to begin the group stop, and on a loaded machine the others go on serving
    /// until it runs — a request sent right after `kill` can still be answered.
    pub async fn stop(pid: u32) -> Self {
        let paused = Self { pid: libc::pid_t::try_from(pid).expect("a pid") };
        // SAFETY: kill(2) with the pid of a child this test started.
        let rc = unsafe { libc::kill(paused.pid, libc::SIGSTOP) };
        assert_eq!(rc, 0, "SIGSTOP {pid}: {}", std::io::Error::last_os_error());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !all_threads_stopped(pid) {
            assert!(std::time::Instant::now() < deadline, "process {pid} did not stop within 10 s");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        paused
    }

    /// Continue the process.
    pub fn resume(self) {}
}

impl Drop for Paused {
    fn drop(&mut self) {
        // SAFETY: kill(2) with the pid of a child this test started (and stopped).
        unsafe { libc::kill(self.pid, libc::SIGCONT) };
    }
}

/// Whether every thread of `pid` is in the stopped state (`T` in `/proc/<pid>/task/<tid>/stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat"))
            .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('T')))
    })
}
