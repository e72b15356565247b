//! Per-series counts of a restore: how many samples of each series the backup holds (`want`), how many the target
//! holds over the backup's time range (`have`), each with a digest of their timestamps, so that "the same count" also
//! means "the same timestamps". Memory: one entry (~64 bytes) per series, none per sample.
//!
//! API → controller → restore → **tallies (this file)**.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::format::Labels;

/// A series' identity: a hash of its sorted labels (SipHash with fixed keys, the same in every pass). A label with
/// an empty value is no label (so say Prometheus, VictoriaMetrics, and InfluxDB's answers to `GROUP BY *`).
pub fn series_id(labels: &Labels) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    for (name, value) in labels.iter().filter(|(_, v)| !v.is_empty()) {
        name.hash(&mut hasher);
        value.hash(&mut hasher);
    }
    hasher.finish()
}

/// A number of samples and an order-independent digest of their timestamps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub samples: u64,
    pub digest: u64,
}

impl Count {
    pub fn add(&mut self, timestamp: i64) {
        self.samples += 1;
        self.digest = self.digest.wrapping_add(mix(timestamp as u64));
    }
}

/// splitmix64's finalizer: nearby timestamps give unrelated digests.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One series of the backup.
#[derive(Debug, Clone, Default)]
pub struct SeriesTally {
    /// In the backup (the samples the target keeps).
    pub want: Count,
    /// In the target, over the backup's time range.
    pub have: Count,
    /// The first `have.samples` samples of the backup's series, in file order (to check what the target holds is
    /// what an earlier attempt wrote).
    pub prefix: Count,
    /// Samples still to skip in the write pass (already in the target).
    pub skip: u64,
}

/// The series of one restore.
#[derive(Debug, Default)]
pub struct Tallies {
    pub series: HashMap<u64, SeriesTally>,
}

impl Tallies {
    /// The backup's samples of series `id`.
    pub fn want(&mut self, id: u64) -> &mut Count {
        &mut self.series.entry(id).or_default().want
    }

    /// Counts a target sample of series `id` (a series the backup does not hold is not counted).
    pub fn have(&mut self, id: u64, timestamp: i64) {
        if let Some(tally) = self.series.get_mut(&id) {
            tally.have.add(timestamp);
        }
    }

    pub fn clear_have(&mut self) {
        self.series.values_mut().for_each(|t| t.have = Count::default());
    }

    /// How many of the next `n` samples of series `id` to skip in the write pass.
    pub fn take_skip(&mut self, id: u64, n: usize) -> usize {
        match self.series.get_mut(&id) {
            Some(tally) => {
                let skip = tally.skip.min(n as u64);
                tally.skip -= skip;
                skip as usize
            }
            None => 0,
        }
    }

    /// Samples in the backup.
    pub fn wanted(&self) -> u64 {
        self.series.values().map(|t| t.want.samples).sum()
    }

    /// Samples of the backup's series already in the target.
    pub fn present(&self) -> u64 {
        self.series.values().map(|t| t.have.samples).sum()
    }

    /// Series whose target samples differ from the backup's (count or timestamps), at most `n`, with their
    /// (have, want) counts; and how many differ in all.
    pub fn mismatches(&self, n: usize) -> (Vec<(u64, u64, u64)>, usize) {
        let mut differ: Vec<(u64, u64, u64)> = self
            .series
            .iter()
            .filter(|(_, t)| t.have != t.want)
            .map(|(id, t)| (*id, t.have.samples, t.want.samples))
            .collect();
        let total = differ.len();
        differ.sort_by_key(|&(id, have, want)| (std::cmp::Reverse(have.abs_diff(want)), id));
        differ.truncate(n);
        (differ, total)
    }

    /// Series whose target samples are not what the backup's first samples would be (so not an earlier attempt's
    /// writes): at most `n`, and how many in all.
    pub fn foreign(&self, n: usize) -> (Vec<(u64, u64, u64)>, usize) {
        let mut foreign: Vec<(u64, u64, u64)> = self
            .series
            .iter()
            .filter(|(_, t)| t.have.samples > 0 && (t.have.samples > t.want.samples || t.have != t.prefix))
            .map(|(id, t)| (*id, t.have.samples, t.want.samples))
            .collect();
        let total = foreign.len();
        foreign.sort_by_key(|&(id, ..)| id);
        foreign.truncate(n);
        (foreign, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_prefixes() {
        let labels: Labels = vec![("__name__".into(), "m".into())];
        let id = series_id(&labels);
        let with_empty: Labels = vec![("__name__".into(), "m".into()), ("host".into(), String::new())];
        assert_eq!(id, series_id(&with_empty));
        let mut t = Tallies::default();
        for ts in [1, 2, 3] {
            t.want(id).add(ts);
        }
        t.have(id, 2);
        t.have(id, 1);
        t.have(series_id(&vec![]), 9);
        assert_eq!(t.series.len(), 1, "a series the backup does not hold is ignored");
        let tally = t.series.get_mut(&id).unwrap();
        tally.prefix.add(1);
        tally.prefix.add(2);
        assert_eq!(t.foreign(5).1, 0, "the first two samples are there: an earlier attempt's");
        assert_eq!(t.mismatches(5), (vec![(id, 2, 3)], 1));
        t.series.get_mut(&id).unwrap().skip = 2;
        assert_eq!((t.take_skip(id, 1), t.take_skip(id, 5), t.take_skip(id, 5)), (1, 1, 0));
        t.have(id, 3);
        assert_eq!(t.mismatches(5).1, 0);
        assert_eq!((t.wanted(), t.present()), (3, 3));
        // Same count, other timestamps: not the same samples.
        t.clear_have();
        for ts in [1, 2, 4] {
            t.have(id, ts);
        }
        assert_eq!(t.mismatches(5).1, 1);
    }
}
