//! Rendering a result in the negotiated [`Output`]: an object, a list, a deleted collection, or a watch event, in
//! JSON or YAML, as the object itself, a Table or PartialObjectMetadata; with `Warning` headers. Lists are written
//! item by item (row by row for Tables, from the stored bytes where they can be), never holding more than one decoded
//! object; a large JSON list goes out in chunks made as the connection takes them. A watch event's line is rendered
//! once per rendering and shared by every watcher that renders it alike ([`WatchRenderer`]).
//!
//! endpoints (each verb) → **output** → the response.

mod table;
mod table_row;
pub mod warning;
mod yaml;

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use backup_storage::Revision;
use backup_storage::cacher::{CachedObject, RepresentationId};
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::filters::compression::Compressible;
use crate::registry::object_bytes::{prefetch, prefetch_bytes, write_with_resource_version};
use crate::registry::store::{DeletedCollection, ListPage, Store, WatchEvent, WatchEventType};
use crate::request::negotiation::{IncludeObject, Media, MetaVersion, Output, Representation};

/// One object (as stored, with its resourceVersion) in the requested rendering.
pub fn object(
    store: &Store,
    body: Bytes,
    output: Output,
    code: StatusCode,
    warnings: &[String],
) -> ApiResult<Response> {
    let body = match output.representation {
        Representation::Object if output.media == Media::Json => body,
        Representation::Object => yaml::from_json_bytes(&body)?,
        other => {
            let obj: Value = serde_json::from_slice(&body).map_err(ApiError::internal)?;
            let rendered = match other {
                Representation::Table(v, include) => {
                    let mut meta = Map::new();
                    if let Some(rv) = obj.pointer("/metadata/resourceVersion") {
                        meta.insert("resourceVersion".into(), rv.clone());
                    }
                    let kind = store.strategy.kind.as_ref();
                    table::table(kind, std::iter::once(Ok(obj)), meta, (include, v, true), jiff::Timestamp::now())?
                }
                Representation::PartialObjectMetadata(v) => json_bytes(&table::partial_object_metadata(obj, v)),
                _ => return Err(ApiError::not_acceptable(&["application/json"])),
            };
            in_media(rendered, output.media)?
        }
    };
    Ok(response(code, body, output.media, warnings))
}

/// A page of a list in the requested rendering.
pub fn list(store: &Store, page: ListPage, output: Output) -> ApiResult<Response> {
    let mut warnings = Vec::new();
    let body = match output.representation {
        Representation::Object => match output.media {
            Media::Json => {
                warnings.extend(page.warnings.iter().cloned());
                let body = list_json(store, page);
                return Ok(response(StatusCode::OK, body, output.media, &warnings));
            }
            Media::Yaml => yaml::list(store, page, &mut warnings)?,
        },
        Representation::Table(v, include) => {
            let kind = store.strategy.kind.as_ref();
            let rendered = table::table_of_page(kind, page, (include, v), jiff::Timestamp::now(), &mut warnings);
            in_media(rendered, output.media)?
        }
        Representation::PartialObjectMetadataList(v) => {
            let rendered = table::partial_object_metadata_list_of_page(page, v, &mut warnings);
            in_media(rendered, output.media)?
        }
        Representation::PartialObjectMetadata(_) => return Err(ApiError::not_acceptable(&["application/json"])),
    };
    Ok(response(StatusCode::OK, body, output.media, &warnings))
}

/// For the fuzzing entry points: whether a Table row and PartialObjectMetadata read from `stored` (at revision
/// `rv`) are byte for byte those written from the decoded object.
#[doc(hidden)]
pub fn stored_renderings_match_decoded(store: &Store, stored: &[u8], rv: i64) -> Result<(), String> {
    table::stored_renderings_match_decoded(store.strategy.kind.as_ref(), stored, rv)
}

