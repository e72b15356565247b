//! Delegated authentication where a real kube-apiserver cannot be made to fail the way a test needs: a token that
//! expires within a second (TokenRequest's minimum is 10 minutes), against a stand-in kube-apiserver; and
//! kube-apiserver unreachable. Everything else about delegation runs against a real kube-apiserver v1.20.2 in
//! tests/tests/delegation.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{Method, Request, StatusCode};
use clap::Parser;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use backup_apiserver::options::Options;
use support::certs::TestCa;
use support::fake_kube::{Behaviour, FakeKube, kubeconfig};

const BACKUPS: &str = "/apis/backup.extend-k8s.io/v1/namespaces/default/timeseriesdbbackups";

struct Setup {
    kube: FakeKube,
    server: backup_apiserver::Server,
}

fn configmap_data(front_proxy_ca: &TestCa, client_ca: &TestCa) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("client-ca-file".into(), client_ca.cert_pem.clone()),
        ("requestheader-client-ca-file".into(), front_proxy_ca.cert_pem.clone()),
        ("requestheader-allowed-names".into(), r#"["front-proxy-client"]"#.into()),
        ("requestheader-username-headers".into(), r#"["X-Remote-User"]"#.into()),
        ("requestheader-group-headers".into(), r#"["X-Remote-Group"]"#.into()),
        ("requestheader-extra-headers-prefix".into(), r#"["X-Remote-Extra-"]"#.into()),
    ])
}

async fn setup() -> Setup {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let front_proxy_ca = TestCa::new("front-proxy-ca");
    let client_ca = TestCa::new("client-ca");
    let b = Behaviour {
        allowed_users: vec!["carol".into()],
        configmap: Some(configmap_data(&front_proxy_ca, &client_ca)),
        namespaces: BTreeMap::from([("default".into(), false)]),
        ..Behaviour::default()
    };
    let kube = FakeKube::start(b).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("server.kubeconfig");
    std::fs::write(&kc, kube.kubeconfig()).unwrap();
    let server = backup_apiserver::start(delegating_options(&kc)).await.expect("server starts");
    // Let the startup probes (one TokenReview, one SubjectAccessReview) land before a test counts calls.
    for _ in 0..100 {
        let c = kube.counts();
        if c.tokenreviews >= 1 && c.sars >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Setup { kube, server }
}

impl Setup {
    /// GET `path` from our server with these kubeconfig `user` lines.
    async fn get(&self, user: &str, path: &str) -> StatusCode {
        let text = kubeconfig(&format!("https://{}", self.server.addr), &self.server.ca_pem, user);
        let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await.unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let req = Request::builder().method(Method::GET).uri(path).body(kube::client::Body::empty()).unwrap();
        client.send(req).await.unwrap().status()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_when_kube_apiserver_is_unreachable() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let kc = dir.path().join("kc");
    let ca = TestCa::new("unused");
    std::fs::write(&kc, kubeconfig(&format!("https://{closed}"), &ca.cert_pem, "token: t")).unwrap();
    let opts = delegating_options(&kc);
    let server = backup_apiserver::start(opts).await.expect("starts even when kube-apiserver is down");
    let text = kubeconfig(&format!("https://{}", server.addr), &server.ca_pem, "username: \"\"");
    let config =
        kube::Config::from_custom_kubeconfig(kube::config::Kubeconfig::from_yaml(&text).unwrap(), &Default::default())
            .await
            .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let resp = client.send(Request::get("/readyz?verbose").body(kube::client::Body::empty()).unwrap()).await.unwrap();
    let body = String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).to_string();
    assert!(body.contains("kube-apiserver unreachable"), "{body}");
}

/// An unsigned JWT whose `exp` is `secs` from now (the stand-in accepts it as an opaque token).
fn jwt_expiring_in(secs: i64) -> String {
    use base64::Engine;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let exp = jiff::Timestamp::now().as_second() + secs;
    format!("{}.{}.{}", b64(json!({"alg": "RS256", "typ": "JWT"})), b64(json!({"sub": "erin", "exp": exp})), "c2ln")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_authentication_never_outlives_the_tokens_exp() {
    let s = setup().await;
    let token = jwt_expiring_in(1);
    s.kube.behaviour.lock().unwrap().tokens.insert(token.clone(), ("carol".into(), vec![]));
    let user = format!("token: {token}");
    let before = s.kube.counts().tokenreviews;
    assert_eq!(s.get(&user, BACKUPS).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(s.get(&user, BACKUPS).await, StatusCode::OK);
    assert_eq!(s.kube.counts().tokenreviews - before, 2, "the 10s TTL is cut to the token's 1s lifetime");
}

/// A server on an in-memory store and a free loopback port, delegating to the kube-apiserver of `kubeconfig`.
fn delegating_options(kubeconfig: &std::path::Path) -> Options {
    Options::parse_from([
        "backup-apiserver",
        "--in-memory",
        "--secure-port",
        "0",
        "--bind-address",
        "127.0.0.1",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ])
}
