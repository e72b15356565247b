//! Watches on etcd that outlive broken connections and etcd restarts.
//!
//! Each [`Storage::watch`](crate::Storage::watch) gets a task that holds one etcd watch (`WithRange`,
//! `WithRev`, `WithPrevKV`) and forwards its events. When the stream breaks, the task opens a new etcd watch from
//! the last forwarded revision + 1, after a pause that grows to 5 s while etcd stays away, so the consumer sees
//! every event once and in order. Only a compaction past that revision (or etcd cancelling the watch) ends the
//! stream with an error.
//!
//! A watch with progress ([`Storage::watch_with_progress`](crate::Storage::watch_with_progress), and
//! [`Storage::watch_for_cache`](crate::Storage::watch_for_cache), the watch cache's, which leaves out
//! `WithPrevKV`) also forwards etcd's progress notifications: the periodic ones (`WithProgressNotify`), which etcd
//! sends in order with the events, and, when etcd orders them too, the ones the consumer requests.

use std::time::Duration;

use etcd_client::proto::PbEvent;
use etcd_client::{WatchClient, WatchOptions, WatchRequestSender, WatchResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

use super::errors::{is_transient, map_err};
use crate::{Event, EventType, ProgressRequester, Result, Revision, StorageError, WatchItem};

/// Events buffered between the etcd stream and a slow consumer.
const BUFFER: usize = 256;
const MIN_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// What to watch.
pub(super) struct Target {
    pub client: WatchClient,
    /// The storage prefix to strip from keys.
    pub storage_prefix: Vec<u8>,
    /// The full key range `[start, end)`.
    pub start: Vec<u8>,
    pub end: Vec<u8>,
    /// Forward progress notifications: etcd's periodic ones, and requested ones when `requests` is given.
    pub progress: bool,
    /// Requests for progress, passed on to etcd.
    pub requests: Option<ProgressRequester>,
    /// Whether events carry the previous value (`WithPrevKV`).
    pub prev: PrevValues,
}

/// Whether a watch's events carry their key's previous value. etcd reads the previous revision of the key for
/// each event that is not a create when they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PrevValues {
    Sent,
    /// For the watch cache, which holds the previous values itself.
    Omitted,
}

pub(super) type Items = ReceiverStream<Result<WatchItem>>;

pub(super) fn spawn(target: Target, start_revision: Revision) -> Items {
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(run(target, start_revision, tx));
    ReceiverStream::new(rx)
}

/// Why one etcd watch stream ended.
enum End {
    /// The consumer is gone, or the watch cannot go on: stop.
    Stop,
    /// The connection broke: watch again from the next revision.
    Reconnect(StorageError),
}

