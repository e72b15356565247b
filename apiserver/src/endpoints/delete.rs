//! DELETE of one object: `DeleteOptions` from the body or the query, then `registry.Store.Delete`; a `Status`
//! Success naming the object when it is gone, or the object as marked for deletion when finalizers hold it.
//!
//! endpoints → **delete** → registry store → storage.

use axum::http::StatusCode;
use axum::response::Response;
use backup_apis::ResourceInfo;
use bytes::Bytes;
use serde_json::{Value, json};

use super::{ResourceRequest, output};
use crate::auth::authn::UserInfo;
use crate::auth::authz::{Authorizer, Decision, forbidden};
use crate::error::{ApiError, ApiResult};
use crate::registry::store::DeleteOutcome;
use crate::request::body;
use crate::request::info::{RequestInfo, Verb};
use crate::request::negotiation::{Output, Representation, Target, negotiate};
use crate::request::options::DeleteOptions;

pub async fn serve(req: ResourceRequest<'_>) -> ApiResult<Response> {
    let output = negotiate(req.accept(), Target::Object, req.query)?;
    let raw = body::read(req.body).await?;
    let opts = DeleteOptions::decode(&raw, req.query)?;
    if opts.ignore_store_read_error {
        authorize_unsafe_delete(req.authorizer, req.user, req.info).await?;
    }
    match req.store.delete(&req.info.namespace, &req.info.name, &opts, req.request).await? {
        DeleteOutcome::Pending(marked) => output::object(req.store, marked, output, StatusCode::OK, &[]),
        DeleteOutcome::Deleted(deleted) => {
            let status = deleted_status(req.store.info(), &deleted);
            let output = Output { media: output.media, representation: Representation::Object };
            output::object(req.store, status, output, StatusCode::OK, &[])
        }
    }
}

/// What `registry.Store.Delete` answers for an object deleted at once (its `finalizeDelete`): a Status Success
/// whose details name the object, its group, its resource (as `kind`) and uid — no code, no message.
fn deleted_status(info: &ResourceInfo, deleted: &[u8]) -> Bytes {
    let obj: Value = serde_json::from_slice(deleted).unwrap_or(Value::Null);
    let field = |k: &str| obj.get("metadata").and_then(|m| m.get(k)).and_then(Value::as_str).unwrap_or("").to_string();
    let mut details = json!({"name": field("name"), "group": info.group, "kind": info.plural, "uid": field("uid")});
    if let Some(d) = details.as_object_mut() {
        d.retain(|_, v| v.as_str() != Some(""));
    }
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details});
    Bytes::from(serde_json::to_vec(&status).unwrap_or_default())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_immediate_delete_answers_a_status() {
        let kinds = backup_apis::kinds();
        let info = kinds[0].resource();
        let deleted = br#"{"apiVersion":"backup.extend-k8s.io/v1","kind":"TimeseriesDBBackup","metadata":{"name":"b1","uid":"u-1"}}"#;
        let status: Value = serde_json::from_slice(&deleted_status(info, deleted)).unwrap();
        assert_eq!(
            status,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": "b1", "group": "backup.extend-k8s.io", "kind": "timeseriesdbbackups", "uid": "u-1"}})
        );
    }
}
