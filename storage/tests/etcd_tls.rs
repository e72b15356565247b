//! `EtcdStorage` over TLS with a client certificate (`--etcd-cafile/--etcd-certfile/--etcd-keyfile`), against an
//! etcd that requires client certificates.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::path::Path;

use backup_storage::etcd::{EtcdConfig, EtcdStorage};
use backup_storage::testing::{EtcdServer, EtcdTls};
use backup_storage::{Storage, StorageError};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// A CA and two certificates it signed: etcd's (for 127.0.0.1) and a client's, as PEM files in `dir`.
fn write_pki(dir: &Path) -> EtcdTls {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key")).expect("CA");
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, name: &str| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(names).expect("parameters");
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca).expect("sign");
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).expect("write certificate");
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).expect("write key");
    };
    leaf(vec!["127.0.0.1".into(), "localhost".into()], ExtendedKeyUsagePurpose::ServerAuth, "server");
    leaf(Vec::new(), ExtendedKeyUsagePurpose::ClientAuth, "client");
    std::fs::write(dir.join("ca.crt"), ca.pem()).expect("write CA");
    EtcdTls { ca: dir.join("ca.crt"), cert: dir.join("server.crt"), key: dir.join("server.key") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificate() {
    let pki = tempfile::tempdir().expect("tempdir");
    let tls = write_pki(pki.path());
    let server = EtcdServer::start_tls(tls.clone()).await;
    assert!(server.endpoint().starts_with("https://"));
    let config = EtcdConfig {
        cafile: Some(tls.ca.clone()),
        certfile: Some(pki.path().join("client.crt")),
        keyfile: Some(pki.path().join("client.key")),
        ..server.config("/registry")
    };
    let storage = EtcdStorage::connect(&config).await.expect("connect");
    let created = storage.create("/tls/ns/a", "over tls".into()).await.expect("create over TLS");
    assert_eq!(storage.get("/tls/ns/a").await.expect("get"), Some(created));

    // Without a client certificate etcd refuses the connection.
    let anonymous = EtcdConfig { certfile: None, keyfile: None, ..config };
    let refused = EtcdStorage::connect(&anonymous).await.expect("connect is lazy").get("/tls/ns/a").await;
    assert!(matches!(refused, Err(StorageError::Unavailable(_))), "{refused:?}");
}
