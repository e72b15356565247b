//! Decimal numbers in the text exports of databases: comma-separated integer lists (timestamps) and floats, parsed
//! without allocating and, for the common shapes, without the general float parser — this is the hot loop of a
//! VictoriaMetrics backup, one timestamp and one value per sample.
//!
//! API → controller → engine → **numbers in export text (this file)** ← database.

use anyhow::{Context, bail, ensure};

/// Longest integer accepted: 18 digits cannot overflow an i64.
const MAX_DIGITS: usize = 18;

const ASCII_ZEROS: u64 = u64::from_le_bytes(*b"00000000");

const POW10: [u64; 9] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000];

/// Exact powers of ten as f64 (10^22 is the last one a double holds exactly).
const POW10_F64: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Appends the comma-separated decimal integers of `s` (e.g. `1700000000000,-5,42`) to `out`.
pub fn parse_int_list(s: &[u8], out: &mut Vec<i64>) -> anyhow::Result<()> {
    let mut rest = s;
    loop {
        let (negative, digits) = match rest.split_first() {
            Some((b'-', digits)) => (true, digits),
            _ => (false, rest),
        };
        let (value, len) = leading_integer(digits).with_context(|| format!("bad integer {}", field_preview(rest)))?;
        out.push(if negative { -value } else { value });
        rest = match digits[len..].split_first() {
            None => return Ok(()),
            Some((b',', next)) => next,
            Some(_) => bail!("bad integer {}", field_preview(rest)),
        };
    }
}

/// Appends the comma-separated floats of `s` to `out`: decimal numbers (`1.5`, `-0`, `1e-300`), `+Inf`, `-Inf`, and
/// whatever `special` maps (a database's `NaN` or `null`).
pub fn parse_float_list(s: &[u8], out: &mut Vec<f64>, special: impl Fn(&[u8]) -> Option<f64>) -> anyhow::Result<()> {
    let mut rest = s;
    loop {
        let (value, len) = match fast_float(rest) {
            Some((value, len)) if matches!(rest.get(len), None | Some(b',')) => (value, len),
            _ => {
                let len = memchr::memchr(b',', rest).unwrap_or(rest.len());
                (parse_float(&rest[..len], &special)?, len)
            }
        };
        out.push(value);
        rest = match rest.get(len) {
            None => return Ok(()),
            Some(_) => &rest[len + 1..],
        };
    }
}

/// Parses one float field, as [`parse_float_list`] does.
pub fn parse_float(field: &[u8], special: impl Fn(&[u8]) -> Option<f64>) -> anyhow::Result<f64> {
    if let Some((value, len)) = fast_float(field)
        && len == field.len()
    {
        return Ok(value);
    }
    match field {
        b"+Inf" => Ok(f64::INFINITY),
        b"-Inf" => Ok(f64::NEG_INFINITY),
        _ => {
            if let Some(v) = special(field) {
                return Ok(v);
            }
            // Only JSON-like numbers: Rust's parser would also take "inf", "+1" or "infinity".
            ensure!(
                field.first().is_some_and(|&c| c.is_ascii_digit() || c == b'-'),
                "bad value {}",
                field_preview(field)
            );
            let text = std::str::from_utf8(field).ok().context("bad value")?;
            text.parse().with_context(|| format!("bad value {}", field_preview(field)))
        }
    }
}

/// The number at the start of `s` and its length if it has an exactly representable shape, `-?digits(.digits)?`
/// with at most 15 significant digits: the integer mantissa and 10^fraction digits are both exact doubles, so one
/// division rounds correctly (Clinger's fast path). What follows it is the caller's to check.
#[inline]
fn fast_float(s: &[u8]) -> Option<(f64, usize)> {
    let (negative, rest) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let (int_part, len) = leading_integer(rest)?;
    let (mantissa, fraction_digits, len) = match rest.get(len) {
        Some(b'.') => {
            let (fraction, flen) = leading_integer(&rest[len + 1..])?;
            if len + flen > 15 {
                return None;
            }
            (int_part as u64 * pow10(flen) + fraction as u64, flen, len + 1 + flen)
        }
        _ => (int_part as u64, 0, len),
    };
    if mantissa >= 1 << 53 {
        return None;
    }
    // No division for integers: its latency is most of a short number's cost.
    let magnitude = if fraction_digits == 0 { mantissa as f64 } else { mantissa as f64 / POW10_F64[fraction_digits] };
    Some((if negative { -magnitude } else { magnitude }, len + usize::from(negative)))
}

