//! Watches of the embedded store: replay history, then follow the live broadcast, each event once and in order.
//!
//! The task subscribes to the broadcast before it reads anything, so every event committed after its history
//! read also reaches it live; live events at revisions it already sent are skipped. Every revision has exactly
//! one event, so a live event past the next expected revision, or a lagged broadcast, means it missed some: it
//! reads history again from the next expected revision. The task holds the store weakly: dropping the store ends
//! its watches.
//!
//! A watch with progress also reports, whenever it has caught up with the broadcast and the last revision it
//! passed was not under its prefix, that it has seen everything up to there ([`WatchItem::Progress`]): every
//! commit passes every watch, so progress needs no request ([`ProgressMode::Continuous`](crate::ProgressMode)).

use std::sync::{Arc, Weak};

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::debug;

use super::{Inner, read};
use crate::{Result, Revision, StorageError, WatchItem};

/// Events buffered for a slow consumer.
const BUFFER: usize = 256;
/// History events read per snapshot while catching up.
const CHUNK: usize = 512;

/// Watch `prefix` from `start_revision` (`0`: from now on); with `progress`, report progress too.
pub(super) fn spawn(
    inner: &Arc<Inner>,
    prefix: String,
    start_revision: Revision,
    progress: bool,
) -> ReceiverStream<Result<WatchItem>> {
    let live = inner.events.subscribe();
    let next =
        if start_revision > 0 { start_revision } else { inner.revision.load(std::sync::atomic::Ordering::Acquire) + 1 };
    let (tx, rx) = mpsc::channel(BUFFER);
    let watch = Watch { inner: Arc::downgrade(inner), prefix, progress, tx };
    tokio::spawn(run(watch, next, live));
    ReceiverStream::new(rx)
}

struct Watch {
    inner: Weak<Inner>,
    prefix: String,
    progress: bool,
    tx: mpsc::Sender<Result<WatchItem>>,
}

impl Watch {
    /// Send `Progress(next - 1)` if asked to report progress; `false` when the consumer is gone.
    async fn report_progress(&self, next: Revision) -> bool {
        !self.progress || self.tx.send(Ok(WatchItem::Progress(next - 1))).await.is_ok()
    }
}

async fn run(watch: Watch, mut next: Revision, mut live: broadcast::Receiver<Arc<crate::Event>>) {
    let Watch { inner, prefix, tx, .. } = &watch;
    loop {
        match catch_up(inner, prefix, &mut next, tx).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
        if !watch.report_progress(next).await {
            return;
        }
        loop {
            let received = tokio::select! {
                received = live.recv() => received,
                () = tx.closed() => return,
            };
            match received {
                Ok(event) if event.revision() < next => {}
                Ok(event) if event.revision() == next => {
                    next += 1;
                    if event.kv.key.starts_with(prefix.as_str()) {
                        if tx.send(Ok(WatchItem::Event(crate::Event::clone(&event)))).await.is_err() {
                            return;
                        }
                    } else if live.is_empty() && !watch.report_progress(next).await {
                        return;
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    debug!(next_revision = next, "embedded watch fell behind; reading history");
                    break;
                }
                Err(RecvError::Closed) => {
                    let _ = tx.send(Err(closed())).await;
                    return;
                }
            }
        }
    }
}

fn closed() -> StorageError {
    StorageError::Unavailable("the embedded store was closed".into())
}

/// Send the history from `next` up to the latest revision; `Ok(false)` when the consumer is gone.
async fn catch_up(
    inner: &Weak<Inner>,
    prefix: &str,
    next: &mut Revision,
    tx: &mpsc::Sender<Result<WatchItem>>,
) -> Result<bool> {
    loop {
        let Some(store) = inner.upgrade() else { return Err(closed()) };
        let (from, chunk_prefix) = (*next, prefix.to_string());
        let chunk = super::spawn_blocking(move || read::history(&store.db, &chunk_prefix, from, CHUNK)).await?;
        for event in chunk.events {
            if tx.send(Ok(WatchItem::Event(event))).await.is_err() {
                return Ok(false);
            }
        }
        *next = chunk.next.max(*next);
        if chunk.done {
            return Ok(true);
        }
    }
}
