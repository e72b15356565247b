//! Client certificates: verifying a peer's chain against a CA bundle that may change at run time, and the two
//! authenticators built on it — x509 client certificates (CN = user, O = groups) and the front proxy's request
//! headers (`X-Remote-User`, `X-Remote-Group`, `X-Remote-Extra-*`), trusted only with a verified front-proxy
//! certificate whose CN is allowed.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::http::request::Parts;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};

use super::authn::{Authenticator, AuthnError, UserInfo};
use crate::tls::PeerCertificates;

/// A CA bundle that verifies client certificate chains.
pub struct CaPool {
    verifier: Arc<dyn ClientCertVerifier>,
    /// The PEM it was built from (to tell whether an update changes anything).
    pub pem: String,
}

impl std::fmt::Debug for CaPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaPool").field("pem_bytes", &self.pem.len()).finish()
    }
}

impl CaPool {
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.map_err(|e| anyhow::anyhow!("parsing a CA certificate: {e}"))?)?;
        }
        if roots.is_empty() {
            anyhow::bail!("no certificate in the CA bundle");
        }
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
            .allow_unauthenticated()
            .build()
            .map_err(|e| anyhow::anyhow!("building a verifier: {e}"))?;
        Ok(Self { verifier, pem: pem.to_string() })
    }

    /// Verify `chain` (leaf first) for client authentication now.
    pub fn verify(&self, chain: &[CertificateDer<'static>]) -> Result<(), String> {
        let (leaf, intermediates) = chain.split_first().ok_or("no client certificate")?;
        self.verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map(|_| ())
            .map_err(|e| format!("x509: {e}"))
    }
}

/// The front proxy's settings.
#[derive(Debug, Clone)]
pub struct RequestHeaderConfig {
    pub ca: Arc<CaPool>,
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    /// Headers holding the UID (none unless the flag or the ConfigMap names them, as upstream).
    pub uid_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_prefixes: Vec<String>,
}

impl RequestHeaderConfig {
    /// Upstream's header names, for a CA given without the ConfigMap.
    pub fn with_defaults(ca: Arc<CaPool>) -> Self {
        Self {
            ca,
            allowed_names: Vec::new(),
            username_headers: vec!["X-Remote-User".into()],
            uid_headers: Vec::new(),
            group_headers: vec!["X-Remote-Group".into()],
            extra_prefixes: vec!["X-Remote-Extra-".into()],
        }
    }
}

/// The authentication CAs in force; replaced whole when the ConfigMap changes.
#[derive(Debug, Clone, Default)]
pub struct CertAuthConfig {
    pub client_ca: Option<Arc<CaPool>>,
    pub requestheader: Option<RequestHeaderConfig>,
}

/// [`CertAuthConfig`] shared between the ConfigMap watcher and the authenticators.
#[derive(Debug, Default)]
pub struct SharedCertAuthConfig(RwLock<Arc<CertAuthConfig>>);

impl SharedCertAuthConfig {
    pub fn get(&self) -> Arc<CertAuthConfig> {
        self.0.read().map(|g| g.clone()).unwrap_or_default()
    }

    pub fn set(&self, c: CertAuthConfig) {
        if let Ok(mut g) = self.0.write() {
            *g = Arc::new(c);
        }
    }
}

fn peer_chain(parts: &Parts) -> Option<Arc<Vec<CertificateDer<'static>>>> {
    parts.extensions.get::<PeerCertificates>().map(|p| p.0.clone()).filter(|c| !c.is_empty())
}

/// Subject CN and O values of a DER certificate.
fn subject(cert: &CertificateDer<'_>) -> Option<(String, Vec<String>)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let cn = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let orgs = subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    Some((cn, orgs))
}

/// x509 client certificates signed by the client CA.
pub struct ClientCertAuthenticator(pub Arc<SharedCertAuthConfig>);

