//! The audit log backend (`--audit-log-path`, `-` for stdout): events are handed to a writer thread through a
//! bounded queue, so a slow disk delays no request — when the queue is full an event is dropped, counted and logged
//! — and written as JSON lines, the file rotated as upstream's (lumberjack): past `--audit-log-maxsize` megabytes it
//! is renamed `<name>-<time>.<ext>` (and gzipped to `….gz` with `--audit-log-compress`), and backups past `--audit-log-maxbackup` or older than `--audit-log-maxage`
//! days are removed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;

use super::event::Event;
use super::queue::EventQueue;

/// Events waiting for the writer before new ones are dropped.
const QUEUE: usize = 10_000;

/// Where and how the log is kept.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A file, or `-` for stdout.
    pub path: PathBuf,
    /// Remove backups older than this many days (0: keep them).
    pub max_age_days: u64,
    /// Keep at most this many backups (0: all).
    pub max_backups: usize,
    /// Rotate past this many megabytes (0: never).
    pub max_size_mb: u64,
    /// Gzip rotated files.
    pub compress: bool,
}

/// The queue to the writer thread.
pub struct AuditLog(EventQueue);

impl AuditLog {
    /// Open the log (failing at start when the file cannot be opened) and start its writer thread.
    pub fn start(config: LogConfig, events: Counter, errors: Counter) -> anyhow::Result<Self> {
        let mut sink = Sink::open(config)?;
        let (queue, mut rx) = EventQueue::new(QUEUE, events, errors.clone(), "log");
        std::thread::Builder::new().name("audit-log".into()).spawn(move || {
            while let Some(event) = rx.blocking_recv() {
                if let Err(e) = sink.write(&event) {
                    errors.inc();
                    tracing::error!(error = %e, "writing the audit log");
                }
            }
            let _ = sink.flush();
        })?;
        Ok(Self(queue))
    }

    /// Queue `event`; when the writer is behind by [`QUEUE`] events it is dropped (and counted as an error).
    pub fn record(&self, event: Event) {
        self.0.record(event);
    }
}

/// The file (or stdout) and its rotation.
struct Sink {
    config: LogConfig,
    out: Option<BufWriter<File>>,
    size: u64,
}

impl Sink {
    fn open(config: LogConfig) -> anyhow::Result<Self> {
        let mut sink = Self { config, out: None, size: 0 };
        if !sink.is_stdout() {
            sink.open_file()?;
        }
        Ok(sink)
    }

    fn is_stdout(&self) -> bool {
        self.config.path.as_os_str() == "-"
    }

    fn open_file(&mut self) -> anyhow::Result<()> {
        if let Some(dir) = self.config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&self.config.path)?;
        self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.out = Some(BufWriter::new(file));
        Ok(())
    }

    fn write(&mut self, event: &Event) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(event)?;
        line.push(b'\n');
        if self.is_stdout() {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&line)?;
            return Ok(stdout.flush()?);
        }
        let limit = self.config.max_size_mb.saturating_mul(1 << 20);
        if limit > 0 && self.size > 0 && self.size + line.len() as u64 > limit {
            self.rotate()?;
        }
        let out = match self.out.as_mut() {
            Some(out) => out,
            None => {
                self.open_file()?;
                self.out.as_mut().ok_or_else(|| anyhow::anyhow!("the audit log is not open"))?
            }
        };
        out.write_all(&line)?;
        out.flush()?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.as_mut().map_or(Ok(()), Write::flush)
    }

    /// Rename the file to a timestamped backup, start a new one, and prune backups.
    fn rotate(&mut self) -> anyhow::Result<()> {
        self.flush()?;
        self.out = None;
        let backup = backup_name(&self.config.path, jiff::Timestamp::now());
        std::fs::rename(&self.config.path, &backup)?;
        self.open_file()?;
        if self.config.compress
            && let Err(e) = compress(&backup)
        {
            tracing::warn!(file = %backup.display(), error = %e, "compressing a rotated audit log");
        }
        self.prune();
        Ok(())
    }

    fn prune(&self) {
        let mut backups = backups_of(&self.config.path);
        backups.sort();
        let max_age = Duration::from_secs(self.config.max_age_days * 86_400);
        let now = SystemTime::now();
        let keep_from =
            if self.config.max_backups > 0 { backups.len().saturating_sub(self.config.max_backups) } else { 0 };
        for (i, path) in backups.iter().enumerate() {
            let too_old = self.config.max_age_days > 0
                && std::fs::metadata(path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > max_age);
            if (i < keep_from || too_old)
                && let Err(e) = std::fs::remove_file(path)
            {
                tracing::warn!(file = %path.display(), error = %e, "removing an old audit log");
            }
        }
    }
}

