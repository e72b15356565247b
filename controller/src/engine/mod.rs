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
//! either restores into either; an InfluxDB backup restores into InfluxDB only. For restores, each engine also
//! checks a target's settings before writing (`preflight`) and reads back what a target holds (`read_back`); the
//! orchestration is in `crate::restore`.

mod chunkenc;
mod decimal;
mod influx;
mod lineproto;
mod prometheus;
pub mod remote;
pub mod target;
mod victoria;

use anyhow::{Context, bail};
use backup_apis::backup::BackupSource;
use backup_apis::database::{DatabaseEndpoint, DatabaseType};

use crate::format::writer::Source;
use crate::format::{BackupReader, BackupWriter, Header, Labels, Owner, Precision, Record};
use crate::http::Http;
use crate::restore::Summary;
use crate::restore::tally::{Tallies, series_id};
pub use target::Preflight;
use target::time_of;

/// Prometheus' staleness marker: a NaN with this exact bit pattern.
pub const STALE_NAN: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

/// The header fields known before reading a source.
pub fn source_of(source: &BackupSource, owner: Option<Owner>) -> Source {
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
        owner,
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

/// Whether a backup of `header.engine` can be written into `target`; the reason if not.
pub fn check_compatible(header: &Header, target: &DatabaseEndpoint) -> Result<(), String> {
    use DatabaseType::*;
    match (header.engine, target.r#type) {
        (Prometheus | VictoriaMetrics, Prometheus | VictoriaMetrics) | (InfluxDB, InfluxDB) => Ok(()),
        (from, to) => Err(format!("a {from:?} backup cannot be restored into {to:?}")),
    }
}

/// Whether a target of type `target` keeps a float sample of value `v` (VictoriaMetrics keeps no NaN but the
/// staleness marker).
pub fn keeps(target: DatabaseType, v: f64) -> bool {
    target != DatabaseType::VictoriaMetrics || !v.is_nan() || v.to_bits() == STALE_NAN.to_bits()
}

/// Checks, before anything is written, that `target` keeps the backup's samples (retention; for Prometheus the
/// remote-write receiver and the out-of-order window).
pub async fn preflight(
    http: &Http,
    target: &DatabaseEndpoint,
    header: &Header,
    summary: &Summary,
) -> Result<(), Preflight> {
    let (Some(min), Some(max)) = (summary.min_time, summary.max_time) else { return Ok(()) };
    let (oldest, newest) = (time_of(min, header.precision), time_of(max, header.precision));
    match target.r#type {
        DatabaseType::VictoriaMetrics => victoria::preflight(http, &target.url, oldest).await,
        DatabaseType::Prometheus => prometheus::preflight(http, &target.url, oldest, newest).await,
        DatabaseType::InfluxDB => influx::preflight(http, target, header.precision, summary).await,
    }
}

/// Counts into `tallies` the samples `target` holds of the backup's series over the backup's time range.
pub async fn read_back(
    http: &Http,
    target: &DatabaseEndpoint,
    header: &Header,
    summary: &Summary,
    tallies: &mut Tallies,
) -> anyhow::Result<()> {
    let (Some(min), Some(max)) = (summary.min_time, summary.max_time) else { return Ok(()) };
    let selector = match (&summary.names, &header.selector) {
        (Some(names), _) => Some(names_selector(names)),
        (None, Some(selector)) if header.engine != DatabaseType::InfluxDB => Some(selector.clone()),
        (None, _) => None,
    };
    let mut count = |labels: &Labels, timestamps: &[i64]| {
        let id = series_id(labels);
        for &t in timestamps.iter().filter(|&&t| (min..=max).contains(&t)) {
            tallies.have(id, t);
        }
    };
    match target.r#type {
        DatabaseType::VictoriaMetrics => {
            victoria::read_back(http, &target.url, selector.as_deref(), min, max, &mut count).await
        }
        DatabaseType::Prometheus => {
            prometheus::read_back(http, &target.url, selector.as_deref(), min, max, &mut count).await
        }
        DatabaseType::InfluxDB => influx::read_back(http, target, summary, min, max, &mut count).await,
    }
    .context("reading back what the target holds")
}

