//! PATCH of an object or its `/status`, by `Content-Type`: JSON patch ([`json`], RFC 6902), JSON merge patch
//! ([`merge`], RFC 7386), strategic merge patch ([`strategic`], driven by the kind's schema) — each applied to the
//! stored object inside `registry.Store.Patch`'s update loop — and server-side apply ([`apply`], merged by the
//! field manager in `registry.Store.Apply`).
//!
//! endpoints → **patch** → registry store → (field manager) → strategy → storage.
//!
//! Every failure is a 4xx `Status`: 400 for a body that is not a patch, 413 for one too large to apply, 422 for a
//! patch that does not apply — including one whose result would nest deeper than `body::MAX_DOCUMENT_DEPTH`, or
//! its fields deeper than `body::MAX_DEPTH`, so that what is stored can be read and sent back.

mod apply;
pub mod json;
mod merge;
pub mod strategic;

use std::sync::Mutex;

use axum::response::Response;
use serde_json::Value;

use super::ResourceRequest;
use super::update::written;
use crate::admission::RequestContext;
use crate::error::{ApiError, ApiResult};
use crate::registry::store::{Store, Written};
use crate::request::body;
use crate::request::info::Subresource;
use crate::request::negotiation::{Target, negotiate};
use crate::request::options::PatchOptions;

/// Patch content types this server applies, in upstream's order.
pub const SUPPORTED: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// The patch types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    /// The type of a `Content-Type` media type (parameters already stripped): 415 for others.
    fn from_media_type(media: &str) -> ApiResult<Self> {
        match media {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" => Ok(Self::Apply),
            other => Err(ApiError::unsupported_media_type(other, SUPPORTED)),
        }
    }
}

/// 422 when a patched object nests too deeply (`body::depth_error`).
fn within_depth(doc: &Value) -> ApiResult<()> {
    match body::depth_error(doc) {
        Some(why) => Err(ApiError::unprocessable(format!(
            "the server rejected our request due to an error in our request: the patched object is invalid: {why}"
        ))),
        None => Ok(()),
    }
}

pub async fn serve(req: ResourceRequest<'_>) -> ApiResult<Response> {
    let output = negotiate(req.accept(), Target::Object, req.query)?;
    let media = body::media_type(req.headers);
    let patch_type = PatchType::from_media_type(media)?;
    let opts = PatchOptions::from_query(req.query, req.user_agent(), patch_type == PatchType::Apply)?;
    let raw = body::read(req.body).await?;
    let info = req.info;
    let at = (info.namespace.as_str(), info.name.as_str(), &info.subresource);
    let w = write(req.store, at, media, &raw, &opts, req.request).await?;
    written(req.store, w, output)
}

/// Apply the patch `raw` of content type `media` to `name` in `namespace` (through `sub`) and write the result,
/// admitted as `request`'s.
pub async fn write(
    store: &Store,
    (ns, name, sub): (&str, &str, &Subresource),
    media: &str,
    raw: &[u8],
    opts: &PatchOptions,
    request: &RequestContext,
) -> ApiResult<Written> {
    match PatchType::from_media_type(media)? {
        PatchType::Json => {
            let patch = json::parse(raw)?;
            store.patch(ns, name, &|doc: &mut Value| json::apply(doc, &patch), sub, opts, request).await
        }
        PatchType::Merge => {
            let patch = first_then(merge::parse(raw)?, || merge::parse(raw));
            store.patch(ns, name, &|doc: &mut Value| merge::apply(doc, patch()?), sub, opts, request).await
        }
        PatchType::Strategic => {
            let patch = first_then(merge::parse(raw)?, || merge::parse(raw));
            let schema = store.strategy.schema();
            store.patch(ns, name, &|doc: &mut Value| strategic::apply(schema, doc, patch()?), sub, opts, request).await
        }
        PatchType::Apply => {
            let apply::ApplyConfiguration { config, duplicates } = apply::parse(raw)?;
            let config = first_then(config, || apply::parse(raw).map(|c| c.config));
            store.apply(ns, name, &config, duplicates.as_deref(), sub, opts, request).await
        }
    }
}

/// A parsed patch for each attempt of the update loop: merge, strategic merge and apply move the patch's values
/// into the object, so the first attempt takes `first` and a retry after a conflict parses the body again (rather
/// than every attempt copying it).
fn first_then<T>(first: T, again: impl Fn() -> ApiResult<T>) -> impl Fn() -> ApiResult<T> {
    let first = Mutex::new(Some(first));
    move || first.lock().ok().and_then(|mut p| p.take()).map_or_else(&again, Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(PatchType::from_media_type("application/apply-patch+yaml").unwrap(), PatchType::Apply);
        assert_eq!(PatchType::from_media_type("application/cbor-seq").unwrap_err().code, 415);
    }
}
