//! Prometheus: back up with remote read (`/api/v1/read`) asking for the streamed XOR-chunks response, so the
//! answer arrives as a stream of ≤ 1 MB frames whatever the data size; restore with remote write.
//!
//! API → controller → engine → **Prometheus (this file)** → database.
//!
//! A restore target must run with `--web.enable-remote-write-receiver`, an out-of-order window covering the
//! backup's time range (`storage: {tsdb: {out_of_order_time_window: 30d}}` in its config file) and a
//! `--storage.tsdb.retention.time` that keeps the backup's oldest samples; without the window, samples older than
//! the newest minus one hour are rejected. Staleness markers come back with their exact bits. If the source has
//! external labels, remote read adds them to every series, and the restore writes them as ordinary labels.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use backup_apis::backup::BackupSource;
use backup_apis::database::DatabaseEndpoint;
use bytes::{Buf, Bytes, BytesMut};
use http::{Method, header};
use jiff::Timestamp;
use prost::Message;
use serde_json::Value;

use super::chunkenc::decode_xor;
use super::remote::{CHUNK_XOR, Chunk, ChunkedReadResponse, LabelMatcher, Query, ReadRequest, STREAMED_XOR_CHUNKS};
use super::target::{MARGIN, Preflight, check_retention, human, parse_prometheus_duration};
use super::write_floats;
use crate::format::{BackupReader, BackupWriter, Labels, NAME_LABEL};
use crate::http::{Body, Http, StatusError, url};
use crate::restore::tally::Tallies;
use crate::sanitize;

/// Body chunks read ahead while frames are decoded.
const READ_AHEAD: usize = 16;

pub async fn backup(http: &Http, source: &BackupSource, out: &mut BackupWriter) -> anyhow::Result<()> {
    let matchers = matchers(source.selector.as_deref())?;
    let query = Query { start_timestamp_ms: i64::MIN, end_timestamp_ms: i64::MAX, matchers };
    let mut frames = remote_read(http, &source.endpoint.url, query).await?;
    let (mut timestamps, mut values) = (Vec::new(), Vec::new());
    while let Some(response) = frames.next_response().await? {
        for series in response.chunked_series {
            out.series(series.labels.into_iter().map(|l| (l.name, l.value)).collect()).await?;
            for chunk in series.chunks {
                decode_chunk(&chunk, &mut timestamps, &mut values)?;
                out.samples(&timestamps, &values).await?;
            }
        }
    }
    Ok(())
}

pub async fn write(
    http: &Http,
    input: &mut BackupReader,
    target: &DatabaseEndpoint,
    tallies: &mut Tallies,
) -> anyhow::Result<()> {
    write_floats(http, input, target, tallies).await.map_err(|e| {
        if e.downcast_ref::<StatusError>().is_some_and(|s| s.status == http::StatusCode::NOT_FOUND) {
            e.context("the target Prometheus must run with --web.enable-remote-write-receiver")
        } else {
            e
        }
    })
}

/// Without an out-of-order window, Prometheus takes samples at most this much older than its newest one (half its
/// 2 h head chunk range).
const IN_ORDER_SLACK: Duration = Duration::from_secs(3600);

/// The target must accept remote write, keep the backup's oldest sample (`--storage.tsdb.retention.time`), and take
/// samples as far behind its newest one (the backup's, or one already there) as the backup's oldest
/// (`out_of_order_time_window` in its config file).
pub async fn preflight(http: &Http, base: &str, oldest: Timestamp, newest: Timestamp) -> Result<(), Preflight> {
    let flags: Value = api_data(http, base, "/api/v1/status/flags").await?;
    let flag = |name: &str| flags.get(name).and_then(Value::as_str).unwrap_or("");
    if flag("web.enable-remote-write-receiver") != "true" && !flag("enable-feature").contains("remote-write-receiver") {
        return Err(Preflight::Unsuitable(
            "the target Prometheus does not accept remote write: run it with --web.enable-remote-write-receiver".into(),
        ));
    }
    let retention = flag("storage.tsdb.retention.time");
    let kept = match parse_prometheus_duration(retention) {
        // Neither a time nor a size set: 15 days. Only a size set: no time limit.
        Some(d) if d.is_zero() => match flag("storage.tsdb.retention.size") {
            "" | "0B" => Some(Duration::from_secs(15 * 86_400)),
            _ => None,
        },
        other => other,
    };
    check_retention(kept, &format!("--storage.tsdb.retention.time={retention}"), oldest)?;

    let config: Value = api_data(http, base, "/api/v1/status/config").await?;
    let yaml = config.get("yaml").and_then(Value::as_str).unwrap_or("");
    let window = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("out_of_order_time_window:"))
        .and_then(|v| parse_prometheus_duration(v.trim()))
        .unwrap_or(Duration::ZERO);
    let tsdb: Value = api_data(http, base, "/api/v1/status/tsdb").await?;
    let head = |key: &str| tsdb.pointer(&format!("/headStats/{key}")).and_then(Value::as_i64);
    let head_newest = match (head("minTime"), head("maxTime")) {
        (Some(min), Some(max)) if min <= max => Timestamp::from_millisecond(max).ok(),
        _ => None,
    };
    let newest_there = head_newest.filter(|&t| t > newest);
    let span = Duration::try_from(newest_there.unwrap_or(newest).duration_since(oldest)).unwrap_or_default();
    let allowed = window.max(IN_ORDER_SLACK);
    if span > allowed {
        let setting = match window.is_zero() {
            true => "no out_of_order_time_window: samples at most one hour behind its newest".to_string(),
            false => format!("out_of_order_time_window: {}", human(window)),
        };
        let newest = match newest_there {
            Some(t) => format!("the target's newest sample ({t:.0})"),
            None => format!("the backup's newest ({newest:.0})"),
        };
        return Err(Preflight::Unsuitable(format!(
            "the target Prometheus takes samples at most {} older than its newest one ({setting}), but the backup's \
             oldest sample ({oldest:.0}) is {} older than {newest}: set storage: {{tsdb: {{out_of_order_time_window: \
             {}}}}} (or more) in its config file and reload it",
            human(allowed),
            human(span),
            prometheus_days(span + MARGIN),
        )));
    }
    Ok(())
}

