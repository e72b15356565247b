//! How far a running backup or restore is: samples and bytes so far, counted where they pass (the backup file
//! writer and reader) and read by the job, which writes them to `status.progress` at most every
//! [`crate::controller::PROGRESS_INTERVAL`].
//!
//! API ← controller: jobs (status.progress) ← **progress (this file)** ← backup file writer / reader.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use backup_apis::status::Progress as StatusProgress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The counters of one job.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    samples: AtomicU64,
    bytes: AtomicU64,
}

impl Default for Progress {
    fn default() -> Self {
        Self { started: Instant::now(), samples: AtomicU64::new(0), bytes: AtomicU64::new(0) }
    }
}

impl Progress {
    pub fn add_samples(&self, n: u64) {
        self.samples.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn samples(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// What status says: the counts, and their rates since the job started.
    pub fn status(&self) -> StatusProgress {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let (samples, bytes) = (self.samples(), self.bytes());
        StatusProgress {
            samples: Some(samples),
            bytes: Some(bytes),
            samples_per_second: Some((samples as f64 / secs) as u64),
            bytes_per_second: Some((bytes as f64 / secs) as u64),
            update_time: Some(Time(jiff::Timestamp::now())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_rates() {
        let p = Progress::default();
        p.add_samples(10);
        p.add_samples(5);
        p.add_bytes(100);
        let s = p.status();
        assert_eq!((s.samples, s.bytes), (Some(15), Some(100)));
        assert!(s.samples_per_second.unwrap() >= 15, "less than a second has passed: {s:?}");
        assert!(s.update_time.is_some());
    }
}
