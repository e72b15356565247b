//! Writes of the embedded store: checked, numbered and committed in batches (group commit).
//!
//! A write joins the queue; if no committer runs, it starts one on the blocking pool. The committer takes what
//! has queued (up to [`MAX_BATCH`]), applies each write in order in one redb transaction (each gets the next
//! revision, its current value in `kv` and its event in `history`), trims history, commits (one fsync), and only
//! then publishes the events and answers; then it takes the next batch, until the queue is empty. Writes that
//! arrive during a commit form the next batch, so concurrent writers share fsyncs, and there is only ever one
//! committer, so events go out in revision order.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use redb::{ReadableTable, ReadableTableMetadata, Table, WriteTransaction};
use tokio::sync::oneshot;
use tracing::error;

use super::{HISTORY, Inner, KV, META, META_COMPACTED, META_HISTORY_BYTES, META_REVISION, codec, db_error, lock};
use crate::{Deleted, Event, EventType, KeyValue, Result, Revision, StorageError};

/// The most writes committed in one transaction.
const MAX_BATCH: usize = 1024;

/// One requested write.
pub(super) enum Op {
    Create { key: String, value: Bytes },
    Update { key: String, value: Bytes, expected: Revision },
    Delete { key: String, expected: Option<Revision> },
    Compact { revision: Revision },
}

/// What a write did.
#[derive(Debug)]
pub(super) enum Outcome {
    Written(KeyValue),
    Deleted(Deleted),
    Compacted,
}

type Pending = (Op, oneshot::Sender<Result<Outcome>>);

/// Writes waiting for the committer.
#[derive(Default)]
pub(super) struct Queue {
    pending: Vec<Pending>,
    committing: bool,
}

/// Queue `op`, make sure a committer runs, and wait for its outcome.
pub(super) async fn submit(inner: &Arc<Inner>, op: Op) -> Result<Outcome> {
    let (reply, outcome) = oneshot::channel();
    let start_committer = {
        let mut queue = lock(&inner.queue);
        queue.pending.push((op, reply));
        !std::mem::replace(&mut queue.committing, true)
    };
    if start_committer {
        let inner = inner.clone();
        tokio::task::spawn_blocking(move || commit_until_empty(inner));
    }
    outcome.await.map_err(|_| StorageError::Internal("embedded store: the write was dropped".into()))?
}

/// The committer: commit batches until the queue is empty. It lets go of the store before it answers the last
/// batch, so that a store dropped after its last write returned closes its file at once.
fn commit_until_empty(inner: Arc<Inner>) {
    // Should a commit panic, the next write starts a new committer (the panicked batch's writers get errors from
    // their dropped reply channels).
    let mut guard = CommitterGuard(Some(inner));
    loop {
        let Some(inner) = guard.0.as_ref() else { return };
        let Some(batch) = next_batch(inner) else {
            guard.0 = None;
            return;
        };
        let answers = commit(inner, batch);
        let idle = {
            let mut queue = lock(&inner.queue);
            queue.committing = !queue.pending.is_empty();
            !queue.committing
        };
        if idle {
            guard.0 = None;
        }
        for (reply, outcome) in answers {
            let _ = reply.send(outcome);
        }
        if idle {
            return;
        }
    }
}

/// The next writes to commit; `None` (and no committer running any more) when there are none.
fn next_batch(inner: &Inner) -> Option<Vec<Pending>> {
    let mut queue = lock(&inner.queue);
    if queue.pending.is_empty() {
        queue.committing = false;
        return None;
    }
    let n = queue.pending.len().min(MAX_BATCH);
    Some(queue.pending.drain(..n).collect())
}

struct CommitterGuard(Option<Arc<Inner>>);

impl Drop for CommitterGuard {
    fn drop(&mut self) {
        if let Some(inner) = &self.0
            && std::thread::panicking()
        {
            lock(&inner.queue).committing = false;
        }
    }
}

type Answers = Vec<(oneshot::Sender<Result<Outcome>>, Result<Outcome>)>;

