//! Watch (`?watch=true`) in the generic store: storage events translated into Kubernetes watch events — ADDED,
//! MODIFIED, DELETED, with selectors (an object entering or leaving the selection is ADDED or DELETED), initial
//! ADDED events or a streaming list (`sendInitialEvents`, ending in a BOOKMARK marked `k8s.io/initial-events-end`),
//! periodic BOOKMARKs, an ERROR (410 Expired) for a compacted resourceVersion, and the end at `timeoutSeconds`.
//! The endpoint renders each event.
//!
//! endpoints/watch → **store watch** → selectors → storage watch.

use std::sync::Arc;
use std::time::Duration;

use backup_storage::{Event, EventType, Revision};
use bytes::Bytes;
use futures::StreamExt;
use rand::Rng;
use serde_json::Value;
use tokio::sync::mpsc;

use super::Store;
use super::list::{list, wait_for_revision};
use crate::error::{ApiError, ApiResult};
use crate::registry::object_bytes::decode;
use crate::registry::selectors::Filter;
use crate::registry::strategy::Strategy;
use crate::request::options::ListOptions;

/// How often a bookmark is sent to a watcher that allowed them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// Default watch duration when the client gives no timeoutSeconds: random in [30, 60) minutes, as upstream.
const MIN_REQUEST_TIMEOUT: u64 = 1800;
/// Events buffered per watcher before the translating task waits for the client.
const WATCHER_BUFFER: usize = 64;
/// How long a watcher may keep its buffer full before it is cut off (its client resumes from the last
/// resourceVersion it saw, or relists), so a client that stops reading holds nothing for long.
const SLOW_WATCHER_BUDGET: Duration = Duration::from_secs(10);

/// The type of an object event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
}

impl WatchEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One event of a watch.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// An object event: the stored bytes, the resourceVersion to show, and the object decoded when a selector
    /// needed it.
    Object { event_type: WatchEventType, stored: Bytes, revision: Revision, decoded: Option<Value> },
    /// A BOOKMARK at `revision`; `initial_events_end` marks the end of a streaming list's initial events.
    Bookmark { revision: Revision, initial_events_end: bool },
    /// The watch cannot go on (e.g. 410 Expired); it is the last event.
    Error(ApiError),
}

/// The events of one watch, ending when the watch does.
pub type WatchEvents = mpsc::Receiver<WatchEvent>;

impl Store {
    /// Start a watch of `namespace` (None = all) with `opts`.
    pub async fn watch(&self, namespace: Option<&str>, opts: &ListOptions) -> ApiResult<WatchEvents> {
        let filter = Filter::new(&self.strategy, &opts.label_selector, &opts.field_selector)?;
        let initial = opts.send_initial_events || matches!(opts.resource_version, None | Some(0));
        let mut initial_page = None;
        let start_revision = if initial {
            if let Some(rv) = opts.resource_version.filter(|rv| *rv > 0) {
                wait_for_revision(self, rv).await?;
            }
            let mut list_opts = opts.clone();
            list_opts.limit = None;
            list_opts.continue_token = None;
            list_opts.resource_version = None;
            let page = list(self, namespace, &list_opts, &filter).await?;
            let rev = page.revision;
            initial_page = Some(page);
            rev + 1
        } else {
            opts.resource_version.unwrap_or(0) + 1
        };
        let timeout = Duration::from_secs(
            opts.timeout_seconds
                .unwrap_or_else(|| rand::rng().random_range(MIN_REQUEST_TIMEOUT..2 * MIN_REQUEST_TIMEOUT)),
        );
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
        let events = self.storage.watch(&self.prefix(namespace), start_revision).await;
        let translator = Translator { filter, strategy: self.strategy.clone() };
        let allow_bookmarks = opts.allow_bookmarks;
        let send_initial_events = opts.send_initial_events;
        tokio::spawn(async move {
            let mut last_rv = start_revision - 1;
            if let Some(page) = initial_page {
                for (kv, decoded) in page.items {
                    let ev = WatchEvent::Object {
                        event_type: WatchEventType::Added,
                        stored: kv.value,
                        revision: kv.mod_revision,
                        decoded,
                    };
                    if !deliver(&tx, ev).await {
                        return;
                    }
                }
                if send_initial_events {
                    let ev = WatchEvent::Bookmark { revision: page.revision, initial_events_end: true };
                    if !deliver(&tx, ev).await {
                        return;
                    }
                }
            }
            let mut events = match events {
                Ok(s) => s,
                Err(e) => {
                    deliver(&tx, WatchEvent::Error(e.into())).await;
                    return;
                }
            };
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut bookmarks =
                tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_INTERVAL, BOOKMARK_INTERVAL);
            loop {
                tokio::select! {
                    _ = &mut deadline => {
                        if allow_bookmarks {
                            deliver(&tx, WatchEvent::Bookmark { revision: last_rv, initial_events_end: false }).await;
                        }
                        return;
                    }
                    _ = bookmarks.tick(), if allow_bookmarks => {
                        let ev = WatchEvent::Bookmark { revision: last_rv, initial_events_end: false };
                        if !deliver(&tx, ev).await {
                            return;
                        }
                    }
                    _ = tx.closed() => return,
                    next = events.next() => match next {
                        None => return,
                        Some(Err(e)) => {
                            deliver(&tx, WatchEvent::Error(e.into())).await;
                            return;
                        }
                        Some(Ok(ev)) => {
                            last_rv = ev.revision();
                            if let Some(out) = translator.translate(ev)
                                && !deliver(&tx, out).await {
                                    return;
                                }
                        }
                    },
                }
            }
        });
        Ok(rx)
    }
}