#[async_trait::async_trait]
impl Authenticator for ClientCertAuthenticator {
    async fn authenticate(&self, parts: &mut Parts) -> Result<Option<UserInfo>, AuthnError> {
        let Some(chain) = peer_chain(parts) else {
            return Ok(None);
        };
        let Some(ca) = self.0.get().client_ca.clone() else {
            return Ok(None);
        };
        ca.verify(&chain).map_err(AuthnError)?;
        let (name, groups) = subject(&chain[0]).ok_or_else(|| AuthnError("client certificate without a CN".into()))?;
        Ok(Some(UserInfo { name, groups, ..UserInfo::default() }))
    }
}

/// The front proxy's identity headers, trusted only with its verified certificate. Every request has these headers
/// removed, trusted or not, so nothing later can mistake them for an identity.
pub struct RequestHeaderAuthenticator(pub Arc<SharedCertAuthConfig>);

#[async_trait::async_trait]
impl Authenticator for RequestHeaderAuthenticator {
    async fn authenticate(&self, parts: &mut Parts) -> Result<Option<UserInfo>, AuthnError> {
        let config = self.0.get();
        let Some(rh) = config.requestheader.as_ref() else {
            strip_identity_headers(parts, None);
            return Ok(None);
        };
        let trusted = match peer_chain(parts) {
            Some(chain) if rh.ca.verify(&chain).is_ok() => match subject(&chain[0]) {
                Some((cn, _)) => rh.allowed_names.is_empty() || rh.allowed_names.contains(&cn),
                None => false,
            },
            _ => false,
        };
        let user = if trusted { read_identity(parts, rh) } else { None };
        strip_identity_headers(parts, Some(rh));
        Ok(user)
    }
}

/// The first non-empty value of the headers `names`, in their order.
fn first_value(h: &axum::http::HeaderMap, names: &[String]) -> Option<String> {
    names
        .iter()
        .flat_map(|n| h.get_all(n.as_str()).iter())
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .find(|v| !v.is_empty())
        .map(str::to_string)
}

fn read_identity(parts: &Parts, rh: &RequestHeaderConfig) -> Option<UserInfo> {
    let h = &parts.headers;
    let name = first_value(h, &rh.username_headers)?;
    let uid = first_value(h, &rh.uid_headers).unwrap_or_default();
    let groups = rh
        .group_headers
        .iter()
        .flat_map(|n| h.get_all(n.as_str()).iter())
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in h {
        let key = k.as_str();
        for prefix in &rh.extra_prefixes {
            let p = prefix.to_ascii_lowercase();
            if let Some(rest) = key.strip_prefix(p.as_str()) {
                let rest = percent_encoding::percent_decode_str(rest).decode_utf8_lossy().to_lowercase();
                if let Ok(v) = v.to_str() {
                    extra.entry(rest).or_default().push(v.to_string());
                }
            }
        }
    }
    Some(UserInfo { name, uid, groups, extra })
}

/// Remove the identity headers (the configured ones, and upstream's defaults).
fn strip_identity_headers(parts: &mut Parts, rh: Option<&RequestHeaderConfig>) {
    let mut names: Vec<String> = vec!["x-remote-user".into(), "x-remote-group".into(), "x-remote-uid".into()];
    let mut prefixes: Vec<String> = vec!["x-remote-extra-".into()];
    if let Some(rh) = rh {
        let configured = rh.username_headers.iter().chain(&rh.uid_headers).chain(&rh.group_headers);
        names.extend(configured.map(|n| n.to_ascii_lowercase()));
        prefixes.extend(rh.extra_prefixes.iter().map(|p| p.to_ascii_lowercase()));
    }
    let doomed: Vec<_> = parts
        .headers
        .keys()
        .filter(|k| {
            names.iter().any(|n| n == k.as_str()) || prefixes.iter().any(|p| k.as_str().starts_with(p.as_str()))
        })
        .cloned()
        .collect();
    for k in doomed {
        parts.headers.remove(k);
    }
}