/// Replace `path` by `<path>.gz`, as lumberjack compresses backups (the file is removed once its copy is whole).
fn compress(path: &Path) -> anyhow::Result<()> {
    let mut gz_name = path.as_os_str().to_owned();
    gz_name.push(".gz");
    let gz = PathBuf::from(gz_name);
    let mut input = File::open(path)?;
    let mut output = flate2::write::GzEncoder::new(BufWriter::new(File::create(&gz)?), flate2::Compression::default());
    std::io::copy(&mut input, &mut output)?;
    output.finish()?.flush()?;
    std::fs::remove_file(path)?;
    Ok(())
}

/// `<dir>/<stem>-<2006-01-02T15-04-05.000>.<ext>`, as lumberjack names backups.
fn backup_name(path: &Path, t: jiff::Timestamp) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    let time = t.strftime("%Y-%m-%dT%H-%M-%S.%3f").to_string();
    path.with_file_name(format!("{stem}-{time}{ext}"))
}

/// The backups of `path`, found by their name's shape.
fn backups_of(path: &Path) -> Vec<PathBuf> {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().map(|n| n.to_string_lossy().into_owned()).is_some_and(|n| {
                let n = n.strip_suffix(".gz").unwrap_or(&n);
                n.strip_prefix(&format!("{stem}-"))
                    .and_then(|rest| rest.strip_suffix(&ext))
                    .is_some_and(|t| t.len() == 23)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::{micro_time, sample as event};

    #[test]
    fn rotates_by_size_and_keeps_max_backups() {
        let dir = tempfile::tempdir().unwrap();
        for backup in rotation(dir.path(), false) {
            assert!(backup.to_string_lossy().ends_with(".log"), "{backup:?}");
        }
    }

    #[test]
    fn rotated_files_are_gzipped_with_compress() {
        let dir = tempfile::tempdir().unwrap();
        let backups = rotation(dir.path(), true);
        for backup in backups {
            assert!(backup.to_string_lossy().ends_with(".log.gz"), "{backup:?}");
            let mut text = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(File::open(&backup).unwrap()), &mut text)
                .unwrap();
            assert!(text.len() > 1 << 19 && text.lines().all(|l| l.starts_with("{\"kind\":\"Event\"")), "{backup:?}");
        }
    }

    /// Write 3.5 MiB of events into a log rotated at 1 MiB keeping 2 backups; the backups.
    fn rotation(dir: &Path, compress: bool) -> Vec<PathBuf> {
        let path = dir.join("audit.log");
        let config = LogConfig { path: path.clone(), max_age_days: 0, max_backups: 2, max_size_mb: 1, compress };
        let mut sink = Sink::open(config).unwrap();
        let one = serde_json::to_vec(&event(0)).unwrap().len() + 1;
        // Enough events for 3.5 MiB: three rotations.
        for n in 0..(7 << 19) / one {
            sink.write(&event(n)).unwrap();
            if n % 500 == 499 {
                // Backups are named to the millisecond: keep their names apart.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let backups = backups_of(&path);
        assert_eq!(backups.len(), 2, "{backups:?}");
        assert!(std::fs::metadata(&path).unwrap().len() <= 1 << 20);
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["kind"], "Event");
        }
        assert!(
            backup_name(&path, "2024-05-01T10:20:30.123Z".parse().unwrap())
                .ends_with("audit-2024-05-01T10-20-30.123.log")
        );
        let _ = micro_time(jiff::Timestamp::now());
        backups
    }
}
