//! Writing a backup file: engines hand records to [`BackupWriter`], which counts them, compresses them with zstd,
//! seals them when the location encrypts ([`super::crypt`]), hashes the stored bytes and streams them to a
//! [`PendingFile`]; `finish` writes the header and commits.
//!
//! API → controller → **backup file writer (this file)** ← engine ← database.

use backup_apis::database::DatabaseType;
use sha2::{Digest, Sha256};

use super::crypt::{Key, Sealer};
use super::{Column, DistinctSeries, FORMAT_VERSION, Header, Labels, Owner, Precision, Record, Row, frame};
use crate::destination::PendingFile;

/// Compressed bytes are handed to the file in pieces of about this size.
const FLUSH_AT: usize = 1 << 20;
/// zstd's fastest level: compression runs beside decoding the database's answer on the same core, and level 3
/// would cost a third of the throughput for files ~10% smaller.
const ZSTD_LEVEL: i32 = 1;
/// Longest run of samples or rows in one record.
const MAX_SAMPLES_PER_FRAME: usize = 8192;
const MAX_ROWS_PER_FRAME: usize = 2048;

/// What the header says about the source, known before the data.
#[derive(Debug, Clone)]
pub struct Source {
    pub engine: DatabaseType,
    pub precision: Precision,
    pub url: String,
    pub database: Option<String>,
    pub selector: Option<String>,
    pub owner: Option<Owner>,
}

pub struct BackupWriter {
    source: Source,
    started_at: jiff::Timestamp,
    file: Box<dyn PendingFile>,
    zstd: zstd::stream::write::Encoder<'static, Vec<u8>>,
    raw: Vec<u8>,
    sha: Sha256,
    payload_bytes: u64,
    /// With its key, when the payload is encrypted.
    sealer: Option<(Sealer, Key)>,
    sealed: Vec<u8>,
    /// The labels of the current series: a series split over several pieces by the database is written once.
    current: Option<Labels>,
    series: DistinctSeries,
    samples: u64,
    min_time: Option<i64>,
    max_time: Option<i64>,
    /// Where a running job reads how far it is.
    progress: Option<std::sync::Arc<crate::progress::Progress>>,
}

impl BackupWriter {
    pub fn new(file: Box<dyn PendingFile>, source: Source) -> anyhow::Result<Self> {
        Ok(Self {
            source,
            started_at: jiff::Timestamp::now(),
            file,
            zstd: zstd::stream::write::Encoder::new(Vec::with_capacity(FLUSH_AT * 2), ZSTD_LEVEL)?,
            raw: Vec::with_capacity(FLUSH_AT),
            sha: Sha256::new(),
            payload_bytes: 0,
            sealer: None,
            sealed: Vec::new(),
            current: None,
            series: DistinctSeries::default(),
            samples: 0,
            min_time: None,
            max_time: None,
            progress: None,
        })
    }

    /// Encrypts the payload with `key` (none: stored in clear).
    pub fn encrypt_with(mut self, key: Option<&Key>) -> anyhow::Result<Self> {
        self.sealer = match key {
            Some(key) => Some((Sealer::new(key)?, key.clone())),
            None => None,
        };
        Ok(self)
    }

    /// Counts the samples and stored bytes written into `progress` as they pass.
    pub fn count_into(&mut self, progress: std::sync::Arc<crate::progress::Progress>) {
        self.progress = Some(progress);
    }

    fn count(&self, samples: u64) {
        if let Some(p) = &self.progress {
            p.add_samples(samples);
        }
    }

    /// Starts (or continues, if `labels` are the current series') a series. Labels are sorted here.
    pub async fn series(&mut self, mut labels: Labels) -> anyhow::Result<()> {
        labels.sort();
        if self.current.as_ref() == Some(&labels) {
            return Ok(());
        }
        self.series.add(&labels);
        self.push(&Record::Series(labels.clone())).await?;
        self.current = Some(labels);
        Ok(())
    }

    /// Float samples of the current series.
    pub async fn samples(&mut self, timestamps: &[i64], values: &[f64]) -> anyhow::Result<()> {
        anyhow::ensure!(
            timestamps.len() == values.len(),
            "{} timestamps but {} values",
            timestamps.len(),
            values.len()
        );
        for (ts, vs) in timestamps.chunks(MAX_SAMPLES_PER_FRAME).zip(values.chunks(MAX_SAMPLES_PER_FRAME)) {
            self.samples += ts.len() as u64;
            self.count(ts.len() as u64);
            self.times(ts.iter().copied());
            frame::encode_samples(ts, vs, &mut self.raw);
            self.flush_if_full().await?;
        }
        Ok(())
    }