/// Hand `ev` to the watcher: false when it is gone, or when its buffer stayed full for [`SLOW_WATCHER_BUDGET`].
async fn deliver(tx: &mpsc::Sender<WatchEvent>, ev: WatchEvent) -> bool {
    match tx.try_send(ev) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Closed(_)) => false,
        Err(mpsc::error::TrySendError::Full(ev)) => {
            let sent = tokio::time::timeout(SLOW_WATCHER_BUDGET, tx.send(ev)).await;
            if sent.is_err() {
                tracing::info!(budget = ?SLOW_WATCHER_BUDGET, "closing a watch whose client stopped reading");
            }
            matches!(sent, Ok(Ok(())))
        }
    }
}

/// Storage events → watch events, through the request's selectors.
struct Translator {
    filter: Filter,
    strategy: Arc<Strategy>,
}

impl Translator {
    /// Whether the stored object matches: `Some(decoded)` when it does (decoded only when a selector needed it).
    fn matches(&self, value: &[u8], rv: Revision) -> Option<Option<Value>> {
        if self.filter.is_empty() {
            return Some(None);
        }
        let v = decode(value, rv).ok()?;
        self.filter.matches(&self.strategy, &v).then_some(Some(v))
    }

    /// The watch event for a storage event, or None when the selectors filter it out.
    fn translate(&self, ev: Event) -> Option<WatchEvent> {
        let rev = ev.revision();
        let object =
            |event_type, stored: Bytes, decoded| WatchEvent::Object { event_type, stored, revision: rev, decoded };
        match ev.event_type {
            EventType::Put => {
                let now = self.matches(&ev.kv.value, rev);
                let before = ev.prev.as_ref().and_then(|p| self.matches(&p.value, p.mod_revision));
                let created = ev.kv.create_revision == ev.kv.mod_revision;
                match (now, before) {
                    (Some(v), Some(_)) if !created => Some(object(WatchEventType::Modified, ev.kv.value, v)),
                    (Some(v), _) => Some(object(WatchEventType::Added, ev.kv.value, v)),
                    (None, Some(old)) if !created => {
                        // Stopped matching: DELETED with the last state that matched, at this revision.
                        Some(object(WatchEventType::Deleted, ev.prev?.value, old))
                    }
                    (None, _) => None,
                }
            }
            EventType::Delete => {
                let prev = ev.prev?;
                let v = self.matches(&prev.value, rev)?;
                Some(object(WatchEventType::Deleted, prev.value, v))
            }
        }
    }
}
