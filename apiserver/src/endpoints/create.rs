//! CREATE (POST on a collection): `CreateOptions`, the JSON or YAML body, then `registry.Store.Create`; 201 with
//! the created object.
//!
//! endpoints → **create** → registry store → admission, strategy, field manager → storage.

use axum::response::Response;

use super::ResourceRequest;
use super::update::written;
use crate::error::ApiResult;
use crate::request::body;
use crate::request::negotiation::{Target, negotiate};
use crate::request::options::CreateOptions;

pub async fn serve(req: ResourceRequest<'_>) -> ApiResult<Response> {
    let opts = CreateOptions::from_query(req.query, req.user_agent(), "CreateOptions")?;
    let output = negotiate(req.accept(), Target::Object, req.query)?;
    let decoded = body::read_object(req.headers, req.body).await?;
    let w = req.store.create(&req.info.namespace, decoded, &opts, req.request).await?;
    written(req.store, w, output)
}