/// A series selector for exactly these metric names.
fn names_selector(names: &std::collections::BTreeSet<String>) -> String {
    let alternatives: Vec<String> = names.iter().map(|n| regex_escape(n)).collect();
    format!("{{__name__=~{:?}}}", alternatives.join("|"))
}

/// `s` as a literal in a (RE2) regular expression.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Writes the samples of `input` into `target`, skipping those `tallies` say are there already.
pub async fn write(
    http: &Http,
    input: &mut BackupReader,
    target: &DatabaseEndpoint,
    tallies: &mut Tallies,
) -> anyhow::Result<()> {
    if let Err(reason) = check_compatible(input.header(), target) {
        bail!(reason);
    }
    match target.r#type {
        DatabaseType::VictoriaMetrics => victoria::write(http, input, target, tallies).await,
        DatabaseType::Prometheus => prometheus::write(http, input, target, tallies).await,
        DatabaseType::InfluxDB => influx::write(http, input, target, tallies).await,
    }
}

/// What may explain samples missing after a write, per target type.
pub fn loss_hint(target: DatabaseType) -> &'static str {
    match target {
        DatabaseType::Prometheus => {
            "; Prometheus answered every write with success, so it dropped them itself (its out-of-order path can \
             lose samples; try a target with a wider out_of_order_time_window, or VictoriaMetrics)"
        }
        DatabaseType::VictoriaMetrics => {
            "; check -dedup.minScrapeInterval (deduplication merges samples) and the target's logs"
        }
        DatabaseType::InfluxDB => "; check the target's logs",
    }
}

/// Writes float series through remote write (Prometheus, VictoriaMetrics), skipping samples already there and, for
/// VictoriaMetrics, NaN other than staleness markers (it would drop them).
async fn write_floats(
    http: &Http,
    input: &mut BackupReader,
    target: &DatabaseEndpoint,
    tallies: &mut Tallies,
) -> anyhow::Result<()> {
    let mut writer = remote::RemoteWriter::new(http, &target.url);
    let (mut labels, mut id) = (Vec::new(), 0);
    let (mut kept_times, mut kept_values) = (Vec::new(), Vec::new());
    while let Some(record) = input.next().await? {
        match record {
            Record::Series(l) => {
                id = series_id(&l);
                labels = l;
            }
            Record::Samples { timestamps, values } => {
                let (timestamps, values) = if values.iter().all(|&v| keeps(target.r#type, v)) {
                    (timestamps, values)
                } else {
                    kept_times.clear();
                    kept_values.clear();
                    for (t, v) in timestamps.into_iter().zip(values).filter(|&(_, v)| keeps(target.r#type, v)) {
                        kept_times.push(t);
                        kept_values.push(v);
                    }
                    (std::mem::take(&mut kept_times), std::mem::take(&mut kept_values))
                };
                let skip = tallies.take_skip(id, timestamps.len());
                writer.add(&labels, &timestamps[skip..], &values[skip..]).await?;
            }
            Record::Columns(_) | Record::Rows(_) => bail!("corrupt backup: InfluxDB records in a float backup"),
        }
    }
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_kept_values() {
        let names = ["up".to_string(), "a.b|c".to_string()].into_iter().collect();
        assert_eq!(names_selector(&names), r#"{__name__=~"a\\.b\\|c|up"}"#);
        assert!(keeps(DatabaseType::VictoriaMetrics, STALE_NAN));
        assert!(!keeps(DatabaseType::VictoriaMetrics, f64::NAN));
        assert!(keeps(DatabaseType::Prometheus, f64::NAN));
        assert!(keeps(DatabaseType::VictoriaMetrics, f64::INFINITY));
    }
}