/// What a deletecollection deleted, as the kind's List (or a PartialObjectMetadataList).
pub fn deleted_collection(store: &Store, deleted: DeletedCollection, output: Output) -> ApiResult<Response> {
    let info = store.info();
    let mut list_meta = Map::new();
    list_meta.insert("resourceVersion".into(), Value::String(deleted.revision.to_string()));
    let body = match output.representation {
        Representation::PartialObjectMetadataList(v) => {
            table::partial_object_metadata_list(deleted.items.iter().cloned(), list_meta, v)
        }
        _ => json_bytes(&json!({
            "apiVersion": info.api_version(), "items": &deleted.items, "kind": info.list_kind, "metadata": list_meta,
        })),
    };
    Ok(response(StatusCode::OK, in_media(body, output.media)?, output.media, &deleted.warnings))
}

/// How many bytes of a JSON list are written at a time: a large list goes out in pieces of about this size, each
/// made when the connection can take it and copied on while still in the CPU's cache (one large buffer would be a
/// second copy of the list, written to memory and read back from it).
const LIST_CHUNK_BYTES: usize = 64 * 1024;

/// How many items ahead of the one being written a list fetches an item's bytes (and twice as far, the item
/// itself): enough to cover a memory read while one item is written.
const PREFETCH_AHEAD: usize = 8;

/// Fetches ahead of a loop over list items (`ahead` = those after the current one): the item 2 × [`PREFETCH_AHEAD`]
/// on, and the bytes of the item [`PREFETCH_AHEAD`] on (whose `CachedObject` was fetched that many items ago). The
/// items are scattered over the heap and a large list has left the CPU's caches cold: without this, writing an
/// item waits ~0.2 µs on memory.
fn prefetch_items(ahead: &[Arc<CachedObject>]) {
    if let Some(item) = ahead.get(2 * PREFETCH_AHEAD - 1) {
        prefetch(Arc::as_ptr(item).cast());
    }
    if let Some(item) = ahead.get(PREFETCH_AHEAD - 1) {
        prefetch_bytes(item.value());
    }
}

/// `{"apiVersion":…,"items":[…],"kind":"<Kind>List","metadata":{…}}` with the items' stored bytes: one buffer
/// (with a Content-Length) when it fits in a chunk, else a stream of chunks, as upstream sends large lists.
fn list_json(store: &Store, page: ListPage) -> Body {
    let info = store.info();
    let mut head = BytesMut::new();
    head.put_slice(b"{\"apiVersion\":");
    head.put_slice(Value::String(info.api_version()).to_string().as_bytes());
    head.put_slice(b",\"items\":[");
    let mut tail = BytesMut::new();
    tail.put_slice(b"],\"kind\":");
    tail.put_slice(Value::String(info.list_kind.to_string()).to_string().as_bytes());
    tail.put_slice(b",\"metadata\":");
    tail.put_slice(Value::Object(page.list_meta()).to_string().as_bytes());
    tail.put_u8(b'}');
    let mut chunks =
        ListJsonChunks { head: Some(head), items: page.items.into_iter(), first: true, tail: Some(tail.freeze()) };
    let Some(first) = chunks.next_chunk() else { return Body::empty() };
    if chunks.tail.is_none() {
        return Body::from(first);
    }
    Body::from_stream(futures::stream::iter(
        std::iter::once(first).chain(std::iter::from_fn(move || chunks.next_chunk())).map(Ok::<_, Infallible>),
    ))
}

/// A JSON list being written chunk by chunk: what is left of it.
struct ListJsonChunks {
    /// `{"apiVersion":…,"items":[`, until written.
    head: Option<BytesMut>,
    items: std::vec::IntoIter<Arc<CachedObject>>,
    /// No item written yet (the next one has no comma before it).
    first: bool,
    /// `],"kind":…,"metadata":{…}}`, until written.
    tail: Option<Bytes>,
}

