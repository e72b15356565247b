//! The JSON rendering of a list — `{"apiVersion":…,"items":[…],"kind":"<Kind>List","metadata":{…}}` with the
//! items' stored bytes, each with its resourceVersion spliced in — streamed: written into chunks of about
//! [`CHUNK`] bytes as the connection takes them. A list of any size holds no buffer the size of the whole
//! response, and each chunk is still in the CPU's cache when TLS encrypts it. A list that fits in one chunk is
//! answered whole (with a `Content-Length`).
//!
//! endpoints/list → output → **list JSON** → the response body.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use backup_apis::ResourceInfo;
use backup_storage::cacher::CachedObject;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;

use crate::registry::object_bytes::write_with_resource_version;
use crate::registry::store::ListPage;

/// About how many bytes each chunk of the body holds (an item is never split; a larger item makes a larger chunk).
const CHUNK: usize = 64 << 10;

/// The body of `page` rendered as the List of `info`'s kind.
pub fn body(info: &ResourceInfo, page: ListPage) -> Body {
    let mut head = Vec::with_capacity(64);
    head.extend_from_slice(b"{\"apiVersion\":");
    write_json(&mut head, &Value::String(info.api_version()));
    head.extend_from_slice(b",\"items\":[");
    let mut tail = Vec::with_capacity(128);
    tail.extend_from_slice(b"],\"kind\":");
    write_json(&mut tail, &Value::String(info.list_kind.to_string()));
    tail.extend_from_slice(b",\"metadata\":");
    write_json(&mut tail, &Value::Object(page.list_meta()));
    tail.push(b'}');
    let mut chunks = Chunks::new(head, page.items, tail);
    let first = chunks.next().unwrap_or_default();
    if chunks.done() {
        return Body::from(first);
    }
    Body::from_stream(futures::stream::iter(std::iter::once(first).chain(chunks).map(Ok::<_, Infallible>)))
}

fn write_json(out: &mut Vec<u8>, v: &Value) {
    // Serializing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// The body's chunks, rendered one at a time.
struct Chunks {
    /// Up to `"items":[`, until written.
    head: Option<Vec<u8>>,
    items: std::vec::IntoIter<Arc<CachedObject>>,
    /// An item has been written: the next one follows a comma.
    started: bool,
    /// From `]` on, until written.
    tail: Option<Vec<u8>>,
}

impl Chunks {
    fn new(head: Vec<u8>, items: Vec<Arc<CachedObject>>, tail: Vec<u8>) -> Self {
        Self { head: Some(head), items: items.into_iter(), started: false, tail: Some(tail) }
    }

    fn done(&self) -> bool {
        self.head.is_none() && self.tail.is_none()
    }
}

impl Iterator for Chunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.done() {
            return None;
        }
        let mut out = BytesMut::with_capacity(CHUNK + CHUNK / 4);
        if let Some(head) = self.head.take() {
            out.put_slice(&head);
        }
        while out.len() < CHUNK {
            let Some(object) = self.items.next() else {
                if let Some(tail) = self.tail.take() {
                    out.put_slice(&tail);
                }
                break;
            };
            if std::mem::replace(&mut self.started, true) {
                out.put_u8(b',');
            }
            write_with_resource_version(&mut out, object.value(), object.kv().mod_revision);
        }
        Some(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use backup_storage::KeyValue;

    use super::*;

    fn object(i: usize) -> Arc<CachedObject> {
        let value = format!(
            r#"{{"apiVersion":"g/v1","kind":"K","metadata":{{"name":"o{i}"}},"spec":{{"pad":"{}"}}}}"#,
            "x".repeat(i % 700)
        );
        let kv = KeyValue { key: format!("/k/o{i}"), value: value.into(), create_revision: 1, mod_revision: i as i64 };
        Arc::new(CachedObject::new(kv, None))
    }

    /// However the items fall into chunks, the chunks put together are the list rendered in one piece.
    #[test]
    fn chunks_make_the_whole_list() {
        for n in [0, 1, 2, 150, 400] {
            let items: Vec<_> = (0..n).map(object).collect();
            let mut whole = b"HEAD[".to_vec();
            for (i, o) in items.iter().enumerate() {
                if i > 0 {
                    whole.push(b',');
                }
                let mut one = BytesMut::new();
                write_with_resource_version(&mut one, o.value(), o.kv().mod_revision);
                whole.extend_from_slice(&one);
            }
            whole.extend_from_slice(b"]TAIL");
            let chunks: Vec<Bytes> = Chunks::new(b"HEAD[".to_vec(), items, b"]TAIL".to_vec()).collect();
            assert!(chunks.iter().all(|c| !c.is_empty()), "{n} items: an empty chunk");
            assert!(n < 400 || chunks.len() > 1, "{n} items in one chunk");
            assert_eq!(chunks.concat(), whole, "{n} items");
        }
    }
}
