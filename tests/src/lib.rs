//! End-to-end test harness for backup-apiserver: start a server in-process (standalone, on the embedded in-memory
//! store or on a fresh etcd), then drive it with the real `kubectl` ([`kubectl`]), raw HTTPS requests with full
//! control of method, path, headers, body and credentials ([`http`]), or kube-rs ([`TestServer::client`]).
//!
//! Every test starts its own [`TestServer`], so tests run in parallel; everything that waits is bounded by a
//! timeout.
//!
//! The real-cluster tests run etcd + kube-apiserver v1.20.2 (+ kube-controller-manager) built by
//! `hack/kube-apiserver.sh` ([`cluster`]), and register the server with its aggregator as a user deploys it
//! ([`aggregated`]); one cluster is shared by the tests of a binary ([`background`]), and its processes die with
//! the binary ([`process`]).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

pub mod aggregated;
pub mod audit_sink;
pub mod background;
pub mod cluster;
pub mod crd;
pub mod http;
pub mod https;
pub mod kubectl;
pub mod pki;
pub mod process;
pub mod server_process;
pub mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use backup_apiserver::options::Options;
use backup_storage::testing::EtcdServer;
use clap::Parser;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

pub use crate::http::{Http, Response, WatchStream};
pub use crate::kubectl::Kubectl;

/// `apiVersion` of the group's kinds.
pub const API_VERSION: &str = "backup.extend-k8s.io/v1";
/// The URL prefix of the group version.
pub const GV_PATH: &str = "/apis/backup.extend-k8s.io/v1";

/// How long a single request or kubectl run may take before the test fails.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running server with everything a test needs to talk to it. Dropping it stops etcd (if any); the server task
/// ends with the test's runtime.
pub struct TestServer {
    server: backup_apiserver::Server,
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub token: String,
    pub kubeconfig: PathBuf,
    /// The etcd the server stores in, for the etcd runs (declared after `server`, so it outlives it on drop).
    pub etcd: Option<EtcdServer>,
    dir: tempfile::TempDir,
}

impl TestServer {
    /// A standalone server on the embedded in-memory store.
    pub async fn standalone() -> Self {
        Self::start(None, None, &[]).await
    }

    /// A standalone server on the embedded in-memory store, with `flags` (e.g. `--watch-cache=false`).
    pub async fn standalone_with(flags: &[&str]) -> Self {
        Self::start(None, None, flags).await
    }

    /// A standalone server on a fresh etcd.
    pub async fn on_etcd() -> Self {
        Self::start(Some(EtcdServer::start().await), None, &[]).await
    }

    /// A standalone server on the etcd at `endpoint`, which other servers may share, with `flags`.
    pub async fn on_shared_etcd(endpoint: &str, flags: &[&str]) -> Self {
        Self::start(None, Some(endpoint), flags).await
    }

    async fn start(etcd: Option<EtcdServer>, shared_etcd: Option<&str>, flags: &[&str]) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::Builder::new().prefix("backup-e2e-").tempdir().expect("create a temporary directory");
        let kubeconfig = dir.path().join("kubeconfig");
        let mut args: Vec<String> =
            ["backup-apiserver", "--standalone", "--secure-port", "0", "--write-kubeconfig"].map(String::from).into();
        args.push(kubeconfig.display().to_string());
        match etcd.as_ref().map(EtcdServer::endpoint).or(shared_etcd.map(str::to_string)) {
            Some(endpoint) => {
                args.extend(["--etcd-servers".into(), endpoint, "--etcd-compaction-interval".into(), "0".into()])
            }
            None => args.push("--in-memory".into()),
        }
        args.extend(flags.iter().map(|f| f.to_string()));
        let opts = Options::parse_from(&args);
        let server = tokio::time::timeout(STEP_TIMEOUT, backup_apiserver::start(opts))
            .await
            .expect("the server did not start in time")
            .expect("start the server");
        let token = server.admin_token.clone().expect("standalone mode has an admin token");
        assert_eq!(server.kubeconfig.as_deref(), Some(kubeconfig.as_path()), "kubeconfig written where asked");
        Self { addr: server.addr, ca_pem: server.ca_pem.clone(), token, kubeconfig, server, etcd, dir }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A kube-rs client trusting the server's CA, with the admin token.
    pub fn client(&self) -> kube::Client {
        self.client_with_token(Some(&self.token))
    }

