//! Rendering a result in the negotiated [`Output`]: an object, a list, a deleted collection, or a watch event, in
//! JSON or YAML, as the object itself, a Table or PartialObjectMetadata; with `Warning` headers. Lists are written
//! item by item (row by row for Tables), never holding more than one decoded object.
//!
//! endpoints (each verb) → **output** → the response.

mod table;
pub mod warning;
mod yaml;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::registry::object_bytes::{decode, write_with_resource_version};
use crate::registry::store::{DeletedCollection, ListPage, Store, WatchEvent};
use crate::request::negotiation::{Media, Output, Representation};

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
                    table::table(store.strategy.kind.as_ref(), std::iter::once(Ok(obj)), meta, include, v, true)?
                }
                Representation::PartialObjectMetadata(v) => json_bytes(&table::partial_object_metadata(&obj, v)),
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
                list_json(store, &page)
            }
            Media::Yaml => yaml::list(store, page, &mut warnings)?,
        },
        Representation::Table(v, include) => {
            let meta = page.list_meta();
            let kind = store.strategy.kind.as_ref();
            let rendered = table::table(kind, page.into_objects(&mut warnings), meta, include, v, true)?;
            in_media(rendered, output.media)?
        }
        Representation::PartialObjectMetadataList(v) => {
            let meta = page.list_meta();
            let rendered = table::partial_object_metadata_list(page.into_objects(&mut warnings), meta, v)?;
            in_media(rendered, output.media)?
        }
        Representation::PartialObjectMetadata(_) => return Err(ApiError::not_acceptable(&["application/json"])),
    };
    Ok(response(StatusCode::OK, body, output.media, &warnings))
}

/// What a deletecollection deleted, as the kind's List (or a PartialObjectMetadataList).
pub fn deleted_collection(store: &Store, deleted: DeletedCollection, output: Output) -> ApiResult<Response> {
    let info = store.info();
    let mut list_meta = Map::new();
    list_meta.insert("resourceVersion".into(), Value::String(deleted.revision.to_string()));
    let body = match output.representation {
        Representation::PartialObjectMetadataList(v) => {
            table::partial_object_metadata_list(deleted.items.iter().cloned().map(Ok), list_meta, v)?
        }
        _ => json_bytes(&json!({
            "apiVersion": info.api_version(), "items": &deleted.items, "kind": info.list_kind, "metadata": list_meta,
        })),
    };
    Ok(response(StatusCode::OK, in_media(body, output.media)?, output.media, &deleted.warnings))
}

/// `{"apiVersion":…,"items":[…],"kind":"<Kind>List","metadata":{…}}` with the items' stored bytes.
fn list_json(store: &Store, page: &ListPage) -> Bytes {
    let info = store.info();
    let mut out = BytesMut::with_capacity(64 + page.items.iter().map(|(kv, _)| kv.value.len() + 40).sum::<usize>());
    out.put_slice(b"{\"apiVersion\":");
    out.put_slice(Value::String(info.api_version()).to_string().as_bytes());
    out.put_slice(b",\"items\":[");
    for (i, (kv, _)) in page.items.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        write_with_resource_version(&mut out, &kv.value, kv.mod_revision);
    }
    out.put_slice(b"],\"kind\":");
    out.put_slice(Value::String(info.list_kind.to_string()).to_string().as_bytes());
    out.put_slice(b",\"metadata\":");
    out.put_slice(Value::Object(page.list_meta()).to_string().as_bytes());
    out.put_u8(b'}');
    out.freeze()
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

    /// `{"type":T,"object":…}\n` for one event.
    pub fn line(&mut self, store: &Store, event: WatchEvent) -> Bytes {
        match event {
            WatchEvent::Object { event_type, stored, revision, decoded } => {
                self.object_line(store, event_type.as_str(), &stored, revision, decoded)
            }
            WatchEvent::Bookmark { revision, initial_events_end } => self.bookmark(store, revision, initial_events_end),
            WatchEvent::Error(e) => {
                let mut out = serde_json::to_vec(&json!({"type": "ERROR", "object": e.status()})).unwrap_or_default();
                out.push(b'\n');
                Bytes::from(out)
            }
        }
    }

    fn object_line(
        &mut self,
        store: &Store,
        event_type: &str,
        stored: &[u8],
        rv: i64,
        decoded: Option<Value>,
    ) -> Bytes {
        let mut out = BytesMut::with_capacity(stored.len() + 64);
        out.put_slice(b"{\"type\":\"");
        out.put_slice(event_type.as_bytes());
        out.put_slice(b"\",\"object\":");
        match self.representation {
            Representation::Object => write_with_resource_version(&mut out, stored, rv),
            other => {
                let mut obj = match decoded {
                    Some(v) => v,
                    None => decode(stored, rv).unwrap_or(Value::Null),
                };
                if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.insert("resourceVersion".into(), Value::String(rv.to_string()));
                }
                match other {
                    Representation::Table(version, include) => {
                        let headers = !self.headers_sent;
                        self.headers_sent = true;
                        let kind = store.strategy.kind.as_ref();
                        let rendered =
                            table::table(kind, std::iter::once(Ok(obj)), Map::new(), include, version, headers);
                        out.put_slice(&rendered.unwrap_or_default());
                    }
                    Representation::PartialObjectMetadata(version)
                    | Representation::PartialObjectMetadataList(version) => {
                        let _ =
                            serde_json::to_writer((&mut out).writer(), &table::partial_object_metadata(&obj, version));
                    }
                    Representation::Object => {
                        let _ = serde_json::to_writer((&mut out).writer(), &obj);
                    }
                }
            }
        }
        out.put_slice(b"}\n");
        out.freeze()
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

/// The response: `code`, the body with its content type, and `Warning` headers (deduplicated, capped).
fn response(code: StatusCode, body: Bytes, media: Media, warnings: &[String]) -> Response {
    let mut resp = (code, body).into_response();
    let h = resp.headers_mut();
    let content_type = match media {
        Media::Json => "application/json",
        Media::Yaml => "application/yaml",
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    warning::append_warnings(h, warnings);
    resp
}