/// Whole days, rounded up, as a Prometheus duration.
fn prometheus_days(d: Duration) -> String {
    format!("{}d", d.as_secs().div_ceil(86_400))
}

/// The `data` of a Prometheus API answer.
async fn api_data(http: &Http, base: &str, path: &str) -> anyhow::Result<Value> {
    let body = http.get(&url(base, path, &[])).await?.bytes(16 << 20).await?;
    let answer: Value = serde_json::from_slice(&body).with_context(|| format!("unexpected answer to {path}"))?;
    answer.get("data").cloned().with_context(|| format!("no data in the answer to {path}"))
}

/// Calls `count(labels, timestamps)` for the series matching `selector` (all when `None`) with samples between
/// `min` and `max` (milliseconds; chunks may hold some outside, which the caller leaves out).
pub async fn read_back(
    http: &Http,
    base: &str,
    selector: Option<&str>,
    min: i64,
    max: i64,
    count: &mut (dyn FnMut(&Labels, &[i64]) + Send),
) -> anyhow::Result<()> {
    let query = Query { start_timestamp_ms: min, end_timestamp_ms: max, matchers: matchers(selector)? };
    let mut frames = remote_read(http, base, query).await?;
    let (mut timestamps, mut values) = (Vec::new(), Vec::new());
    while let Some(response) = frames.next_response().await? {
        for series in response.chunked_series {
            let mut labels: Labels = series.labels.into_iter().map(|l| (l.name, l.value)).collect();
            labels.sort();
            for chunk in &series.chunks {
                decode_chunk(chunk, &mut timestamps, &mut values)?;
                count(&labels, &timestamps);
            }
        }
    }
    Ok(())
}

/// The matchers of a selector; every series with a name when `None`.
fn matchers(selector: Option<&str>) -> anyhow::Result<Vec<LabelMatcher>> {
    match selector {
        Some(selector) => parse_selector(selector),
        None => Ok(vec![LabelMatcher { r#type: RE, name: NAME_LABEL.into(), value: ".+".into() }]),
    }
}

/// Sends one remote read query, asking for the streamed XOR-chunks answer.
async fn remote_read(http: &Http, base: &str, query: Query) -> anyhow::Result<Frames> {
    let request = ReadRequest { queries: vec![query], accepted_response_types: vec![STREAMED_XOR_CHUNKS] };
    let body = snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())?;
    let response = http
        .send(
            Method::POST,
            &url(base, "/api/v1/read", &[]),
            &[
                (header::CONTENT_TYPE, "application/x-protobuf"),
                (header::CONTENT_ENCODING, "snappy"),
                (header::HeaderName::from_static("x-prometheus-remote-read-version"), "0.1.0"),
            ],
            Bytes::from(body),
        )
        .await?;
    let content_type = response.content_type().unwrap_or_default();
    ensure!(
        content_type.starts_with("application/x-streamed-protobuf"),
        "Prometheus answered remote read with {:?}, not the streamed response (Prometheus ≥ 2.13 needed)",
        sanitize::text(content_type, 100)
    );
    // Prometheus' frames are ≤ 1 MB by default (`--storage.remote.read-max-bytes-in-frame`); larger settings are
    // accepted up to the piece limit.
    Ok(Frames { body: response.read_ahead(READ_AHEAD), buf: BytesMut::new(), max: http.piece_limit })
}

/// The samples of one XOR chunk, replacing the vectors' contents.
fn decode_chunk(chunk: &Chunk, timestamps: &mut Vec<i64>, values: &mut Vec<f64>) -> anyhow::Result<()> {
    if chunk.r#type != CHUNK_XOR {
        bail!("chunk encoding {} (native histograms) is not supported", chunk.r#type);
    }
    timestamps.clear();
    values.clear();
    decode_xor(&chunk.data, timestamps, values)
}

/// The frames of a streamed remote read answer: `uvarint length | CRC-32C (big-endian) | ChunkedReadResponse`.
struct Frames {
    body: Body,
    buf: BytesMut,
    max: usize,
}

impl Frames {
    /// The next frame, decoded.
    async fn next_response(&mut self) -> anyhow::Result<Option<ChunkedReadResponse>> {
        match self.next().await? {
            Some(frame) => Ok(Some(ChunkedReadResponse::decode(frame).context("corrupt remote read frame")?)),
            None => Ok(None),
        }
    }

    async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        loop {
            if let Some((len, header)) = uvarint(&self.buf)? {
                ensure!(len <= self.max as u64, "remote read frame of {len} bytes (over --max-piece-bytes)");
                let total = header + 4 + len as usize;
                if self.buf.len() >= total {
                    let mut frame = self.buf.split_to(total);
                    frame.advance(header);
                    let crc = frame.get_u32();
                    ensure!(crc32c(&frame) == crc, "remote read frame fails its CRC-32C check");
                    return Ok(Some(frame.freeze()));
                }
            }
            match self.body.chunk().await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk),
                None if self.buf.is_empty() => return Ok(None),
                None => bail!("remote read answer cut short"),
            }
        }
    }
}

