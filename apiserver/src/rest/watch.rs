//! Watch (`?watch=true`): newline-delimited JSON WatchEvents, one per line, flushed per event; initial ADDED
//! events or `sendInitialEvents` streaming lists; bookmarks; selectors (with ADDED/DELETED on transitions); an
//! ERROR event with 410 Expired for a compacted resourceVersion; `timeoutSeconds`.

use std::sync::Arc;
use std::time::Duration;

use backup_storage::{Event, EventType, StorageError};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use rand::Rng;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::error::{ApiError, ApiResult};
use crate::http::negotiation::Output;
use crate::rest::list::{Filter, list, wait_for_revision};
use crate::rest::object_bytes::{decode, write_with_resource_version};
use crate::rest::params::ListOptions;
use crate::rest::store::ResourceStore;
use crate::rest::table::{IncludeObject, partial_object_metadata, table};

/// How often a bookmark is sent to a watcher that allowed them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// Default watch duration when the client gives no timeoutSeconds: random in [30, 60) minutes, as upstream.
const MIN_REQUEST_TIMEOUT: u64 = 1800;

/// Everything a watch needs.
pub struct WatchRequest {
    pub store: Arc<ResourceStore>,
    pub namespace: Option<String>,
    pub opts: ListOptions,
    pub filter: Filter,
    pub output: Output,
    pub include: IncludeObject,
}

/// Start a watch; the returned channel yields one serialized event per item and closes at the end.
pub async fn start(req: WatchRequest) -> ApiResult<mpsc::Receiver<Bytes>> {
    let store = req.store.clone();
    let initial = req.opts.send_initial_events || matches!(req.opts.resource_version, None | Some(0));
    let mut initial_page = None;
    let start_revision = if initial {
        if let Some(rv) = req.opts.resource_version.filter(|rv| *rv > 0) {
            wait_for_revision(&store, rv).await?;
        }
        let mut opts = req.opts.clone();
        opts.limit = None;
        opts.continue_token = None;
        opts.resource_version = None;
        let page = list(&store, req.namespace.as_deref(), &opts, &req.filter).await?;
        let rev = page.revision;
        initial_page = Some(page);
        rev + 1
    } else {
        req.opts.resource_version.unwrap_or(0) + 1
    };
    let timeout = Duration::from_secs(
        req.opts
            .timeout_seconds
            .unwrap_or_else(|| rand::rng().random_range(MIN_REQUEST_TIMEOUT..2 * MIN_REQUEST_TIMEOUT)),
    );
    let (tx, rx) = mpsc::channel(64);
    let prefix = store.prefix(req.namespace.as_deref());
    let events = store.storage.watch(&prefix, start_revision).await;
    tokio::spawn(async move {
        let mut w = Writer { req, headers_sent: false, last_rv: start_revision - 1 };
        if let Some(page) = initial_page {
            for (kv, decoded) in &page.items {
                let line = w.event_line("ADDED", &kv.value, kv.mod_revision, decoded.as_ref());
                if tx.send(line).await.is_err() {
                    return;
                }
            }
            if w.req.opts.send_initial_events {
                let line = w.bookmark(page.revision, true);
                if tx.send(line).await.is_err() {
                    return;
                }
            }
        }
        let mut events = match events {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(error_line(e)).await;
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
                    if w.req.opts.allow_bookmarks {
                        let _ = tx.send(w.bookmark(w.last_rv, false)).await;
                    }
                    return;
                }
                _ = bookmarks.tick(), if w.req.opts.allow_bookmarks => {
                    if tx.send(w.bookmark(w.last_rv, false)).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
                next = events.next() => match next {
                    None => return,
                    Some(Err(e)) => {
                        let _ = tx.send(error_line(e)).await;
                        return;
                    }
                    Some(Ok(ev)) => {
                        w.last_rv = ev.revision();
                        if let Some(line) = w.translate(&ev)
                            && tx.send(line).await.is_err() {
                                return;
                            }
                    }
                },
            }
        }
    });
    Ok(rx)
}

