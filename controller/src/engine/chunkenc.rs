//! Decoding Prometheus' XOR (Gorilla) chunks, as remote read's streamed response carries them
//! (`tsdb/chunkenc/xor.go`): a big-endian u16 sample count, then a bit stream of delta-of-delta timestamps and
//! XOR-compressed float bits. Values come out with their exact bits.
//!
//! API → controller → engine → Prometheus → **XOR chunks (this file)**.

use anyhow::{Context, bail, ensure};

/// Appends the samples of one XOR chunk to `timestamps` and `values`.
pub fn decode_xor(data: &[u8], timestamps: &mut Vec<i64>, values: &mut Vec<f64>) -> anyhow::Result<()> {
    ensure!(data.len() >= 2, "XOR chunk shorter than its header");
    let n = u16::from_be_bytes([data[0], data[1]]);
    let mut br = BitReader { data: &data[2..], pos: 0 };
    let (mut t, mut delta, mut bits) = (0i64, 0i64, 0u64);
    let (mut leading, mut trailing) = (0u32, 0u32);
    for i in 0..n {
        match i {
            0 => {
                t = br.varint()?;
                bits = br.bits(64)?;
            }
            1 => {
                delta = br.uvarint()? as i64;
                t = t.wrapping_add(delta);
                bits = read_value(&mut br, bits, &mut leading, &mut trailing)?;
            }
            _ => {
                delta = delta.wrapping_add(read_dod(&mut br)?);
                t = t.wrapping_add(delta);
                bits = read_value(&mut br, bits, &mut leading, &mut trailing)?;
            }
        }
        timestamps.push(t);
        values.push(f64::from_bits(bits));
    }
    Ok(())
}

fn read_dod(br: &mut BitReader) -> anyhow::Result<i64> {
    let mut prefix = 0u8;
    for _ in 0..4 {
        prefix <<= 1;
        if !br.bit()? {
            break;
        }
        prefix |= 1;
    }
    let size = match prefix {
        0b0 => return Ok(0),
        0b10 => 14,
        0b110 => 17,
        0b1110 => 20,
        0b1111 => return Ok(br.bits(64)? as i64),
        _ => bail!("corrupt XOR chunk: timestamp prefix {prefix:b}"),
    };
    let mut v = br.bits(size)?;
    // Negative numbers come back as high unsigned ones.
    if v > 1 << (size - 1) {
        v = v.wrapping_sub(1 << size);
    }
    Ok(v as i64)
}

fn read_value(br: &mut BitReader, prev: u64, leading: &mut u32, trailing: &mut u32) -> anyhow::Result<u64> {
    if !br.bit()? {
        return Ok(prev);
    }
    if br.bit()? {
        *leading = br.bits(5)? as u32;
        let mut significant = br.bits(6)? as u32;
        if significant == 0 {
            significant = 64;
        }
        *trailing = 64u32.checked_sub(*leading + significant).context("corrupt XOR chunk: value bit counts")?;
    }
    let significant = 64 - *leading - *trailing;
    Ok(prev ^ (br.bits(significant)? << *trailing))
}

struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits.
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> anyhow::Result<bool> {
        let byte = *self.data.get(self.pos / 8).context("XOR chunk cut short")?;
        let bit = byte >> (7 - self.pos % 8) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// `n` (≤ 64) bits, most significant first.
    fn bits(&mut self, n: u32) -> anyhow::Result<u64> {
        ensure!(self.pos + n as usize <= self.data.len() * 8, "XOR chunk cut short");
        let mut v = 0u64;
        let mut left = n;
        while left > 0 {
            let offset = (self.pos % 8) as u32;
            let take = (8 - offset).min(left);
            let byte = u64::from(self.data[self.pos / 8]);
            let chunk = (byte >> (8 - offset - take)) & ((1 << take) - 1);
            v = (v << take) | chunk;
            self.pos += take as usize;
            left -= take;
        }
        Ok(v)
    }

    fn uvarint(&mut self) -> anyhow::Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.bits(8)?;
            v |= (b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        bail!("corrupt XOR chunk: varint too long")
    }

    fn varint(&mut self) -> anyhow::Result<i64> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A round trip through a transcription of Prometheus' appender (every timestamp bucket, the value encodings,
    /// special floats); the end-to-end tests decode what a real Prometheus sends.
    #[test]
    fn decodes_what_the_encoder_writes() {
        let samples = [
            (1000i64, 1.0f64),
            (2000, 1.0),
            (3005, 2.5),
            (3006, f64::from_bits(0x7ff0_0000_0000_0002)),
            (10_000_000, -0.0),
            (10_000_001, f64::MAX),
            (-5, f64::NEG_INFINITY),
        ];
        let data = encode(&samples);
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        decode_xor(&data, &mut ts, &mut vs).unwrap();
        let got: Vec<(i64, u64)> = ts.iter().zip(&vs).map(|(&t, v)| (t, v.to_bits())).collect();
        let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        assert_eq!(got, want);
        assert!(decode_xor(&data[..data.len() - 3], &mut ts, &mut vs).is_err());
    }

    /// Prometheus' XOR appender, transcribed.
    fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
        let mut w = BitWriter::default();
        let (mut t, mut delta, mut prev) = (0i64, 0i64, 0u64);
        let (mut leading, mut trailing) = (0xffu32, 0u32);
        for (i, &(ts, v)) in samples.iter().enumerate() {
            let bits = v.to_bits();
            match i {
                0 => {
                    let z = ((ts << 1) ^ (ts >> 63)) as u64;
                    w.uvarint(z);
                    w.put(bits, 64);
                }
                1 => {
                    delta = ts - t;
                    w.uvarint(delta as u64);
                    xor(&mut w, prev, bits, &mut leading, &mut trailing);
                }
                _ => {
                    let d = ts - t;
                    let dod = d - delta;
                    match dod {
                        0 => w.put(0, 1),
                        _ if (-(1 << 13) + 1..=1 << 13).contains(&dod) => {
                            w.put(0b10, 2);
                            w.put(dod as u64 & ((1 << 14) - 1), 14)
                        }
                        _ if (-(1 << 16) + 1..=1 << 16).contains(&dod) => {
                            w.put(0b110, 3);
                            w.put(dod as u64 & ((1 << 17) - 1), 17)
                        }
                        _ if (-(1 << 19) + 1..=1 << 19).contains(&dod) => {
                            w.put(0b1110, 4);
                            w.put(dod as u64 & ((1 << 20) - 1), 20)
                        }
                        _ => {
                            w.put(0b1111, 4);
                            w.put(dod as u64, 64)
                        }
                    }
                    delta = d;
                    xor(&mut w, prev, bits, &mut leading, &mut trailing);
                }
            }
            t = ts;
            prev = bits;
        }
        let mut out = (samples.len() as u16).to_be_bytes().to_vec();
        out.extend(w.bytes);
        out
    }

    fn xor(w: &mut BitWriter, prev: u64, v: u64, leading: &mut u32, trailing: &mut u32) {
        let x = prev ^ v;
        if x == 0 {
            w.put(0, 1);
            return;
        }
        w.put(1, 1);
        let (mut l, t) = (x.leading_zeros(), x.trailing_zeros());
        l = l.min(31);
        if *leading != 0xff && l >= *leading && t >= *trailing {
            w.put(0, 1);
            w.put(x >> *trailing, 64 - *leading - *trailing);
            return;
        }
        *leading = l;
        *trailing = t;
        w.put(1, 1);
        w.put(u64::from(l), 5);
        let sig = 64 - l - t;
        w.put(u64::from(sig % 64), 6);
        w.put(x >> t, sig);
    }

    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        used: u32,
    }

    impl BitWriter {
        fn put(&mut self, v: u64, n: u32) {
            for i in (0..n).rev() {
                if self.used.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                let bit = (v >> i) & 1;
                let last = self.bytes.last_mut().unwrap();
                *last |= (bit as u8) << (7 - self.used % 8);
                self.used += 1;
            }
        }

        fn uvarint(&mut self, mut v: u64) {
            while v >= 0x80 {
                self.put((v as u8 | 0x80) as u64, 8);
                v >>= 7;
            }
            self.put(v, 8);
        }
    }
}
