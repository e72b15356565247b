//! UPDATE (PUT on an object or its `/status`): `UpdateOptions`, the JSON or YAML body, then
//! `registry.Store.Update`; 200 with the stored object.
//!
//! endpoints → **update** → registry store → strategy → field manager → storage.

use axum::http::StatusCode;
use axum::response::Response;

use super::{ResourceRequest, output};
use crate::error::ApiResult;
use crate::registry::store::{Store, Written};
use crate::request::body;
use crate::request::negotiation::{Output, Target, negotiate};
use crate::request::options::UpdateOptions;

pub async fn serve(req: ResourceRequest<'_>) -> ApiResult<Response> {
    let opts = UpdateOptions::from_query(req.query, req.user_agent(), "UpdateOptions")?;
    let output = negotiate(req.accept(), Target::Object, req.query)?;
    let decoded = body::read_object(req.headers, req.body).await?;
    let info = req.info;
    let w = req.store.update(&info.namespace, &info.name, decoded, &info.subresource, &opts, req.request).await?;
    written(req.store, w, output)
}

/// A write's result: 201 when it created the object, else 200, with its warnings.
pub(super) fn written(store: &Store, w: Written, output: Output) -> ApiResult<Response> {
    let code = if w.created { StatusCode::CREATED } else { StatusCode::OK };
    output::object(store, w.body, output, code, &w.warnings)
}
