//! The cluster's namespaces, as admission sees them: a watch (a reflector cache), so the hot path makes no
//! request; only a name the cache does not know is looked up live, as upstream does for a cache that may lag.
//! NamespaceLifecycle asks whether a namespace exists and is terminating, the webhooks' `namespaceSelector` for its
//! labels.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::error::{ApiError, ApiResult};
use crate::health::Diagnosis;

/// The readiness check that says whether the namespace watch works.
pub const CHECK_NAMESPACES: &str = "namespace-lifecycle";
/// How long a live lookup of a namespace the cache does not know may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Namespaces from a reflector, with a live lookup for those it does not know yet.
pub struct Namespaces {
    store: Store<Namespace>,
    api: Api<Namespace>,
}

impl Namespaces {
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

    /// The namespace `name`, None when the cluster has none of that name.
    pub async fn get(&self, name: &str) -> ApiResult<Option<Arc<Namespace>>> {
        if let Some(ns) = self.store.get(&ObjectRef::new(name)) {
            return Ok(Some(ns));
        }
        match tokio::time::timeout(LOOKUP_TIMEOUT, self.api.get_opt(name)).await {
            Ok(Ok(ns)) => Ok(ns.map(Arc::new)),
            Ok(Err(e)) => Err(ApiError::internal(format!("looking up namespace {name:?}: {e}"))),
            Err(_) => Err(ApiError::internal(format!("looking up namespace {name:?}: timed out"))),
        }
    }
}
