//! DELETE of one object: `DeleteOptions` from the body or the query, then `registry.Store.Delete`; the object as
//! deleted (or as marked for deletion, when finalizers hold it).
//!
//! endpoints → **delete** → registry store → storage.

use axum::http::StatusCode;
use axum::response::Response;

use super::{ResourceRequest, output};
use crate::auth::authn::UserInfo;
use crate::auth::authz::{Authorizer, Decision, forbidden};
use crate::error::{ApiError, ApiResult};
use crate::request::body;
use crate::request::info::{RequestInfo, Verb};
use crate::request::negotiation::{Target, negotiate};
use crate::request::options::DeleteOptions;

pub async fn serve(req: ResourceRequest<'_>) -> ApiResult<Response> {
    let output = negotiate(req.accept(), Target::Object, req.query)?;
    let raw = body::read(req.body).await?;
    let opts = DeleteOptions::decode(&raw, req.query)?;
    if opts.ignore_store_read_error {
        authorize_unsafe_delete(req.authorizer, req.user, req.info).await?;
    }
    let outcome = req.store.delete(&req.info.namespace, &req.info.name, &opts).await?;
    output::object(req.store, outcome.into_object(), output, StatusCode::OK, &[])
}

/// KEP-3926: deleting an unreadable object also needs `unsafe-delete-ignore-read-errors` on it.
async fn authorize_unsafe_delete(authorizer: &dyn Authorizer, user: &UserInfo, info: &RequestInfo) -> ApiResult<()> {
    let mut info = info.clone();
    info.verb = Verb::UnsafeDeleteIgnoreReadErrors;
    match authorizer.authorize(user, &info).await {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) | Decision::NoOpinion(reason) => Err(forbidden(user, &info, &reason)),
        Decision::Error(e) => Err(ApiError::internal(e)),
    }
}
