//! Reading a backup file: the header, a verification pass over the payload's SHA-256, then records one by one, in
//! bounded memory; an encrypted payload opened chunk by chunk ([`super::crypt`]). [`verify`] reads a backup whole.
//!
//! API → controller → **backup file reader (this file)** → engine → database.

use anyhow::{Context, bail, ensure};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};

use super::crypt::{Keys, Opener};
use super::{HEADER_SIZE, Header, HeaderBlock, Record, frame};
use crate::destination::Destination;

const READ_SIZE: usize = 256 << 10;

pub struct BackupReader {
    header: Header,
    input: Box<dyn AsyncRead + Send + Unpin>,
    decoder: Decoder<'static>,
    inbuf: Vec<u8>,
    in_pos: usize,
    /// Decompressed bytes; `out[out_pos..]` are not yet decoded into records.
    out: Vec<u8>,
    out_pos: usize,
    sha: Sha256,
    payload_read: u64,
    input_done: bool,
    /// Whether the zstd stream ended exactly at a frame's end.
    frame_done: bool,
    /// Encrypted payloads: the opener, and the stored bytes not read yet.
    opener: Option<Opener>,
    remaining: u64,
    /// Where a running restore reads how far it is.
    progress: Option<std::sync::Arc<crate::progress::Progress>>,
}

