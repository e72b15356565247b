//! TLS serving, the first thing a connection meets: the rustls config (protocol versions and suites from
//! [`settings`], certificates from [`certs`]), and the accept loop that runs HTTP/2 and HTTP/1.1 on one port (by
//! ALPN) and hands each request to the router, with the transport's bounds: handshake and header-read timeouts,
//! HTTP/2 stream and header limits, keep-alive pings, backoff on failed accepts, TCP_NODELAY. Connections end
//! gracefully (no new requests, those in flight finish) when the server stops or, on HTTP/2, when a request sends
//! its client away ([`Goaway`]). The peer's certificate chain is attached to every request as a
//! [`PeerCertificates`] extension for the authenticators that need it.

pub mod certs;
pub mod settings;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use backup_storage::gather::Gathered;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::counter::Counter;
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

pub use certs::{DefaultCert, ServingCert, ServingCerts, default_cert};
pub use settings::TlsSettings;

/// The client's address (for audit events' source IPs).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The HTTP/2 connection a request came on: a number no other connection of this process has. Absent on HTTP/1.1,
/// where a connection carries one request at a time. The watches of one connection are woken together
/// ([`backup_storage::cacher::WakeGroup`]).
#[derive(Debug, Clone, Copy)]
pub struct Http2Connection(pub u64);

/// Connections accepted by this process (on every listener): the last [`Http2Connection`] number given.
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// The client's certificate chain (leaf first), empty when it sent none.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

/// The rustls server config: HTTP/2 and HTTP/1.1, `verifier` deciding on client certificates, `certs` serving,
/// `settings` choosing the protocol versions and TLS 1.2 suites. The server picks the cipher suite, AES-128-GCM
/// first, as Go's TLS server (kube-apiserver) does on machines with AES instructions (10 AES rounds per block
/// against AES-256's 14: large lists and watches spend a good part of their CPU encrypting); like Go's, it ignores
/// the order of `--tls-cipher-suites`.
pub fn server_config(
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    certs: Arc<ServingCerts>,
    settings: &TlsSettings,
) -> anyhow::Result<ServerConfig> {
    use rustls::CipherSuite::{
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS13_AES_128_GCM_SHA256,
    };
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.retain(|s| settings.allows(s));
    let aes_128 =
        [TLS13_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256];
    // A stable sort: AES-128-GCM first within each protocol version (TLS 1.3 suites stay ahead of TLS 1.2's).
    provider
        .cipher_suites
        .sort_by_key(|s| (s.version().version != rustls::ProtocolVersion::TLSv1_3, !aes_128.contains(&s.suite())));
    let versions: &[&rustls::SupportedProtocolVersion] =
        if settings.tls12() { &[&rustls::version::TLS13, &rustls::version::TLS12] } else { &[&rustls::version::TLS13] };
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .context("the TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certs);
    config.ignore_client_order = true;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// How long a client has to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an HTTP/1.1 client has to send a request's headers, counted from when the connection is ready for the
/// next request (so it is also the idle keep-alive timeout): upstream's `ReadHeaderTimeout`.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(32);
/// HTTP/2 streams per connection by default: Go's default, kube-apiserver's own until v1.29 (100 since); aggregated
/// servers built on upstream's `RecommendedOptions` allow 1,000, as the aggregator multiplexes many requests over
/// one connection.
pub const MAX_CONCURRENT_STREAMS: u32 = 250;
/// An HTTP/2 request's header list: Go's `DefaultMaxHeaderBytes`.
const MAX_HEADER_BYTES: u32 = 1 << 20;
/// An HTTP/1.1 connection's read and write buffers: a request's headers must fit, and a client that stops reading
/// holds at most this much of its answer in the server (the socket's buffers aside).
const MAX_H1_BUFFER: usize = 256 << 10;
/// HTTP/2 pings on a connection that has been quiet this long; no answer within the same time closes it.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// The longest the accept loop sleeps after failed accepts (EMFILE…), doubling from 5 ms as Go's net/http does.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// How connections are served, beyond the TLS config.
#[derive(Debug, Clone)]
pub struct Transport {
    /// After shutdown, how long open connections may take to finish.
    pub drain: Duration,
    /// HTTP/2 streams per connection (`--http2-max-streams-per-connection`; 0: [`MAX_CONCURRENT_STREAMS`]).
    pub max_concurrent_streams: u32,
    /// Counts the handshakes that fail or time out.
    pub handshake_errors: Counter,
}

impl Transport {
    /// The defaults, draining for at most `drain` (tests).
    pub fn new(drain: Duration) -> Self {
        Self { drain, max_concurrent_streams: 0, handshake_errors: Counter::default() }
    }
}

/// Accept TLS connections on `listener` until `shutdown` resolves; then stop accepting and let open connections
/// finish gracefully, for at most the transport's `drain`.
pub async fn serve(
    listener: TcpListener,
    config: ServerConfig,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    transport: Transport,
) -> anyhow::Result<()> {
    let Transport { drain, max_concurrent_streams, handshake_errors } = transport;
    let max_concurrent_streams =
        if max_concurrent_streams == 0 { MAX_CONCURRENT_STREAMS } else { max_concurrent_streams };
    let acceptor = TlsAcceptor::from(Arc::new(config));
    // Connections end gracefully once `stop` turns true; `serve` waits for every task holding an `alive` sender.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (alive, mut all_ended) = tokio::sync::mpsc::channel::<()>(1);
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(MAX_H1_BUFFER);
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_concurrent_streams(max_concurrent_streams)
        .max_header_list_size(MAX_HEADER_BYTES)
        .keep_alive_interval(H2_KEEP_ALIVE)
        .keep_alive_timeout(H2_KEEP_ALIVE);
    let (http1, http2) = (Arc::new(http1), Arc::new(http2));
    let mut backoff = Duration::ZERO;
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer): (_, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => {
                    backoff = Duration::ZERO;
                    c
                }
                Err(e) => {
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), MAX_ACCEPT_BACKOFF);
                    tracing::warn!(error = %e, retry_in = ?backoff, "accept failed");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "setting TCP_NODELAY failed");
        }
        let connection = Http2Connection(CONNECTIONS.fetch_add(1, Ordering::Relaxed) + 1);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let (http1, http2) = (http1.clone(), http2.clone());
        let (stopped, alive) = (stopped.clone(), alive.clone());
        let handshake_errors = handshake_errors.clone();
        tokio::spawn(async move {
            let _alive = alive;
            let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    handshake_errors.inc();
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    handshake_errors.inc();
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let (_, session) = tls.get_ref();
            let h2 = session.alpn_protocol() == Some(b"h2");
            let certs = PeerCertificates(Arc::new(
                session
                    .peer_certificates()
                    .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                    .unwrap_or_default(),
            ));
            let goaway = Goaway::default();
            let first_request = Arc::new(AtomicBool::new(false));
            let seen = first_request.clone();
            let asked = goaway.clone();
            let svc = app.map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                seen.store(true, Ordering::Relaxed);
                req.extensions_mut().insert(certs.clone());
                req.extensions_mut().insert(PeerAddr(peer));
                if h2 {
                    req.extensions_mut().insert(connection);
                    req.extensions_mut().insert(asked.clone());
                }
                req
            });
            let svc = TowerToHyperService::new(svc);
            let io = TokioIo::new(tls);
            let result = if h2 {
                // HTTP/2 has no header-read timeout: a connection with no request within the same time is closed.
                // The frames of concurrent streams' answers leave in one write (see `Gathered`).
                let conn = std::pin::pin!(http2.serve_connection(Gathered::new(io), svc));
                let graceful = |c: Pin<&mut _>| hyper::server::conn::http2::Connection::graceful_shutdown(c);
                tokio::select! {
                    r = drive(conn, graceful, stopped, Some(&goaway)) => r,
                    _ = no_request_within(HEADER_READ_TIMEOUT, &first_request) => {
                        tracing::debug!(%peer, "no HTTP/2 request in time; closing");
                        Ok(())
                    }
                }
            } else {
                let conn = std::pin::pin!(http1.serve_connection(io, svc));
                let graceful = |c: Pin<&mut _>| hyper::server::conn::http1::Connection::graceful_shutdown(c);
                drive(conn, graceful, stopped, None).await
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    let _ = stop.send(true);
    drop(alive);
    tokio::select! {
        _ = all_ended.recv() => {}
        _ = tokio::time::sleep(drain) => {
            tracing::info!(?drain, "open connections did not finish in time; closing them");
        }
    }
    Ok(())
}