impl ListJsonChunks {
    /// The next [`LIST_CHUNK_BYTES`] or so of the list (or its last piece); `None` once all is written.
    fn next_chunk(&mut self) -> Option<Bytes> {
        let mut out = match self.head.take() {
            Some(head) => head,
            None => BytesMut::with_capacity(LIST_CHUNK_BYTES + 4096),
        };
        while out.len() < LIST_CHUNK_BYTES {
            let Some(object) = self.items.next() else {
                if let Some(tail) = self.tail.take() {
                    out.put_slice(&tail);
                }
                break;
            };
            prefetch_items(self.items.as_slice());
            if !std::mem::replace(&mut self.first, false) {
                out.put_u8(b',');
            }
            write_with_resource_version(&mut out, object.value(), object.kv().mod_revision);
        }
        (!out.is_empty()).then(|| out.freeze())
    }
}

/// The rendering state of one watch: which representation, and whether a Table's column definitions went out.
pub struct WatchRenderer {
    representation: Representation,
    headers_sent: bool,
}

impl WatchRenderer {
    pub fn new(output: Output) -> Self {
        Self { representation: output.representation, headers_sent: false }
    }

    /// `{"type":T,"object":…}\n` for one event. An object event's line is made once per rendering for all
    /// watchers ([`backup_storage::cacher::CachedEvent::encoded`]): the same `Bytes` for each of them.
    pub fn line(&mut self, store: &Store, event: WatchEvent) -> Bytes {
        match event {
            WatchEvent::Object { event_type, object, revision, shared } => {
                let table = matches!(self.representation, Representation::Table(..));
                let headers = table && !self.headers_sent;
                self.headers_sent |= table;
                // Table cells show ages relative to now: a Table line is shared within the second it is made in.
                // Other renderings do not read the clock (this runs for every watcher of every event).
                let now = if table { jiff::Timestamp::now() } else { jiff::Timestamp::UNIX_EPOCH };
                let line = ObjectLine { representation: self.representation, headers, event_type, revision, now };
                match shared {
                    Some(shared) => shared.encoded(line.id(), |_| line.render(store, &object)),
                    None => line.render(store, &object),
                }
            }
            WatchEvent::Bookmark { revision, initial_events_end } => self.bookmark(store, revision, initial_events_end),
            WatchEvent::Error(e) => {
                let mut out = serde_json::to_vec(&json!({"type": "ERROR", "object": e.status()})).unwrap_or_default();
                out.push(b'\n');
                Bytes::from(out)
            }
        }
    }

    /// A BOOKMARK at `rv`; `initial_end` marks the end of a streaming list's initial events.
    fn bookmark(&self, store: &Store, rv: i64, initial_end: bool) -> Bytes {
        let info = store.info();
        let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = match self.representation {
            Representation::PartialObjectMetadata(v) | Representation::PartialObjectMetadataList(v) => {
                json!({"kind": "PartialObjectMetadata", "apiVersion": v.api_version(), "metadata": meta})
            }
            _ => json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": meta}),
        };
        let mut out = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": object})).unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }
}

/// Everything that makes the line of an object event what it is, besides the object.
struct ObjectLine {
    representation: Representation,
    /// A Table line carries the column definitions (the watch's first).
    headers: bool,
    event_type: WatchEventType,
    revision: Revision,
    now: jiff::Timestamp,
}

impl ObjectLine {
    /// The id of this rendering among an event's shared renderings: the representation (with its meta version
    /// and includeObject), the column definitions, the event type, and for Tables the second of `now`.
    fn id(&self) -> RepresentationId {
        let version = |v: MetaVersion| match v {
            MetaVersion::V1 => 0,
            MetaVersion::V1beta1 => 1,
        };
        let (representation, second) = match self.representation {
            Representation::Object => (0, 0),
            Representation::Table(v, include) => {
                let include = match include {
                    IncludeObject::None => 0,
                    IncludeObject::Metadata => 1,
                    IncludeObject::Object => 2,
                };
                (1 + version(v) * 3 + include, u64::try_from(self.now.as_second()).unwrap_or(0))
            }
            Representation::PartialObjectMetadata(v) | Representation::PartialObjectMetadataList(v) => {
                (7 + version(v), 0)
            }
        };
        let event_type = match self.event_type {
            WatchEventType::Added => 0,
            WatchEventType::Modified => 1,
            WatchEventType::Deleted => 2,
        };
        (second << 16) | (representation << 4) | (u64::from(self.headers) << 2) | event_type
    }