fn error_line(e: StorageError) -> Bytes {
    let status = ApiError::from(e).status();
    let mut out = serde_json::to_vec(&json!({"type": "ERROR", "object": status})).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

struct Writer {
    req: WatchRequest,
    headers_sent: bool,
    last_rv: i64,
}

impl Writer {
    /// The event to send for a storage event, or None when the selector filters it out.
    fn translate(&mut self, ev: &Event) -> Option<Bytes> {
        let rev = ev.revision();
        let store = self.req.store.clone();
        let matches = |value: &[u8], rv: i64| -> Option<Option<Value>> {
            if self.req.filter.is_empty() {
                return Some(None);
            }
            let v = decode(value, rv).ok()?;
            self.req.filter.matches(&store, &v).then_some(Some(v))
        };
        match ev.event_type {
            EventType::Put => {
                let now = matches(&ev.kv.value, rev);
                let before = ev.prev.as_ref().and_then(|p| matches(&p.value, p.mod_revision));
                let created = ev.kv.create_revision == ev.kv.mod_revision;
                match (now, before) {
                    (Some(v), Some(_)) if !created => Some(self.event_line("MODIFIED", &ev.kv.value, rev, v.as_ref())),
                    (Some(v), _) => Some(self.event_line("ADDED", &ev.kv.value, rev, v.as_ref())),
                    (None, Some(old)) if !created => {
                        // Stopped matching: DELETED with the last state that matched, at this revision.
                        let prev = ev.prev.as_ref()?;
                        Some(self.event_line("DELETED", &prev.value, rev, old.as_ref()))
                    }
                    (None, _) => None,
                }
            }
            EventType::Delete => {
                let prev = ev.prev.as_ref()?;
                let v = matches(&prev.value, rev)?;
                Some(self.event_line("DELETED", &prev.value, rev, v.as_ref()))
            }
        }
    }

    /// `{"type":T,"object":…}\n` in the requested rendering.
    fn event_line(&mut self, event_type: &str, stored: &[u8], rv: i64, decoded: Option<&Value>) -> Bytes {
        let mut out = BytesMut::with_capacity(stored.len() + 64);
        out.put_slice(b"{\"type\":\"");
        out.put_slice(event_type.as_bytes());
        out.put_slice(b"\",\"object\":");
        match self.req.output {
            Output::Json => write_with_resource_version(&mut out, stored, rv),
            other => {
                let mut obj = match decoded {
                    Some(v) => v.clone(),
                    None => decode(stored, rv).unwrap_or(Value::Null),
                };
                if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.insert("resourceVersion".into(), Value::String(rv.to_string()));
                }
                match other {
                    Output::Table(version) => {
                        let headers = !self.headers_sent;
                        self.headers_sent = true;
                        let kind = self.req.store.kind.as_ref();
                        let rendered =
                            table(kind, std::iter::once(Ok(obj)), Map::new(), self.req.include, version, headers);
                        out.put_slice(&rendered.unwrap_or_default());
                    }
                    Output::PartialObjectMetadata(version) | Output::PartialObjectMetadataList(version) => {
                        let _ = serde_json::to_writer((&mut out).writer(), &partial_object_metadata(&obj, version));
                    }
                    Output::Json => {
                        let _ = serde_json::to_writer((&mut out).writer(), &obj);
                    }
                }
            }
        }
        out.put_slice(b"}\n");
        out.freeze()
    }

    /// A BOOKMARK at `rv`; `initial_end` marks the end of a streaming list's initial events.
    fn bookmark(&self, rv: i64, initial_end: bool) -> Bytes {
        let info = self.req.store.info();
        let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = match self.req.output {
            Output::PartialObjectMetadata(v) | Output::PartialObjectMetadataList(v) => {
                json!({"kind": "PartialObjectMetadata", "apiVersion": v.api_version(), "metadata": meta})
            }
            _ => json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": meta}),
        };
        let mut out = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": object})).unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }
}
