//! A [`Destination`] in an object store (S3 and S3-compatible servers; GCS and Azure Blob through the same
//! `object_store` traits, untested here): a file is one object, written by a multipart upload in parts of
//! [`PART_SIZE`], visible only once the upload completes.
//!
//! API → controller → backup file → destination → **object store (this file)**.
//!
//! No seek is needed for the header, which the writer knows only at the end: the first part (the header block and
//! the first [`FIRST_PART_SIZE`] payload bytes, S3's smallest part) is held in memory and uploaded last, as part 1;
//! the others go up as they fill, one upload in flight beside the next part being filled. At commit the last part
//! and the first go up together, beside any still in flight, then the upload is completed. So a backup holds the
//! first part and two others (~21 MiB) whatever its size. A file no larger than the first part is one `PUT`. A
//! file abandoned before commit (an error, a stop) has its upload aborted; one cut short by a crash leaves an
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
use object_store::{MultipartId, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::AsyncRead;
use tokio::task::JoinHandle;

use super::uploads::{Upload, Uploads};
use super::{Destination, Entry, PendingFile};

/// Size of a multipart upload's parts (S3 takes 5 MiB to 5 GiB, except the last).
pub const PART_SIZE: usize = 8 << 20;
/// Payload bytes of the first part, held until the header is known: S3's smallest part, so that the upload at
/// commit is short.
pub const FIRST_PART_SIZE: usize = 5 << 20;

/// What an object store must do for us: objects, and multipart uploads with parts numbered by the caller.
pub trait Store: ObjectStore + MultipartStore {}
impl<T: ObjectStore + MultipartStore> Store for T {}

/// Backup files as objects under `prefix` in a store.
pub struct ObjectDir {
    store: Arc<dyn Store>,
    prefix: String,
    first_size: usize,
    part_size: usize,
    /// The listing of incomplete uploads, where the store has one.
    uploads: Option<Uploads>,
}

impl ObjectDir {
    /// Files under `prefix` (no leading or trailing `/`; empty for the bucket's root).
    pub fn new(store: Arc<dyn Store>, prefix: &str) -> Self {
        Self {
            store,
            prefix: prefix.trim_matches('/').to_string(),
            first_size: FIRST_PART_SIZE,
            part_size: PART_SIZE,
            uploads: None,
        }
    }

    /// Lists incomplete uploads as uncommitted files, and aborts them when their file is deleted.
    pub fn with_uploads(mut self, uploads: Uploads) -> Self {
        self.uploads = Some(uploads);
        self
    }

    /// A first part of `first` payload bytes and others of `size` instead of [`FIRST_PART_SIZE`] and [`PART_SIZE`]
    /// (tests; S3 refuses parts under 5 MiB but the last).
    pub fn with_part_sizes(mut self, first: usize, size: usize) -> Self {
        (self.first_size, self.part_size) = (first.max(1), size.max(1));
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
}

#[async_trait]
impl Destination for ObjectDir {
    async fn create(&self, location: &str) -> anyhow::Result<Box<dyn PendingFile>> {
        let path = self.path(location)?;
        Ok(Box::new(ObjectPending {
            store: self.store.clone(),
            path,
            first_size: self.first_size,
            part_size: self.part_size,
            upload: None,
            first: Vec::new(),
            current: Vec::new(),
            parts: Vec::new(),
            in_flight: VecDeque::new(),
            size: 0,
            done: false,
        }))
    }

    async fn open(&self, location: &str) -> anyhow::Result<Box<dyn AsyncRead + Send + Unpin>> {
        let path = self.path(location)?;
        let result = self.store.get(&path).await.with_context(|| format!("opening {path}"))?;
        let stream = result.into_stream().map_err(std::io::Error::other);
        Ok(Box::new(tokio::io::BufReader::with_capacity(1 << 20, tokio_util::io::StreamReader::new(stream))))
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
    first_size: usize,
    part_size: usize,
    /// Started with the second part.
    upload: Option<MultipartId>,
    /// The first part's payload, uploaded last behind the header.
    first: Vec<u8>,
    /// The part being filled (from the second on).
    current: Vec<u8>,
    /// Parts uploaded, by index (1, 2, …; index 0 is the first part).
    parts: Vec<PartId>,
    /// Part uploads under way, oldest first: one while the next part fills; more at commit.
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
        let index = self.parts.len() + 1;
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
        if self.first.len() < self.first_size {
            let n = bytes.len().min(self.first_size - self.first.len());
            self.first.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
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
        let mut first = header;
        first.append(&mut std::mem::take(&mut self.first));
        if self.upload.is_none() && self.current.is_empty() {
            // Smaller than a part: one PUT.
            self.store
                .put(&self.path, PutPayload::from(first))
                .await
                .with_context(|| format!("writing {}", self.path))?;
            self.done = true;
            return Ok(size);
        }
        // The last part and the first go up together, beside the part still in flight.
        if !self.current.is_empty() {
            let (last, index) = (std::mem::take(&mut self.current), self.parts.len() + self.in_flight.len() + 1);
            self.spawn_part(index, last).await?;
        }
        let id = self.upload.clone().context("no upload started")?;
        let (store, path, upload) = (self.store.clone(), self.path.clone(), id.clone());
        let head = tokio::spawn(async move { store.put_part(&path, &upload, 0, PutPayload::from(first)).await });
        while let Some(task) = self.in_flight.pop_front() {
            if let Err(e) = self.land(task).await {
                head.abort();
                return Err(e);
            }
        }
        let head = head.await.context("the part upload panicked")?;
        let mut parts = vec![head.with_context(|| format!("uploading {}", self.path))?];
        parts.append(&mut self.parts);
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
    use crate::format::HEADER_SIZE;

    #[tokio::test]
    async fn parts_header_last_and_aborts() {
        let mem = Arc::new(InMemory::new());
        let dest = ObjectDir::new(mem.clone(), "/cluster-a/").with_part_sizes(700, 1000);
        assert!(dest.create("../x").await.is_err());
        assert!(dest.create("a//b").await.is_err());
        // Several parts, written in odd pieces.
        let payload: Vec<u8> = (0..5500u32).map(|i| (i % 251) as u8).collect();
        let mut f = dest.create("ns/b/b.1.tsdb").await.unwrap();
        for piece in payload.chunks(333) {
            f.write(piece).await.unwrap();
        }
        assert!(dest.list("ns/b").await.unwrap().is_empty(), "invisible before commit");
        let size = f.commit(vec![7; HEADER_SIZE]).await.unwrap();
        assert_eq!(size, (HEADER_SIZE + payload.len()) as u64);
        let mut data = Vec::new();
        dest.open("ns/b/b.1.tsdb").await.unwrap().read_to_end(&mut data).await.unwrap();
        assert_eq!(data.len(), HEADER_SIZE + payload.len());
        assert!(data[..HEADER_SIZE].iter().all(|&b| b == 7));
        assert_eq!(&data[HEADER_SIZE..], &payload[..]);
        assert_eq!(dest.list("ns/b").await.unwrap(), [Entry { location: "ns/b/b.1.tsdb".into(), committed: true }]);
        assert!(mem.get(&Path::from("cluster-a/ns/b/b.1.tsdb")).await.is_ok(), "under the prefix");
        // Small: one PUT.
        let mut g = dest.create("ns/b/b.2.tsdb").await.unwrap();
        g.write(b"tiny").await.unwrap();
        assert_eq!(g.commit(vec![1; HEADER_SIZE]).await.unwrap(), (HEADER_SIZE + 4) as u64);
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
