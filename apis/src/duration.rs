//! Durations as Kubernetes writes them (`metav1.Duration`, Go's `time.ParseDuration`): `90s`, `1h30m`, `2h`,
//! `500ms`. `spec.timeout` of both kinds uses them.
//!
//! HTTP → authn → authz → generic REST → **strategy (this file: duration syntax, used by `backup.rs` and
//! `restore.rs`, and by the controller)** → storage → etcd.

use std::time::Duration;

/// Units Go's `time.ParseDuration` accepts, longest first so `ms` is not read as `m`.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a non-negative Go duration (`1h30m`, `1.5h`, `90s`, `0`); the reason when it is not one.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || "must be a duration such as \"90s\", \"30m\" or \"1h30m\" (units ns, us, ms, s, m, h)".to_string();
    let rest = text.strip_prefix('+').unwrap_or(text);
    if rest.starts_with('-') {
        return Err("must not be negative".into());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    let mut rest = rest;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let (number, tail) = rest.split_at(number_end);
        let (&(_, nanos), tail) = UNITS
            .iter()
            .filter(|(unit, _)| tail.starts_with(unit))
            .max_by_key(|(unit, _)| unit.len())
            .map(|u| (u, &tail[u.0.len()..]))
            .ok_or_else(bad)?;
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(bad());
        }
        let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
        let mut part = whole.checked_mul(nanos).ok_or_else(|| "is too long".to_string())?;
        let mut scale = nanos;
        for digit in fraction.bytes().take(20) {
            scale /= 10;
            part += u128::from(digit - b'0') * scale;
        }
        total = total.checked_add(part).ok_or_else(|| "is too long".to_string())?;
        rest = tail;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| "is too long".to_string())?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// A duration as Go's `time.Duration.String` prints whole seconds and more: `1h30m0s`, `45s`, `2m3.5s`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let frac = d.subsec_nanos();
    let seconds =
        if frac == 0 { format!("{s}s") } else { format!("{}s", format!("{s}.{frac:09}").trim_end_matches('0')) };
    match (h, m) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ok = [
            ("0", 0),
            ("90s", 90_000),
            ("1h30m", 5_400_000),
            ("1.5h", 5_400_000),
            ("500ms", 500),
            ("2h45m30.5s", 9_930_500),
            ("+3m", 180_000),
            (".5s", 500),
        ];
        for (text, millis) in ok {
            assert_eq!(parse_duration(text).map(|d| d.as_millis()), Ok(millis), "{text}");
        }
        assert_eq!(parse_duration("1500us"), Ok(Duration::from_micros(1500)));
        for bad in ["", "5", "1d", "h", "1.2.3s", "1 h", "10x", "s5", "."] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("-1s"), Err("must not be negative".into()));
        assert!(parse_duration("99999999999999999999999h").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(format_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(format_duration(Duration::from_secs(61)), "1m1s");
    }
}