    /// The field columns of the current series (InfluxDB).
    pub async fn columns(&mut self, columns: Vec<Column>) -> anyhow::Result<()> {
        self.push(&Record::Columns(columns)).await
    }

    /// Points of the current series (InfluxDB); every non-empty value counts as a sample.
    pub async fn rows(&mut self, rows: Vec<Row>) -> anyhow::Result<()> {
        let samples = super::rows_samples(&rows);
        self.samples += samples;
        self.count(samples);
        self.times(rows.iter().map(|r| r.time));
        if rows.len() <= MAX_ROWS_PER_FRAME {
            return self.push(&Record::Rows(rows)).await;
        }
        for chunk in rows.chunks(MAX_ROWS_PER_FRAME) {
            self.push(&Record::Rows(chunk.to_vec())).await?;
        }
        Ok(())
    }

    pub fn samples_written(&self) -> u64 {
        self.samples
    }

    /// Ends the payload, writes the header and commits the file. Returns the header and the file's size.
    pub async fn finish(mut self) -> anyhow::Result<(Header, u64)> {
        self.compress()?;
        let zstd = std::mem::replace(&mut self.zstd, zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?);
        let tail = zstd.finish()?;
        self.store(&tail).await?;
        let (encryption, key) = match self.sealer.take() {
            Some((sealer, key)) => {
                let mut last = std::mem::take(&mut self.sealed);
                let sealing = sealer.finish(&mut last)?;
                self.write_stored(&last).await?;
                (Some(sealing), Some(key))
            }
            None => (None, None),
        };
        let header = Header {
            format: FORMAT_VERSION,
            engine: self.source.engine,
            precision: self.source.precision,
            compression: "zstd".into(),
            source_url: self.source.url,
            database: self.source.database,
            selector: self.source.selector,
            started_at: self.started_at,
            completed_at: jiff::Timestamp::now(),
            min_time: self.min_time,
            max_time: self.max_time,
            series: self.series.count(),
            samples: self.samples,
            payload_bytes: self.payload_bytes,
            payload_sha256: hex::encode(self.sha.finalize()),
            owner: self.source.owner,
            encryption,
        };
        let size = self.file.commit(header.encode(key.as_ref())?).await?;
        Ok((header, size))
    }

    fn times(&mut self, times: impl Iterator<Item = i64> + Clone) {
        if let Some(min) = times.clone().min() {
            self.min_time = Some(self.min_time.map_or(min, |m| m.min(min)));
        }
        if let Some(max) = times.max() {
            self.max_time = Some(self.max_time.map_or(max, |m| m.max(max)));
        }
    }

    async fn push(&mut self, record: &Record) -> anyhow::Result<()> {
        frame::encode(record, &mut self.raw);
        self.flush_if_full().await
    }

    async fn flush_if_full(&mut self) -> anyhow::Result<()> {
        if self.raw.len() >= FLUSH_AT {
            self.compress()?;
            if self.zstd.get_ref().len() >= FLUSH_AT {
                let out = std::mem::take(self.zstd.get_mut());
                self.store(&out).await?;
                *self.zstd.get_mut() = out;
                self.zstd.get_mut().clear();
            }
        }
        Ok(())
    }

    /// Compressed bytes: sealed (if encrypting) and stored.
    async fn store(&mut self, compressed: &[u8]) -> anyhow::Result<()> {
        match &mut self.sealer {
            None => self.write_stored(compressed).await,
            Some((sealer, _)) => {
                let mut sealed = std::mem::take(&mut self.sealed);
                sealer.push(compressed, &mut sealed)?;
                self.write_stored(&sealed).await?;
                sealed.clear();
                self.sealed = sealed;
                Ok(())
            }
        }
    }

    /// Bytes as they are stored: hashed, counted, written.
    async fn write_stored(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.sha.update(bytes);
        self.payload_bytes += bytes.len() as u64;
        if let Some(p) = &self.progress {
            p.add_bytes(bytes.len() as u64);
        }
        self.file.write(bytes).await
    }

    fn compress(&mut self) -> anyhow::Result<()> {
        use std::io::Write;
        self.zstd.write_all(&self.raw)?;
        self.raw.clear();
        Ok(())
    }
}