    /// A kube-rs client trusting the server's CA, with `token` (or no credentials at all).
    pub fn client_with_token(&self, token: Option<&str>) -> kube::Client {
        client_for(&self.url(), &self.ca_pem, token)
    }

    /// Raw HTTPS with the admin token.
    pub fn http(&self) -> Http {
        Http::new(self.client())
    }

    /// Raw HTTPS with `token`, or with no credentials.
    pub fn http_with_token(&self, token: Option<&str>) -> Http {
        Http::new(self.client_with_token(token))
    }

    /// kubectl against this server, with its own cache directory.
    pub fn kubectl(&self) -> Kubectl {
        Kubectl::new(self.kubeconfig.clone(), self.dir.path())
    }

    /// The value of `name` in `/metrics` (the first sample of that name; 0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.http().get("/metrics").await.expect_status(200).text();
        metric_value(&text, name).unwrap_or(0.0)
    }

    /// Stop the server gracefully.
    pub async fn shutdown(self) {
        tokio::time::timeout(STEP_TIMEOUT, self.server.shutdown())
            .await
            .expect("the server did not stop in time")
            .expect("the server stopped cleanly");
    }
}

/// `/apis/backup.extend-k8s.io/v1/namespaces/<ns>/<plural>`.
pub fn collection(ns: &str, plural: &str) -> String {
    format!("{GV_PATH}/namespaces/{ns}/{plural}")
}

/// `/apis/backup.extend-k8s.io/v1/namespaces/<ns>/timeseriesdbbackups[/<name>]`.
pub fn backups(ns: &str) -> String {
    collection(ns, "timeseriesdbbackups")
}

/// The path of one backup.
pub fn backup_path(ns: &str, name: &str) -> String {
    format!("{}/{name}", backups(ns))
}

/// A valid TimeseriesDBBackup of a Prometheus at `http://prometheus:9090`, scheduled nightly.
pub fn backup(name: &str) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "TimeseriesDBBackup",
        "metadata": {"name": name},
        "spec": {
            "database": {"type": "Prometheus", "url": "http://prometheus:9090"},
            "schedule": "0 2 * * *",
            "retention": {"keepLast": 7},
        },
    })
}

/// A valid TimeseriesDBRestore of backup `from` into a VictoriaMetrics.
pub fn restore(name: &str, from: &str) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "TimeseriesDBRestore",
        "metadata": {"name": name},
        "spec": {
            "backupRef": {"name": from},
            "target": {"type": "VictoriaMetrics", "url": "http://vm:8428"},
        },
    })
}

/// `value` at a JSON pointer, as a string ("" when absent or not a string).
pub fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The first sample of `name` in a Prometheus text exposition.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let value = rest
            .strip_prefix(' ')
            .or_else(|| rest.strip_prefix('{').and_then(|r| r.split_once("} ")).map(|(_, v)| v))?;
        value.trim().parse().ok()
    })
}

/// A kube-rs client for the server at `url` trusting `ca_pem`, with `token` (or no credentials at all). Raw
/// requests must see every answer as it is: no retries of 429/503/504.
pub fn client_for(url: &str, ca_pem: &str, token: Option<&str>) -> kube::Client {
    let mut config = kube::Config::new(url.parse().expect("server URL"));
    let certs = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .map(|c| c.expect("the server's CA PEM parses").to_vec())
        .collect();
    config.root_cert = Some(certs);
    config.auth_info.token = token.map(|t| secrecy::SecretString::from(t.to_string()));
    config.default_retry = false;
    kube::Client::try_from(config).expect("build a kube client")
}

/// A raw TLS connector trusting `ca_pem` and offering only `alpn` (`b"h2"`, `b"http/1.1"`), and the server name
/// to connect to (`127.0.0.1`).
pub fn tls_connector(ca_pem: &str, alpn: &[u8]) -> (tokio_rustls::TlsConnector, rustls_pki_types::ServerName<'static>) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("the server's CA PEM parses")).expect("a CA certificate");
    }
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("an IP address");
    (tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)), name)
}