async fn run(mut target: Target, start_revision: Revision, tx: mpsc::Sender<Result<WatchItem>>) {
    let mut next = start_revision;
    let mut pause = MIN_PAUSE;
    loop {
        let before = next;
        let reason = tokio::select! {
            end = watch_once(&mut target, &mut next, &tx) => end,
            () = tx.closed() => End::Stop,
        };
        let End::Reconnect(error) = reason else { return };
        if next > before {
            pause = MIN_PAUSE;
        }
        warn!(error = %error, next_revision = next, pause_ms = pause.as_millis() as u64, "etcd watch broke; re-watching");
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = tx.closed() => return,
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Run one etcd watch from `next`, forwarding events and advancing `next` past each.
async fn watch_once(target: &mut Target, next: &mut Revision, tx: &mpsc::Sender<Result<WatchItem>>) -> End {
    let mut options = WatchOptions::new().with_range(target.end.clone()).with_start_revision(*next);
    if target.prev == PrevValues::Sent {
        options = options.with_prev_key();
    }
    if target.progress {
        options = options.with_progress_notify();
    }
    let stream = match target.client.watch(target.start.clone(), Some(options)).await {
        Ok(stream) => stream,
        Err(e) => return fail(map_err(e), tx).await,
    };
    // Keep the request half open: closing it would end the watch on some etcd versions.
    let (mut requests, mut responses) = stream.split();
    let asked = target.requests.clone();
    loop {
        let message = tokio::select! {
            message = responses.message() => message,
            () = requested(asked.as_ref()) => {
                if let Err(e) = request_progress(&mut requests).await {
                    return fail(e, tx).await;
                }
                continue;
            }
        };
        let response = match message {
            Ok(Some(response)) => response,
            Ok(None) => return End::Reconnect(StorageError::Unavailable("etcd closed the watch stream".into())),
            Err(e) => return fail(map_err(e), tx).await,
        };
        if let Some(end) = forward(target, response, next, tx).await {
            return end;
        }
    }
}

/// A progress request from the consumer; never, without a requester.
async fn requested(requests: Option<&ProgressRequester>) {
    match requests {
        Some(requests) => requests.requested().await,
        None => std::future::pending().await,
    }
}

async fn request_progress(requests: &mut WatchRequestSender) -> Result<()> {
    requests.request_progress().await.map_err(map_err)
}

/// Forward one response's events; `Some` when the watch is over.
async fn forward(
    target: &Target,
    response: WatchResponse,
    next: &mut Revision,
    tx: &mpsc::Sender<Result<WatchItem>>,
) -> Option<End> {
    let response = response.0;
    if response.compact_revision > 0 {
        let error = StorageError::Compacted { requested: *next, compacted: response.compact_revision };
        return Some(fail(error, tx).await);
    }
    if response.canceled {
        let error = StorageError::Unavailable(format!("etcd cancelled the watch: {}", response.cancel_reason));
        let _ = tx.send(Err(error)).await;
        return Some(End::Stop);
    }
    if response.events.is_empty() && !response.created {
        // A progress notification: periodic ones carry the watch's id, requested ones -1 (`InvalidWatchID`), and
        // only those are out of order with the events on etcd before 3.4.31/3.5.13, where nobody requests them.
        let requested = response.watch_id == -1;
        let revision = response.header.as_ref().map_or(0, |h| h.revision);
        if target.progress && (!requested || target.requests.is_some()) && revision >= *next {
            *next = revision + 1;
            if tx.send(Ok(WatchItem::Progress(revision))).await.is_err() {
                return Some(End::Stop);
            }
        }
        return None;
    }
    for event in response.events {
        let event = match to_event(&target.storage_prefix, event) {
            Ok(event) => event,
            Err(e) => return Some(fail(e, tx).await),
        };
        // A re-watch never goes back, but be safe: skip what was forwarded already.
        if event.revision() < *next {
            continue;
        }
        *next = event.revision() + 1;
        if tx.send(Ok(WatchItem::Event(event))).await.is_err() {
            return Some(End::Stop);
        }
    }
    None
}

/// A transient error reconnects; any other is the stream's last item.
async fn fail(error: StorageError, tx: &mpsc::Sender<Result<WatchItem>>) -> End {
    if is_transient(&error) {
        return End::Reconnect(error);
    }
    debug!(error = %error, "etcd watch ends");
    let _ = tx.send(Err(error)).await;
    End::Stop
}

fn to_event(prefix: &[u8], event: PbEvent) -> Result<Event> {
    let kv = event.kv.ok_or_else(|| StorageError::Internal("etcd watch event without a key-value".into()))?;
    let event_type = match event.r#type {
        0 => EventType::Put,
        1 => EventType::Delete,
        other => return Err(StorageError::Internal(format!("etcd watch event of unknown type {other}"))),
    };
    let prev = event.prev_kv.map(|kv| super::to_kv(prefix, kv)).transpose()?;
    let mut kv = super::to_kv(prefix, kv)?;
    if event_type == EventType::Delete {
        kv.create_revision = 0;
        kv.value = bytes::Bytes::new();
    }
    Ok(Event { event_type, kv, prev })
}
