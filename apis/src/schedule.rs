//! `spec.schedule` and `spec.timeZone` of a TimeseriesDBBackup: parsing, the next run time, and the rules the server
//! checks at create and update, so that an accepted schedule is one the controller runs.
//!
//! HTTP → authn → authz → generic REST → **strategy (this file: schedule rules, used by `backup.rs`; the controller
//! computes next runs with the same functions)** → storage → etcd.
//!
//! Cron expressions are croner's: standard 5 fields (`minute hour day-of-month month day-of-week`), optionally a
//! leading seconds field and a trailing year field, names (`MON`, `JAN`), `L`/`W`/`#`, and `@hourly`, `@daily`,
//! `@weekly`, `@monthly`, `@yearly`. Time zones are IANA names (`Europe/Berlin`) from the time zone database built
//! into this crate (no file is read), as CronJob's `spec.timeZone`; absent means UTC.

use std::sync::{LazyLock, Mutex};

use croner::Cron;
use croner::errors::CronError;
use croner::parser::CronParser;
use jiff::Timestamp;
use jiff::tz::{TimeZone, TimeZoneDatabase};
use serde_json::json;

use crate::field::{ErrorList, FieldError};

/// The time zone database: the one bundled in the binary, so the server and the controller agree on every name
/// whatever the machine has installed.
static ZONES: LazyLock<TimeZoneDatabase> = LazyLock::new(TimeZoneDatabase::bundled);

/// Parses `spec.schedule` as the server validates it and the controller runs it.
pub fn parse_schedule(expr: &str) -> Result<Cron, CronError> {
    CronParser::new().parse(expr)
}

/// The time zone of `spec.timeZone`; UTC when absent.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None => Ok(TimeZone::UTC),
        Some(name) => {
            if name.eq_ignore_ascii_case("local") {
                return Err(
                    "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones".into()
                );
            }
            ZONES.get(name).map_err(|_| format!("unknown time zone {name}"))
        }
    }
}

/// The first time strictly after `after` that `expr` fires, in the time zone `tz`.
pub fn next_after(expr: &str, tz: &TimeZone, after: Timestamp) -> Result<Timestamp, String> {
    let cron = parse_schedule(expr).map_err(|e| format!("bad schedule {expr:?}: {e}"))?;
    next_of(&cron, tz, after).map_err(|_| format!("schedule {expr:?} never fires after {after}"))
}

fn next_of(cron: &Cron, tz: &TimeZone, after: Timestamp) -> Result<Timestamp, CronError> {
    Ok(cron.find_next_occurrence(&after.to_zoned(tz.clone()), false)?.timestamp())
}

/// Schedules already accepted: checking one (parsing, and a search for its next run, which for an expression that
/// never fires walks to the search limit) costs more than the rest of a create's validation, and most objects share
/// a handful of schedules.
static KNOWN_GOOD: Mutex<Vec<String>> = Mutex::new(Vec::new());
const KNOWN_GOOD_CAPACITY: usize = 64;

