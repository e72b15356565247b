//! Admission between the registry store and storage: NamespaceLifecycle, as upstream's plugin. A create into a
//! namespace that does not exist in the cluster is rejected (404 for the namespace), into a Terminating namespace
//! with 403. Namespaces come from a watch (a reflector cache), so the hot path makes no request; only a name the
//! cache does not know is looked up live, as upstream does for a cache that may lag.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::error::{ApiError, ApiResult, StatusReason};
use crate::health::Diagnosis;
use backup_apis::ResourceInfo;

pub const CHECK_NAMESPACES: &str = "namespace-lifecycle";

/// A check on writes before the strategy runs.
#[async_trait::async_trait]
pub trait Admission: Send + Sync + 'static {
    /// May an object `name` of `info` be created in `namespace`?
    async fn admit_create(&self, info: &ResourceInfo, namespace: &str, name: &str) -> ApiResult<()>;
}

/// NamespaceLifecycle over a namespace reflector.
pub struct NamespaceLifecycle {
    store: Store<Namespace>,
    api: Api<Namespace>,
}

impl NamespaceLifecycle {
    /// Start watching namespaces; `diagnosis` learns whether the watch works (RBAC: get/list/watch namespaces).
    pub fn start(client: kube::Client, diagnosis: Arc<Diagnosis>) -> Self {
        let api: Api<Namespace> = Api::all(client);
        let (store, writer) = reflector::store();
        let stream = reflector::reflector(writer, watcher(api.clone(), watcher::Config::default()).default_backoff());
        tokio::spawn(async move {
            let mut stream = stream.boxed();
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(_) => diagnosis.set(CHECK_NAMESPACES, None),
                    Err(e) => diagnosis.set(
                        CHECK_NAMESPACES,
                        Some(format!(
                            "cannot watch namespaces ({e}): grant the server's ServiceAccount get, list and watch on \
                             namespaces (a ClusterRole and ClusterRoleBinding)"
                        )),
                    ),
                }
            }
        });
        Self { store, api }
    }

    async fn lookup(&self, namespace: &str) -> ApiResult<Option<Namespace>> {
        if let Some(ns) = self.store.get(&ObjectRef::new(namespace)) {
            return Ok(Some((*ns).clone()));
        }
        match tokio::time::timeout(Duration::from_secs(5), self.api.get_opt(namespace)).await {
            Ok(Ok(ns)) => Ok(ns),
            Ok(Err(e)) => Err(ApiError::internal(format!("looking up namespace {namespace:?}: {e}"))),
            Err(_) => Err(ApiError::internal(format!("looking up namespace {namespace:?}: timed out"))),
        }
    }
}

#[async_trait::async_trait]
impl Admission for NamespaceLifecycle {
    async fn admit_create(&self, info: &ResourceInfo, namespace: &str, name: &str) -> ApiResult<()> {
        if !info.namespaced || namespace.is_empty() {
            return Ok(());
        }
        let Some(ns) = self.lookup(namespace).await? else {
            return Err(ApiError::new(404, StatusReason::NotFound, format!("namespaces \"{namespace}\" not found"))
                .with_details(json!({"name": namespace, "kind": "namespaces"})));
        };
        let terminating = ns.metadata.deletion_timestamp.is_some()
            || ns.status.and_then(|s| s.phase).as_deref() == Some("Terminating");
        if terminating {
            let mut e = ApiError::forbidden(
                &info.qualified_resource(),
                name,
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
        Ok(())
    }
}
