//! Where backup files live: the [`Destination`] trait; [`local::LocalDir`], a directory (a PVC in a deployment);
//! [`object::ObjectDir`], an object store (S3 and S3-compatible servers), with [`uploads`] its incomplete uploads;
//! [`locations`], the operator's named locations; [`confine`], the place of an object's files in one.
//!
//! API → controller → backup file → **destination (this module)**.
//!
//! Locations are relative paths, `<namespace>/<spec.destination.path or name>/<name>.<uid>.<id>.tsdb`
//! ([`confine::Prefix`], [`file_name`]): the namespace confines tenants, and the owning object's UID is part of
//! every file's name, so a TimeseriesDBBackup deleted and created again under the same name starts a new history
//! beside the old one, and cleanup touches only its own UID's files. A file being written is invisible under its
//! location until [`PendingFile::commit`]: readers never see a partial backup.

pub mod confine;
pub mod local;
pub mod locations;
pub mod object;
pub mod uploads;

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

/// The file name of backup `id` of the TimeseriesDBBackup `name` with UID `uid`.
pub fn file_name(name: &str, uid: &str, id: &str) -> String {
    format!("{name}.{uid}.{id}.tsdb")
}

/// What a backup file's name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName<'a> {
    pub name: &'a str,
    /// The owner's UID; `None` in names written before it was recorded.
    pub uid: Option<&'a str>,
    pub id: &'a str,
}

/// Reads a backup file's name (without its directory); `None` if it is not one.
pub fn parse_file_name(file: &str) -> Option<FileName<'_>> {
    let (rest, id) = file.strip_suffix(".tsdb")?.rsplit_once('.')?;
    match rest.rsplit_once('.') {
        Some((name, uid)) if is_uid(uid) => Some(FileName { name, uid: Some(uid), id }),
        _ => Some(FileName { name: rest, uid: None, id }),
    }
}

/// Whether `s` looks like a Kubernetes UID (a UUID: 36 characters, hex digits and dashes).
fn is_uid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        && s.bytes().filter(|&b| b == b'-').count() == 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        let uid = "6f1c0a52-7d0e-4d8f-9a51-1f2e3d4c5b6a";
        let file = file_name("vm.good", uid, "20261128T223000123Z");
        assert_eq!(file, "vm.good.6f1c0a52-7d0e-4d8f-9a51-1f2e3d4c5b6a.20261128T223000123Z.tsdb");
        assert_eq!(
            parse_file_name(&file),
            Some(FileName { name: "vm.good", uid: Some(uid), id: "20261128T223000123Z" })
        );
        assert_eq!(
            parse_file_name("vm.good.20261128T223000123Z.tsdb"),
            Some(FileName { name: "vm.good", uid: None, id: "20261128T223000123Z" })
        );
        assert_eq!(parse_file_name("notes.txt"), None);
        assert_eq!(parse_file_name("x.tsdb"), None);
    }
}
