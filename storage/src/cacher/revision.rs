//! Reads of the backend's current revision, shared by the consistent reads that wait for one at the same time.
//!
//! reads → **revision reader** → backend (`current_revision`) → the cache waits until it has that revision.
//!
//! A consistent read needs a revision read that *started after it did*: every write acknowledged before the read
//! began is then at or below that revision. Reads that arrive while a revision read is under way therefore wait for
//! the next one, which starts as soon as the current one ends and answers all of them: at most one revision read
//! is in flight, and under load one round trip serves many reads (upstream sends one per read).

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::lock;
use super::metrics::{self, CacheMetrics};
use crate::{Result, Revision, Storage, StorageError};

type Waiter = oneshot::Sender<Result<Revision>>;

pub(super) struct RevisionReader {
    backend: Arc<dyn Storage>,
    metrics: Arc<CacheMetrics>,
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    /// A task is reading revisions for the waiters.
    running: bool,
    /// Reads waiting for the next revision read.
    waiters: Vec<Waiter>,
}

impl RevisionReader {
    pub fn new(backend: Arc<dyn Storage>, metrics: Arc<CacheMetrics>) -> Arc<Self> {
        Arc::new(Self { backend, metrics, pending: Mutex::default() })
    }

    /// The backend's current revision, read after this call began.
    pub async fn current(self: &Arc<Self>) -> Result<Revision> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut pending = lock(&self.pending);
            pending.waiters.push(tx);
            !std::mem::replace(&mut pending.running, true)
        };
        if start {
            // Its own task: a read whose client goes away must not take the others' answer with it.
            tokio::spawn(Driver { reader: self.clone(), finished: false }.run());
        }
        rx.await.unwrap_or_else(|_| Err(StorageError::Unavailable("the revision read was abandoned".into())))
    }
}

/// Reads revisions while reads wait; if it is dropped half-way (the runtime stops), the waiters get an error and
/// the next read starts a new driver.
struct Driver {
    reader: Arc<RevisionReader>,
    finished: bool,
}

impl Driver {
    async fn run(mut self) {
        loop {
            let batch = {
                let mut pending = lock(&self.reader.pending);
                if pending.waiters.is_empty() {
                    pending.running = false;
                    self.finished = true;
                    return;
                }
                std::mem::take(&mut pending.waiters)
            };
            let revision = self.reader.backend.current_revision().await;
            metrics::count(&self.reader.metrics.revision_reads);
            for waiter in batch {
                let _ = waiter.send(revision.clone());
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.finished {
            let mut pending = lock(&self.reader.pending);
            pending.running = false;
            pending.waiters.clear();
        }
    }
}
