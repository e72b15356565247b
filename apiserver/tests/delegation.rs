//! Delegated authentication and authorization against a stand-in kube-apiserver: front-proxy certificates and
//! headers, client certificates, TokenReview with its cache, SubjectAccessReview with upstream's 403 message, the
//! ConfigMap watched for a new CA, NamespaceLifecycle, and the readyz self-diagnosis.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{Method, Request, StatusCode};
use clap::Parser;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use backup_apiserver::options::Options;
use support::certs::{ClientCert, TestCa};
use support::fake_kube::{Behaviour, FakeKube, kubeconfig};

const BACKUPS: &str = "/apis/backup.extend-k8s.io/v1/namespaces/default/timeseriesdbbackups";

struct Setup {
    kube: FakeKube,
    server: backup_apiserver::Server,
    dir: tempfile::TempDir,
    front_proxy_ca: TestCa,
    client_ca: TestCa,
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

async fn setup_with(customize: impl FnOnce(&mut Behaviour, &TestCa, &TestCa)) -> Setup {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let front_proxy_ca = TestCa::new("front-proxy-ca");
    let client_ca = TestCa::new("client-ca");
    let mut b = Behaviour {
        tokens: [("alice-token".to_string(), ("alice".to_string(), vec!["devs".to_string()]))].into(),
        allowed_users: vec!["alice".into(), "carol".into(), "dave".into()],
        configmap: Some(configmap_data(&front_proxy_ca, &client_ca)),
        namespaces: BTreeMap::from([("default".into(), false), ("dying".into(), true)]),
        ..Behaviour::default()
    };
    customize(&mut b, &front_proxy_ca, &client_ca);
    let kube = FakeKube::start(b).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("server.kubeconfig");
    std::fs::write(&kc, kube.kubeconfig()).unwrap();
    let opts = delegating_options(&kc);
    let server = backup_apiserver::start(opts).await.expect("server starts");
    // Let the startup probes (one TokenReview, one SubjectAccessReview) land before a test counts calls.
    for _ in 0..100 {
        let c = kube.counts();
        if c.tokenreviews >= 1 && c.sars >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Setup { kube, server, dir, front_proxy_ca, client_ca }
}

async fn setup() -> Setup {
    setup_with(|_, _, _| {}).await
}

impl Setup {
    /// Users asked about in SubjectAccessReviews, without the server's startup probe (for system:anonymous).
    fn reviewed_users(&self) -> Vec<String> {
        self.kube.counts().sar_users.into_iter().filter(|u| u != "system:anonymous").collect()
    }

    fn url(&self) -> String {
        format!("https://{}", self.server.addr)
    }

    /// A kube client for our server with these kubeconfig `user` lines.
    async fn client(&self, user: &str) -> kube::Client {
        let text = kubeconfig(&self.url(), &self.server.ca_pem, user);
        let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await.unwrap();
        kube::Client::try_from(config).unwrap()
    }

    async fn request(
        &self,
        user: &str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let client = self.client(user).await;
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        if !body.is_empty() {
            req = req.header("content-type", "application/json");
        }
        let resp = client.send(req.body(kube::client::Body::from(body)).unwrap()).await.unwrap();
        let code = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into())))
    }
}

fn backup(name: &str) -> Value {
    json!({"apiVersion": "backup.extend-k8s.io/v1", "kind": "TimeseriesDBBackup", "metadata": {"name": name},
           "spec": {"database": {"type": "VictoriaMetrics", "url": "http://127.0.0.1:8428"}}})
}

