//! DELETE of one object: `DeleteOptions` from the body or the query, then `registry.Store.Delete`; the object as
//! deleted (or as marked for deletion, when finalizers hold it).
//!
//! endpoints → **delete** → registry store → storage.

use axum::http::StatusCode;
use axum::response::Response;

use super::{ResourceRequest, output};
use crate::error::ApiResult;
use crate::request::body;
use crate::request::negotiation::{Target, negotiate};
use crate::request::options::DeleteOptions;

pub async fn serve(req: ResourceRequest<'_>) -> ApiResult<Response> {
    let output = negotiate(req.accept(), Target::Object, req.query)?;
    let raw = body::read(req.body).await?;
    let opts = DeleteOptions::decode(&raw, req.query)?;
    let outcome = req.store.delete(&req.info.namespace, &req.info.name, &opts).await?;
    output::object(req.store, outcome.into_object(), output, StatusCode::OK, &[])
}
