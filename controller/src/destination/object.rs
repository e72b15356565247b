//! A [`Destination`] in an object store (S3 and S3-compatible servers; GCS and Azure Blob through the same
//! `object_store` traits, untested here): a file is one object, written by a multipart upload in parts of
//! [`PART_SIZE`], visible only once the upload completes.
//!
//! API → controller → backup file → destination → **object store (this file)**.
//!
//! No seek is needed for the header, which the writer knows only at the end: **an object holds the backup file with its
//! 4 KiB header block moved to the end** (`payload ‖ header block`). Parts go up as they fill, one upload in flight
//! beside the next part being filled; at commit the header block ends the last part and the upload is completed. So a
//! backup holds two parts (~16 MiB) whatever its size; a file smaller than a part is one `PUT`. [`Destination::open`]
//! reads the header block first (a suffix range, which S3 and GCS serve; `object_store`'s Azure client refuses it, so
//! an Azure location would need a `HEAD` for the size first), then the payload, and hands the reader the file as it is
//! on a local volume. Objects written header first (by earlier controllers) are read as they are: their last 4 KiB do
//! not start with the magic. The payload's SHA-256 is that of the object without its last 4 KiB
//! (`head -c -4096 OBJECT | sha256sum`).
//!
//! A file abandoned before commit (an error, a stop) has its upload aborted; one cut short by a crash leaves an
//! incomplete upload, invisible to readers. Where the server lists uploads ([`Uploads`]), a listing shows them as
//! uncommitted files and deleting a file aborts them, so the next run of the same object cleans them like any
//! leftover; elsewhere a bucket lifecycle rule `AbortIncompleteMultipartUpload` removes them.

use std::collections::VecDeque;
use std::sync::Arc;

use anyhow::{Context, bail};
use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, MultipartId, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use super::uploads::{Upload, Uploads};
use super::{Destination, Entry, PendingFile};
use crate::format::{HEADER_SIZE, MAGIC};

/// Size of a multipart upload's parts (S3 takes 5 MiB to 5 GiB, except the last).
pub const PART_SIZE: usize = 8 << 20;

/// What an object store must do for us: objects, and multipart uploads with parts numbered by the caller.
pub trait Store: ObjectStore + MultipartStore {}
impl<T: ObjectStore + MultipartStore> Store for T {}

/// Backup files as objects under `prefix` in a store.
pub struct ObjectDir {
    store: Arc<dyn Store>,
    prefix: String,
    part_size: usize,
    /// The listing of incomplete uploads, where the store has one.
    uploads: Option<Uploads>,
}

impl ObjectDir {
    /// Files under `prefix` (no leading or trailing `/`; empty for the bucket's root).
    pub fn new(store: Arc<dyn Store>, prefix: &str) -> Self {
        Self { store, prefix: prefix.trim_matches('/').to_string(), part_size: PART_SIZE, uploads: None }
    }

    /// Lists incomplete uploads as uncommitted files, and aborts them when their file is deleted.
    pub fn with_uploads(mut self, uploads: Uploads) -> Self {
        self.uploads = Some(uploads);
        self
    }

    /// Parts of `size` bytes instead of [`PART_SIZE`] (tests; S3 refuses parts under 5 MiB but the last).
    pub fn with_part_size(mut self, size: usize) -> Self {
        self.part_size = size.max(1);
        self
    }