fn pow10(n: usize) -> u64 {
    10u64.pow(n as u32)
}

/// The value and length of the run of 1 to 18 ASCII digits at the start of `s`; `None` if there is none or it is
/// longer. Up to 16 digits are checked and converted 8 at a time (SWAR) without a loop when 16 bytes are readable:
/// the common case, a millisecond timestamp or a short value inside a long export line.
#[inline(always)]
fn leading_integer(s: &[u8]) -> Option<(i64, usize)> {
    if let Some(bytes) = s.first_chunk::<16>() {
        let (first, second) = bytes.split_at(8);
        let first = u64::from_le_bytes(first.try_into().ok()?);
        let n = leading_digits(first);
        if n < 8 {
            return (n > 0).then(|| (eight_digits(right_align(first, n)) as i64, n));
        }
        let second = u64::from_le_bytes(second.try_into().ok()?);
        let m = leading_digits(second);
        if m < 8 {
            let value = eight_digits(first) * POW10[m] + eight_digits(right_align(second, m));
            return Some((value as i64, 8 + m));
        }
    }
    leading_integer_slow(s)
}

/// Digit by digit, for the end of a buffer and numbers of over 16 digits.
fn leading_integer_slow(s: &[u8]) -> Option<(i64, usize)> {
    let mut value = 0u64;
    let mut i = 0;
    while let Some(&d) = s.get(i)
        && d.is_ascii_digit()
        && i < MAX_DIGITS
    {
        value = value * 10 + u64::from(d - b'0');
        i += 1;
    }
    let longer = s.get(i).is_some_and(u8::is_ascii_digit);
    (i > 0 && !longer).then_some((value as i64, i))
}

/// The first `n` (0 to 8) digit bytes of `chunk` moved to its end, the bytes before them set to `'0'`.
#[inline]
fn right_align(chunk: u64, n: usize) -> u64 {
    let n = n as u32;
    chunk.checked_shl(8 * (8 - n)).unwrap_or(0) | ASCII_ZEROS.checked_shr(8 * n).unwrap_or(0)
}

/// How many of the 8 bytes (first byte lowest) are ASCII digits before the first that is not.
#[inline]
fn leading_digits(chunk: u64) -> usize {
    const HIGH_NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    // A byte is a digit iff its high nibble is 3 and adding 6 leaves it 3 (a carry only runs into later bytes).
    let check = (chunk & HIGH_NIBBLES) | ((chunk.wrapping_add(0x0606_0606_0606_0606) & HIGH_NIBBLES) >> 4);
    let wrong = check ^ 0x3333_3333_3333_3333;
    // The high bit of every non-zero byte of `wrong`.
    let nonzero = ((wrong & 0x7F7F_7F7F_7F7F_7F7F).wrapping_add(0x7F7F_7F7F_7F7F_7F7F) | wrong) & 0x8080_8080_8080_8080;
    (nonzero.trailing_zeros() / 8) as usize
}

/// The value of 8 ASCII digits, the first in the lowest byte.
#[inline]
fn eight_digits(chunk: u64) -> u64 {
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    const MUL1: u64 = 100 + (1_000_000 << 32);
    const MUL2: u64 = 1 + (10_000 << 32);
    let v = chunk.wrapping_sub(ASCII_ZEROS);
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    ((v & MASK).wrapping_mul(MUL1).wrapping_add(((v >> 16) & MASK).wrapping_mul(MUL2))) >> 32
}

