//! Engines: how each database is read into a backup file and written back from one, over its own HTTP API, streaming
//! in bounded memory, keeping raw samples bit for bit.
//!
//! API → controller → **engine (this module)** → database.
//!
//! | database | backup | restore |
//! |---|---|---|
//! | VictoriaMetrics | `/api/v1/export` (JSON lines) | remote write `/api/v1/write` |
//! | Prometheus | remote read `/api/v1/read`, streamed XOR chunks | remote write `/api/v1/write` (receiver enabled, out-of-order window) |
//! | InfluxDB 1.x | `/query` per measurement, chunked, `epoch=ns` | `/write` line protocol, `precision=ns` |
//!
//! Prometheus and VictoriaMetrics share a data model (labels, millisecond timestamps, float values), so a backup of
//! either restores into either; an InfluxDB backup restores into InfluxDB only.

mod chunkenc;
mod decimal;
mod influx;
mod lineproto;
mod prometheus;
pub mod remote;
mod victoria;

use anyhow::bail;
use backup_apis::backup::BackupSource;
use backup_apis::database::{DatabaseEndpoint, DatabaseType};

use crate::format::writer::Source;
use crate::format::{BackupReader, BackupWriter, DistinctSeries, Header, Precision, Record};
use crate::http::Http;

/// Prometheus' staleness marker: a NaN with this exact bit pattern.
pub const STALE_NAN: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

/// The header fields known before reading a source.
pub fn source_of(source: &BackupSource) -> Source {
    let endpoint = &source.endpoint;
    Source {
        engine: endpoint.r#type,
        precision: match endpoint.r#type {
            DatabaseType::InfluxDB => Precision::Ns,
            DatabaseType::Prometheus | DatabaseType::VictoriaMetrics => Precision::Ms,
        },
        url: endpoint.url.clone(),
        database: endpoint.database.clone(),
        selector: source.selector.clone(),
    }
}

/// Reads the selected series of `source` into `out`.
pub async fn backup(http: &Http, source: &BackupSource, out: &mut BackupWriter) -> anyhow::Result<()> {
    match source.endpoint.r#type {
        DatabaseType::VictoriaMetrics => victoria::backup(http, source, out).await,
        DatabaseType::Prometheus => prometheus::backup(http, source, out).await,
        DatabaseType::InfluxDB => influx::backup(http, source, out).await,
    }
}

/// What a restore wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub series: u64,
    pub samples: u64,
}

/// Whether a backup of `header.engine` can be written into `target`; the reason if not.
pub fn check_compatible(header: &Header, target: &DatabaseEndpoint) -> Result<(), String> {
    use DatabaseType::*;
    match (header.engine, target.r#type) {
        (Prometheus | VictoriaMetrics, Prometheus | VictoriaMetrics) | (InfluxDB, InfluxDB) => Ok(()),
        (from, to) => Err(format!("a {from:?} backup cannot be restored into {to:?}")),
    }
}

/// Writes every record of `input` into `target`.
pub async fn restore(http: &Http, input: &mut BackupReader, target: &DatabaseEndpoint) -> anyhow::Result<Restored> {
    if let Err(reason) = check_compatible(input.header(), target) {
        bail!(reason);
    }
    let (series, samples) = match target.r#type {
        DatabaseType::VictoriaMetrics => victoria::restore(http, input, target).await?,
        DatabaseType::Prometheus => prometheus::restore(http, input, target).await?,
        DatabaseType::InfluxDB => influx::restore(http, input, target).await?,
    };
    Ok(Restored { series, samples })
}

/// Restores float series through remote write (Prometheus, VictoriaMetrics); returns (series, samples).
async fn prometheus_like_restore(http: &Http, input: &mut BackupReader, base: &str) -> anyhow::Result<(u64, u64)> {
    let mut writer = remote::RemoteWriter::new(http, base);
    let mut series = DistinctSeries::default();
    let mut labels = Vec::new();
    while let Some(record) = input.next().await? {
        match record {
            Record::Series(l) => {
                series.add(&l);
                labels = l;
            }
            Record::Samples { timestamps, values } => writer.add(&labels, &timestamps, &values).await?,
            Record::Columns(_) | Record::Rows(_) => bail!("corrupt backup: InfluxDB records in a float backup"),
        }
    }
    writer.flush().await?;
    Ok((series.count(), writer.samples))
}
