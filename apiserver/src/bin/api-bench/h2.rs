//! A multiplexed HTTP/2 client for thousands of watches: a few TLS connections to the server, up to
//! [`STREAMS_PER_CONNECTION`] requests on each (the server allows 250), as informers share one connection per
//! client. Credentials and the CA come from the standalone server's kubeconfig.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use super::BoxError;

/// Requests in flight per connection (the server's limit is 250 streams).
pub const STREAMS_PER_CONNECTION: usize = 200;

/// Connections to one server.
pub struct H2 {
    senders: Vec<SendRequest<Full<Bytes>>>,
    authority: String,
    token: String,
    next: AtomicUsize,
}

impl H2 {
    /// Open enough connections for `streams` concurrent requests to the server of `kubeconfig`.
    pub async fn connect(kubeconfig: &Path, streams: usize) -> Result<Arc<Self>, BoxError> {
        let text = std::fs::read_to_string(kubeconfig)?;
        let field = |name: &str| {
            text.lines().find_map(|l| l.trim().strip_prefix(name)).map(|v| v.trim().to_string()).unwrap_or_default()
        };
        let server = field("server:");
        let authority = server.trim_start_matches("https://").to_string();
        let ca_pem = base64::engine::general_purpose::STANDARD.decode(field("certificate-authority-data:"))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca_pem) {
            roots.add(cert?)?;
        }
        let mut tls = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
        let mut senders = Vec::new();
        for _ in 0..streams.div_ceil(STREAMS_PER_CONNECTION).max(1) {
            let tcp = tokio::net::TcpStream::connect(&authority).await?;
            tcp.set_nodelay(true)?;
            let stream = connector.connect(ServerName::try_from("127.0.0.1")?, tcp).await?;
            let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .initial_stream_window_size(1 << 20)
                .initial_connection_window_size(16 << 20)
                .handshake(TokioIo::new(stream))
                .await?;
            tokio::spawn(connection);
            senders.push(sender);
        }
        Ok(Arc::new(Self { senders, authority, token: field("token:"), next: AtomicUsize::new(0) }))
    }

    /// Send a GET of `path` on the next connection in turn; the response with its body still to read.
    pub async fn get(&self, path: &str) -> Result<http::Response<Incoming>, BoxError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) / STREAMS_PER_CONNECTION % self.senders.len();
        let mut sender = self.senders[n].clone();
        sender.ready().await?;
        let req = http::Request::get(format!("https://{}{path}", self.authority))
            .header("authorization", format!("Bearer {}", self.token))
            .body(Full::new(Bytes::new()))?;
        Ok(sender.send_request(req).await?)
    }

    /// GET `path` and read the whole body.
    pub async fn get_body(&self, path: &str) -> Result<Bytes, BoxError> {
        let resp = self.get(path).await?;
        if !resp.status().is_success() {
            return Err(format!("GET {path}: {}", resp.status()).into());
        }
        Ok(resp.into_body().collect().await?.to_bytes())
    }
}

/// The `metadata.resourceVersion` of the object in one watch line, found without parsing the line.
pub fn line_resource_version(line: &[u8]) -> Option<i64> {
    const KEY: &[u8] = b"\"resourceVersion\":\"";
    let at = memchr::memmem::find(line, KEY)? + KEY.len();
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits]).ok()?.parse().ok()
}
