//! Reads of the embedded store, each from one redb snapshot: get, list (now or at a past revision) and history
//! for watches.
//!
//! A list at a past revision reads the current values and undoes the newer history: walking the events after
//! that revision from newest to oldest, each key in range takes the value it had before its oldest such event
//! (or is absent if that event created it).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use redb::{Database, ReadOnlyTable, ReadTransaction, ReadableDatabase};

use super::{HISTORY, KV, META, META_COMPACTED, META_REVISION, codec, db_error};
use crate::{Event, KeyValue, ListOptions, ListResult, Result, Revision, StorageError, key};

pub(super) fn get(db: &Database, key: &str) -> Result<Option<KeyValue>> {
    let txn = db.begin_read().map_err(db_error)?;
    let kv = txn.open_table(KV).map_err(db_error)?;
    match kv.get(key).map_err(db_error)? {
        Some(stored) => codec::decode_kv(key, stored.value()).map(Some),
        None => Ok(None),
    }
}

/// The revision and compacted revision of a snapshot.
fn revisions(txn: &ReadTransaction) -> Result<(Revision, Revision)> {
    let meta = txn.open_table(META).map_err(db_error)?;
    let read = |name: &str| -> Result<i64> { Ok(meta.get(name).map_err(db_error)?.map_or(0, |v| v.value())) };
    Ok((read(META_REVISION)?, read(META_COMPACTED)?))
}

/// `Compacted` or `FutureRevision` as a read at `revision` would fail.
pub(super) fn check_revision(db: &Database, at: Revision) -> Result<()> {
    let txn = db.begin_read().map_err(db_error)?;
    let (revision, compacted) = revisions(&txn)?;
    if at > revision {
        return Err(StorageError::FutureRevision { requested: at, current: revision });
    }
    if at < compacted {
        return Err(StorageError::Compacted { requested: at, compacted });
    }
    Ok(())
}

pub(super) fn list(db: &Database, prefix: &str, opts: &ListOptions) -> Result<ListResult> {
    let txn = db.begin_read().map_err(db_error)?;
    let (revision, compacted) = revisions(&txn)?;
    let at = opts.revision.filter(|r| *r > 0).unwrap_or(revision);
    if at > revision {
        return Err(StorageError::FutureRevision { requested: at, current: revision });
    }
    if at < compacted {
        return Err(StorageError::Compacted { requested: at, compacted });
    }
    let start = key::list_start(prefix, opts.start_key.as_deref())?;
    let end = key::prefix_end(prefix);
    let overrides = if at < revision {
        undo_since(&txn.open_table(HISTORY).map_err(db_error)?, at, start, &end)?
    } else {
        BTreeMap::new()
    };
    let limit = opts.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
    let kv = txn.open_table(KV).map_err(db_error)?;
    let mut current = kv.range::<&str>(start..end.as_str()).map_err(db_error)?;
    let mut overrides = overrides.into_iter().peekable();
    let mut next_current = current.next().transpose().map_err(db_error)?;
    let mut page = Page { items: Vec::new(), remaining: 0, limit };
    loop {
        let order = match (&next_current, overrides.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((key, _)), Some((changed, _))) => key.value().cmp(changed.as_str()),
        };
        if order == Ordering::Less {
            // Unchanged since `at`: the current value.
            let Some((key, value)) = next_current.take() else { break };
            page.add(|| codec::decode_kv(key.value(), value.value()))?;
        } else if let Some((_, Some(then))) = overrides.next() {
            // Changed since `at`, and it existed then.
            page.add(|| Ok(then))?;
        }
        if order != Ordering::Greater {
            next_current = current.next().transpose().map_err(db_error)?;
        }
    }
    Ok(ListResult { items: page.items, revision: at, more: page.remaining > 0, remaining: page.remaining })
}

/// The items of a list and the count of those past its limit.
struct Page {
    items: Vec<KeyValue>,
    remaining: i64,
    limit: usize,
}

impl Page {
    fn add(&mut self, item: impl FnOnce() -> Result<KeyValue>) -> Result<()> {
        if self.items.len() < self.limit {
            self.items.push(item()?);
        } else {
            self.remaining += 1;
        }
        Ok(())
    }
}

/// For each key in `[start, end)` changed after `at`: its value at `at` (`None`: it did not exist).
fn undo_since(
    history: &ReadOnlyTable<i64, &[u8]>,
    at: Revision,
    start: &str,
    end: &str,
) -> Result<BTreeMap<String, Option<KeyValue>>> {
    let mut then = BTreeMap::new();
    for entry in history.range((at + 1)..).map_err(db_error)?.rev() {
        let (revision, stored) = entry.map_err(db_error)?;
        let key = codec::event_key(stored.value())?;
        if key < start || key >= end {
            continue;
        }
        let event = codec::decode_event(revision.value(), stored.value())?;
        then.insert(event.kv.key, event.prev);
    }
    Ok(then)
}

/// A run of history for a watch.
pub(super) struct HistoryChunk {
    /// The events under the prefix, in revision order.
    pub events: Vec<Event>,
    /// The revision to read from next.
    pub next: Revision,
    /// Whether the chunk reached the snapshot's revision.
    pub done: bool,
}

/// Up to `max` events (of any key) from revision `from`, keeping those under `prefix`.
pub(super) fn history(db: &Database, prefix: &str, from: Revision, max: usize) -> Result<HistoryChunk> {
    let txn = db.begin_read().map_err(db_error)?;
    let (revision, compacted) = revisions(&txn)?;
    if from > revision {
        return Ok(HistoryChunk { events: Vec::new(), next: from, done: true });
    }
    if from < compacted {
        return Err(StorageError::Compacted { requested: from, compacted });
    }
    let history = txn.open_table(HISTORY).map_err(db_error)?;
    let mut events = Vec::new();
    let (mut last, mut read) = (from - 1, 0);
    for entry in history.range(from..=revision).map_err(db_error)?.take(max) {
        let (rev, stored) = entry.map_err(db_error)?;
        (last, read) = (rev.value(), read + 1);
        if codec::event_key(stored.value())?.starts_with(prefix) {
            events.push(codec::decode_event(last, stored.value())?);
        }
    }
    let done = read < max || last >= revision;
    Ok(HistoryChunk { events, next: if done { revision + 1 } else { last + 1 }, done })
}
