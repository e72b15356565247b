//! The records of a payload, as bytes (before compression): `tag (1 byte) | body length (u32 LE) | body`.
//!
//! API → controller → backup file → **records (this file)** ↔ engine → database.
//!
//! | tag | record | body |
//! |---|---|---|
//! | `S` | series | count, then name and value of each label |
//! | `G` | float samples | count, the timestamps as zigzag deltas of their deltas, then the values XORed with the previous one: a control byte per value, then the values' bytes (below) |
//! | `F` | float samples (format 1, read only) | count, zigzag deltas of the timestamps, then each value's 8 bytes (IEEE-754 bits, LE) |
//! | `C` | columns | count, then name and type code of each |
//! | `R` | rows | count, then per row: zigzag time delta, column count, per column `0xff` (no value) or a type code and the value |
//!
//! Integers are LEB128 varints; strings are a length and UTF-8 bytes. Values keep their exact bits (NaN payloads
//! such as Prometheus' staleness marker, -0.0).
//!
//! In `G` records a value's IEEE-754 bits are XORed with the previous value's (0 before the first), as in Gorilla,
//! but byte-aligned: a repeated value is a control byte `0` and no bytes; otherwise the control byte `tz << 4 | n`
//! says the XOR has `tz` zero bytes at its low end and `n` (1 to 8) bytes above them, which are the value's bytes,
//! low byte first. Regular timestamps (a scrape every 15 s) take one byte each, counters and repeated values one to
//! four bytes: about half the bytes of `F` for such series, so zstd, the costliest step of a backup after parsing
//! the database's answer, has half the work.

use anyhow::{Context, bail, ensure};

use super::{Column, FieldType, FieldValue, Record, Row};

/// No frame is larger than this (writers split long runs of samples and rows).
pub const MAX_FRAME: usize = 64 << 20;

const NO_VALUE: u8 = 0xff;

/// Appends `record` to `out` as one frame.
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    match record {
        Record::Series(labels) => frame(out, b'S', |out| {
            put_uvarint(out, labels.len() as u64);
            for (name, value) in labels {
                put_str(out, name);
                put_str(out, value);
            }
        }),
        Record::Samples { timestamps, values } => encode_samples(timestamps, values, out),
        Record::Columns(columns) => frame(out, b'C', |out| {
            put_uvarint(out, columns.len() as u64);
            for c in columns {
                put_str(out, &c.name);
                out.push(c.field_type.code());
            }
        }),
        Record::Rows(rows) => frame(out, b'R', |out| {
            put_uvarint(out, rows.len() as u64);
            let mut prev = 0i64;
            for row in rows {
                put_varint(out, row.time.wrapping_sub(prev));
                prev = row.time;
                put_uvarint(out, row.values.len() as u64);
                for value in &row.values {
                    put_value(out, value.as_ref());
                }
            }
        }),
    }
}

/// Appends a float samples frame (as `encode` of [`Record::Samples`] does, without owning the samples).
pub fn encode_samples(timestamps: &[i64], values: &[f64], out: &mut Vec<u8>) {
    frame(out, b'G', |out| put_samples(out, timestamps, values));
}

/// Appends the tag, then the body `write_body` appends, behind its length.
fn frame(out: &mut Vec<u8>, tag: u8, write_body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.push(tag);
    out.extend_from_slice(&[0; 4]);
    write_body(out);
    let len = (out.len() - start - 5) as u32;
    out[start + 1..start + 5].copy_from_slice(&len.to_le_bytes());
}

fn put_samples(out: &mut Vec<u8>, timestamps: &[i64], values: &[f64]) {
    put_uvarint(out, timestamps.len() as u64);
    // Written into room made up front (at most 10 bytes per timestamp and 9 per value), then cut to size: no
    // capacity check per byte, and a value's bytes are one 8-byte store.
    let start = out.len();
    out.resize(start + timestamps.len() * 19 + 8, 0);
    let buf = &mut out[start..];
    let mut at = 0;
    let (mut prev, mut prev_delta) = (0i64, 0i64);
    for &t in timestamps {
        let delta = t.wrapping_sub(prev);
        at += write_uvarint(&mut buf[at..], zigzag(delta.wrapping_sub(prev_delta)));
        (prev, prev_delta) = (t, delta);
    }
    // The values' control bytes first, then their bytes: zstd squeezes the (repetitive) control bytes apart from the
    // (often random) value bytes.
    let (mut control, mut at) = (at, at + values.len());
    let mut prev = 0u64;
    for v in values {
        let bits = v.to_bits();
        let (head, len) = write_xor(&mut buf[at..], bits ^ prev);
        buf[control] = head;
        (control, at, prev) = (control + 1, at + len, bits);
    }
    out.truncate(start + at);
}

/// One XORed value's bytes, the `n` above its `tz` low zero bytes, into `buf` (which has room for 8 bytes that may
/// all be overwritten); returns its control byte (`0` for a zero XOR, else `tz << 4 | n`) and `n`.
#[inline]
fn write_xor(buf: &mut [u8], xor: u64) -> (u8, usize) {
    if xor == 0 {
        return (0, 0);
    }
    let tz = xor.trailing_zeros() / 8;
    let n = 8 - tz - xor.leading_zeros() / 8;
    buf[..8].copy_from_slice(&(xor >> (8 * tz)).to_le_bytes());
    ((tz << 4 | n) as u8, n as usize)
}