/// The rules for `spec.schedule` and `spec.timeZone`: a cron expression that parses and fires at least once more,
/// no `TZ=`/`CRON_TZ=` prefix (that is what `spec.timeZone` is for), and a known IANA time zone.
pub fn validate(schedule: Option<&str>, zone: Option<&str>) -> ErrorList {
    let mut errs = ErrorList::default();
    let tz = match zone {
        Some(name) => match time_zone(Some(name)) {
            Ok(tz) => Some(tz),
            Err(e) => {
                errs.push(FieldError::invalid("spec.timeZone", json!(name), e));
                None
            }
        },
        None => Some(TimeZone::UTC),
    };
    let Some(expr) = schedule else {
        if zone.is_some() {
            errs.push(FieldError::forbidden("spec.timeZone", "may only be set together with spec.schedule"));
        }
        return errs;
    };
    if expr.contains("TZ") {
        let detail = match zone {
            Some(_) => "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            None => "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        };
        errs.push(FieldError::invalid("spec.schedule", json!(expr), detail));
        return errs;
    }
    let known = KNOWN_GOOD.lock().is_ok_and(|known| known.iter().any(|k| k == expr));
    if known {
        return errs;
    }
    let cron = match parse_schedule(expr) {
        Ok(cron) => cron,
        Err(e) => {
            let detail = format!(
                "must be a cron expression such as \"0 3 * * *\" (minute hour day-of-month month day-of-week, \
                 optionally preceded by seconds) or @hourly, @daily, @weekly, @monthly or @yearly: {e}"
            );
            errs.push(FieldError::invalid("spec.schedule", json!(expr), detail));
            return errs;
        }
    };
    // Whether it ever fires does not depend on the zone (only when), so UTC stands in for an unknown one.
    if next_of(&cron, tz.as_ref().unwrap_or(&TimeZone::UTC), Timestamp::now()).is_err() {
        errs.push(FieldError::invalid(
            "spec.schedule",
            json!(expr),
            "never fires: no date matches it (e.g. the 30th of February) or its years are past",
        ));
        return errs;
    }
    if let Ok(mut known) = KNOWN_GOOD.lock() {
        if known.len() >= KNOWN_GOOD_CAPACITY {
            known.remove(0);
        }
        known.push(expr.to_string());
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errs: ErrorList) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn next_times_in_utc_and_zones() {
        let t: Timestamp = "2026-11-28T22:30:15.5Z".parse().unwrap();
        let utc = TimeZone::UTC;
        assert_eq!(next_after("0 2 * * *", &utc, t).unwrap().to_string(), "2026-11-29T02:00:00Z");
        assert_eq!(next_after("* * * * * *", &utc, t).unwrap().to_string(), "2026-11-28T22:30:16Z");
        assert_eq!(next_after("@hourly", &utc, t).unwrap().to_string(), "2026-11-28T23:00:00Z");
        let on_the_second: Timestamp = "2026-11-28T22:30:16Z".parse().unwrap();
        assert_eq!(next_after("* * * * * *", &utc, on_the_second).unwrap().to_string(), "2026-11-28T22:30:17Z");
        // 02:00 in Berlin is 01:00 UTC in winter.
        let berlin = time_zone(Some("Europe/Berlin")).unwrap();
        assert_eq!(next_after("0 2 * * *", &berlin, t).unwrap().to_string(), "2026-11-29T01:00:00Z");
        assert!(next_after("not cron", &utc, t).is_err());
        assert!(next_after("0 0 30 2 *", &utc, t).unwrap_err().contains("never fires"));
    }

    #[test]
    fn rules() {
        assert!(validate(Some("0 3 * * *"), None).is_empty());
        assert!(validate(Some("0 3 * * *"), Some("America/New_York")).is_empty());
        assert!(validate(None, None).is_empty());
        assert_eq!(
            messages(validate(Some("0 0 30 2 *"), None)),
            ["spec.schedule: Invalid value: \"0 0 30 2 *\": never fires: no date matches it (e.g. the 30th of \
              February) or its years are past"]
        );
        assert_eq!(
            messages(validate(Some("CRON_TZ=Europe/Berlin 0 3 * * *"), None)),
            ["spec.schedule: Invalid value: \"CRON_TZ=Europe/Berlin 0 3 * * *\": cannot use TZ or CRON_TZ in \
              schedule, use timeZone field instead"]
        );
        assert_eq!(
            messages(validate(Some("TZ=UTC 0 3 * * *"), Some("UTC"))),
            ["spec.schedule: Invalid value: \"TZ=UTC 0 3 * * *\": cannot use both timeZone field and TZ or CRON_TZ \
              in schedule"]
        );
        assert_eq!(
            messages(validate(Some("0 3 * * *"), Some("Mars/Olympus"))),
            ["spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus"]
        );
        assert_eq!(
            messages(validate(Some("0 3 * * *"), Some("Local"))),
            ["spec.timeZone: Invalid value: \"Local\": timeZone must be an explicit time zone as defined in \
              https://www.iana.org/time-zones"]
        );
        assert_eq!(
            messages(validate(None, Some("UTC"))),
            ["spec.timeZone: Forbidden: may only be set together with spec.schedule"]
        );
        // Years in the past never come back.
        assert!(!validate(Some("0 0 1 1 * 2020"), None).is_empty());
    }
}