impl BackupReader {
    /// Opens `location`, checks its header and the payload's size and checksum, then positions at the first record.
    pub async fn open_verified(dest: &dyn Destination, location: &str, keys: Option<&Keys>) -> anyhow::Result<Self> {
        let mut input = dest.open(location).await?;
        let header = read_header(&mut input).await?.header;
        let mut sha = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0; READ_SIZE];
        loop {
            let n = input.read(&mut buf).await.with_context(|| format!("reading {location}"))?;
            if n == 0 {
                break;
            }
            sha.update(&buf[..n]);
            size += n as u64;
        }
        check(&header, size, sha)?;
        let reader = Self::open(dest, location, keys).await?;
        ensure!(reader.header == header, "backup {location} changed while being read");
        Ok(reader)
    }

    /// Counts the samples and the file's bytes read from here on into `progress`.
    pub fn count_into(&mut self, progress: std::sync::Arc<crate::progress::Progress>) {
        self.progress = Some(progress);
    }

    /// Opens `location` and checks its header, positioned at the first record; the payload's size and checksum are
    /// checked when [`BackupReader::next`] reaches its end (a caller that acts on records before then must not
    /// trust them: a restore reads the whole file once before it writes anything).
    /// An encrypted backup needs the key its header names among `keys`; its header's tag is checked here.
    pub async fn open(dest: &dyn Destination, location: &str, keys: Option<&Keys>) -> anyhow::Result<Self> {
        let mut input = dest.open(location).await?;
        let HeaderBlock { header, signed, tag } = read_header(&mut input).await?;
        let opener = match &header.encryption {
            Some(sealing) => Some(Opener::new(keys, sealing, &signed, &tag)?),
            None => None,
        };
        Ok(Self {
            remaining: header.payload_bytes,
            opener,
            header,
            input,
            decoder: Decoder::new()?,
            inbuf: Vec::with_capacity(READ_SIZE),
            in_pos: 0,
            out: Vec::with_capacity(READ_SIZE * 4),
            out_pos: 0,
            sha: Sha256::new(),
            payload_read: 0,
            input_done: false,
            frame_done: false,
            progress: None,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next record; `None` at the end of the payload (whose checksum is checked again then).
    pub async fn next(&mut self) -> anyhow::Result<Option<Record>> {
        loop {
            if let Some((record, used)) = frame::decode(&self.out[self.out_pos..])? {
                self.out_pos += used;
                if let Some(p) = &self.progress {
                    p.add_samples(record.samples());
                }
                return Ok(Some(record));
            }
            if !self.fill().await? {
                ensure!(self.out_pos == self.out.len(), "corrupt backup: the payload ends inside a record");
                ensure!(self.frame_done, "corrupt backup: the compressed payload is cut short");
                let sha = std::mem::take(&mut self.sha);
                check(&self.header, self.payload_read, sha)?;
                return Ok(None);
            }
        }
    }

    /// Decompresses more bytes into `out`; false when the payload is exhausted.
    async fn fill(&mut self) -> anyhow::Result<bool> {
        self.out.drain(..self.out_pos);
        self.out_pos = 0;
        loop {
            if self.in_pos == self.inbuf.len() && !self.input_done {
                match self.opener.is_some() {
                    true => self.read_sealed().await?,
                    false => {
                        self.inbuf.resize(READ_SIZE, 0);
                        let n = self.input.read(&mut self.inbuf).await.context("reading the backup")?;
                        self.inbuf.truncate(n);
                        self.sha.update(&self.inbuf);
                        self.payload_read += n as u64;
                        self.count_bytes(n);
                        // At the end, the decoder still runs once more to flush what it holds.
                        self.input_done = n == 0;
                    }
                }
                self.in_pos = 0;
            }
            if self.out.capacity() - self.out.len() < READ_SIZE {
                self.out.reserve(READ_SIZE);
            }
            let before = self.out.len();
            let mut input = InBuffer::around(&self.inbuf[self.in_pos..]);
            let mut output = OutBuffer::around_pos(&mut self.out, before);
            let hint = self.decoder.run(&mut input, &mut output).context("corrupt backup: zstd")?;
            let consumed = input.pos();
            self.in_pos += consumed;
            // A run with nothing to do says nothing about the frame (it would hint at a next frame's header).
            if consumed > 0 || self.out.len() > before {
                self.frame_done = hint == 0;
            }
            if self.out.len() > before {
                return Ok(true);
            }
            if self.input_done && self.in_pos == self.inbuf.len() {
                return Ok(false);
            }
        }
    }
}

impl BackupReader {
    /// Stored bytes read, for a running restore's progress.
    fn count_bytes(&self, n: usize) {
        if let Some(p) = &self.progress {
            p.add_bytes(n as u64);
        }
    }

    /// The next sealed chunk, opened into `inbuf` (the last one as last: the header says where the payload ends).
    async fn read_sealed(&mut self) -> anyhow::Result<()> {
        let Some(opener) = self.opener.as_mut() else { return Ok(()) };
        if self.remaining == 0 {
            // Past the last chunk: nothing may follow it.
            let mut probe = [0u8; 1];
            let extra = self.input.read(&mut probe).await.context("reading the backup")?;
            ensure!(extra == 0, "corrupt backup: the payload is longer than its header says");
            self.inbuf.clear();
            self.input_done = true;
            return Ok(());
        }
        let n = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(opener.sealed_chunk);
        self.inbuf.resize(n, 0);
        self.input
            .read_exact(&mut self.inbuf)
            .await
            .context("corrupt backup: the payload is shorter than its header says")?;
        self.sha.update(&self.inbuf);
        self.payload_read += n as u64;
        if let Some(p) = &self.progress {
            p.add_bytes(n as u64);
        }
        self.remaining -= n as u64;
        opener.open(&mut self.inbuf, self.remaining == 0)
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub header: Header,
    pub records: u64,
    pub samples: u64,
}

/// Reads a backup end to end: the header (and its tag), every record decoded (and decrypted), the payload's size
/// and SHA-256, and the header's sample count.
pub async fn verify(dest: &dyn Destination, keys: Option<&Keys>, location: &str) -> anyhow::Result<Verified> {
    let mut reader = BackupReader::open(dest, location, keys).await?;
    let (mut records, mut samples) = (0u64, 0u64);
    while let Some(record) = reader.next().await? {
        records += 1;
        samples += record.samples();
    }
    let header = reader.header;
    ensure!(
        samples == header.samples,
        "corrupt backup: it holds {samples} samples, its header says {}",
        header.samples
    );
    Ok(Verified { header, records, samples })
}

async fn read_header(input: &mut (dyn AsyncRead + Send + Unpin)) -> anyhow::Result<HeaderBlock> {
    let mut block = vec![0; HEADER_SIZE];
    input.read_exact(&mut block).await.context("not a complete backup file (shorter than its header)")?;
    Header::decode_block(&block)
}

fn check(header: &Header, size: u64, sha: Sha256) -> anyhow::Result<()> {
    if size != header.payload_bytes {
        bail!("corrupt backup: payload is {size} bytes, the header says {}", header.payload_bytes);
    }
    let got = hex::encode(sha.finalize());
    if got != header.payload_sha256 {
        bail!("corrupt backup: payload SHA-256 is {got}, the header says {}", header.payload_sha256);
    }
    Ok(())
}
