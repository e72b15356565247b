//! What a restore target keeps, checked before a restore writes: the rules every engine's preflight shares (the
//! oldest sample against a retention period, with a margin), and the duration syntaxes of the databases' settings.
//!
//! API → controller → restore → engine → **target checks (this file)** ← Prometheus, VictoriaMetrics, InfluxDB.

use std::time::Duration;

use jiff::Timestamp;

use crate::format::Precision;

/// Samples this close to falling out of a target's retention are refused: they would expire during or right after
/// the restore.
pub const MARGIN: Duration = Duration::from_secs(3600);

/// Why a restore target is not checked as suitable.
#[derive(Debug)]
pub enum Preflight {
    /// Its settings would drop or refuse samples of the backup: the reason, and what to change.
    Unsuitable(String),
    /// It could not be asked.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Preflight {
    fn from(e: anyhow::Error) -> Self {
        Preflight::Failed(e)
    }
}

/// A timestamp of the backup as a time.
pub fn time_of(t: i64, precision: Precision) -> Timestamp {
    let time = match precision {
        Precision::Ms => Timestamp::from_millisecond(t),
        Precision::Ns => Timestamp::from_nanosecond(i128::from(t)),
    };
    time.unwrap_or(Timestamp::MIN)
}

/// Checks that a target keeping samples for `kept` (`None`: forever; `setting` says how it is set) keeps `oldest`.
pub fn check_retention(kept: Option<Duration>, setting: &str, oldest: Timestamp) -> Result<(), Preflight> {
    let Some(kept) = kept else { return Ok(()) };
    let age = Duration::try_from(Timestamp::now().duration_since(oldest)).unwrap_or_default();
    if age + MARGIN <= kept {
        return Ok(());
    }
    Err(Preflight::Unsuitable(format!(
        "the target keeps samples for {} ({setting}), but the backup's oldest sample, from {oldest:.0}, is {} old: \
         it would be dropped; keep samples for more than {} there (with an hour to spare)",
        human(kept),
        human(age),
        human(age + MARGIN)
    )))
}

/// A duration in days and hours (`2d4h`), hours and minutes (`3h10m`), or minutes.
pub fn human(d: Duration) -> String {
    let mins = d.as_secs() / 60;
    match mins {
        m if m >= 24 * 60 => format!("{}d{}h", m / (24 * 60), m / 60 % 24),
        m if m >= 60 => format!("{}h{}m", m / 60, m % 60),
        m => format!("{m}m"),
    }
}

/// A Prometheus duration (`model.Duration`): `15d`, `1y2w`, `2h30m`, `0s`; units ms, s, m, h, d, w, y (365 days).
pub fn parse_prometheus_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let end = rest.find(|c: char| !c.is_ascii_digit())?;
        let (number, tail) = rest.split_at(end);
        let number: u64 = number.parse().ok()?;
        let (unit, tail) = ["ms", "s", "m", "h", "d", "w", "y"]
            .iter()
            .find(|u| tail.starts_with(*u))
            .map(|u| (*u, &tail[u.len()..]))?;
        let seconds = match unit {
            "ms" => {
                total += Duration::from_millis(number);
                rest = tail;
                continue;
            }
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => 365 * 86_400,
        };
        total += Duration::from_secs(number.checked_mul(seconds)?);
        rest = tail;
    }
    Some(total)
}

/// VictoriaMetrics' `-retentionPeriod`: a number with an optional unit `h`, `d`, `w` or `y`, months (31 days)
/// without one; a fraction is allowed (`0.5`).
pub fn parse_victoria_retention(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit_seconds) = match text.char_indices().last()? {
        (i, 'h') => (&text[..i], 3600.0),
        (i, 'd') => (&text[..i], 86_400.0),
        (i, 'w') => (&text[..i], 7.0 * 86_400.0),
        (i, 'y') => (&text[..i], 365.0 * 86_400.0),
        _ => (text, 31.0 * 86_400.0),
    };
    let number: f64 = number.parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    Duration::try_from_secs_f64(number * unit_seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_prometheus_duration("15d"), Some(Duration::from_secs(15 * 86_400)));
        assert_eq!(parse_prometheus_duration("1y2w"), Some(Duration::from_secs(379 * 86_400)));
        assert_eq!(parse_prometheus_duration("2h30m"), Some(Duration::from_secs(9000)));
        assert_eq!(parse_prometheus_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_prometheus_duration("1500ms"), Some(Duration::from_millis(1500)));
        for bad in ["", "15", "d", "1.5h", "1x"] {
            assert_eq!(parse_prometheus_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_victoria_retention("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_victoria_retention("100y"), Some(Duration::from_secs(100 * 365 * 86_400)));
        assert_eq!(parse_victoria_retention("1"), Some(Duration::from_secs(31 * 86_400)));
        assert_eq!(parse_victoria_retention("0.5"), Some(Duration::from_secs(31 * 43_200)));
        assert_eq!(parse_victoria_retention("x"), None);
        assert_eq!(human(Duration::from_secs(2 * 86_400 + 4 * 3600 + 59)), "2d4h");
        assert_eq!(human(Duration::from_secs(3 * 3600 + 600)), "3h10m");
    }

    #[test]
    fn retention() {
        let day = Duration::from_secs(86_400);
        let two_days_ago = Timestamp::now() - jiff::SignedDuration::from_hours(48);
        assert!(check_retention(None, "", two_days_ago).is_ok());
        assert!(check_retention(Some(3 * day), "", two_days_ago).is_ok());
        let Err(Preflight::Unsuitable(reason)) = check_retention(Some(day), "-retentionPeriod=1d", two_days_ago) else {
            panic!("a 2-day-old sample in a 1-day retention");
        };
        assert!(reason.starts_with("the target keeps samples for 1d0h (-retentionPeriod=1d), but the backup's oldest"));
        assert!(reason.ends_with("keep samples for more than 2d1h there (with an hour to spare)"), "{reason}");
        assert_eq!(time_of(1500, Precision::Ms).as_millisecond(), 1500);
        assert_eq!(time_of(1500, Precision::Ns).as_nanosecond(), 1500);
    }
}