    /// The object path of a location, which must be relative, without `.`, `..` or empty parts.
    fn path(&self, location: &str) -> anyhow::Result<Path> {
        let location = location.trim_end_matches('/');
        if location.is_empty() || location.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
            bail!("backup location {location:?} must be a relative path without '..'");
        }
        let full = match self.prefix.is_empty() {
            true => location.to_string(),
            false => format!("{}/{location}", self.prefix),
        };
        Path::parse(&full).with_context(|| format!("backup location {location:?}"))
    }

    /// The incomplete uploads of keys under `prefix` ([`Uploads::list`]); none when they cannot be listed (a
    /// cleanup of invisible leftovers never stops a backup).
    async fn incomplete(&self, prefix: &str) -> Vec<Upload> {
        let Some(uploads) = &self.uploads else { return Vec::new() };
        uploads.list(prefix).await.unwrap_or_else(|e| {
            tracing::warn!(prefix, error = %format!("{e:#}"), "could not list incomplete uploads");
            Vec::new()
        })
    }

    /// The bytes of `path` that `options` ask for, as a buffered reader.
    async fn read(&self, path: &Path, options: GetOptions) -> anyhow::Result<Box<dyn AsyncRead + Send + Unpin>> {
        let result = self.store.get_opts(path, options).await.with_context(|| format!("opening {path}"))?;
        let stream = result.into_stream().map_err(std::io::Error::other);
        Ok(Box::new(tokio::io::BufReader::with_capacity(1 << 20, tokio_util::io::StreamReader::new(stream))))
    }
}

#[async_trait]
impl Destination for ObjectDir {
    async fn create(&self, location: &str) -> anyhow::Result<Box<dyn PendingFile>> {
        let path = self.path(location)?;
        Ok(Box::new(ObjectPending {
            store: self.store.clone(),
            path,
            part_size: self.part_size,
            upload: None,
            current: Vec::new(),
            parts: Vec::new(),
            in_flight: VecDeque::new(),
            size: 0,
            done: false,
        }))
    }

    async fn open(&self, location: &str) -> anyhow::Result<Box<dyn AsyncRead + Send + Unpin>> {
        let path = self.path(location)?;
        let last = GetOptions { range: Some(GetRange::Suffix(HEADER_SIZE as u64)), ..GetOptions::default() };
        let last = self.store.get_opts(&path, last).await.with_context(|| format!("opening {path}"))?;
        let size = last.meta.size;
        let block = last.bytes().await.with_context(|| format!("reading {path}"))?;
        if !block.starts_with(MAGIC) {
            // Header first: the object is the file.
            return self.read(&path, GetOptions::default()).await;
        }
        let payload = size.saturating_sub(HEADER_SIZE as u64);
        let header = std::io::Cursor::new(block);
        if payload == 0 {
            return Ok(Box::new(header));
        }
        let payload = GetOptions { range: Some(GetRange::Bounded(0..payload)), ..GetOptions::default() };
        Ok(Box::new(header.chain(self.read(&path, payload).await?)))
    }

    async fn delete(&self, location: &str) -> anyhow::Result<()> {
        let path = self.path(location)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e).with_context(|| format!("deleting {path}")),
        }
        for upload in self.incomplete(path.as_ref()).await.into_iter().filter(|u| u.key == path.as_ref()) {
            tracing::info!(%path, upload = upload.id, "aborting an incomplete upload");
            match self.store.abort_multipart(&path, &upload.id).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => tracing::warn!(%path, error = %e, "could not abort an incomplete upload"),
            }
        }
        Ok(())
    }

    async fn list(&self, dir: &str) -> anyhow::Result<Vec<Entry>> {
        let path = self.path(dir)?;
        let listed = self.store.list_with_delimiter(Some(&path)).await.with_context(|| format!("listing {path}"))?;
        let dir = dir.trim_end_matches('/');
        let mut out: Vec<Entry> = listed
            .objects
            .iter()
            .filter_map(|o| o.location.filename())
            .map(|name| Entry { location: format!("{dir}/{name}"), committed: true })
            .collect();
        let under = format!("{path}/");
        for upload in self.incomplete(&under).await {
            if let Some(name) = upload.key.strip_prefix(&under) {
                out.push(Entry { location: format!("{dir}/{name}"), committed: false });
            }
        }
        out.sort_by(|a, b| a.location.cmp(&b.location).then(a.committed.cmp(&b.committed)));
        out.dedup();
        Ok(out)
    }
}

