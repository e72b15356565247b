//! The TLS flags of upstream's secure serving, on the server process: `--tls-min-version`, `--tls-cipher-suites`
//! (Go's names) and `--tls-sni-cert-key`, seen from raw TLS clients that offer one version or one suite, or ask for
//! one name, and read back what the server chose.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_e2e::pki::{Ca, CertKey};
use backup_e2e::server_process::{ServerProcess, server_binary};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{CipherSuite, ProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// What one handshake gave: the version, the suite and the server's certificate.
#[derive(Debug)]
struct Handshake {
    version: ProtocolVersion,
    suite: CipherSuite,
    cert: CertificateDer<'static>,
}

/// Accepts any server certificate: these tests read the certificate the server chose and compare it themselves.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Handshake with `server` offering only `version` and, when given, only `suite`, asking for `name` (an IP address
/// sends no SNI). `Err` carries the handshake's error.
async fn handshake(
    server: &ServerProcess,
    version: &'static rustls::SupportedProtocolVersion,
    suite: Option<CipherSuite>,
    name: &str,
) -> Result<Handshake, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(suite) = suite {
        provider.cipher_suites.retain(|s| s.suite() == suite);
    }
    let provider = Arc::new(provider);
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .expect("a client version")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.expect("connect");
    let name = ServerName::try_from(name.to_string()).expect("a server name");
    let tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let (_, session) = tls.get_ref();
    Ok(Handshake {
        version: session.protocol_version().expect("a version"),
        suite: session.negotiated_cipher_suite().expect("a suite").suite(),
        cert: session.peer_certificates().expect("a certificate")[0].clone().into_owned(),
    })
}

fn der(cert: &CertKey) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).expect("a PEM certificate")
}

use rustls::version::{TLS12, TLS13};

/// By default TLS 1.2 and 1.3 are offered, AES-128-GCM preferred; `--tls-min-version=VersionTLS13` turns TLS 1.2
/// away; `--tls-cipher-suites` restricts TLS 1.2's suites and leaves TLS 1.3's, as Go's server does.
#[tokio::test]
async fn versions_and_suites_follow_the_flags() {
    let default = ServerProcess::start(&[]).await;
    let tls12 = handshake(&default, &TLS12, None, "127.0.0.1").await.unwrap();
    assert_eq!(tls12.version, ProtocolVersion::TLSv1_2);
    assert_eq!(tls12.suite, CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
    let tls13 = handshake(&default, &TLS13, None, "127.0.0.1").await.unwrap();
    assert_eq!((tls13.version, tls13.suite), (ProtocolVersion::TLSv1_3, CipherSuite::TLS13_AES_128_GCM_SHA256));
    drop(default);

    let only13 = ServerProcess::start(&["--tls-min-version", "VersionTLS13"]).await;
    let refused = handshake(&only13, &TLS12, None, "127.0.0.1").await.unwrap_err();
    assert!(refused.contains("ProtocolVersion") || refused.contains("protocol"), "{refused}");
    assert_eq!(handshake(&only13, &TLS13, None, "127.0.0.1").await.unwrap().version, ProtocolVersion::TLSv1_3);
    drop(only13);

    // The generated serving key is ECDSA: of these, only the ECDSA AES-256 suite can be negotiated on TLS 1.2.
    let suites = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,\
                  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,TLS_AES_128_GCM_SHA256";
    let restricted = ServerProcess::start(&["--tls-cipher-suites", suites]).await;
    let aes128 = Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
    let refused = handshake(&restricted, &TLS12, aes128, "127.0.0.1").await.unwrap_err();
    assert!(refused.contains("HandshakeFailure") || refused.contains("handshake"), "{refused}");
    let aes256 = handshake(&restricted, &TLS12, None, "127.0.0.1").await.unwrap();
    assert_eq!(aes256.suite, CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384);
    let chacha13 = Some(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);
    let tls13 = handshake(&restricted, &TLS13, chacha13, "127.0.0.1").await.unwrap();
    assert_eq!(tls13.suite, CipherSuite::TLS13_CHACHA20_POLY1305_SHA256, "TLS 1.3's suites are not restricted");
    let log = restricted.log_text();
    assert!(log.contains("not offered: TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"), "{log}");
    drop(restricted);

    // Upstream's other accepted values start the server, and the log says what is not offered.
    let old = ServerProcess::start(&["--tls-min-version", "VersionTLS10"]).await;
    assert_eq!(handshake(&old, &TLS12, None, "127.0.0.1").await.unwrap().version, ProtocolVersion::TLSv1_2);
    assert!(old.log_text().contains("TLS 1.0 and 1.1 are not implemented"), "{}", old.log_text());
}

/// A name that is not a TLS version or a cipher suite stops the server at start with upstream's message.
#[test]
fn unknown_names_are_refused_at_start() {
    for (flag, value, message) in [
        (
            "--tls-cipher-suites",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_NOPE",
            "Cipher suite TLS_NOPE not supported",
        ),
        ("--tls-min-version", "TLS12", "possible values: VersionTLS10"),
        ("--tls-sni-cert-key", "only-a-cert.crt", "expected comma separated certificate and key file paths"),
    ] {
        let out = std::process::Command::new(server_binary())
            .args(["--standalone", "--in-memory", "--secure-port", "0", flag, value])
            .output()
            .expect("run the server");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(message), "{flag}={value}: {stderr}");
    }
}

