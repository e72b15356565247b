//! Watches of the embedded store: replay history, then follow the live broadcast, each event once and in order.
//!
//! The task subscribes to the broadcast before it reads anything, so every event committed after its history
//! read also reaches it live; live events at revisions it already sent are skipped. Every revision has exactly
//! one event, so a live event past the next expected revision, or a lagged broadcast, means it missed some: it
//! reads history again from the next expected revision. The task holds the store weakly: dropping the store ends
//! its watches.

use std::sync::{Arc, Weak};

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::debug;

use super::{Inner, read};
use crate::{Event, Result, Revision, StorageError, WatchStream};

/// Events buffered for a slow consumer.
const BUFFER: usize = 256;
/// History events read per snapshot while catching up.
const CHUNK: usize = 512;

pub(super) fn spawn(inner: &Arc<Inner>, prefix: String, start_revision: Revision) -> WatchStream {
    let live = inner.events.subscribe();
    let next =
        if start_revision > 0 { start_revision } else { inner.revision.load(std::sync::atomic::Ordering::Acquire) + 1 };
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(run(Arc::downgrade(inner), prefix, next, live, tx));
    Box::pin(ReceiverStream::new(rx))
}

async fn run(
    inner: Weak<Inner>,
    prefix: String,
    mut next: Revision,
    mut live: broadcast::Receiver<Arc<Event>>,
    tx: mpsc::Sender<Result<Event>>,
) {
    loop {
        match catch_up(&inner, &prefix, &mut next, &tx).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
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
                    if event.kv.key.starts_with(&prefix) && tx.send(Ok(Event::clone(&event))).await.is_err() {
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
    tx: &mpsc::Sender<Result<Event>>,
) -> Result<bool> {
    loop {
        let Some(store) = inner.upgrade() else { return Err(closed()) };
        let (from, chunk_prefix) = (*next, prefix.to_string());
        let chunk = super::spawn_blocking(move || read::history(&store.db, &chunk_prefix, from, CHUNK)).await?;
        for event in chunk.events {
            if tx.send(Ok(event)).await.is_err() {
                return Ok(false);
            }
        }
        *next = chunk.next.max(*next);
        if chunk.done {
            return Ok(true);
        }
    }
}