/// A LEB128 varint into `buf` (room for 10 bytes); returns its length.
#[inline]
fn write_uvarint(buf: &mut [u8], mut v: u64) -> usize {
    let mut i = 0;
    while v >= 0x80 {
        buf[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    buf[i] = v as u8;
    i + 1
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Decodes the frame at the start of `buf`: the record and the bytes it took, or `None` if `buf` holds only part of
/// it.
pub fn decode(buf: &[u8]) -> anyhow::Result<Option<(Record, usize)>> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    ensure!(len <= MAX_FRAME, "corrupt backup: frame of {len} bytes");
    if buf.len() < 5 + len {
        return Ok(None);
    }
    let mut c = Cursor { buf: &buf[5..5 + len] };
    let record = match buf[0] {
        b'S' => {
            let n = c.count()?;
            let mut labels = Vec::with_capacity(n);
            for _ in 0..n {
                labels.push((c.string()?, c.string()?));
            }
            Record::Series(labels)
        }
        b'G' => {
            let n = c.count()?;
            let mut timestamps = Vec::with_capacity(n);
            let (mut prev, mut prev_delta) = (0i64, 0i64);
            for _ in 0..n {
                prev_delta = prev_delta.wrapping_add(c.varint()?);
                prev = prev.wrapping_add(prev_delta);
                timestamps.push(prev);
            }
            let controls = c.take(n)?;
            let mut values = Vec::with_capacity(n);
            let mut prev = 0u64;
            for &control in controls {
                prev ^= c.xor(control)?;
                values.push(f64::from_bits(prev));
            }
            Record::Samples { timestamps, values }
        }
        b'F' => {
            let n = c.count()?;
            let mut timestamps = Vec::with_capacity(n);
            let mut prev = 0i64;
            for _ in 0..n {
                prev = prev.wrapping_add(c.varint()?);
                timestamps.push(prev);
            }
            let mut values = Vec::with_capacity(n);
            for _ in 0..n {
                values.push(f64::from_bits(c.u64_le()?));
            }
            Record::Samples { timestamps, values }
        }
        b'C' => {
            let n = c.count()?;
            let mut columns = Vec::with_capacity(n);
            for _ in 0..n {
                columns.push(Column { name: c.string()?, field_type: FieldType::from_code(c.byte()?)? });
            }
            Record::Columns(columns)
        }
        b'R' => {
            let n = c.count()?;
            let mut rows = Vec::with_capacity(n);
            let mut prev = 0i64;
            for _ in 0..n {
                prev = prev.wrapping_add(c.varint()?);
                let ncols = c.count()?;
                let mut values = Vec::with_capacity(ncols);
                for _ in 0..ncols {
                    values.push(c.value()?);
                }
                rows.push(Row { time: prev, values });
            }
            Record::Rows(rows)
        }
        tag => bail!("corrupt backup: unknown record tag {tag}"),
    };
    ensure!(c.buf.is_empty(), "corrupt backup: {} stray bytes in a record", c.buf.len());
    Ok(Some((record, 5 + len)))
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag(v));
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: Option<&FieldValue>) {
    let Some(value) = value else {
        out.push(NO_VALUE);
        return;
    };
    match value {
        FieldValue::Float(f) => {
            out.push(FieldType::Float.code());
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        FieldValue::Integer(i) => {
            out.push(FieldType::Integer.code());
            put_varint(out, *i);
        }
        FieldValue::Unsigned(u) => {
            out.push(FieldType::Unsigned.code());
            put_uvarint(out, *u);
        }
        FieldValue::String(s) => {
            out.push(FieldType::String.code());
            put_str(out, s);
        }
        FieldValue::Boolean(b) => {
            out.push(FieldType::Boolean.code());
            out.push(u8::from(*b));
        }
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> anyhow::Result<u8> {
        let (&b, rest) = self.buf.split_first().context("corrupt backup: record cut short")?;
        self.buf = rest;
        Ok(b)
    }

    fn uvarint(&mut self) -> anyhow::Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        bail!("corrupt backup: varint too long")
    }

    fn varint(&mut self) -> anyhow::Result<i64> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// A count of items that each take at least one byte, so a corrupt count cannot make us allocate much.
    fn count(&mut self) -> anyhow::Result<usize> {
        let n = self.uvarint()?;
        ensure!(n <= self.buf.len() as u64, "corrupt backup: count {n} exceeds the record");
        Ok(n as usize)
    }

    fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        ensure!(n <= self.buf.len(), "corrupt backup: record cut short");
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u64_le(&mut self) -> anyhow::Result<u64> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into()?))
    }

    /// The bytes of a XORed value with this control byte.
    fn xor(&mut self, control: u8) -> anyhow::Result<u64> {
        if control == 0 {
            return Ok(0);
        }
        let (tz, n) = (usize::from(control >> 4), usize::from(control & 0x0f));
        ensure!((1..=8).contains(&n) && tz + n <= 8, "corrupt backup: bad value control byte {control:#x}");
        let mut bytes = [0; 8];
        bytes[..n].copy_from_slice(self.take(n)?);
        Ok(u64::from_le_bytes(bytes) << (8 * tz))
    }

    fn string(&mut self) -> anyhow::Result<String> {
        let n = self.count()?;
        Ok(std::str::from_utf8(self.take(n)?).context("corrupt backup: label or name not UTF-8")?.to_owned())
    }

    fn value(&mut self) -> anyhow::Result<Option<FieldValue>> {
        let code = self.byte()?;
        if code == NO_VALUE {
            return Ok(None);
        }
        Ok(Some(match FieldType::from_code(code)? {
            FieldType::Float => FieldValue::Float(f64::from_bits(self.u64_le()?)),
            FieldType::Integer => FieldValue::Integer(self.varint()?),
            FieldType::Unsigned => FieldValue::Unsigned(self.uvarint()?),
            FieldType::String => FieldValue::String(self.string()?),
            FieldType::Boolean => FieldValue::Boolean(self.byte()? != 0),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_bits() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let records = vec![
            Record::Series(vec![("__name__".into(), "up".into()), ("job".into(), "a\"b\n".into())]),
            Record::Samples {
                timestamps: vec![i64::MIN, -1, 0, 1_700_000_000_123, i64::MAX],
                values: vec![stale, -0.0, f64::INFINITY, 5e-324, f64::MAX],
            },
            Record::Samples {
                timestamps: vec![1000, 16000, 31000, 46001, 46001, 10, i64::MAX, i64::MIN],
                values: vec![0.0, 0.0, 1.0, 2.0, 2.0, f64::NAN, -f64::NAN, f64::from_bits(1 << 63 | 0xff00)],
            },
            Record::Samples { timestamps: vec![], values: vec![] },
            Record::Columns(vec![
                Column { name: "v".into(), field_type: FieldType::Float },
                Column { name: "s".into(), field_type: FieldType::String },
            ]),
            Record::Rows(vec![
                Row { time: 5, values: vec![Some(FieldValue::Float(1.5)), None] },
                Row {
                    time: 3,
                    values: vec![
                        Some(FieldValue::Integer(i64::MIN)),
                        Some(FieldValue::String("x y".into())),
                        Some(FieldValue::Unsigned(u64::MAX)),
                        Some(FieldValue::Boolean(true)),
                    ],
                },
            ]),
        ];
        let mut buf = Vec::new();
        for r in &records {
            encode(r, &mut buf);
        }
        let mut at = 0;
        for want in &records {
            assert!(decode(&buf[at..at + 3]).unwrap().is_none());
            let (got, used) = decode(&buf[at..]).unwrap().unwrap();
            if let (Record::Samples { timestamps: gt, values: g }, Record::Samples { timestamps: wt, values: w }) =
                (&got, want)
            {
                let bits = |v: &Vec<f64>| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!((gt, bits(g)), (wt, bits(w)));
            } else {
                assert_eq!(&got, want);
            }
            at += used;
        }
        assert_eq!(at, buf.len());
    }

    #[test]
    fn format_1_samples_still_read() {
        // 2 samples: timestamps 5, 3 (zigzag deltas 10, 3), values 1.5 and -0.0 as raw bits.
        let mut body = vec![2, 10, 3];
        body.extend_from_slice(&1.5f64.to_bits().to_le_bytes());
        body.extend_from_slice(&(-0.0f64).to_bits().to_le_bytes());
        let mut frame = vec![b'F'];
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&body);
        let (record, used) = decode(&frame).unwrap().unwrap();
        assert_eq!(used, frame.len());
        let Record::Samples { timestamps, values } = record else { panic!("{record:?}") };
        assert_eq!(timestamps, [5, 3]);
        assert_eq!(values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), [1.5f64.to_bits(), (-0.0f64).to_bits()]);
    }

    #[test]
    fn repeated_and_close_values_are_short() {
        let timestamps: Vec<i64> = (0..100).map(|i| 1_700_000_000_000 + i * 15_000).collect();
        let mut out = Vec::new();
        encode_samples(&timestamps, &[42.0; 100], &mut out);
        // Header, count, the first timestamp and delta, then one byte per timestamp and per repeated value.
        assert!(out.len() < 5 + 1 + 10 + 3 + 99 + 9 + 99, "{} bytes", out.len());
    }

    #[test]
    fn bad_value_headers_fail() {
        for head in [0x09u8, 0x80 | 1, 0x71 | 0x02, 0x10] {
            let frame = [b'G', 4, 0, 0, 0, 1, 0, head, 0];
            assert!(decode(&frame).is_err(), "{head:#x}");
        }
    }

    #[test]
    fn corrupt_counts_fail() {
        let mut buf = vec![b'S', 3, 0, 0, 0, 0xff, 0xff, 0x7f];
        assert!(decode(&buf).is_err());
        buf[0] = b'X';
        assert!(decode(&buf).is_err());
    }
}
