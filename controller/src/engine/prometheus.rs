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

use anyhow::{Context, bail, ensure};
use backup_apis::backup::BackupSource;
use backup_apis::database::DatabaseEndpoint;
use bytes::{Buf, Bytes, BytesMut};
use http::{Method, header};
use prost::Message;

use super::chunkenc::decode_xor;
use super::prometheus_like_restore;
use super::remote::{CHUNK_XOR, ChunkedReadResponse, LabelMatcher, Query, ReadRequest, STREAMED_XOR_CHUNKS};
use crate::format::{BackupReader, BackupWriter, NAME_LABEL};
use crate::http::{Body, Http, url};

/// Prometheus' frames are ≤ 1 MB by default (`--storage.remote.read-max-bytes-in-frame`); allow for larger settings.
const MAX_FRAME: usize = 64 << 20;
/// Body chunks read ahead while frames are decoded.
const READ_AHEAD: usize = 16;

pub async fn backup(http: &Http, source: &BackupSource, out: &mut BackupWriter) -> anyhow::Result<()> {
    let matchers = match &source.selector {
        Some(selector) => parse_selector(selector)?,
        None => vec![LabelMatcher { r#type: RE, name: NAME_LABEL.into(), value: ".+".into() }],
    };
    let request = ReadRequest {
        queries: vec![Query { start_timestamp_ms: i64::MIN, end_timestamp_ms: i64::MAX, matchers }],
        accepted_response_types: vec![STREAMED_XOR_CHUNKS],
    };
    let body = snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())?;
    let response = http
        .send(
            Method::POST,
            &url(&source.endpoint.url, "/api/v1/read", &[]),
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
        "Prometheus answered remote read with {content_type:?}, not the streamed response (Prometheus ≥ 2.13 needed)"
    );
    let mut frames = Frames { body: response.read_ahead(READ_AHEAD), buf: BytesMut::new() };
    let (mut timestamps, mut values) = (Vec::new(), Vec::new());
    while let Some(frame) = frames.next().await? {
        let response = ChunkedReadResponse::decode(frame).context("corrupt remote read frame")?;
        for series in response.chunked_series {
            out.series(series.labels.into_iter().map(|l| (l.name, l.value)).collect()).await?;
            for chunk in series.chunks {
                if chunk.r#type != CHUNK_XOR {
                    bail!("chunk encoding {} (native histograms) is not supported", chunk.r#type);
                }
                timestamps.clear();
                values.clear();
                decode_xor(&chunk.data, &mut timestamps, &mut values)?;
                out.samples(&timestamps, &values).await?;
            }
        }
    }
    Ok(())
}

pub async fn restore(http: &Http, input: &mut BackupReader, target: &DatabaseEndpoint) -> anyhow::Result<(u64, u64)> {
    prometheus_like_restore(http, input, &target.url).await.map_err(|e| {
        if e.downcast_ref::<crate::http::StatusError>().is_some_and(|s| s.status == http::StatusCode::NOT_FOUND) {
            e.context("the target Prometheus must run with --web.enable-remote-write-receiver")
        } else {
            e
        }
    })
}

/// The frames of a streamed remote read answer: `uvarint length | CRC-32C (big-endian) | ChunkedReadResponse`.
struct Frames {
    body: Body,
    buf: BytesMut,
}

impl Frames {
    async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        loop {
            if let Some((len, header)) = uvarint(&self.buf)? {
                ensure!(len <= MAX_FRAME as u64, "remote read frame of {len} bytes");
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
