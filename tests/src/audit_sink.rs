//! A loopback HTTPS receiver of audit events (an audit webhook): it records every request's path, `Authorization`
//! header and JSON body, and answers 503 to the first `fail_first` requests, then 200, or always 503.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::pki::Ca;

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub authorization: String,
    pub content_type: String,
    pub body: Value,
    /// What the sink answered.
    pub status: u16,
}

/// How the sink answers.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// 503 to the first this many requests, then 200.
    FailFirst(usize),
    /// 503 to every request.
    AlwaysFail,
}

/// A running sink; it stops when dropped.
pub struct AuditSink {
    pub port: u16,
    /// The CA of its serving certificate (for 127.0.0.1), in PEM.
    pub ca_pem: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AuditSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AuditSink {
    pub async fn start(answer: Answer) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = Ca::new("audit-sink-ca");
        let serving = ca.server(&["127.0.0.1"]);
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(serving.cert_pem.as_bytes()).collect::<Result<_, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, log) = (acceptor.clone(), log.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = service_fn(move |req| receive(req, log.clone(), answer));
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        Self { port, ca_pem: ca.cert_pem, received, task }
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The events of the accepted requests (status 200), in the order received.
    pub fn events(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r.status == 200)
            .flat_map(|r| r.body["items"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

async fn receive(
    req: hyper::Request<hyper::body::Incoming>,
    log: Arc<Mutex<Vec<Received>>>,
    answer: Answer,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (authorization, content_type) = (header("authorization"), header("content-type"));
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut log = log.lock().unwrap();
    let status = match answer {
        Answer::FailFirst(n) if log.len() >= n => 200,
        _ => 503,
    };
    log.push(Received { path, authorization, content_type, body, status });
    Ok(hyper::Response::builder().status(status).body(Full::new(Bytes::new())).unwrap())
}
