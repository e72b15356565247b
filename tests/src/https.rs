//! A throw-away HTTPS (HTTP/1.1) server on a free loopback port, for the stand-ins of the cluster's webhooks
//! (admission, audit): its serving certificate comes from a CA of its own, and a function answers every request.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

use crate::pki::Ca;

/// A running server: its port, the PEM of the CA that signed its certificate, and the task (aborted to stop it).
pub struct Https {
    pub port: u16,
    pub ca_pem: String,
    pub task: tokio::task::JoinHandle<()>,
}

/// Serve on 127.0.0.1 with a certificate for `names` from a new CA named `ca_name`, answering with `answer`.
pub async fn serve<F, Fut>(ca_name: &str, names: &[&str], answer: F) -> Https
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<hyper::Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = Ca::new(ca_name);
    let serving = ca.server(names);
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(serving.cert_pem.as_bytes()).collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let (acceptor, answer) = (acceptor.clone(), answer.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service_fn(answer))
                    .await;
            });
        }
    });
    Https { port, ca_pem: ca.cert_pem, task }
}
