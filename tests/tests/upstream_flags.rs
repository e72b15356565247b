//! A deployment written for k8s.io/apiserver's flags (sample-apiserver's, metrics-server's) starts, and the flags
//! that mean something here do it: `--cert-dir` keeps the self-signed certificate across restarts, `--profiling=false`
//! removes the debug endpoint, `--min-request-timeout` bounds watches, `--delete-collection-workers` deletes in
//! parallel, `--permit-port-sharing` sets SO_REUSEPORT, `--http2-max-streams-per-connection` limits the streams.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::{Duration, Instant};

use backup_e2e::{TestServer, backup, backups, tls_connector};
use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

fn flags(cert_dir: &str) -> Vec<String> {
    [
        "--cert-dir",
        cert_dir,
        "--profiling=false",
        "--contention-profiling",
        "--enable-priority-and-fairness=false",
        "--v=2",
        "--http2-max-streams-per-connection=10",
        "--min-request-timeout=2",
        "--delete-collection-workers=4",
        "--enable-admission-plugins=NamespaceLifecycle,ValidatingAdmissionWebhook",
        "--etcd-healthcheck-timeout=5s",
        "--permit-port-sharing",
        "--authentication-tolerate-lookup-failure",
    ]
    .map(String::from)
    .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_written_for_upstreams_flags_starts_and_honours_them() {
    let dir = tempfile::tempdir().unwrap();
    let cert_dir = dir.path().join("certs").display().to_string();
    let args = flags(&cert_dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let srv = TestServer::standalone_with(&args).await;
    let http = srv.http();

    // --cert-dir: the certificate served is the one written there, and a restart serves it again.
    let written = std::fs::read_to_string(dir.path().join("certs/apiserver.crt")).unwrap();
    assert_eq!(srv.ca_pem, written);
    let again = TestServer::standalone_with(&args).await;
    assert_eq!(again.ca_pem, written, "a restart serves the same certificate");
    drop(again);

    // --profiling=false: no debug endpoint.
    let put = http.request(Method::PUT, "/debug/flags/v").body("text/plain", "4").send().await;
    assert!(matches!(put.status, 404 | 405), "{} {}", put.status, put.text());
    let index = http.get("/").await.expect_status(200).json();
    assert!(!index["paths"].as_array().unwrap().contains(&json!("/debug/flags/v")), "{index}");
    http.get("/readyz").await.expect_status(200);

    // --delete-collection-workers=4: every object goes.
    for i in 0..20 {
        http.create(&backups("default"), &backup(&format!("d{i}"))).await;
    }
    let deleted = http.request(Method::DELETE, &backups("default")).send().await.expect_status(200).json();
    assert_eq!(deleted["items"].as_array().unwrap().len(), 20);
    let left = http.get(&backups("default")).await.expect_status(200).json();
    assert!(left["items"].as_array().unwrap().is_empty(), "{left}");

    // --min-request-timeout=2: a watch without timeoutSeconds ends after 2 to 4 s.
    let started = Instant::now();
    let mut watch = http.request(Method::GET, &format!("{}?watch=true", backups("default"))).open().await;
    assert_eq!(watch.status, 200);
    let _ = watch.rest(Duration::from_secs(20)).await;
    let lasted = started.elapsed();
    assert!(lasted >= Duration::from_millis(1900) && lasted < Duration::from_secs(10), "the watch lasted {lasted:?}");

    // --permit-port-sharing: another socket with SO_REUSEPORT binds the same address.
    let shared = tokio::net::TcpSocket::new_v4().unwrap();
    shared.set_reuseport(true).unwrap();
    shared.bind(srv.addr).expect("the port is shared");
    drop(shared);
    let plain = TestServer::standalone().await;
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.set_reuseport(true).unwrap();
    assert!(other.bind(plain.addr).is_err(), "without the flag the port is not shared");

    // --http2-max-streams-per-connection=10: with ten watches open on a connection, an eleventh request waits for
    // one of them to end.
    let (connector, name) = tls_connector(&srv.ca_pem, b"h2");
    let tls = connector.connect(name, tokio::net::TcpStream::connect(srv.addr).await.unwrap()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(connection);
    let request = |path: String| {
        hyper::Request::get(format!("{}{path}", srv.url()))
            .header("authorization", format!("Bearer {}", srv.token))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let mut watches = Vec::new();
    for _ in 0..10 {
        sender.ready().await.unwrap();
        let answer = sender.send_request(request(format!("{}?watch=true&timeoutSeconds=60", backups("default"))));
        watches.push(tokio::time::timeout(Duration::from_secs(10), answer).await.unwrap().unwrap());
    }
    let mut eleventh = Box::pin(sender.send_request(request("/version".into())));
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut eleventh).await.is_err(),
        "an eleventh stream was answered while ten were open"
    );
    drop(watches.pop());
    let version = tokio::time::timeout(Duration::from_secs(10), eleventh).await.unwrap().unwrap();
    assert_eq!(version.status(), 200);
    let body = version.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("gitVersion"));
}

/// A plugin both turned on and off stops the server at start, with upstream's message.
#[tokio::test]
async fn admission_plugins_both_on_and_off_are_refused() {
    use clap::Parser;
    let args = [
        "backup-apiserver",
        "--standalone",
        "--in-memory",
        "--secure-port=0",
        "--enable-admission-plugins=NamespaceLifecycle",
        "--disable-admission-plugins=NamespaceLifecycle,ValidatingAdmissionWebhook",
    ];
    let error = match backup_apiserver::start(backup_apiserver::options::Options::parse_from(args)).await {
        Ok(_) => panic!("started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains("[NamespaceLifecycle] in enable-admission-plugins and disable-admission-plugins overlapped"),
        "{error}"
    );
}

/// `--cors-allowed-origins`: a browser's request from an allowed origin gets upstream's CORS headers, its preflight
/// OPTIONS a 204 without credentials; another origin gets nothing, and its preflight is authenticated like any
/// request. A pattern that is not a regular expression stops the server at start.
#[tokio::test]
async fn cors_follows_the_allowed_origins() {
    let srv = TestServer::standalone_with(&[r"--cors-allowed-origins=//ui\.example\.com$,//localhost(:|$)"]).await;
    let anonymous = srv.http_with_token(None);
    let preflight = anonymous
        .request(Method::OPTIONS, &backups("default"))
        .header("Origin", "https://ui.example.com")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .expect_status(204);
    assert_eq!(preflight.header("access-control-allow-origin"), "https://ui.example.com");
    assert_eq!(preflight.header("access-control-allow-methods"), "POST, GET, OPTIONS, PUT, DELETE, PATCH");
    assert!(preflight.header("access-control-allow-headers").contains("Authorization"));
    assert_eq!(preflight.header("access-control-expose-headers"), "Date");
    assert_eq!(preflight.header("access-control-allow-credentials"), "true");

    let allowed = srv.http().request(Method::GET, &backups("default")).header("Origin", "http://localhost:3000");
    let allowed = allowed.send().await.expect_status(200);
    assert_eq!(allowed.header("access-control-allow-origin"), "http://localhost:3000");
    let unauthenticated = anonymous.request(Method::GET, &backups("default")).header("Origin", "http://localhost");
    let unauthenticated = unauthenticated.send().await.expect_status(401);
    assert_eq!(unauthenticated.header("access-control-allow-origin"), "http://localhost", "a browser can read the 401");

    let other = srv.http().request(Method::GET, &backups("default")).header("Origin", "https://evil.example");
    assert_eq!(other.send().await.expect_status(200).header("access-control-allow-origin"), "");
    let other_preflight =
        anonymous.request(Method::OPTIONS, &backups("default")).header("Origin", "https://evil.example");
    other_preflight.send().await.expect_status(401);

    use clap::Parser;
    let args = ["backup-apiserver", "--standalone", "--in-memory", "--secure-port=0", "--cors-allowed-origins=("];
    let error = match backup_apiserver::start(backup_apiserver::options::Options::parse_from(args)).await {
        Ok(_) => panic!("a broken pattern started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("--cors-allowed-origins"), "{error}");
}