/// `--tls-sni-cert-key` chooses the certificate by the name the client asks for: the names in the certificate, or
/// those given after `:` (a wildcard covering one label); other names, and clients that send none, get the default
/// certificate. A renewed SNI certificate is served to new connections without a restart.
#[tokio::test]
async fn sni_certificates_are_chosen_by_name_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("sni-test");
    let write = |name: &str, cert: &CertKey| {
        let (c, k) = (dir.path().join(format!("{name}.crt")), dir.path().join(format!("{name}.key")));
        std::fs::write(&c, &cert.cert_pem).unwrap();
        std::fs::write(&k, &cert.key_pem).unwrap();
        (c.display().to_string(), k.display().to_string())
    };
    let default = ca.server(&["127.0.0.1", "localhost"]);
    let api = ca.server(&["api.backup.test"]);
    let wild = ca.server(&["unrelated.test"]);
    let (dc, dk) = write("default", &default);
    let (ac, ak) = write("api", &api);
    let (wc, wk) = write("wild", &wild);
    let api_flag = format!("{ac},{ak}");
    let wild_flag = format!("{wc},{wk}:*.wild.test");
    let server = ServerProcess::start(&[
        "--tls-cert-file",
        &dc,
        "--tls-private-key-file",
        &dk,
        "--tls-sni-cert-key",
        &api_flag,
        "--tls-sni-cert-key",
        &wild_flag,
    ])
    .await;
    let served = async |name: &str| handshake(&server, &TLS13, None, name).await.unwrap().cert;
    assert_eq!(served("127.0.0.1").await, der(&default), "no SNI: the default certificate");
    assert_eq!(served("api.backup.test").await, der(&api));
    assert_eq!(served("API.Backup.Test").await, der(&api), "names are case-insensitive");
    assert_eq!(served("x.wild.test").await, der(&wild));
    assert_eq!(served("a.b.wild.test").await, der(&default), "a wildcard covers one label");
    assert_eq!(served("unrelated.test").await, der(&default), "explicit names replace the certificate's");
    assert_eq!(served("other.test").await, der(&default));

    let renewed = ca.server(&["api.backup.test"]);
    std::fs::write(&ak, &renewed.key_pem).unwrap();
    std::fs::write(&ac, &renewed.cert_pem).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while served("api.backup.test").await != der(&renewed) {
        assert!(Instant::now() < deadline, "the renewed SNI certificate was not served within 30 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(served("127.0.0.1").await, der(&default));
}
