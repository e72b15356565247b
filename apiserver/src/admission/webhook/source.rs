//! The cluster's webhook configurations (upstream's `configuration.NewMutatingWebhookConfigurationManager` and
//! its validating twin): a watch of `MutatingWebhookConfiguration` or `ValidatingWebhookConfiguration`
//! (admissionregistration.k8s.io/v1) whose cache is compiled into [`Hook`]s each time it changes, so a request only
//! takes the current list.
//!
//! kube-apiserver → **source** → hooks → the mutating or validating dispatcher.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::hook::{self, Hook};
use crate::admission::Attributes;
use crate::error::{ApiError, ApiResult};
use crate::health::Diagnosis;

/// The readiness checks saying whether the watches work.
pub const CHECK_MUTATING: &str = "mutating-webhook-configurations";
pub const CHECK_VALIDATING: &str = "validating-webhook-configurations";
/// How long a request waits for the first list, as upstream's `WaitForReady`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The compiled webhooks of one kind of configuration, kept current by a watch.
pub struct HookSource {
    /// None until the first list arrived.
    hooks: watch::Receiver<Option<Arc<Vec<Hook>>>>,
}

impl HookSource {
    /// Watch MutatingWebhookConfigurations.
    pub fn mutating(client: kube::Client, diagnosis: Arc<Diagnosis>) -> Self {
        Self::start::<MutatingWebhookConfiguration>(client, diagnosis, CHECK_MUTATING, hook::mutating)
    }

    /// Watch ValidatingWebhookConfigurations.
    pub fn validating(client: kube::Client, diagnosis: Arc<Diagnosis>) -> Self {
        Self::start::<ValidatingWebhookConfiguration>(client, diagnosis, CHECK_VALIDATING, hook::validating)
    }

    fn start<K>(
        client: kube::Client,
        diagnosis: Arc<Diagnosis>,
        check: &'static str,
        compile: fn(&[&K]) -> Vec<Hook>,
    ) -> Self
    where
        K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let api: Api<K> = Api::all(client);
        let (store, writer) = reflector::store();
        let (tx, rx) = watch::channel(None);
        let stream = reflector::reflector(writer, watcher::watcher(api, watcher::Config::default()).default_backoff());
        tokio::spawn(async move {
            let mut stream = stream.boxed();
            while let Some(ev) = stream.next().await {
                match ev {
                    // The initial list is compiled once, when it is complete.
                    Ok(Event::Init | Event::InitApply(_)) => {}
                    Ok(Event::InitDone | Event::Apply(_) | Event::Delete(_)) => {
                        diagnosis.set(check, None);
                        let state = store.state();
                        let configurations: Vec<&K> = state.iter().map(AsRef::as_ref).collect();
                        let hooks = compile(&configurations);
                        tracing::debug!(kind = K::kind(&()).as_ref(), webhooks = hooks.len(), "webhook configurations");
                        let _ = tx.send(Some(Arc::new(hooks)));
                    }
                    Err(e) => diagnosis.set(
                        check,
                        Some(format!(
                            "cannot watch {} ({e}): grant the server's ServiceAccount get, list and watch on \
                             mutatingwebhookconfigurations and validatingwebhookconfigurations \
                             (admissionregistration.k8s.io), or turn the webhooks off with \
                             --disable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
                            K::plural(&())
                        )),
                    ),
                }
            }
        });
        Self { hooks: rx }
    }

    /// The current webhooks. Until the first list has arrived a request waits for it, up to 10 s, then is refused
    /// (403 `not yet ready to handle request`), as upstream's plugins do.
    pub async fn hooks(&self, attrs: &Attributes<'_>) -> ApiResult<Arc<Vec<Hook>>> {
        if let Some(hooks) = self.hooks.borrow().clone() {
            return Ok(hooks);
        }
        let mut rx = self.hooks.clone();
        match tokio::time::timeout(READY_TIMEOUT, rx.wait_for(Option::is_some)).await {
            Ok(Ok(hooks)) => Ok(hooks.clone().unwrap_or_default()),
            _ => Err(ApiError::forbidden(
                &attrs.resource.qualified_resource(),
                attrs.name,
                "not yet ready to handle request",
            )),
        }
    }

    /// A source that always has these hooks (tests).
    #[cfg(test)]
    pub fn fixed(hooks: Vec<Hook>) -> Self {
        let (_, rx) = watch::channel(Some(Arc::new(hooks)));
        Self { hooks: rx }
    }
}
