//! VictoriaMetrics: back up with `/api/v1/export` (JSON lines), restore with remote write.
//!
//! The export sends each series as one line, so memory here grows with the longest series (about 50 bytes a
//! sample while its line is decoded), not with the database. `reduce_mem_usage=1` would bound lines to a storage
//! block, but VictoriaMetrics 1.79 then attributes samples to the wrong series (seen in the tests), so it is not
//! used.
//!
//! API → controller → engine → **VictoriaMetrics (this file)** → database.
//!
//! Restores go through `/api/v1/write` rather than `/api/v1/import`: VictoriaMetrics keeps no NaN but Prometheus'
//! staleness marker, exports that marker as `null` (1.79; `NaN` in some versions), and its JSON import drops it, so
//! only remote write (which carries the marker's exact bits) brings staleness markers back.

use std::collections::BTreeMap;

use anyhow::{Context, ensure};
use backup_apis::backup::BackupSource;
use backup_apis::database::DatabaseEndpoint;
use jiff::Timestamp;

use super::target::{Preflight, check_retention, parse_victoria_retention};
use super::{STALE_NAN, decimal, write_floats};
use crate::format::{BackupReader, BackupWriter, Labels};
use crate::http::{Http, StatusError, url};
use crate::restore::tally::Tallies;
use crate::sanitize;

/// Selects every series.
const ALL_SERIES: &str = r#"{__name__!=""}"#;
/// Body chunks read ahead while lines are decoded.
const READ_AHEAD: usize = 16;

pub async fn backup(http: &Http, source: &BackupSource, out: &mut BackupWriter) -> anyhow::Result<()> {
    // No `/internal/force_flush` first: it costs more than exporting a million samples, and only makes the last
    // second or so of ingestion visible, which a backup of a live database races with anyway.
    let base = &source.endpoint.url;
    let selector = source.selector.as_deref().unwrap_or(ALL_SERIES);
    let body = http.get(&url(base, "/api/v1/export", &[("match[]", selector)])).await?;
    // A line is one series: at ~35 bytes a sample, the default 32 MiB is some 900,000 samples.
    let mut lines = body.read_ahead(READ_AHEAD).lines(http.piece_limit);
    let (mut timestamps, mut values) = (Vec::new(), Vec::new());
    while let Some(line) = lines.next().await? {
        let labels = parse_line(line, &mut timestamps, &mut values)
            .with_context(|| format!("unexpected export line from VictoriaMetrics: {}", preview(line)))?;
        out.series(labels).await?;
        out.samples(&timestamps, &values).await?;
    }
    Ok(())
}

pub async fn write(
    http: &Http,
    input: &mut BackupReader,
    target: &DatabaseEndpoint,
    tallies: &mut Tallies,
) -> anyhow::Result<()> {
    write_floats(http, input, target, tallies).await?;
    flush(http, &target.url).await;
    Ok(())
}

/// `-retentionPeriod` must keep the backup's oldest sample. (`/flags` lists the flags set on the command line; an
/// absent one has its default, one month. A server without `/flags`, e.g. a cluster's vminsert, is not checked:
/// the read back after writing still is.)
pub async fn preflight(http: &Http, base: &str, oldest: Timestamp) -> Result<(), Preflight> {
    let flags = match http.get(&url(base, "/flags", &[])).await {
        Ok(body) => body.bytes(1 << 20).await?,
        Err(e) if e.downcast_ref::<StatusError>().is_some_and(|s| s.status == http::StatusCode::NOT_FOUND) => {
            return Ok(());
        }
        Err(e) => return Err(e.context("reading the target's flags").into()),
    };
    let text = String::from_utf8_lossy(&flags);
    let value = text.lines().find_map(|l| l.trim().strip_prefix("-retentionPeriod=")).map(|v| v.trim_matches('"'));
    let setting = value.unwrap_or("1");
    let kept = parse_victoria_retention(setting).with_context(|| {
        format!("the target's -retentionPeriod {:?} is not understood", sanitize::text(setting, 40))
    })?;
    check_retention(Some(kept), &format!("-retentionPeriod={setting}"), oldest)
}

