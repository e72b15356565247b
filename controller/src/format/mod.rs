//! The backup file format, one for every engine.
//!
//! API → controller → **backup file (this module)** ↔ engine → database.
//!
//! A file is a 4 KiB header block followed by the payload:
//!
//! ```text
//! 0      8 bytes   magic "TSDBBKP1"
//! 8      4 bytes   length N of the header JSON, little-endian
//! 12     N bytes   the header JSON (see [`Header`]): engine, timestamp precision, source, time range, series and
//!                  sample counts, payload size and SHA-256
//! 12+N   encrypted payloads: the header's 16-byte authentication tag (see [`crypt`])
//!        zeros up to 4096 (checked)
//! 4096   payload: one zstd stream of records (see [`frame`])
//! ```
//!
//! The header is written last (the block is zeros while the payload streams), so a file cut short has no magic and is
//! never taken for a backup. In an object store the same block ends the object instead (an upload cannot seek back;
//! see `destination::object`), and is read first. The SHA-256 covers the payload bytes as stored (compressed), i.e.
//! `tail -c +4097 FILE | sha256sum`; readers verify it before restoring anything. The records are the engines' common
//! model: a series (sorted label pairs; InfluxDB's measurement is the `__name__` label) followed by its float samples
//! (Prometheus, VictoriaMetrics) or by its typed field columns and rows (InfluxDB).

pub mod crypt;
pub mod frame;
pub mod reader;
pub mod writer;

use std::collections::HashSet;
use std::hash::BuildHasher;

use anyhow::{Context, bail, ensure};
use backup_apis::database::DatabaseType;
use serde::{Deserialize, Serialize};

pub use reader::BackupReader;
pub use writer::BackupWriter;

pub const MAGIC: &[u8; 8] = b"TSDBBKP1";
pub const HEADER_SIZE: usize = 4096;
/// The format version in the header of new files. Format 1 (raw 8-byte values, `F` records) is still read.
pub const FORMAT_VERSION: u32 = 2;
const READABLE_FORMATS: std::ops::RangeInclusive<u32> = 1..=FORMAT_VERSION;

/// The label that holds a Prometheus metric name, or an InfluxDB measurement.
pub const NAME_LABEL: &str = "__name__";
/// The label that holds an InfluxDB series' retention policy, when it is not the database's default one.
pub const RETENTION_POLICY_LABEL: &str = "__retention_policy__";

/// The unit of the timestamps in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Milliseconds since the epoch (Prometheus, VictoriaMetrics).
    Ms,
    /// Nanoseconds since the epoch (InfluxDB).
    Ns,
}

/// What a backup holds; the self-describing part of the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    pub format: u32,
    pub engine: DatabaseType,
    pub precision: Precision,
    pub compression: String,
    pub source_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    pub started_at: jiff::Timestamp,
    pub completed_at: jiff::Timestamp,
    /// Smallest and largest sample timestamp, in `precision` units; absent when there are no samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_time: Option<i64>,
    pub series: u64,
    /// Float samples, or InfluxDB field values.
    pub samples: u64,
    pub payload_bytes: u64,
    pub payload_sha256: String,
    /// The TimeseriesDBBackup the file belongs to (absent in files of earlier controllers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// How the payload is encrypted; absent when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<crypt::Sealing>,
}

/// A header block read back: the header, and what authenticates it when the payload is encrypted.
pub struct HeaderBlock {
    pub header: Header,
    /// Magic, length and JSON: what the tag covers.
    pub signed: Vec<u8>,
    /// The 16 bytes after the JSON of an encrypted backup; empty otherwise.
    pub tag: Vec<u8>,
}