/// Asks a connection's client to go elsewhere for its next requests: an HTTP/2 GOAWAY, after which the streams
/// open finish and the connection closes (upstream's `--goaway-chance`, so that clients behind one load-balanced
/// address spread over the replicas). A request extension on HTTP/2 connections.
#[derive(Debug, Clone, Default)]
pub struct Goaway(Arc<tokio::sync::Notify>);

impl Goaway {
    pub fn send(&self) {
        self.0.notify_one();
    }
}

/// Serve `conn` to its end; once `stopped` turns true, or `goaway` is sent, end it gracefully with `graceful`
/// (no new requests; those in flight finish).
async fn drive<C, E>(
    mut conn: Pin<&mut C>,
    graceful: impl Fn(Pin<&mut C>),
    mut stopped: tokio::sync::watch::Receiver<bool>,
    goaway: Option<&Goaway>,
) -> Result<(), E>
where
    C: std::future::Future<Output = Result<(), E>>,
{
    let goaway = async {
        match goaway {
            Some(g) => g.0.notified().await,
            None => std::future::pending().await,
        }
    };
    let stop = stopped.wait_for(|s| *s);
    tokio::pin!(goaway, stop);
    let mut ending = false;
    loop {
        // The connection first, and no random order: it is what every wake-up is almost always for.
        tokio::select! {
            biased;
            r = conn.as_mut() => return r,
            _ = &mut stop, if !ending => {
                graceful(conn.as_mut());
                ending = true;
            }
            _ = &mut goaway, if !ending => {
                graceful(conn.as_mut());
                ending = true;
            }
        }
    }
}

/// Resolves after `limit` unless a request arrived by then (then never).
async fn no_request_within(limit: Duration, first_request: &AtomicBool) {
    tokio::time::sleep(limit).await;
    if first_request.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
}

/// Asks every client for a certificate and accepts any (or none) at the TLS layer, checking only that the client
/// holds the certificate's key. Which CA it chains to is decided per request by the authenticators, against CA
/// bundles that change at run time — so a certificate from an unknown CA yields 401, not a handshake failure, as
/// in Kubernetes.
#[derive(Debug)]
pub struct RequestClientCert {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl RequestClientCert {
    pub fn new() -> Self {
        Self { provider: Arc::new(rustls::crypto::ring::default_provider()) }
    }
}

impl Default for RequestClientCert {
    fn default() -> Self {
        Self::new()
    }
}

impl rustls::server::danger::ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