struct ObjectPending {
    store: Arc<dyn Store>,
    path: Path,
    part_size: usize,
    /// Started with the first full part.
    upload: Option<MultipartId>,
    /// The part being filled.
    current: Vec<u8>,
    /// Parts uploaded, by index.
    parts: Vec<PartId>,
    /// Part uploads under way, oldest first: one while the next part fills; two at commit.
    in_flight: VecDeque<JoinHandle<object_store::Result<PartId>>>,
    /// Payload bytes written.
    size: u64,
    done: bool,
}

impl ObjectPending {
    /// Starts the upload of the filled part, after the one in flight has landed (the memory bound).
    async fn send_current(&mut self) -> anyhow::Result<()> {
        while let Some(task) = self.in_flight.pop_front() {
            self.land(task).await?;
        }
        let data = std::mem::replace(&mut self.current, Vec::with_capacity(self.part_size));
        let index = self.parts.len();
        self.spawn_part(index, data).await?;
        Ok(())
    }

    /// Starts uploading part `index` (starting the multipart upload first if needed).
    async fn spawn_part(&mut self, index: usize, data: Vec<u8>) -> anyhow::Result<()> {
        let id = match &self.upload {
            Some(id) => id.clone(),
            None => {
                let id = self
                    .store
                    .create_multipart(&self.path)
                    .await
                    .with_context(|| format!("uploading {}", self.path))?;
                self.upload.insert(id).clone()
            }
        };
        let (store, path, data) = (self.store.clone(), self.path.clone(), PutPayload::from(data));
        self.in_flight.push_back(tokio::spawn(async move { store.put_part(&path, &id, index, data).await }));
        Ok(())
    }

    async fn land(&mut self, task: JoinHandle<object_store::Result<PartId>>) -> anyhow::Result<()> {
        let part =
            task.await.context("the part upload panicked")?.with_context(|| format!("uploading {}", self.path))?;
        self.parts.push(part);
        Ok(())
    }
}

