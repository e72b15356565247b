//! GET of one object (or its `/status`): `GetOptions`, then `registry.Store.Get`, rendered as asked.
//!
//! endpoints → **get** → registry store → storage.

use axum::http::StatusCode;
use axum::response::Response;

use super::{ResourceRequest, output};
use crate::error::ApiResult;
use crate::request::negotiation::{Target, negotiate};
use crate::request::options::GetOptions;

pub async fn serve(req: ResourceRequest<'_>) -> ApiResult<Response> {
    let output = negotiate(req.accept(), Target::Object, req.query)?;
    let opts = GetOptions::from_query(req.query)?;
    let body = req.store.get(&req.info.namespace, &req.info.name, &opts).await?;
    output::object(req.store, body, output, StatusCode::OK, &[])
}
