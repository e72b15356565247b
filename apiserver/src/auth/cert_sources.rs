//! The inputs of certificate authentication and how they change at run time: the CA bundles and request-header
//! settings named by flags (`--client-ca-file`, `--requestheader-client-ca-file`, re-read when the files change, as
//! k8s.io/apiserver's dynamic CA content does) on top of the ConfigMap `kube-system/extension-apiserver-authentication`
//! (watched by [`super::delegation`]). Whenever one changes, the settings the x509 and front-proxy authenticators use
//! are recomputed and swapped whole.
//!
//! auth setup → **certificate sources** → the authenticators' [`SharedCertAuthConfig`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use super::x509::{CaPool, CertAuthConfig, RequestHeaderConfig, SharedCertAuthConfig};
use crate::health::Diagnosis;
use crate::options::Options;

/// The readyz check that fails while no front-proxy CA is known.
pub const CHECK_FRONT_PROXY_CA: &str = "front-proxy-ca";

/// How often the CA files named by flags are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// The flag overrides of the ConfigMap's keys, with the CA files' contents.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    client_ca_file: Option<PathBuf>,
    requestheader_ca_file: Option<PathBuf>,
    client_ca_pem: Option<String>,
    requestheader_ca_pem: Option<String>,
    allowed_names: Option<Vec<String>>,
    username_headers: Option<Vec<String>>,
    uid_headers: Option<Vec<String>>,
    group_headers: Option<Vec<String>>,
    extra_prefixes: Option<Vec<String>>,
}

fn read(path: Option<&PathBuf>) -> anyhow::Result<Option<String>> {
    path.map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))).transpose()
}

impl Overrides {
    /// The flags, with the CA files read (an unreadable file is an error at start).
    pub fn from_options(opts: &Options) -> anyhow::Result<Self> {
        Ok(Self {
            client_ca_pem: read(opts.client_ca_file.as_ref())?,
            requestheader_ca_pem: read(opts.requestheader_client_ca_file.as_ref())?,
            client_ca_file: opts.client_ca_file.clone(),
            requestheader_ca_file: opts.requestheader_client_ca_file.clone(),
            allowed_names: opts.requestheader_allowed_names.clone(),
            username_headers: opts.requestheader_username_headers.clone(),
            uid_headers: opts.requestheader_uid_headers.clone(),
            group_headers: opts.requestheader_group_headers.clone(),
            extra_prefixes: opts.requestheader_extra_headers_prefix.clone(),
        })
    }

    /// Re-read the CA files; true when either changed. A file that cannot be read now keeps its last contents.
    fn reload(&mut self) -> bool {
        let mut changed = false;
        for (path, pem) in [
            (&self.client_ca_file, &mut self.client_ca_pem),
            (&self.requestheader_ca_file, &mut self.requestheader_ca_pem),
        ] {
            match read(path.as_ref()) {
                Ok(now) if now != *pem => {
                    tracing::info!(file = ?path, "CA bundle changed; reloading it");
                    *pem = now;
                    changed = true;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "keeping the last CA bundle read"),
            }
        }
        changed
    }

    /// The CA settings from the ConfigMap's data (None when it could not be read), with the flags on top.
    fn resolve(&self, data: Option<&BTreeMap<String, String>>) -> CertAuthConfig {
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
                uid_headers: pick(&self.uid_headers, "requestheader-uid-headers", &d.uid_headers),
                group_headers: pick(&self.group_headers, "requestheader-group-headers", &d.group_headers),
                extra_prefixes: pick(&self.extra_prefixes, "requestheader-extra-headers-prefix", &d.extra_prefixes),
                ca: d.ca,
            }
        });
        CertAuthConfig { client_ca, requestheader }
    }
}

/// The certificate authentication settings in force, recomputed from their inputs.
pub struct CertAuthSources {
    shared: Arc<SharedCertAuthConfig>,
    /// Reports a missing front-proxy CA (outside standalone mode).
    diagnosis: Option<Arc<Diagnosis>>,
    inputs: Mutex<Inputs>,
}

struct Inputs {
    overrides: Overrides,
    /// The ConfigMap's data (None: not read, or unreadable).
    configmap: Option<BTreeMap<String, String>>,
}

impl CertAuthSources {
    /// Sources over `overrides` (no ConfigMap yet), applied to `shared` at once.
    pub fn new(
        shared: Arc<SharedCertAuthConfig>,
        overrides: Overrides,
        diagnosis: Option<Arc<Diagnosis>>,
    ) -> Arc<Self> {
        let sources = Arc::new(Self { shared, diagnosis, inputs: Mutex::new(Inputs { overrides, configmap: None }) });
        sources.apply();
        sources
    }

    /// A new state of the ConfigMap (None: unreadable).
    pub fn set_configmap(&self, data: Option<BTreeMap<String, String>>) {
        if let Ok(mut inputs) = self.inputs.lock() {
            inputs.configmap = data;
        }
        self.apply();
    }

    /// Re-read the CA files every [`RELOAD_INTERVAL`], for as long as the authenticators use the settings. (The
    /// task holds the sources: in standalone mode nothing else does.)
    pub fn watch_files(self: &Arc<Self>) {
        let sources = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_INTERVAL);
            tick.tick().await;
            loop {
                tick.tick().await;
                // Only these sources still hold the settings: the server that used them is gone.
                if Arc::strong_count(&sources.shared) == 1 {
                    return;
                }
                let changed = sources.inputs.lock().map(|mut i| i.overrides.reload()).unwrap_or(false);
                if changed {
                    sources.apply();
                }
            }
        });
    }

    /// Recompute the settings and swap them in; report the front-proxy CA's presence.
    fn apply(&self) {
        let Ok(config) = self.inputs.lock().map(|i| i.overrides.resolve(i.configmap.as_ref())) else { return };
        if let Some(diagnosis) = &self.diagnosis {
            diagnosis.set(
                CHECK_FRONT_PROXY_CA,
                config.requestheader.is_none().then(|| {
                    "no front-proxy CA: neither --requestheader-client-ca-file nor the ConfigMap \
                     kube-system/extension-apiserver-authentication has requestheader-client-ca-file, so requests \
                     proxied by kube-apiserver (the aggregator) cannot be authenticated; check kube-apiserver's \
                     --requestheader-client-ca-file"
                        .to_string()
                }),
            );
        }
        self.shared.set(config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn header_names_come_from_the_flags_then_the_configmap_then_upstreams_defaults() {
        let data: BTreeMap<String, String> = [
            ("requestheader-client-ca-file".to_string(), ca_pem()),
            ("requestheader-uid-headers".to_string(), r#"["X-Remote-Uid"]"#.to_string()),
            ("requestheader-group-headers".to_string(), r#"["X-Groups"]"#.to_string()),
        ]
        .into();
        let from_configmap = Overrides::default().resolve(Some(&data)).requestheader.unwrap();
        assert_eq!(from_configmap.uid_headers, ["X-Remote-Uid"]);
        assert_eq!(from_configmap.group_headers, ["X-Groups"]);
        assert_eq!(from_configmap.username_headers, ["X-Remote-User"], "upstream's default");
        let flags = Overrides { uid_headers: Some(vec!["X-Uid".into()]), ..Overrides::default() };
        assert_eq!(flags.resolve(Some(&data)).requestheader.unwrap().uid_headers, ["X-Uid"]);
        let mut without: BTreeMap<String, String> = data.clone();
        without.remove("requestheader-uid-headers");
        assert!(Overrides::default().resolve(Some(&without)).requestheader.unwrap().uid_headers.is_empty());
    }
}
