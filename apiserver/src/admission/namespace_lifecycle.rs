//! NamespaceLifecycle, as upstream's plugin (in the mutating phase, first): a create into a namespace that does
//! not exist in the cluster is rejected (404 for the namespace), into a Terminating namespace with 403.
//!
//! registry store → admission chain → **NamespaceLifecycle** → (mutating webhooks).

use std::sync::Arc;

use serde_json::json;

use super::namespaces::Namespaces;
use super::{Admission, Attributes, Object, Operation};
use crate::error::{ApiError, ApiResult, StatusReason};

/// NamespaceLifecycle over the namespace reflector.
pub struct NamespaceLifecycle {
    pub namespaces: Arc<Namespaces>,
}

#[async_trait::async_trait]
impl Admission for NamespaceLifecycle {
    async fn admit(&self, attrs: &Attributes<'_>, _: Option<&mut Object>) -> ApiResult<Option<Object>> {
        let (info, namespace) = (attrs.resource, attrs.namespace);
        if attrs.operation != Operation::Create || !info.namespaced || namespace.is_empty() {
            return Ok(None);
        }
        let Some(ns) = self.namespaces.get(namespace).await? else {
            return Err(ApiError::new(404, StatusReason::NotFound, format!("namespaces \"{namespace}\" not found"))
                .with_details(json!({"name": namespace, "kind": "namespaces"})));
        };
        let terminating = ns.metadata.deletion_timestamp.is_some()
            || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
        if terminating {
            let mut e = ApiError::forbidden(
                &info.qualified_resource(),
                attrs.name,
                format!("unable to create new content in namespace {namespace} because it is being terminated"),
            );
            if let Some(d) = e.details.as_mut() {
                d["causes"] = json!([{
                    "reason": "NamespaceTerminating",
                    "message": format!("namespace {namespace} is being terminated"),
                    "field": "metadata.namespace",
                }]);
            }
            return Err(e);
        }
        Ok(None)
    }
}
