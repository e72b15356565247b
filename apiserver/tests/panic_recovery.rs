//! A handler that panics, behind the server's real filter chain (`filters::apply`: panic recovery, request info,
//! audit, metrics, timeout, authentication, max in flight, authorization) and its real TLS transport
//! (`tls::serve`). The routes are a stand-in — nothing in the real ones can be made to panic on purpose — and
//! everything around them is what the binary runs: the panic is a 500 `Status`, logged with the request's method and
//! path and audited at the Panic stage; the connection, the in-flight slot the request held and the server survive.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step fails the test

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use backup_apiserver::audit::log::{AuditLog, LogConfig};
use backup_apiserver::audit::{Auditor, policy::Policy};
use backup_apiserver::auth::authn::UserInfo;
use backup_apiserver::auth::authz::{AllowAll, AlwaysAllowPaths};
use backup_apiserver::auth::static_token::StaticToken;
use backup_apiserver::filters::max_in_flight::MaxInFlight;
use backup_apiserver::filters::metrics::RequestMetrics;
use backup_apiserver::filters::{self, FilterDeps};
use backup_apiserver::metrics::Metrics;
use backup_apiserver::tls::{self, RequestClientCert, ServingCert};

const BACKUPS: &str = "/apis/backup.extend-k8s.io/v1/namespaces/default/timeseriesdbbackups";
const TOKEN: &str = "alice-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_answers_a_500_status_and_the_server_serves_on() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let logs = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n").unwrap();
    let audit_log = dir.path().join("audit.log");
    let config =
        LogConfig { path: audit_log.clone(), max_age_days: 0, max_backups: 0, max_size_mb: 0, compress: false };
    let auditor = Auditor {
        policy: Policy::load(&policy).unwrap(),
        log: Some(AuditLog::start(config, Counter::default(), Counter::default()).unwrap()),
        webhook: None,
    };
    // A user outside system:masters, so that the in-flight limits (one read-only request at a time) apply to it.
    let alice = StaticToken { token: TOKEN.into(), user: UserInfo { name: "alice".into(), ..UserInfo::default() } };
    let metrics = Arc::new(Metrics::default());
    let [read_only_serving, _] = metrics.in_flight_gauges();
    let deps = FilterDeps {
        authenticator: Arc::new(alice),
        authorizer: Arc::new(AllowAll),
        always_allow: Arc::new(AlwaysAllowPaths(vec!["/livez".into()])),
        metrics: Arc::new(RequestMetrics::new(metrics.clone(), &backup_apis::kinds())),
        request_timeout: Duration::from_secs(60),
        max_in_flight: Arc::new(MaxInFlight::new(1, 1, metrics.in_flight_gauges(), metrics.dropped_counters())),
        auditor: Some(Arc::new(auditor)),
        api_response_compression: true,
        goaway_chance: 0.0,
        cors: None,
    };
    let routes = Router::new()
        .route(&format!("{BACKUPS}/boom"), get(boom))
        .route(&format!("{BACKUPS}/formatted"), get(boom_formatted))
        .fallback(|| async { "served" });
    let app = filters::apply(routes, deps);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cert = ServingCert::self_signed(&["127.0.0.1".into()]).unwrap();
    let tls_config = cert.server_config(Arc::new(RequestClientCert::new())).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tls::serve(
        listener,
        tls_config,
        app,
        async move {
            let _ = stopped.await;
        },
        tls::Transport::new(Duration::from_secs(5)),
    ));

    // Every request on one HTTP/1.1 connection: the panic does not cost the client its connection.
    let mut conn = Connection::open(addr, &cert.cert_pem).await;
    for (path, message) in [("boom", "boom, on purpose"), ("formatted", "boom number 2")] {
        let resp = conn.get(&format!("{BACKUPS}/{path}")).await;
        assert_eq!(resp.status, 500, "{}", resp.text());
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert!(resp.header("audit-id").is_some_and(|id| !id.is_empty()), "an Audit-ID even when panicking");
        let status: Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(status["kind"], "Status", "{status}");
        assert_eq!(status["status"], "Failure", "{status}");
        assert_eq!(status["code"], 500, "{status}");
        assert_eq!(status["reason"], "InternalError", "{status}");
        assert!(status["message"].as_str().unwrap().contains("This request caused apiserver to panic"), "{status}");
        // The next request on the same connection is served: the in-flight slot the panicking request held was
        // given back (with the limit at 1, a leaked slot would make this a 429).
        let next = conn.get(&format!("{BACKUPS}/fine")).await;
        assert_eq!((next.status, next.text().as_str()), (200, "served"));
        assert_eq!(read_only_serving.get(), 0, "the gauge of requests held counts the panicking one out");
        let logged = logs.text();
        let line = logged
            .lines()
            .find(|l| l.contains("apiserver panic'd") && l.contains(message))
            .unwrap_or_else(|| panic!("no log line of the panic {message:?}:\n{logged}"));
        assert!(line.contains("method=GET") && line.contains(&format!("path={BACKUPS}/{path}")), "{line}");
    }
    // A new connection is served too.
    let mut other = Connection::open(addr, &cert.cert_pem).await;
    assert_eq!(other.get("/livez").await.status, 200);

    // The audit log has the Panic stage of each, with upstream's 500 (the writer is a thread: wait, bounded).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let panics = loop {
        let text = std::fs::read_to_string(&audit_log).unwrap_or_default();
        let panics: Vec<Value> =
            text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|e| e["stage"] == "Panic").collect();
        if panics.len() >= 2 || tokio::time::Instant::now() > deadline {
            break panics;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(panics.len(), 2, "{panics:?}");
    for (event, path) in panics.iter().zip(["boom", "formatted"]) {
        assert_eq!(event["requestURI"], format!("{BACKUPS}/{path}"), "{event}");
        assert_eq!(event["responseStatus"]["code"], 500, "{event}");
        assert_eq!(event["user"]["username"], "alice", "{event}");
    }

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
}

/// A handler that panics with a literal message (the panic carries a `&str`).
async fn boom() -> &'static str {
    panic!("boom, on purpose")
}

/// A handler that panics with a formatted message (the panic carries a `String`).
async fn boom_formatted() -> &'static str {
    panic!("boom number {}", 2)
}

/// What the server logs, kept in memory: the subscriber is global, as the workers that run handlers are other
/// threads than the test's.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Logs {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test binary");
    logs
}

/// One HTTP/1.1 connection over TLS, requests sent one after the other.
struct Connection {
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    buf: Vec<u8>,
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Connection {
    async fn open(addr: std::net::SocketAddr, ca_pem: &str) -> Self {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = connector.connect("127.0.0.1".try_into().unwrap(), tcp).await.unwrap();
        Self { tls, buf: Vec::new() }
    }

    /// GET `path` with the token; the whole answer (its body by Content-Length), within 10 s.
    async fn get(&mut self, path: &str) -> Answer {
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
        self.tls.write_all(request.as_bytes()).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.read_answer()).await.expect("an answer within 10 s")
    }

    async fn read_answer(&mut self) -> Answer {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            self.fill().await;
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| l.split_once(':').unwrap())
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .expect("a Content-Length");
        self.buf.drain(..head_end + 4);
        while self.buf.len() < length {
            self.fill().await;
        }
        let body = self.buf.drain(..length).collect();
        Answer { status, headers, body }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 8192];
        let n = self.tls.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the server closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }
}