/// The object a backup file belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Header {
    /// The header block: magic, length, JSON, (encrypted: the tag with `key`), zero padding.
    pub fn encode(&self, key: Option<&crypt::Key>) -> anyhow::Result<Vec<u8>> {
        let json = serde_json::to_vec(self)?;
        ensure!(
            json.len() <= HEADER_SIZE - 12 - crypt::TAG,
            "backup header of {} bytes does not fit in {HEADER_SIZE} (URL or selector too long?)",
            json.len()
        );
        let mut block = Vec::with_capacity(HEADER_SIZE);
        block.extend_from_slice(MAGIC);
        block.extend_from_slice(&u32::try_from(json.len())?.to_le_bytes());
        block.extend_from_slice(&json);
        match (&self.encryption, key) {
            (Some(sealing), Some(key)) => block.extend(crypt::Sealer::tag_header(key, sealing, &block)?),
            (None, None) => {}
            _ => bail!("a header's encryption and its key go together"),
        }
        block.resize(HEADER_SIZE, 0);
        Ok(block)
    }

    pub fn decode(block: &[u8]) -> anyhow::Result<Self> {
        Ok(Self::decode_block(block)?.header)
    }

    /// Reads a header block; checks that the padding after the JSON (and tag) is zeros.
    pub fn decode_block(block: &[u8]) -> anyhow::Result<HeaderBlock> {
        ensure!(block.len() >= 12 && &block[..8] == MAGIC, "not a complete backup file (no header)");
        let len = u32::from_le_bytes([block[8], block[9], block[10], block[11]]) as usize;
        ensure!(len <= HEADER_SIZE - 12 && block.len() == HEADER_SIZE, "corrupt backup header (length {len})");
        let end = 12 + len;
        let header: Header = serde_json::from_slice(&block[12..end]).context("corrupt backup header")?;
        if !READABLE_FORMATS.contains(&header.format) {
            bail!(
                "backup format {} is not supported (this controller reads formats {} to {})",
                header.format,
                READABLE_FORMATS.start(),
                READABLE_FORMATS.end()
            );
        }
        let padding_from = match header.encryption {
            Some(_) => end + crypt::TAG,
            None => end,
        };
        let tag = block.get(end..padding_from).context("corrupt backup header (no room for its tag)")?.to_vec();
        ensure!(block[padding_from..].iter().all(|&b| b == 0), "corrupt backup header: bytes after it are not zeros");
        Ok(HeaderBlock { header, signed: block[..end].to_vec(), tag })
    }
}

/// A series: its label pairs, sorted by name.
pub type Labels = Vec<(String, String)>;

/// The type of an InfluxDB field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Float,
    Integer,
    Unsigned,
    String,
    Boolean,
}

impl FieldType {
    fn code(self) -> u8 {
        match self {
            FieldType::Float => 0,
            FieldType::Integer => 1,
            FieldType::Unsigned => 2,
            FieldType::String => 3,
            FieldType::Boolean => 4,
        }
    }

    fn from_code(code: u8) -> anyhow::Result<Self> {
        Ok(match code {
            0 => FieldType::Float,
            1 => FieldType::Integer,
            2 => FieldType::Unsigned,
            3 => FieldType::String,
            4 => FieldType::Boolean,
            _ => bail!("unknown field type {code}"),
        })
    }
}

/// One typed field value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    String(String),
    Boolean(bool),
}

/// A field column of an InfluxDB series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub field_type: FieldType,
}

/// One InfluxDB point of the current series: a value (or none) per column.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub time: i64,
    pub values: Vec<Option<FieldValue>>,
}

/// One record of the payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Starts a series; what follows belongs to it.
    Series(Labels),
    /// Float samples of the current series.
    Samples { timestamps: Vec<i64>, values: Vec<f64> },
    /// The field columns of the current (InfluxDB) series, before its rows.
    Columns(Vec<Column>),
    /// Points of the current series, one value slot per column.
    Rows(Vec<Row>),
}

impl Record {
    /// The samples it holds: float samples, or the non-empty values of rows.
    pub fn samples(&self) -> u64 {
        match self {
            Record::Samples { timestamps, .. } => timestamps.len() as u64,
            Record::Rows(rows) => rows_samples(rows),
            Record::Series(_) | Record::Columns(_) => 0,
        }
    }
}

/// The samples of InfluxDB rows: every non-empty value.
pub fn rows_samples(rows: &[Row]) -> u64 {
    rows.iter().map(|r| r.values.iter().flatten().count() as u64).sum()
}

/// Counts distinct series (by a hash of their labels), in memory proportional to the series, not the samples.
#[derive(Default)]
pub struct DistinctSeries {
    seen: HashSet<u64>,
    hasher: std::hash::RandomState,
}

impl DistinctSeries {
    pub fn add(&mut self, labels: &Labels) {
        self.seen.insert(self.hasher.hash_one(labels));
    }

    pub fn count(&self) -> u64 {
        self.seen.len() as u64
    }
}

#[cfg(test)]
mod tests;
