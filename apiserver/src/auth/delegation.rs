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

use super::webhook::{AUTH_DELEGATOR_FIX, CHECK_SAR, CHECK_TOKENREVIEW, explain, review_spec};
use super::x509::{CaPool, CertAuthConfig, RequestHeaderConfig, SharedCertAuthConfig};
use crate::auth::authn::UserInfo;
use crate::health::Diagnosis;
use crate::options::Options;
use crate::request::info::{RequestInfo, Verb};

pub const CONFIGMAP_NAMESPACE: &str = "kube-system";
pub const CONFIGMAP_NAME: &str = "extension-apiserver-authentication";
pub const CHECK_CONFIGMAP: &str = "authentication-configmap";
pub const CHECK_FRONT_PROXY_CA: &str = "front-proxy-ca";

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

/// The flag overrides of the ConfigMap's keys.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub client_ca_pem: Option<String>,
    pub requestheader_ca_pem: Option<String>,
    pub allowed_names: Option<Vec<String>>,
    pub username_headers: Option<Vec<String>>,
    pub group_headers: Option<Vec<String>>,
    pub extra_prefixes: Option<Vec<String>>,
}

impl Overrides {
    pub fn from_options(opts: &Options) -> anyhow::Result<Self> {
        let read = |p: &Option<std::path::PathBuf>| -> anyhow::Result<Option<String>> {
            p.as_ref()
                .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
                .transpose()
        };
        Ok(Self {
            client_ca_pem: read(&opts.client_ca_file)?,
            requestheader_ca_pem: read(&opts.requestheader_client_ca_file)?,
            allowed_names: opts.requestheader_allowed_names.clone(),
            username_headers: opts.requestheader_username_headers.clone(),
            group_headers: opts.requestheader_group_headers.clone(),
            extra_prefixes: opts.requestheader_extra_headers_prefix.clone(),
        })
    }

    /// The CA settings from the ConfigMap's data (None when it could not be read), with the flags on top.
    pub fn resolve(&self, data: Option<&std::collections::BTreeMap<String, String>>) -> CertAuthConfig {
        let key = |k: &str| data.and_then(|d| d.get(k)).map(String::as_str).filter(|v| !v.trim().is_empty());
        let list = |k: &str| -> Option<Vec<String>> { key(k).and_then(|v| serde_json::from_str(v).ok()) };
        let pool = |pem: Option<&str>, what: &str| {
            pem.and_then(|p| match CaPool::from_pem(p) {
                Ok(pool) => Some(Arc::new(pool)),
                Err(e) => {
                    tracing::error!(error = %e, "ignoring an unusable {what}");
                    None
                }
            })
        };
        let client_ca = pool(self.client_ca_pem.as_deref().or(key("client-ca-file")), "client-ca-file");
        let rh_ca = pool(
            self.requestheader_ca_pem.as_deref().or(key("requestheader-client-ca-file")),
            "requestheader-client-ca-file",
        );
        // Each setting: the flag, else the ConfigMap's key, else upstream's default.
        let pick = |flag: &Option<Vec<String>>, key: &str, default: &[String]| {
            flag.clone().or_else(|| list(key)).unwrap_or_else(|| default.to_vec())
        };
        let requestheader = rh_ca.map(|ca| {
            let d = RequestHeaderConfig::with_defaults(ca);
            RequestHeaderConfig {
                allowed_names: pick(&self.allowed_names, "requestheader-allowed-names", &d.allowed_names),
                username_headers: pick(&self.username_headers, "requestheader-username-headers", &d.username_headers),
                group_headers: pick(&self.group_headers, "requestheader-group-headers", &d.group_headers),
                extra_prefixes: pick(&self.extra_prefixes, "requestheader-extra-headers-prefix", &d.extra_prefixes),
                ca: d.ca,
            }
        });
        CertAuthConfig { client_ca, requestheader }
    }
}

/// Apply a ConfigMap state (None: unreadable) and report the front-proxy CA's presence.
fn apply(
    shared: &SharedCertAuthConfig,
    overrides: &Overrides,
    diagnosis: &Diagnosis,
    data: Option<&std::collections::BTreeMap<String, String>>,
) {
    let config = overrides.resolve(data);
    diagnosis.set(
        CHECK_FRONT_PROXY_CA,
        config.requestheader.is_none().then(|| {
            "no front-proxy CA: neither --requestheader-client-ca-file nor the ConfigMap \
             kube-system/extension-apiserver-authentication has requestheader-client-ca-file, so requests proxied \
             by kube-apiserver (the aggregator) cannot be authenticated; check kube-apiserver's \
             --requestheader-client-ca-file"
                .to_string()
        }),
    );
    shared.set(config);
}

/// Read the ConfigMap once (bounded), then keep `shared` current from a watch, forever.
pub async fn start_configmap_sync(
    client: kube::Client,
    shared: Arc<SharedCertAuthConfig>,
    overrides: Overrides,
    diagnosis: Arc<Diagnosis>,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, CONFIGMAP_NAMESPACE);
    let first = tokio::time::timeout(Duration::from_secs(10), api.get(CONFIGMAP_NAME)).await;
    match first {
        Ok(Ok(cm)) => {
            diagnosis.set(CHECK_CONFIGMAP, None);
            apply(&shared, &overrides, &diagnosis, cm.data.as_ref());
        }
        Ok(Err(e)) => {
            diagnosis.set(CHECK_CONFIGMAP, Some(configmap_problem(&e)));
            apply(&shared, &overrides, &diagnosis, None);
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
            apply(&shared, &overrides, &diagnosis, None);
        }
    }
    tokio::spawn(async move {
        let cfg = watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP_NAME}"));
        let mut events = watcher(api, cfg).boxed();
        while let Some(ev) = events.next().await {
            match ev {
                Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) => {
                    diagnosis.set(CHECK_CONFIGMAP, None);
                    apply(&shared, &overrides, &diagnosis, cm.data.as_ref());
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