fn field_preview(s: &[u8]) -> String {
    let end = memchr::memchr(b',', s).unwrap_or(s.len()).min(40);
    format!("{:?}", String::from_utf8_lossy(&s[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::dataset::Rng;

    #[test]
    fn integer_lists() {
        let mut out = vec![7];
        parse_int_list(b"0,1,-1,12345678,123456789,1700000000123,-999999999999999999,42", &mut out).unwrap();
        assert_eq!(out, [7, 0, 1, -1, 12345678, 123456789, 1700000000123, -999999999999999999, 42]);
        for bad in [&b""[..], b",", b"1,", b"1,,2", b"-", b"1x", b"1 ", b"+1", b"1234567890123456789", b"1.5"] {
            assert!(parse_int_list(bad, &mut out).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn integers_of_every_length_and_neighbour() {
        let mut rng = Rng::new(3);
        for len in 1..=18 {
            for _ in 0..200 {
                let digits: String = (0..len).map(|_| char::from(b'0' + rng.below(10) as u8)).collect();
                // Short tails take the digit-by-digit path, long ones the 16-byte one.
                for tail in ["", ",", "]", "\u{fa}", "9", ",1234567890123456789", "]}\n{\"metric\":{}}", "99999999"] {
                    let text = format!("{digits}{tail}");
                    let got = leading_integer(text.as_bytes());
                    let want_len = len + tail.bytes().take_while(u8::is_ascii_digit).count();
                    if want_len > MAX_DIGITS {
                        assert_eq!(got, None);
                    } else {
                        assert_eq!(got, Some((text[..want_len].parse().unwrap(), want_len)), "{text}");
                    }
                }
            }
        }
        assert_eq!(leading_integer(b"x1"), None);
        assert_eq!(leading_integer(b""), None);
    }

    #[test]
    fn floats_match_the_standard_parser_bit_for_bit() {
        let none = |_: &[u8]| None;
        let mut rng = Rng::new(5);
        let mut fields: Vec<String> = [
            "0",
            "-0",
            "1",
            "0.1",
            "-1.5",
            "1e-300",
            "5e-324",
            "1.7976931348623157e+308",
            "123456789012345",
            "1234567890123456",
            "9007199254740993",
            "0.000000000000000000000001",
            "123.456",
            "1.",
            "00.5",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for _ in 0..100_000 {
            let v = f64::from_bits(rng.next_u64());
            let scaled = (rng.unit() - 0.5) * 10f64.powi(rng.below(30) as i32 - 12);
            let rounded = format!("{:.*}", rng.below(12) as usize, scaled);
            fields.extend([format!("{v}"), format!("{scaled}"), rounded, format!("{}", rng.below(1 << 60))]);
        }
        let fields: Vec<&String> = fields.iter().filter(|f| !f.contains("inf") && !f.contains("NaN")).collect();
        for field in &fields {
            let got = parse_float(field.as_bytes(), none).unwrap();
            let want: f64 = field.parse().unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{field}");
        }
        let joined: Vec<&str> = fields.iter().map(|f| f.as_str()).collect();
        let mut list = vec![];
        parse_float_list(joined.join(",").as_bytes(), &mut list, none).unwrap();
        let want: Vec<u64> = fields.iter().map(|f| f.parse::<f64>().unwrap().to_bits()).collect();
        assert_eq!(list.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want);
        assert_eq!(parse_float(b"+Inf", none).unwrap(), f64::INFINITY);
        assert_eq!(parse_float(b"-Inf", none).unwrap(), f64::NEG_INFINITY);
        assert_eq!(parse_float(b"null", |f| (f == b"null").then_some(7.0)).unwrap(), 7.0);
        for bad in [&b""[..], b"inf", b"+1", b"1e", b"--1", b"1.2.3", b"null", b".5", b"0x10"] {
            assert!(parse_float(bad, none).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        for bad in [&b""[..], b"1,", b",1", b"1,,2", b"1,x", b"1.5.5,2"] {
            assert!(parse_float_list(bad, &mut list, none).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