#[async_trait]
impl PendingFile for ObjectPending {
    async fn write(&mut self, mut bytes: &[u8]) -> anyhow::Result<()> {
        anyhow::ensure!(!self.done, "backup file already committed");
        self.size += bytes.len() as u64;
        while !bytes.is_empty() {
            let n = bytes.len().min(self.part_size - self.current.len());
            self.current.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.current.len() == self.part_size {
                self.send_current().await?;
            }
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>, header: Vec<u8>) -> anyhow::Result<u64> {
        anyhow::ensure!(!self.done, "backup file already committed");
        let size = header.len() as u64 + self.size;
        // The header block ends the object.
        let mut last = std::mem::take(&mut self.current);
        last.extend_from_slice(&header);
        if self.upload.is_none() {
            // Smaller than a part: one PUT.
            self.store
                .put(&self.path, PutPayload::from(last))
                .await
                .with_context(|| format!("writing {}", self.path))?;
            self.done = true;
            return Ok(size);
        }
        // The last part goes up beside the one still in flight.
        let index = self.parts.len() + self.in_flight.len();
        self.spawn_part(index, last).await?;
        while let Some(task) = self.in_flight.pop_front() {
            self.land(task).await?;
        }
        let id = self.upload.clone().context("no upload started")?;
        let parts = std::mem::take(&mut self.parts);
        self.store
            .complete_multipart(&self.path, &id, parts)
            .await
            .with_context(|| format!("completing {}", self.path))?;
        self.done = true;
        Ok(size)
    }
}

impl Drop for ObjectPending {
    /// An upload abandoned before commit is aborted (in the background: a drop cannot wait); one left by a crash
    /// stays incomplete and invisible.
    fn drop(&mut self) {
        for task in self.in_flight.drain(..) {
            task.abort();
        }
        if self.done {
            return;
        }
        if let (Some(id), Ok(runtime)) = (self.upload.take(), tokio::runtime::Handle::try_current()) {
            let (store, path) = (self.store.clone(), self.path.clone());
            runtime.spawn(async move {
                if let Err(e) = store.abort_multipart(&path, &id).await {
                    tracing::warn!(%path, error = %e, "could not abort the upload of an abandoned backup");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn parts_header_last_and_aborts() {
        let mem = Arc::new(InMemory::new());
        let dest = ObjectDir::new(mem.clone(), "/cluster-a/").with_part_size(1000);
        assert!(dest.create("../x").await.is_err());
        assert!(dest.create("a//b").await.is_err());
        let mut header = MAGIC.to_vec();
        header.resize(HEADER_SIZE, 7);
        // Several parts, written in odd pieces.
        let payload: Vec<u8> = (0..5500u32).map(|i| (i % 251) as u8).collect();
        let mut f = dest.create("ns/b/b.1.tsdb").await.unwrap();
        for piece in payload.chunks(333) {
            f.write(piece).await.unwrap();
        }
        assert!(dest.list("ns/b").await.unwrap().is_empty(), "invisible before commit");
        let size = f.commit(header.clone()).await.unwrap();
        assert_eq!(size, (HEADER_SIZE + payload.len()) as u64);
        // Stored header last, read header first.
        let stored = mem.get(&Path::from("cluster-a/ns/b/b.1.tsdb")).await.unwrap().bytes().await.unwrap();
        assert_eq!(stored, [&payload[..], &header[..]].concat(), "payload, then the header block");
        let mut data = Vec::new();
        dest.open("ns/b/b.1.tsdb").await.unwrap().read_to_end(&mut data).await.unwrap();
        assert_eq!(data, [&header[..], &payload[..]].concat());
        assert_eq!(dest.list("ns/b").await.unwrap(), [Entry { location: "ns/b/b.1.tsdb".into(), committed: true }]);
        // Payload of exactly a part, then the header alone as the last part; an empty payload.
        for (name, payload) in [("ns/b/exact.tsdb", &payload[..1000]), ("ns/b/empty.tsdb", &[][..])] {
            let mut f = dest.create(name).await.unwrap();
            f.write(payload).await.unwrap();
            f.commit(header.clone()).await.unwrap();
            let mut data = Vec::new();
            dest.open(name).await.unwrap().read_to_end(&mut data).await.unwrap();
            assert_eq!(data, [&header[..], payload].concat(), "{name}");
            dest.delete(name).await.unwrap();
        }
        // An object written header first (earlier controllers) is read as it is.
        let old = [&header[..], &payload[..]].concat();
        mem.put(&Path::from("cluster-a/ns/b/old.tsdb"), old.clone().into()).await.unwrap();
        let mut data = Vec::new();
        dest.open("ns/b/old.tsdb").await.unwrap().read_to_end(&mut data).await.unwrap();
        assert_eq!(data, old);
        dest.delete("ns/b/old.tsdb").await.unwrap();
        // Small: one PUT.
        let mut g = dest.create("ns/b/b.2.tsdb").await.unwrap();
        g.write(b"tiny").await.unwrap();
        assert_eq!(g.commit(header.clone()).await.unwrap(), (HEADER_SIZE + 4) as u64);
        // Abandoned after parts went up: nothing visible.
        let mut h = dest.create("ns/b/b.3.tsdb").await.unwrap();
        h.write(&payload).await.unwrap();
        drop(h);
        tokio::task::yield_now().await;
        let listed: Vec<String> = dest.list("ns/b").await.unwrap().into_iter().map(|e| e.location).collect();
        assert_eq!(listed, ["ns/b/b.1.tsdb", "ns/b/b.2.tsdb"]);
        assert!(dest.open("ns/b/b.3.tsdb").await.is_err());
        dest.delete("ns/b/b.1.tsdb").await.unwrap();
        dest.delete("ns/b/b.1.tsdb").await.unwrap();
        assert_eq!(dest.list("ns/b").await.unwrap().len(), 1);
        assert!(dest.list("missing").await.unwrap().is_empty());
    }
}
