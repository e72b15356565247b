//! `spec.schedule` in `spec.timeZone`: the next run time, computed as the API server validates it
//! (`backup_apis::schedule`: croner, the bundled time zone database; UTC when no zone is given).
//!
//! API → controller → **schedule (this file)**.

use backup_apis::backup::TimeseriesDBBackupSpec;
use jiff::Timestamp;

/// The first time strictly after `after` that the spec's schedule fires; `None` without a schedule.
pub fn next_after(spec: &TimeseriesDBBackupSpec, after: Timestamp) -> anyhow::Result<Option<Timestamp>> {
    let Some(expr) = &spec.schedule else { return Ok(None) };
    let tz = backup_apis::schedule::time_zone(spec.time_zone.as_deref()).map_err(anyhow::Error::msg)?;
    backup_apis::schedule::next_after(expr, &tz, after).map(Some).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use backup_apis::backup::{BackupSource, Retention};
    use backup_apis::database::{DatabaseEndpoint, DatabaseType};

    use super::*;

    #[test]
    fn next_times() {
        let mut spec = TimeseriesDBBackupSpec {
            database: BackupSource {
                endpoint: DatabaseEndpoint::new(DatabaseType::Prometheus, "http://p:9090", None),
                selector: None,
            },
            destination: None,
            schedule: Some("0 2 * * *".into()),
            time_zone: None,
            retention: Retention::default(),
            suspend: false,
            verify: false,
            timeout: None,
        };
        let t: Timestamp = "2026-11-28T22:30:15.5Z".parse().unwrap();
        assert_eq!(next_after(&spec, t).unwrap().unwrap().to_string(), "2026-11-29T02:00:00Z");
        spec.time_zone = Some("Asia/Tokyo".into());
        assert_eq!(next_after(&spec, t).unwrap().unwrap().to_string(), "2026-11-29T17:00:00Z");
        spec.time_zone = Some("Nowhere/Special".into());
        assert!(next_after(&spec, t).is_err());
        spec.schedule = None;
        assert!(next_after(&spec, t).unwrap().is_none());
    }
}