/// Commit a batch and publish its events; the answers to send.
fn commit(inner: &Inner, batch: Vec<Pending>) -> Answers {
    let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().unzip();
    match apply(inner, ops) {
        Ok(applied) => {
            inner.revision.store(applied.revision, Ordering::Release);
            for event in applied.events {
                // No receiver is fine: nobody watches.
                let _ = inner.events.send(Arc::new(event));
            }
            replies.into_iter().zip(applied.outcomes).collect()
        }
        Err(e) => {
            error!(error = %e, "embedded store: write batch failed");
            replies.into_iter().map(|reply| (reply, Err(e.clone()))).collect()
        }
    }
}

struct Applied {
    outcomes: Vec<Result<Outcome>>,
    events: Vec<Event>,
    revision: Revision,
}

/// Apply a batch in one transaction. An `Err` (a database failure) fails the whole batch, nothing is committed;
/// each op's own failure (conflict, not found...) is in its outcome and changes nothing.
fn apply(inner: &Inner, ops: Vec<Op>) -> Result<Applied> {
    let txn = inner.db.begin_write().map_err(db_error)?;
    let (outcomes, events, revision) = {
        let mut tables = Tables::open(&txn)?;
        let mut events = Vec::with_capacity(ops.len());
        let outcomes = ops.into_iter().map(|op| tables.apply(op, &mut events)).collect::<Result<Vec<_>>>()?;
        tables.trim(inner.config.history_limit, inner.config.history_bytes_limit)?;
        tables.save()?;
        (outcomes, events, tables.revision)
    };
    txn.commit().map_err(db_error)?;
    Ok(Applied { outcomes, events, revision })
}

