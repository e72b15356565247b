//! Certificates for databases behind TLS in tests, made at test time (rcgen), never committed: a CA and a server
//! certificate signed by it, as PEM files in a temporary directory.
//!
//! Tests → harness → **TLS material (this file)** → databases.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A CA and a server certificate signed by it.
pub struct TestCerts {
    pub dir: tempfile::TempDir,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The name to check the certificate against when it is not for 127.0.0.1.
    pub server_name: Option<String>,
}

impl TestCerts {
    /// A server certificate for `127.0.0.1` and `localhost`.
    pub fn local() -> TestCerts {
        TestCerts::for_names(&["127.0.0.1", "localhost"])
    }

    /// A server certificate for exactly `names` (DNS names or IP addresses).
    pub fn for_names(names: &[&str]) -> TestCerts {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::default();
        ca.distinguished_name.push(DnType::CommonName, "tsdb test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_pem = ca.self_signed(&ca_key).expect("CA certificate").pem();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("server key");
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("server names");
        params.distinguished_name.push(DnType::CommonName, "tsdb test server");
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        let cert_file = dir.path().join("server.crt");
        let key_file = dir.path().join("server.key");
        std::fs::write(&cert_file, cert.pem()).expect("writing the certificate");
        std::fs::write(&key_file, key.serialize_pem()).expect("writing the key");
        let server_name = (!names.contains(&"127.0.0.1")).then(|| names[0].to_string());
        TestCerts { dir, ca_pem, cert_file, key_file, server_name }
    }

    /// A client for the harness' own requests to a database with this certificate, sending `authorization`.
    pub fn client(&self, authorization: Option<&str>) -> crate::http::Http {
        let connector = crate::http::transport::Connector::new(std::time::Duration::from_secs(30)).expect("connector");
        let settings = crate::http::transport::TlsSettings {
            ca_pem: Some(self.ca_pem.clone().into_bytes()),
            server_name: self.server_name.clone(),
            ..Default::default()
        };
        let mut http = super::http().with_transport(connector.with_tls(&settings).expect("TLS transport"));
        if let Some(value) = authorization {
            http = http.with_authorization(value.parse().expect("an Authorization header"));
        }
        http
    }
}

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}
