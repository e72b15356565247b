//! WATCH (`?watch=true`, or the `/watch/` path prefix): `ListOptions`, then `registry.Store.Watch`; each event is
//! rendered as one line of newline-delimited JSON and flushed (`Content-Type: application/json`, as upstream's
//! `application/json;stream=watch` framing). The stream ends cleanly at its timeout and when the server stops (the
//! store's watchdog ends it).
//!
//! endpoints → **watch** → registry store → storage watch.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use futures::StreamExt;

use super::ResourceRequest;
use super::output::WatchRenderer;
use crate::error::{ApiError, ApiResult};
use crate::request::negotiation::{Target, negotiate};
use crate::request::options::ListOptions;

pub async fn serve(req: ResourceRequest<'_>) -> ApiResult<Response> {
    let output = negotiate(req.accept(), Target::Watch, req.query)?;
    let mut opts = ListOptions::from_query(req.query, true)?;
    if !req.info.name.is_empty() {
        opts.field_selector = name_selector(&opts.field_selector, &req.info.name)?;
    }
    let events = req.store.watch(req.namespace(), &opts, req.wake_group).await?;
    let mut renderer = WatchRenderer::new(output);
    let store = req.store.clone();
    let lines = events.map(move |ev| Ok::<_, std::convert::Infallible>(renderer.line(&store, ev)));
    let mut resp = Response::new(Body::from_stream(lines));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// `metadata.name=<name>` added to a field selector for a watch on a named path; a conflicting one is 400.
fn name_selector(existing: &str, name: &str) -> ApiResult<String> {
    let pinned = format!("metadata.name={name}");
    if existing.is_empty() {
        return Ok(pinned);
    }
    if existing.split(',').any(|t| t.starts_with("metadata.name=") && t != pinned) {
        return Err(ApiError::bad_request("fieldSelector metadata.name doesn't match requested name"));
    }
    Ok(format!("{existing},{pinned}"))
}
