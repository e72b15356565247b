//! Where backup files live: the [`Destination`] trait, and [`local::LocalDir`], a directory on the controller's
//! volume (`--backup-dir`, a PVC in a deployment). An object store can be added as another implementation.
//!
//! API → controller → backup file → **destination (this module)**.
//!
//! Locations are relative paths (`<spec.destination.path>/<name>.<id>.tsdb`). A file being written is invisible under
//! its location until [`PendingFile::commit`]: readers never see a partial backup.

pub mod local;

use async_trait::async_trait;
use tokio::io::AsyncRead;

/// A store of backup files.
#[async_trait]
pub trait Destination: Send + Sync {
    /// Starts writing a new file at `location`; it is visible there only after `commit`.
    async fn create(&self, location: &str) -> anyhow::Result<Box<dyn PendingFile>>;

    /// Reads a committed file from its start.
    async fn open(&self, location: &str) -> anyhow::Result<Box<dyn AsyncRead + Send + Unpin>>;

    /// Removes a file, committed or not; a missing file is not an error.
    async fn delete(&self, location: &str) -> anyhow::Result<()>;

    /// The files directly under `dir`, committed or not; a missing directory is empty.
    async fn list(&self, dir: &str) -> anyhow::Result<Vec<Entry>>;
}

/// A file found by [`Destination::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub location: String,
    /// False for a file whose writing never completed.
    pub committed: bool,
}

/// A file being written.
#[async_trait]
pub trait PendingFile: Send {
    /// Appends payload bytes (after the header block).
    async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()>;

    /// Writes the header block at the start, makes the file durable and visible at its location; returns its size.
    async fn commit(self: Box<Self>, header: Vec<u8>) -> anyhow::Result<u64>;
}