fn proxy(ca: &TestCa) -> ClientCert {
    ca.client("front-proxy-client", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_proxy_headers_are_trusted_only_with_its_certificate() {
    let s = setup().await;
    let fp = proxy(&s.front_proxy_ca).kubeconfig_user();
    let headers = [("X-Remote-User", "carol"), ("X-Remote-Group", "team")];
    let (code, _) = s.request(&fp, Method::GET, BACKUPS, &headers, None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(s.reviewed_users(), vec!["carol".to_string()]);

    // The same headers with no certificate, a certificate from another CA, or a CN outside the allowed names.
    let other_ca = TestCa::new("other");
    for user in [
        "token: none".to_string(),
        proxy(&other_ca).kubeconfig_user(),
        s.front_proxy_ca.client("someone-else", &[]).kubeconfig_user(),
    ] {
        let user = if user == "token: none" { "username: \"\"".to_string() } else { user };
        let (code, body) = s.request(&user, Method::GET, BACKUPS, &headers, None).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{user}: {body}");
        assert_eq!(body["reason"], "Unauthorized");
    }
    assert_eq!(s.reviewed_users().len(), 1, "no SubjectAccessReview for unauthenticated requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masters_skip_the_review_and_the_aggregator_probe_is_fast() {
    let s = setup().await;
    let fp = proxy(&s.front_proxy_ca).kubeconfig_user();
    let headers = [("X-Remote-User", "system:kube-aggregator"), ("X-Remote-Group", "system:masters")];
    let (code, body) = s.request(&fp, Method::GET, "/apis/backup.extend-k8s.io/v1", &headers, None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["kind"], "APIResourceList");
    assert!(s.reviewed_users().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_reviewed_once_per_ttl_and_denials_are_403_with_upstreams_message() {
    let s = setup().await;
    let before = s.kube.counts().tokenreviews;
    let (code, _) = s.request("token: alice-token", Method::GET, BACKUPS, &[], None).await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = s.request("token: alice-token", Method::GET, BACKUPS, &[], None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(s.kube.counts().tokenreviews - before, 1, "the second request is answered from the cache");
    assert_eq!(s.reviewed_users(), vec!["alice".to_string()], "the allow decision is cached too");

    let (code, _) = s.request("token: wrong", Method::GET, BACKUPS, &[], None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);

    s.kube.behaviour.lock().unwrap().tokens.insert("bob-token".into(), ("bob".into(), vec![]));
    let (code, body) = s.request("token: bob-token", Method::GET, &format!("{BACKUPS}/x"), &[], None).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        body["message"],
        "timeseriesdbbackups.backup.extend-k8s.io \"x\" is forbidden: User \"bob\" cannot get resource \"timeseriesdbbackups\" in API group \"backup.extend-k8s.io\" in the namespace \"default\": no RBAC policy matched"
    );
    assert_eq!(body["details"]["kind"], "timeseriesdbbackups");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_name_the_user_and_groups() {
    let s = setup().await;
    let dave = s.client_ca.client("dave", &["ops"]).kubeconfig_user();
    let (code, _) = s.request(&dave, Method::GET, BACKUPS, &[], None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(s.reviewed_users(), vec!["dave".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_update_with_a_new_ca_is_honoured_without_restart() {
    let s = setup().await;
    let new_ca = TestCa::new("rotated-front-proxy-ca");
    let fp = proxy(&new_ca).kubeconfig_user();
    let headers = [("X-Remote-User", "carol")];
    let (code, _) = s.request(&fp, Method::GET, BACKUPS, &headers, None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    s.kube.update_configmap(configmap_data(&new_ca, &s.client_ca));
    let mut code = StatusCode::UNAUTHORIZED;
    for _ in 0..50 {
        (code, _) = s.request(&fp, Method::GET, BACKUPS, &headers, None).await;
        if code == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(code, StatusCode::OK, "the rotated CA is trusted within 5s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_lifecycle() {
    let s = setup().await;
    let admin = [("X-Remote-User", "admin"), ("X-Remote-Group", "system:masters")];
    let fp = proxy(&s.front_proxy_ca).kubeconfig_user();
    let (code, _) = s.request(&fp, Method::POST, BACKUPS, &admin, Some(backup("ok"))).await;
    assert_eq!(code, StatusCode::CREATED);
    let missing = "/apis/backup.extend-k8s.io/v1/namespaces/nope/timeseriesdbbackups";
    let (code, body) = s.request(&fp, Method::POST, missing, &admin, Some(backup("x"))).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], "namespaces \"nope\" not found");
    let dying = "/apis/backup.extend-k8s.io/v1/namespaces/dying/timeseriesdbbackups";
    let (code, body) = s.request(&fp, Method::POST, dying, &admin, Some(backup("x"))).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        body["message"],
        "timeseriesdbbackups.backup.extend-k8s.io \"x\" is forbidden: unable to create new content in namespace dying because it is being terminated"
    );
    assert_eq!(body["details"]["causes"][0]["reason"], "NamespaceTerminating");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_no_credentials_but_everything_else_does() {
    let s = setup().await;
    for path in ["/healthz", "/livez", "/readyz"] {
        let (code, _) = s.request("username: \"\"", Method::GET, path, &[], None).await;
        assert_eq!(code, StatusCode::OK, "{path}");
    }
    for path in ["/apis", "/openapi/v2", "/metrics", BACKUPS] {
        let (code, _) = s.request("username: \"\"", Method::GET, path, &[], None).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{path}");
    }
}

async fn readyz_verbose(s: &Setup) -> String {
    let fp = proxy(&s.front_proxy_ca).kubeconfig_user();
    let admin = [("X-Remote-User", "admin"), ("X-Remote-Group", "system:masters")];
    for _ in 0..50 {
        let (_, body) = s.request(&fp, Method::GET, "/readyz?verbose", &admin, None).await;
        let text = body.as_str().unwrap_or("").to_string();
        if text.contains("delegated-authorization") {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("readyz never listed the delegation checks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_a_missing_auth_delegator_binding() {
    let s = setup_with(|b, _, _| {
        b.forbid_tokenreview = true;
        b.forbid_sar = true;
    })
    .await;
    let text = readyz_verbose(&s).await;
    assert!(text.contains("[-]delegated-authentication failed: TokenReview is forbidden"), "{text}");
    assert!(text.contains("system:auth-delegator"), "{text}");
    assert!(text.contains("[-]delegated-authorization failed: SubjectAccessReview is forbidden"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_a_missing_configmap_reader_binding_and_no_front_proxy_ca() {
    let s = setup_with(|b, _, _| b.forbid_configmap = true).await;
    let dave = s.client_ca.client("dave", &[]).kubeconfig_user();
    let (code, body) = s.request(&dave, Method::GET, "/readyz?verbose", &[], None).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
    let text = body.as_str().unwrap_or("").to_string();
    assert!(text.contains("[-]authentication-configmap failed: cannot read ConfigMap kube-system/extension-apiserver-authentication: forbidden"), "{text}");
    assert!(text.contains("extension-apiserver-authentication-reader"), "{text}");
    assert!(text.contains("[-]front-proxy-ca failed: no front-proxy CA"), "{text}");
    drop(s.dir);
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
    let (code, _) = s.request(&user, Method::GET, BACKUPS, &[], None).await;
    assert_eq!(code, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, _) = s.request(&user, Method::GET, BACKUPS, &[], None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(s.kube.counts().tokenreviews - before, 2, "the 10s TTL is cut to the token's 1s lifetime");
}

fn kubectl(kubeconfig: &std::path::Path, cache: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .output()
        .expect("kubectl not found on PATH: the end-to-end tests drive the real kubectl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_works_with_client_certificate_and_token_kubeconfigs() {
    let s = setup().await;
    let dave = s.client_ca.client("dave", &["ops"]).kubeconfig_user();
    for (name, user) in [("cert", dave), ("token", "token: alice-token".to_string())] {
        let kc = s.dir.path().join(format!("{name}.kubeconfig"));
        std::fs::write(&kc, kubeconfig(&s.url(), &s.server.ca_pem, &user)).unwrap();
        let cache = s.dir.path().join(format!("{name}-cache"));
        let manifest = s.dir.path().join(format!("{name}.json"));
        std::fs::write(&manifest, backup(&format!("from-{name}")).to_string()).unwrap();
        let (kc2, cache2) = (kc.clone(), cache.clone());
        let out =
            tokio::task::spawn_blocking(move || kubectl(&kc2, &cache2, &["apply", "-f", manifest.to_str().unwrap()]))
                .await
                .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let out = tokio::task::spawn_blocking(move || kubectl(&kc, &cache, &["get", "tsdbb"])).await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(&format!("from-{name}")), "{stdout}");
    }
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