/// A uvarint at the start of `buf` and its length, or `None` if incomplete.
fn uvarint(buf: &[u8]) -> anyhow::Result<Option<(u64, usize)>> {
    let mut v = 0u64;
    for (i, &b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(Some((v, i + 1)));
        }
    }
    ensure!(buf.len() < 10, "corrupt remote read frame length");
    Ok(None)
}

/// CRC-32 with the Castagnoli polynomial, as Prometheus' frames use.
fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut k = 0;
            while k < 8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
                k += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    !data.iter().fold(!0u32, |crc, &b| TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8))
}

const EQ: i32 = 0;
const NEQ: i32 = 1;
const RE: i32 = 2;
const NRE: i32 = 3;

/// Parses a series selector, `name{label="v", other=~"re", ...}` (either part optional), into matchers.
fn parse_selector(selector: &str) -> anyhow::Result<Vec<LabelMatcher>> {
    let bad = |why: &str| anyhow::anyhow!("bad selector {selector:?}: {why}");
    let s = selector.trim();
    let ident_end = |s: &str| s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(s.len());
    let mut matchers = Vec::new();
    let n = ident_end(s);
    if n > 0 {
        matchers.push(LabelMatcher { r#type: EQ, name: NAME_LABEL.into(), value: s[..n].into() });
    }
    let mut rest = s[n..].trim_start();
    if !rest.is_empty() {
        rest = rest.strip_prefix('{').ok_or_else(|| bad("expected '{'"))?;
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('}') {
                ensure!(r.trim().is_empty(), bad("text after '}'"));
                break;
            }
            let n = ident_end(rest);
            ensure!(n > 0, bad("expected a label name"));
            let name = rest[..n].to_string();
            rest = rest[n..].trim_start();
            let (op, len) = [("=~", RE), ("!~", NRE), ("!=", NEQ), ("=", EQ)]
                .iter()
                .find(|(p, _)| rest.starts_with(p))
                .map(|(p, op)| (*op, p.len()))
                .ok_or_else(|| bad("expected =, !=, =~ or !~"))?;
            let (value, r) = parse_string(rest[len..].trim_start()).ok_or_else(|| bad("expected a quoted value"))?;
            matchers.push(LabelMatcher { r#type: op, name, value });
            rest = r.trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    ensure!(!matchers.is_empty(), bad("no matchers"));
    Ok(matchers)
}

/// A `"..."`, `'...'` or `` `...` `` string (with backslash escapes except in backquotes) and what follows it.
fn parse_string(s: &str) -> Option<(String, &str)> {
    let quote = s.chars().next().filter(|c| matches!(c, '"' | '\'' | '`'))?;
    let mut out = String::new();
    let mut chars = s[1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == quote => return Some((out, &s[1 + i + 1..])),
            '\\' if quote != '`' => out.push(match chars.next()?.1 {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                other => other,
            }),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let m = |t: i32, n: &str, v: &str| LabelMatcher { r#type: t, name: n.into(), value: v.into() };
        assert_eq!(parse_selector("up").unwrap(), [m(EQ, "__name__", "up")]);
        assert_eq!(
            parse_selector(r#"node_cpu{job="node", mode!~'idle|steal',path=~"a\"b",}"#).unwrap(),
            [m(EQ, "__name__", "node_cpu"), m(EQ, "job", "node"), m(NRE, "mode", "idle|steal"), m(RE, "path", "a\"b")]
        );
        assert_eq!(parse_selector(r#"{a!=``}"#).unwrap(), [m(NEQ, "a", "")]);
        for bad in ["", "{}", "{a}", "{a=b}", "up{a=\"b\"} x", "{a=\"b\""] {
            assert!(parse_selector(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn crc() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(uvarint(&[0x96, 0x01, 7]).unwrap(), Some((150, 2)));
        assert_eq!(uvarint(&[0x96]).unwrap(), None);
    }
}
