//! A restore that checks what landed: the backup read and verified first, the target checked (retention,
//! out-of-order window, remote-write receiver) before anything is written, only the samples the target lacks
//! written, and Succeeded only when every series' samples are in the target, once.
//!
//! API → controller → **restore (this module)** → backup file; engine → database.
//!
//! Passes over the backup file (local reads, fast next to the database's writes):
//!
//! 1. **Summary**: per series, the samples and a digest of their timestamps ([`tally`]); the time range; metric
//!    names; the payload's checksum (a corrupt backup fails here, before anything is written).
//! 2. **Preflight**: the target's settings must keep the backup's samples (`engine::preflight`).
//! 3. **Read back** what the target holds of these series over the backup's time range.
//! 4. If it holds some: they must be the backup's first samples of each series, in file order — what an earlier
//!    attempt wrote (writes go in file order, one batch at a time, each landed whole or not at all). Anything else
//!    is another writer's data: the restore fails before writing, naming series.
//! 5. **Write** what is missing: each series' samples after the ones already there. A restore resumed after a crash,
//!    retried after a failure, or run twice thus neither duplicates (VictoriaMetrics keeps duplicates) nor loses
//!    samples.
//! 6. **Verify**: read back again; every series must hold exactly the backup's samples.

pub mod tally;

use std::collections::BTreeSet;

use backup_apis::database::{DatabaseEndpoint, DatabaseType};

use crate::destination::Destination;
use crate::engine;
use crate::format::crypt::Keys;
use crate::format::{BackupReader, Labels, NAME_LABEL, RETENTION_POLICY_LABEL, Record};
use crate::http::Http;
use tally::{Tallies, series_id};

/// Series named in a failure message, at most.
const NAMED_SERIES: usize = 5;
/// The first pause before reading a shortfall back again; it doubles up to the last (1 + 2 + 4 s in all).
const VERIFY_FIRST_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);
/// The longest pause between read-backs.
const VERIFY_LAST_PAUSE: std::time::Duration = std::time::Duration::from_secs(4);
/// Metric names listed in read-back selectors, at most (beyond, the backup's selector or all series are read).
const MAX_NAMES: usize = 200;

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    pub series: u64,
    /// Samples of the backup now in the target (verified).
    pub samples: u64,
    /// Of these, samples that were there before this attempt (an earlier attempt's).
    pub present: u64,
    /// Samples the target cannot keep, not written (VictoriaMetrics keeps no NaN but staleness markers).
    pub dropped: u64,
}

/// Why a restore failed; [`Failure::retry`] says whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The backup cannot be restored (missing, corrupt, incompatible with the target).
    #[error("{0}")]
    Unusable(String),
    /// The backup's location (from status) is not its object's: nothing was read.
    #[error("{0}")]
    OutsidePrefix(String),
    /// The target's settings would drop or refuse samples of the backup.
    #[error("{0}")]
    TargetUnsuitable(String),
    /// The target holds samples of the backup's series that the backup does not (another writer's).
    #[error("{0}")]
    TargetHoldsOtherSamples(String),
    /// After writing, the target does not hold exactly the backup's samples.
    #[error("{0}")]
    Unverified(String),
    /// The database could not be reached, or refused a write.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl Failure {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Unusable(_) => "BackupUnusable",
            Failure::OutsidePrefix(_) => "LocationOutsidePrefix",
            Failure::TargetUnsuitable(_) => "TargetUnsuitable",
            Failure::TargetHoldsOtherSamples(_) => "TargetHoldsOtherSamples",
            Failure::Unverified(_) => "VerificationFailed",
            Failure::Failed(_) => "RestoreFailed",
        }
    }

    /// Whether a later attempt can succeed without a change to the restore (the target's settings or
    /// reachability may change; a corrupt backup or a wrong result will not).
    pub fn retry(&self) -> bool {
        matches!(self, Failure::TargetUnsuitable(_) | Failure::Failed(_))
    }
}

/// What the summary pass learnt of the backup.
#[derive(Debug, Default)]
pub struct Summary {
    /// Smallest and largest timestamp of the samples the target keeps, in the backup's precision.
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
    /// Metric names (InfluxDB: measurements), unless there are more than [`MAX_NAMES`].
    pub names: Option<BTreeSet<String>>,
    /// InfluxDB: the retention policies (`None`: the default one) and measurements, with their oldest timestamp.
    pub policies: std::collections::BTreeMap<Option<String>, (i64, BTreeSet<String>)>,
    pub dropped: u64,
}

