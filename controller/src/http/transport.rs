//! Connections to databases: [`Transport`] (one request, the response head back) and [`HyperTransport`], hyper-util's
//! pooled client over rustls, for `http://` and `https://` alike; [`Connector`] builds one per TLS setting.
//!
//! API → controller → engine → HTTP → **transport (this file)** → database.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Sends one request and returns the response head, its body unread.
#[async_trait]
pub trait Transport: Send + Sync {
    async fn send(&self, req: Request<Full<Bytes>>) -> anyhow::Result<Response<Incoming>>;
}

/// hyper-util's legacy (pooled, keep-alive) client, `http://` and `https://`.
pub struct HyperTransport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

#[async_trait]
impl Transport for HyperTransport {
    async fn send(&self, req: Request<Full<Bytes>>) -> anyhow::Result<Response<Incoming>> {
        Ok(self.client.request(req).await?)
    }
}

/// How an `https://` database's certificate is checked.
#[derive(Clone, Default)]
pub struct TlsSettings {
    /// PEM CA bundle; the system roots when `None`.
    pub ca_pem: Option<Vec<u8>>,
    /// The name the certificate must carry; the URL's host when `None`.
    pub server_name: Option<String>,
    /// No verification at all.
    pub insecure_skip_verify: bool,
}

/// Builds transports: the shared default (system roots) and one per endpoint with its own TLS settings.
pub struct Connector {
    system_roots: Arc<RootCertStore>,
    connect_timeout: Duration,
    default: Arc<dyn Transport>,
}

impl Connector {
    /// Loads the system's CA certificates (none is not an error: `https://` databases then need a CA bundle).
    pub fn new(connect_timeout: Duration) -> anyhow::Result<Self> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, "system CA certificates loaded");
        let system_roots = Arc::new(roots);
        let default = Arc::new(hyper_transport(client_config(system_roots.clone())?, None, connect_timeout));
        Ok(Self { system_roots, connect_timeout, default })
    }

    /// The transport shared by endpoints without TLS settings.
    pub fn default_transport(&self) -> Arc<dyn Transport> {
        self.default.clone()
    }

    /// A transport of its own for `settings`.
    pub fn with_tls(&self, settings: &TlsSettings) -> anyhow::Result<Arc<dyn Transport>> {
        let config = if settings.insecure_skip_verify {
            let provider = rustls::crypto::ring::default_provider();
            ClientConfig::builder_with_provider(Arc::new(provider))
                .with_safe_default_protocol_versions()
                .context("TLS protocol versions")?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate))
                .with_no_client_auth()
        } else {
            let roots = match &settings.ca_pem {
                None => self.system_roots.clone(),
                Some(pem) => Arc::new(roots_from_pem(pem)?),
            };
            client_config(roots)?
        };
        let server_name = match &settings.server_name {
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .with_context(|| format!("{name:?} is not a valid TLS server name"))?,
            ),
            None => None,
        };
        Ok(Arc::new(hyper_transport(config, server_name, self.connect_timeout)))
    }
}

/// The certificates of a PEM bundle; an error when it holds none.
fn roots_from_pem(pem: &[u8]) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| anyhow::anyhow!("the CA bundle is not valid PEM: {e}"))?;
        roots.add(cert).map_err(|e| anyhow::anyhow!("a certificate of the CA bundle is not usable: {e}"))?;
    }
    anyhow::ensure!(!roots.is_empty(), "the CA bundle holds no PEM certificate");
    Ok(roots)
}

fn client_config(roots: Arc<RootCertStore>) -> anyhow::Result<ClientConfig> {
    Ok(ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn hyper_transport(
    config: ClientConfig,
    server_name: Option<ServerName<'static>>,
    connect_timeout: Duration,
) -> HyperTransport {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_or_http();
    let builder = match server_name {
        Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(name)),
        None => builder,
    };
    let connector = builder.enable_http1().wrap_connector(http);
    HyperTransport { client: Client::builder(TokioExecutor::new()).build(connector) }
}

/// `insecureSkipVerify: true`: every certificate is accepted, signatures are not checked.
#[derive(Debug)]
struct AcceptAnyCertificate;

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_bundles() {
        let err = roots_from_pem(b"not pem").unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["db.test".into()]).unwrap().self_signed(&key).unwrap();
        assert_eq!(roots_from_pem(cert.pem().as_bytes()).unwrap().len(), 1);
        let connector = Connector::new(Duration::from_secs(1)).unwrap();
        let settings = TlsSettings { server_name: Some("not a name!".into()), ..Default::default() };
        assert!(connector.with_tls(&settings).is_err());
        let settings = TlsSettings {
            ca_pem: Some(cert.pem().into_bytes()),
            server_name: Some("db.test".into()),
            ..Default::default()
        };
        assert!(connector.with_tls(&settings).is_ok());
    }
}