/// Calls `count(labels, timestamps)` for the series matching `selector` (all when `None`) between `min` and `max`
/// (milliseconds), after making recent writes visible.
pub async fn read_back(
    http: &Http,
    base: &str,
    selector: Option<&str>,
    min: i64,
    max: i64,
    count: &mut (dyn FnMut(&Labels, &[i64]) + Send),
) -> anyhow::Result<()> {
    flush(http, base).await;
    // Whole seconds, widened: the caller keeps the exact range.
    let (start, end) = ((min.div_euclid(1000) - 1).to_string(), (max.div_euclid(1000) + 1).to_string());
    let params = [("match[]", selector.unwrap_or(ALL_SERIES)), ("start", start.as_str()), ("end", end.as_str())];
    let body = http.get(&url(base, "/api/v1/export", &params)).await?;
    let mut lines = body.read_ahead(READ_AHEAD).lines(http.piece_limit);
    let (mut timestamps, mut values) = (Vec::new(), Vec::new());
    while let Some(line) = lines.next().await? {
        let labels = parse_line(line, &mut timestamps, &mut values)
            .with_context(|| format!("unexpected export line from VictoriaMetrics: {}", preview(line)))?;
        count(&labels, &timestamps);
    }
    Ok(())
}

/// Makes restored samples visible to queries at once (best effort: a cluster's vminsert has no such endpoint).
async fn flush(http: &Http, base: &str) {
    if let Err(e) = http.get(&url(base, "/internal/force_flush", &[])).await {
        tracing::debug!(error = %e, "VictoriaMetrics force_flush failed");
    }
}

/// Parses `{"metric":{...},"values":[...],"timestamps":[...]}` into labels, timestamps and values (replacing the
/// vectors' contents). Values are JSON numbers, `null` or `NaN` (staleness markers), `+Inf` or `-Inf`.
fn parse_line(line: &[u8], timestamps: &mut Vec<i64>, values: &mut Vec<f64>) -> anyhow::Result<Labels> {
    let rest = line.strip_prefix(br#"{"metric":"#).context("no metric")?;
    let mut metric = serde_json::Deserializer::from_slice(rest).into_iter::<BTreeMap<String, String>>();
    let labels = metric.next().context("no metric")??;
    let rest = &rest[metric.byte_offset()..];
    let rest = rest.strip_prefix(br#","values":["#).context("no values")?;
    let (vals, rest) = split_array(rest).context("unterminated values")?;
    let rest = rest.strip_prefix(br#","timestamps":["#).context("no timestamps")?;
    let (times, rest) = split_array(rest).context("unterminated timestamps")?;
    ensure!(rest == b"}", "trailing data");
    values.clear();
    if !vals.is_empty() {
        // The only NaN VictoriaMetrics stores is the staleness marker.
        decimal::parse_float_list(vals, values, |v| matches!(v, b"null" | b"NaN").then_some(STALE_NAN))?;
    }
    timestamps.clear();
    if !times.is_empty() {
        decimal::parse_int_list(times, timestamps)?;
    }
    ensure!(values.len() == timestamps.len(), "{} values but {} timestamps", values.len(), timestamps.len());
    Ok(labels.into_iter().collect())
}

/// The inside of a JSON array of numbers and what follows its `]`.
fn split_array(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = memchr::memchr(b']', s)?;
    Some((&s[..end], &s[end + 1..]))
}

fn preview(text: &[u8]) -> String {
    crate::sanitize::bytes(text, 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_export_lines() {
        let line = br#"{"metric":{"__name__":"m","a":"x\"y"},"values":[1.5,NaN,+Inf,-Inf,-0,1e-300,100000000000000000000,null],"timestamps":[1,2,3,4,5,6,-7,8]}"#;
        let (mut ts, mut vs) = (vec![9], vec![9.0]);
        let labels = parse_line(line, &mut ts, &mut vs).unwrap();
        assert_eq!(labels, [("__name__".into(), "m".into()), ("a".into(), "x\"y".into())]);
        assert_eq!(ts, [1, 2, 3, 4, 5, 6, -7, 8]);
        let bits: Vec<u64> = vs.iter().map(|v| v.to_bits()).collect();
        let want: Vec<u64> = [1.5, STALE_NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 1e-300, 1e20, STALE_NAN]
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(bits, want);
        let empty = br#"{"metric":{},"values":[],"timestamps":[]}"#;
        assert!(parse_line(empty, &mut ts, &mut vs).unwrap().is_empty() && ts.is_empty());
        for bad in [
            &br#"{"metric":{"a":"b"},"values":[1],"timestamps":[]}"#[..],
            br#"{"metric":{},"values":[x],"timestamps":[1]}"#,
            br#"{"metric":{},"values":[1],"timestamps":[1x]}"#,
            br#"{"metric":{},"values":[1],"timestamps":[1234567890123456789]}"#,
            b"{}",
        ] {
            assert!(parse_line(bad, &mut ts, &mut vs).is_err());
        }
    }
}