impl Summary {
    fn time(&mut self, t: i64) {
        self.min_time = Some(self.min_time.map_or(t, |m| m.min(t)));
        self.max_time = Some(self.max_time.map_or(t, |m| m.max(t)));
    }

    fn name(&mut self, labels: &Labels) {
        if let Some(names) = &mut self.names
            && let Some((_, name)) = labels.iter().find(|(k, _)| k == NAME_LABEL)
            && !names.contains(name)
        {
            names.insert(name.clone());
            if names.len() > MAX_NAMES {
                self.names = None;
            }
        }
    }
}

/// Restores the backup at `location` in `destination` (encrypted: with one of `keys`) into `target` (reached with
/// `http`); `progress` counts the samples and bytes of the write pass (5). The caller has checked `location` against
/// its object's prefix.
pub async fn run(
    http: &Http,
    destination: &dyn Destination,
    keys: Option<&Keys>,
    location: &str,
    target: &DatabaseEndpoint,
    progress: std::sync::Arc<crate::progress::Progress>,
) -> Result<Restored, Failure> {
    let unusable = |e: anyhow::Error| Failure::Unusable(format!("{e:#}"));
    let mut reader = BackupReader::open(destination, location, keys).await.map_err(unusable)?;
    let header = reader.header().clone();
    engine::check_compatible(&header, target).map_err(Failure::Unusable)?;

    // 1. What the backup holds; the payload's checksum is verified at its end.
    let mut tallies = Tallies::default();
    let mut summary = Summary { names: Some(BTreeSet::new()), ..Summary::default() };
    let influx = header.engine == DatabaseType::InfluxDB;
    pass(&mut reader, target.r#type, |event| {
        let (labels, time) = match event {
            Event::Series(labels) => return summary.name(labels),
            Event::Sample(_, _, false) => return summary.dropped += 1,
            Event::Sample(labels, time, true) => (labels, time),
        };
        tallies.want(series_id(labels)).add(time);
        summary.time(time);
        if influx {
            let policy = labels.iter().find(|(k, _)| k == RETENTION_POLICY_LABEL).map(|(_, v)| v.clone());
            let entry = summary.policies.entry(policy).or_insert((time, BTreeSet::new()));
            entry.0 = entry.0.min(time);
            if let Some((_, m)) = labels.iter().find(|(k, _)| k == NAME_LABEL)
                && !entry.1.contains(m)
            {
                entry.1.insert(m.clone());
            }
        }
    })
    .await
    .map_err(unusable)?;
    let series = tallies.series.len() as u64;

    // 2. The target's settings.
    engine::preflight(http, target, &header, &summary).await.map_err(|e| match e {
        engine::Preflight::Unsuitable(reason) => Failure::TargetUnsuitable(reason),
        engine::Preflight::Failed(e) => Failure::Failed(e),
    })?;
    if summary.min_time.is_none() {
        return Ok(Restored { series, samples: 0, present: 0, dropped: summary.dropped });
    }

    // 3, 4. What the target holds already, and whether it is an earlier attempt's.
    engine::read_back(http, target, &header, &summary, &mut tallies).await.map_err(Failure::Failed)?;
    let present = tallies.present();
    if present > 0 {
        let mut reader = BackupReader::open(destination, location, keys).await.map_err(unusable)?;
        pass(&mut reader, target.r#type, |event| {
            if let Event::Sample(labels, time, true) = event
                && let Some(t) = tallies.series.get_mut(&series_id(labels))
                && t.prefix.samples < t.have.samples
            {
                t.prefix.add(time);
            }
        })
        .await
        .map_err(unusable)?;
        let (foreign, total) = tallies.foreign(NAMED_SERIES);
        if total > 0 {
            let named = name_series(destination, keys, location, &foreign).await;
            return Err(Failure::TargetHoldsOtherSamples(format!(
                "the target already holds samples of {total} of the backup's {series} series in its time range that \
                 are not the backup's (another writer's, or an earlier restore's of another backup): {named}; \
                 restore into an empty database, or delete those series there first"
            )));
        }
        for t in tallies.series.values_mut() {
            t.skip = t.have.samples;
        }
    }

    // 5. Write what is missing.
    let mut reader = BackupReader::open(destination, location, keys).await.map_err(unusable)?;
    reader.count_into(progress);
    engine::write(http, &mut reader, target, &mut tallies).await.map_err(Failure::Failed)?;

    // 6. Verify. A database may make acknowledged samples visible to reads a moment later (VictoriaMetrics under
    // load, even after its force_flush), so a shortfall is read again a few times; a surplus is final.
    let mut pause = VERIFY_FIRST_PAUSE;
    let (differ, total) = loop {
        tallies.clear_have();
        engine::read_back(http, target, &header, &summary, &mut tallies).await.map_err(Failure::Failed)?;
        let (differ, total) = tallies.mismatches(NAMED_SERIES);
        let shortfall_only = differ.iter().all(|&(_, have, want)| have < want);
        if total == 0 || !shortfall_only || pause > VERIFY_LAST_PAUSE {
            break (differ, total);
        }
        tracing::info!(series = total, ?pause, "samples not all visible in the target yet; reading back again");
        tokio::time::sleep(pause).await;
        pause *= 2;
    };
    if total > 0 {
        let named = name_series(destination, keys, location, &differ).await;
        return Err(Failure::Unverified(format!(
            "after writing, {total} of {series} series do not hold exactly the backup's samples in the target \
             (samples there / in the backup): {named}{}",
            engine::loss_hint(target.r#type)
        )));
    }
    Ok(Restored { series, samples: tallies.wanted(), present, dropped: summary.dropped })
}

