//! A loopback HTTPS receiver of audit events (an audit webhook): it records every request's path, `Authorization`
//! header and JSON body, and answers 503 to the first `fail_first` requests, then 200, or always 503.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

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
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let server =
            crate::https::serve("audit-sink-ca", &["127.0.0.1"], move |req| receive(req, log.clone(), answer)).await;
        Self { port: server.port, ca_pem: server.ca_pem, received, task: server.task }
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
