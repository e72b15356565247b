//! LIST (GET on a collection): `ListOptions`, then `registry.Store.List`, rendered as the kind's List, a Table or a
//! PartialObjectMetadataList.
//!
//! endpoints → **list** → registry store → selectors → storage.

use axum::response::Response;

use super::{ResourceRequest, output};
use crate::error::ApiResult;
use crate::request::negotiation::{Target, negotiate};
use crate::request::options::ListOptions;

pub async fn serve(req: ResourceRequest<'_>) -> ApiResult<Response> {
    let output = negotiate(req.accept(), Target::List, req.query)?;
    let opts = ListOptions::from_query(req.query, false)?;
    let page = req.store.list(req.namespace(), &opts).await?;
    output::list(req.store, page, output)
}
