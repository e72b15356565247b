//! Delegation setup outside standalone mode: the kube clients (kubeconfig or the in-cluster service account), the
//! authentication ConfigMap `kube-system/extension-apiserver-authentication` read at start and watched (flags
//! override its keys), and the startup probes whose findings `/readyz` and the log report in plain words.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;

use super::cert_sources::CertAuthSources;
use super::webhook::{AUTH_DELEGATOR_FIX, CHECK_SAR, CHECK_TOKENREVIEW, explain, review_spec};
use crate::auth::authn::UserInfo;
use crate::health::Diagnosis;
use crate::request::info::{RequestInfo, Verb};

pub const CONFIGMAP_NAMESPACE: &str = "kube-system";
pub const CONFIGMAP_NAME: &str = "extension-apiserver-authentication";
pub const CHECK_CONFIGMAP: &str = "authentication-configmap";

const CONFIGMAP_FIX: &str = "bind the server's ServiceAccount to the Role extension-apiserver-authentication-reader \
    in kube-system (a RoleBinding in kube-system)";

/// A kube client from `path`, or the in-cluster service account.
pub async fn kube_client(path: Option<&Path>) -> anyhow::Result<kube::Client> {
    let config = match path {
        Some(p) => {
            let kc = Kubeconfig::read_from(p).with_context(|| format!("reading kubeconfig {}", p.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("loading kubeconfig {}", p.display()))?
        }
        None => kube::Config::incluster().context("no --kubeconfig and not running in a cluster")?,
    };
    kube::Client::try_from(config).context("building the kube client")
}

/// Read the ConfigMap once (bounded), then keep `sources` current from a watch, forever.
pub async fn start_configmap_sync(client: kube::Client, sources: Arc<CertAuthSources>, diagnosis: Arc<Diagnosis>) {
    let api: Api<ConfigMap> = Api::namespaced(client, CONFIGMAP_NAMESPACE);
    let first = tokio::time::timeout(Duration::from_secs(10), api.get(CONFIGMAP_NAME)).await;
    match first {
        Ok(Ok(cm)) => {
            diagnosis.set(CHECK_CONFIGMAP, None);
            sources.set_configmap(cm.data);
        }
        Ok(Err(e)) => {
            diagnosis.set(CHECK_CONFIGMAP, Some(configmap_problem(&e)));
            sources.set_configmap(None);
        }
        Err(_) => {
            diagnosis.set(
                CHECK_CONFIGMAP,
                Some(
                    "reading ConfigMap kube-system/extension-apiserver-authentication timed out after 10s: \
                      kube-apiserver unreachable"
                        .into(),
                ),
            );
            sources.set_configmap(None);
        }
    }
    tokio::spawn(async move {
        let cfg = watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP_NAME}"));
        let mut events = watcher(api, cfg).boxed();
        while let Some(ev) = events.next().await {
            match ev {
                Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) => {
                    diagnosis.set(CHECK_CONFIGMAP, None);
                    sources.set_configmap(cm.data);
                }
                Ok(_) => {}
                Err(e) => {
                    let problem = match &e {
                        watcher::Error::InitialListFailed(k)
                        | watcher::Error::WatchStartFailed(k)
                        | watcher::Error::WatchFailed(k) => configmap_problem(k),
                        other => format!("watching ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}: {other}"),
                    };
                    diagnosis.set(CHECK_CONFIGMAP, Some(problem));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

fn configmap_problem(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => {
            format!("cannot read ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}: forbidden: {CONFIGMAP_FIX}")
        }
        kube::Error::Api(s) if s.code == 404 => format!(
            "ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} does not exist: kube-apiserver writes it when started \
             with --requestheader-client-ca-file or --client-ca-file"
        ),
        kube::Error::Api(s) => {
            format!("reading ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}: {} ({})", s.message, s.code)
        }
        other => {
            format!("reading ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}: kube-apiserver unreachable: {other}")
        }
    }
}

/// One TokenReview and one SubjectAccessReview at start, so a missing `system:auth-delegator` binding shows in
/// `/readyz` and the log before the first real request.
pub async fn probe_reviews(authn: kube::Client, authz: kube::Client, diagnosis: Arc<Diagnosis>) {
    use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
    use k8s_openapi::api::authorization::v1::SubjectAccessReview;
    use kube::api::PostParams;
    let describe = |what: &str, e: &kube::Error| explain(e, what, AUTH_DELEGATOR_FIX);
    let tr = TokenReview {
        spec: TokenReviewSpec { token: Some("backup-apiserver-startup-probe".into()), audiences: None },
        ..TokenReview::default()
    };
    let tokenreviews: Api<TokenReview> = Api::all(authn);
    let outcome = tokenreviews.create(&PostParams::default(), &tr).await;
    diagnosis.set(CHECK_TOKENREVIEW, outcome.err().map(|e| describe("TokenReview", &e)));
    let info = RequestInfo::non_resource(Verb::Get, "/readyz");
    let sar =
        SubjectAccessReview { spec: review_spec(&UserInfo::anonymous(), &info), ..SubjectAccessReview::default() };
    let reviews: Api<SubjectAccessReview> = Api::all(authz);
    let outcome = reviews.create(&PostParams::default(), &sar).await;
    diagnosis.set(CHECK_SAR, outcome.err().map(|e| describe("SubjectAccessReview", &e)));
}
