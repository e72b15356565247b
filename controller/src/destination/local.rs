//! A [`Destination`] in a local directory: files are written as `<location>.partial`, then fsynced and renamed.
//!
//! API → controller → backup file → destination → **local directory (this file)**.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncSeekExt, AsyncWriteExt};

use super::{Destination, Entry, PendingFile};
use crate::format::HEADER_SIZE;

const PARTIAL: &str = ".partial";

/// Backup files under one root directory.
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The absolute path of a location, which must be relative and stay under the root.
    fn path(&self, location: &str) -> anyhow::Result<PathBuf> {
        let rel = Path::new(location);
        if location.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            bail!("backup location {location:?} must be a relative path without '..'");
        }
        Ok(self.root.join(rel))
    }
}

#[async_trait]
impl Destination for LocalDir {
    async fn create(&self, location: &str) -> anyhow::Result<Box<dyn PendingFile>> {
        let path = self.path(location)?;
        let dir = path.parent().context("backup location has no directory")?.to_path_buf();
        tokio::fs::create_dir_all(&dir).await.with_context(|| format!("creating {}", dir.display()))?;
        let partial = partial_path(&path);
        let mut file =
            tokio::fs::File::create(&partial).await.with_context(|| format!("creating {}", partial.display()))?;
        file.write_all(&[0; HEADER_SIZE]).await.with_context(|| format!("writing {}", partial.display()))?;
        Ok(Box::new(LocalPending { file: Some(file), partial, path, dir }))
    }

    async fn open(&self, location: &str) -> anyhow::Result<Box<dyn AsyncRead + Send + Unpin>> {
        let path = self.path(location)?;
        let file = tokio::fs::File::open(&path).await.with_context(|| format!("opening {}", path.display()))?;
        Ok(Box::new(tokio::io::BufReader::with_capacity(1 << 20, file)))
    }

    async fn delete(&self, location: &str) -> anyhow::Result<()> {
        let path = self.path(location)?;
        for p in [partial_path(&path), path] {
            match tokio::fs::remove_file(&p).await {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", p.display()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn list(&self, dir: &str) -> anyhow::Result<Vec<Entry>> {
        let path = self.path(dir)?;
        let mut entries = match tokio::fs::read_dir(&path).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", path.display())),
        };
        let mut out = Vec::new();
        while let Some(entry) = entries.next_entry().await? {
            if !entry.file_type().await?.is_file() {
                continue;
            }
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            let (name, committed) = match name.strip_suffix(PARTIAL) {
                Some(stem) => (stem.to_owned(), false),
                None => (name, true),
            };
            out.push(Entry { location: format!("{}/{name}", dir.trim_end_matches('/')), committed });
        }
        out.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(out)
    }
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(PARTIAL);
    PathBuf::from(name)
}

struct LocalPending {
    file: Option<tokio::fs::File>,
    partial: PathBuf,
    path: PathBuf,
    dir: PathBuf,
}

#[async_trait]
impl PendingFile for LocalPending {
    async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let file = self.file.as_mut().context("backup file already committed")?;
        file.write_all(bytes).await.with_context(|| format!("writing {}", self.partial.display()))
    }

    async fn commit(mut self: Box<Self>, header: Vec<u8>) -> anyhow::Result<u64> {
        let mut file = self.file.take().context("backup file already committed")?;
        let ctx = || format!("completing {}", self.partial.display());
        let size = file.stream_position().await.with_context(ctx)?;
        file.seek(std::io::SeekFrom::Start(0)).await.with_context(ctx)?;
        file.write_all(&header).await.with_context(ctx)?;
        file.sync_all().await.with_context(ctx)?;
        drop(file);
        tokio::fs::rename(&self.partial, &self.path).await.with_context(ctx)?;
        let dir = tokio::fs::File::open(&self.dir).await.with_context(ctx)?;
        dir.sync_all().await.with_context(ctx)?;
        Ok(size)
    }
}

impl Drop for LocalPending {
    /// A file abandoned before commit (an error, a cancelled backup) is removed; one left by a crash is removed by
    /// the next reconcile (see the backup reconciler's cleanup).
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn write_commit_list_delete() {
        let tmp = tempfile_dir();
        let dest = LocalDir::new(&tmp);
        assert!(dest.create("../x").await.is_err());
        assert!(dest.create("/abs").await.is_err());
        let mut f = dest.create("ns/b/b.1.tsdb").await.unwrap();
        f.write(b"payload").await.unwrap();
        assert_eq!(dest.list("ns/b").await.unwrap(), [Entry { location: "ns/b/b.1.tsdb".into(), committed: false }]);
        assert!(dest.open("ns/b/b.1.tsdb").await.is_err());
        let size = f.commit(vec![7; HEADER_SIZE]).await.unwrap();
        assert_eq!(size, (HEADER_SIZE + 7) as u64);
        let mut data = Vec::new();
        dest.open("ns/b/b.1.tsdb").await.unwrap().read_to_end(&mut data).await.unwrap();
        assert_eq!(&data[HEADER_SIZE - 1..], b"\x07payload");
        assert_eq!(dest.list("ns/b").await.unwrap(), [Entry { location: "ns/b/b.1.tsdb".into(), committed: true }]);
        // Abandoned before commit: removed.
        let mut g = dest.create("ns/b/b.2.tsdb").await.unwrap();
        g.write(b"x").await.unwrap();
        drop(g);
        dest.delete("ns/b/b.1.tsdb").await.unwrap();
        dest.delete("ns/b/b.1.tsdb").await.unwrap();
        assert!(dest.list("ns/b").await.unwrap().is_empty());
        assert!(dest.list("missing").await.unwrap().is_empty());
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("localdir-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
