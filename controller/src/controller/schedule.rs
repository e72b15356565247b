//! `spec.schedule`: the next run time of a cron expression, parsed as the API server validates it
//! (`backup_apis::backup::parse_schedule`, croner), evaluated in UTC.
//!
//! API → controller → **schedule (this file)**.

use anyhow::Context;
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// The first time strictly after `after` that `expr` fires.
pub fn next_after(expr: &str, after: Timestamp) -> anyhow::Result<Timestamp> {
    let cron = backup_apis::backup::parse_schedule(expr).with_context(|| format!("bad schedule {expr:?}"))?;
    let next = cron
        .find_next_occurrence(&after.to_zoned(TimeZone::UTC), false)
        .with_context(|| format!("schedule {expr:?} never fires after {after}"))?;
    Ok(next.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_times() {
        let t: Timestamp = "2026-11-28T22:30:15.5Z".parse().unwrap();
        assert_eq!(next_after("0 2 * * *", t).unwrap().to_string(), "2026-11-29T02:00:00Z");
        assert_eq!(next_after("* * * * * *", t).unwrap().to_string(), "2026-11-28T22:30:16Z");
        assert_eq!(next_after("@hourly", t).unwrap().to_string(), "2026-11-28T23:00:00Z");
        let on_the_second: Timestamp = "2026-11-28T22:30:16Z".parse().unwrap();
        assert_eq!(next_after("* * * * * *", on_the_second).unwrap().to_string(), "2026-11-28T22:30:17Z");
        assert!(next_after("not cron", t).is_err());
    }
}
