//! DELETECOLLECTION (DELETE on a collection): `ListOptions` select, `DeleteOptions` apply to each, then
//! `registry.Store.DeleteCollection`; the deleted objects as the kind's List.
//!
//! endpoints → **deletecollection** → registry store (list, then delete each) → storage.

use axum::response::Response;

use super::{ResourceRequest, output};
use crate::error::ApiResult;
use crate::request::body;
use crate::request::negotiation::{Target, negotiate};
use crate::request::options::{DeleteOptions, ListOptions};

pub async fn serve(req: ResourceRequest<'_>) -> ApiResult<Response> {
    let output = negotiate(req.accept(), Target::List, req.query)?;
    let list_opts = ListOptions::from_query(req.query, false)?;
    let raw = body::read(req.body).await?;
    let opts = DeleteOptions::decode(&raw, req.query)?;
    let deleted = req.store.delete_collection(&req.info.namespace, &list_opts, &opts, req.request).await?;
    output::deleted_collection(req.store, deleted, output)
}