/// The open tables of a write transaction and the counters it updates.
struct Tables<'t> {
    kv: Table<'t, &'static str, &'static [u8]>,
    history: Table<'t, i64, &'static [u8]>,
    meta: Table<'t, &'static str, i64>,
    revision: Revision,
    compacted: Revision,
    history_bytes: i64,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self> {
        let kv = txn.open_table(KV).map_err(db_error)?;
        let history = txn.open_table(HISTORY).map_err(db_error)?;
        let meta = txn.open_table(META).map_err(db_error)?;
        let read = |name: &str| -> Result<i64> { Ok(meta.get(name).map_err(db_error)?.map_or(0, |v| v.value())) };
        let (revision, compacted, history_bytes) =
            (read(META_REVISION)?, read(META_COMPACTED)?, read(META_HISTORY_BYTES)?);
        Ok(Self { kv, history, meta, revision, compacted, history_bytes })
    }

    fn save(&mut self) -> Result<()> {
        self.meta.insert(META_REVISION, self.revision).map_err(db_error)?;
        self.meta.insert(META_COMPACTED, self.compacted).map_err(db_error)?;
        self.meta.insert(META_HISTORY_BYTES, self.history_bytes).map_err(db_error)?;
        Ok(())
    }

    /// Apply one op: `Err` is a database failure, `Ok(Err)` the op's own failure.
    fn apply(&mut self, op: Op, events: &mut Vec<Event>) -> Result<Result<Outcome>> {
        match op {
            Op::Create { key, value } => {
                if self.kv.get(key.as_str()).map_err(db_error)?.is_some() {
                    return Ok(Err(StorageError::AlreadyExists { key }));
                }
                let revision = self.revision + 1;
                let kv = KeyValue { key, value, create_revision: revision, mod_revision: revision };
                self.record(Event { event_type: EventType::Put, kv: kv.clone(), prev: None }, events)?;
                Ok(Ok(Outcome::Written(kv)))
            }
            Op::Update { key, value, expected } => {
                let current = match self.check(key, Some(expected))? {
                    Ok(current) => current,
                    Err(e) => return Ok(Err(e)),
                };
                let revision = self.revision + 1;
                let kv = KeyValue {
                    key: current.key.clone(),
                    value,
                    create_revision: current.create_revision,
                    mod_revision: revision,
                };
                self.record(Event { event_type: EventType::Put, kv: kv.clone(), prev: Some(current) }, events)?;
                Ok(Ok(Outcome::Written(kv)))
            }
            Op::Delete { key, expected } => {
                let current = match self.check(key, expected)? {
                    Ok(current) => current,
                    Err(e) => return Ok(Err(e)),
                };
                let revision = self.revision + 1;
                let kv = KeyValue {
                    key: current.key.clone(),
                    value: Bytes::new(),
                    create_revision: 0,
                    mod_revision: revision,
                };
                self.record(Event { event_type: EventType::Delete, kv, prev: Some(current.clone()) }, events)?;
                Ok(Ok(Outcome::Deleted(Deleted { prev: current, revision })))
            }
            Op::Compact { revision } => {
                if revision > self.revision {
                    return Ok(Err(StorageError::FutureRevision { requested: revision, current: self.revision }));
                }
                if revision > self.compacted {
                    self.drop_history_before(revision)?;
                }
                Ok(Ok(Outcome::Compacted))
            }
        }
    }

    fn current(&self, key: &str) -> Result<Option<KeyValue>> {
        match self.kv.get(key).map_err(db_error)? {
            Some(stored) => codec::decode_kv(key, stored.value()).map(Some),
            None => Ok(None),
        }
    }

    /// The current value of `key`, if it exists and (when `expected` is given) has that mod revision.
    fn check(&self, key: String, expected: Option<Revision>) -> Result<Result<KeyValue>> {
        Ok(match self.current(&key)? {
            None => Err(StorageError::NotFound { key }),
            Some(current) => match expected {
                Some(expected) if expected != current.mod_revision => {
                    Err(StorageError::Conflict { key, expected, current: Box::new(current) })
                }
                _ => Ok(current),
            },
        })
    }

    /// Store the effect of `event` (at the next revision) in `kv` and `history`.
    fn record(&mut self, event: Event, events: &mut Vec<Event>) -> Result<()> {
        let revision = event.revision();
        let key = event.kv.key.as_str();
        match event.event_type {
            EventType::Put => {
                let stored = codec::encode_kv(event.kv.create_revision, revision, &event.kv.value);
                self.kv.insert(key, stored.as_slice()).map_err(db_error)?;
            }
            EventType::Delete => {
                self.kv.remove(key).map_err(db_error)?;
            }
        }
        let encoded = codec::encode_event(&event);
        self.history.insert(revision, encoded.as_slice()).map_err(db_error)?;
        self.history_bytes += encoded.len() as i64;
        self.revision = revision;
        events.push(event);
        Ok(())
    }

    /// Keep history within its limits: past 110% of `limit` events (or past `bytes_limit` bytes), drop the
    /// oldest down to `limit` events and 90% of `bytes_limit`. The newest event always stays.
    fn trim(&mut self, limit: u64, bytes_limit: u64) -> Result<()> {
        let len = self.history.len().map_err(db_error)?;
        let bytes_limit = i64::try_from(bytes_limit).unwrap_or(i64::MAX);
        if len <= limit.saturating_add(limit / 10) && self.history_bytes <= bytes_limit {
            return Ok(());
        }
        let target_bytes = bytes_limit / 10 * 9;
        let (mut kept, mut bytes) = (len, self.history_bytes);
        let mut cutoff = None;
        for entry in self.history.iter().map_err(db_error)? {
            let (revision, value) = entry.map_err(db_error)?;
            if kept <= 1 || (kept <= limit && bytes <= target_bytes) {
                cutoff = Some(revision.value());
                break;
            }
            kept -= 1;
            bytes -= value.value().len() as i64;
        }
        match cutoff {
            Some(cutoff) => self.drop_history_before(cutoff),
            None => Ok(()),
        }
    }

    /// Forget the events before `revision`, which becomes the compacted revision.
    fn drop_history_before(&mut self, revision: Revision) -> Result<()> {
        let mut dropped = 0i64;
        self.history
            .retain_in(..revision, |_, value| {
                dropped += value.len() as i64;
                false
            })
            .map_err(db_error)?;
        self.history_bytes = (self.history_bytes - dropped).max(0);
        self.compacted = revision;
        Ok(())
    }
}