/// What a pass over the backup sees.
enum Event<'a> {
    /// A series starts (or continues).
    Series(&'a Labels),
    /// A sample of the current series (an InfluxDB field value is one): its timestamp, and whether a target of the
    /// restore's type keeps it.
    Sample(&'a Labels, i64, bool),
}

/// Reads every record of `reader` into `event`s. Ends with the checksum check.
async fn pass(reader: &mut BackupReader, target: DatabaseType, mut event: impl FnMut(Event<'_>)) -> anyhow::Result<()> {
    let mut labels = Labels::new();
    while let Some(record) = reader.next().await? {
        match record {
            Record::Series(l) => {
                labels = l;
                event(Event::Series(&labels));
            }
            Record::Samples { timestamps, values } => {
                for (t, v) in timestamps.into_iter().zip(values) {
                    event(Event::Sample(&labels, t, engine::keeps(target, v)));
                }
            }
            Record::Rows(rows) => {
                for row in rows {
                    for _ in row.values.iter().flatten() {
                        event(Event::Sample(&labels, row.time, true));
                    }
                }
            }
            Record::Columns(_) => {}
        }
    }
    Ok(())
}

/// `{a="b"} (3 / 5), ...` for the series of `ids` (found again in the backup).
async fn name_series(
    destination: &dyn Destination,
    keys: Option<&Keys>,
    location: &str,
    ids: &[(u64, u64, u64)],
) -> String {
    let mut named: Vec<Option<String>> = vec![None; ids.len()];
    if let Ok(mut reader) = BackupReader::open(destination, location, keys).await {
        while let Ok(Some(record)) = reader.next().await {
            if let Record::Series(labels) = record
                && let Some(i) = ids.iter().position(|(id, ..)| *id == series_id(&labels))
            {
                named[i].get_or_insert_with(|| render(&labels));
                if named.iter().all(Option::is_some) {
                    break;
                }
            }
        }
    }
    ids.iter()
        .zip(named)
        .map(|((_, have, want), name)| format!("{} ({have} / {want})", name.unwrap_or_else(|| "?".into())))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `name{a="b", c="d"}` as PromQL writes a series.
pub fn render(labels: &Labels) -> String {
    let name = labels.iter().find(|(k, _)| k == NAME_LABEL).map_or("", |(_, v)| v.as_str());
    let rest: Vec<String> = labels.iter().filter(|(k, _)| k != NAME_LABEL).map(|(k, v)| format!("{k}={v:?}")).collect();
    crate::sanitize::text(&format!("{name}{{{}}}", rest.join(", ")), 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_names() {
        let labels: Labels = vec![("__name__".into(), "up".into()), ("job".into(), "a\"b".into())];
        assert_eq!(render(&labels), "up{job=\"a\\\"b\"}");
        let failure = Failure::TargetUnsuitable("x".into());
        assert!(failure.retry());
        assert!(!Failure::Unverified("x".into()).retry());
    }
}