    fn render(&self, store: &Store, object: &CachedObject) -> Bytes {
        let stored = object.value();
        let rv = self.revision;
        let mut out = BytesMut::with_capacity(stored.len() + 64);
        out.put_slice(b"{\"type\":\"");
        out.put_slice(self.event_type.as_str().as_bytes());
        out.put_slice(b"\",\"object\":");
        match self.representation {
            Representation::Object => write_with_resource_version(&mut out, stored, rv),
            Representation::Table(version, include) => {
                let kind = store.strategy.kind.as_ref();
                let options = (include, version, self.headers);
                out.put_slice(&table::table_of_stored(kind, stored, rv, options, self.now));
            }
            Representation::PartialObjectMetadata(version) | Representation::PartialObjectMetadataList(version) => {
                out.put_slice(&table::partial_object_metadata_of_stored(stored, rv, version));
            }
        }
        out.put_slice(b"}\n");
        out.freeze()
    }
}

/// JSON rendered by this module, converted when YAML was asked for.
fn in_media(json: Bytes, media: Media) -> ApiResult<Bytes> {
    match media {
        Media::Json => Ok(json),
        Media::Yaml => yaml::from_json_bytes(&json),
    }
}

fn json_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// The response: `code`, the body with its content type, and `Warning` headers (deduplicated, capped); gzip-encoded
/// when large and the client accepts it ([`Compressible::ApiObject`]).
fn response(code: StatusCode, body: impl Into<Body>, media: Media, warnings: &[String]) -> Response {
    let mut resp = (code, body.into()).into_response();
    resp.extensions_mut().insert(Compressible::ApiObject);
    let h = resp.headers_mut();
    let content_type = match media {
        Media::Json => "application/json",
        Media::Yaml => "application/yaml",
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    warning::append_warnings(h, warnings);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way a watch line can differ gets its own id, so watchers never share a line they would render
    /// differently; a Table's id changes with the second its ages are computed in, nothing else's does.
    #[test]
    fn rendering_ids_cover_what_changes_a_line() {
        let now = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let mut representations = vec![
            Representation::Object,
            Representation::PartialObjectMetadata(MetaVersion::V1),
            Representation::PartialObjectMetadata(MetaVersion::V1beta1),
        ];
        for version in [MetaVersion::V1, MetaVersion::V1beta1] {
            for include in [IncludeObject::None, IncludeObject::Metadata, IncludeObject::Object] {
                representations.push(Representation::Table(version, include));
            }
        }
        let mut ids = std::collections::HashSet::new();
        for representation in representations {
            for event_type in [WatchEventType::Added, WatchEventType::Modified, WatchEventType::Deleted] {
                for headers in [false, true] {
                    let line = ObjectLine { representation, headers, event_type, revision: 7, now };
                    assert!(ids.insert(line.id()), "{representation:?} {event_type:?} {headers}: a shared id");
                    let later = ObjectLine { now: now + jiff::SignedDuration::from_secs(1), ..line };
                    let is_table = matches!(representation, Representation::Table(..));
                    assert_eq!(later.id() != line.id(), is_table, "{representation:?}: ids and time");
                }
            }
        }
        let list = ObjectLine {
            representation: Representation::PartialObjectMetadataList(MetaVersion::V1),
            headers: false,
            event_type: WatchEventType::Added,
            revision: 7,
            now,
        };
        let single = ObjectLine { representation: Representation::PartialObjectMetadata(MetaVersion::V1), ..list };
        assert_eq!(list.id(), single.id(), "the same line either way");
    }
}
