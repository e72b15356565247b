//! Raw HTTPS requests through a `kube::Client` (`client.send`): any method, path, headers, body and credentials,
//! and the status, headers and body of the answer as they came. Watches are read line by line ([`WatchStream`]).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::Value;

use crate::STEP_TIMEOUT;

/// Sends raw requests to one server with one set of credentials.
#[derive(Clone)]
pub struct Http {
    client: kube::Client,
}

/// A complete answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A request being built: see [`Http::request`].
pub struct RequestBuilder {
    client: kube::Client,
    builder: http::request::Builder,
    body: Vec<u8>,
}

impl Http {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    /// Start a request of `method` to `path` (with its query).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        RequestBuilder {
            client: self.client.clone(),
            builder: Request::builder().method(method).uri(path),
            body: Vec::new(),
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await
    }

    /// POST `body` as JSON.
    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path).json(body).send().await
    }

    /// PUT `body` as JSON.
    pub async fn put(&self, path: &str, body: &Value) -> Response {
        self.request(Method::PUT, path).json(body).send().await
    }

    /// PATCH with a JSON merge patch.
    pub async fn merge_patch(&self, path: &str, patch: &Value) -> Response {
        self.request(Method::PATCH, path).body("application/merge-patch+json", patch.to_string()).send().await
    }

    /// PATCH with a JSON patch (RFC 6902).
    pub async fn json_patch(&self, path: &str, patch: &Value) -> Response {
        self.request(Method::PATCH, path).body("application/json-patch+json", patch.to_string()).send().await
    }

    /// DELETE with no body.
    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path).send().await
    }

    /// POST `body` and insist on 201; the created object.
    pub async fn create(&self, path: &str, body: &Value) -> Value {
        self.post(path, body).await.expect_status(201).json()
    }
}

impl RequestBuilder {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }

    /// A JSON body with `Content-Type: application/json`.
    pub fn json(self, body: &Value) -> Self {
        self.body("application/json", body.to_string())
    }

    /// A body of `content_type`.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.builder = self.builder.header(http::header::CONTENT_TYPE, content_type);
        self.body = body.into();
        self
    }

    /// A body without any Content-Type header.
    pub fn raw_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Send and read the whole answer.
    pub async fn send(self) -> Response {
        let stream = self.open().await;
        let body = tokio::time::timeout(STEP_TIMEOUT, stream.body.collect())
            .await
            .expect("the response body did not end in time")
            .expect("read the response body")
            .to_bytes();
        Response { status: stream.status, headers: stream.headers, body }
    }

    /// Send and read the whole answer; an error (no connection, connection dropped, timeout) instead of a panic.
    pub async fn try_send(self) -> Result<Response, String> {
        let req = self.builder.body(Body::from(self.body)).map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(STEP_TIMEOUT, self.client.send(req))
            .await
            .map_err(|_| "no response in time".to_string())?
            .map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(STEP_TIMEOUT, body.collect())
            .await
            .map_err(|_| "the response body did not end in time".to_string())?
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Response { status: parts.status.as_u16(), headers: parts.headers, body })
    }

    /// Send and return the answer's head, with its body to read line by line (a watch).
    pub async fn open(self) -> WatchStream {
        let req = self.builder.body(Body::from(self.body)).expect("a valid request");
        let resp = tokio::time::timeout(STEP_TIMEOUT, self.client.send(req))
            .await
            .expect("no response in time")
            .expect("send the request");
        let (parts, body) = resp.into_parts();
        WatchStream { status: parts.status.as_u16(), headers: parts.headers, body, buf: Vec::new(), ended: false }
    }
}

impl Response {
    /// The body as JSON; panics (showing the body) when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// Panic (showing the body) unless the status is `code`.
    #[track_caller]
    pub fn expect_status(self, code: u16) -> Self {
        assert_eq!(self.status, code, "unexpected status; body: {}", self.text());
        self
    }

    /// Assert the answer is a failure `Status` with `code` and `reason`; the Status.
    #[track_caller]
    pub fn expect_failure(&self, code: u16, reason: &str) -> Value {
        assert_eq!(self.status, code, "unexpected status; body: {}", self.text());
        assert_eq!(self.header("content-type"), "application/json", "a Status is JSON");
        let status = self.json();
        assert_eq!(status["kind"], "Status", "{status}");
        assert_eq!(status["apiVersion"], "v1", "{status}");
        assert_eq!(status["status"], "Failure", "{status}");
        assert_eq!(status["code"], code, "{status}");
        assert_eq!(status["reason"], reason, "{status}");
        assert!(status["message"].as_str().is_some_and(|m| !m.is_empty()), "a Status has a message: {status}");
        status
    }
}

/// A streamed answer: a watch's newline-delimited JSON events.
pub struct WatchStream {
    pub status: u16,
    pub headers: HeaderMap,
    body: Body,
    buf: Vec<u8>,
    ended: bool,
}

impl WatchStream {
    /// The next line (without its `\n`), or None when the stream ended. Panics when nothing comes within
    /// `timeout`.
    pub async fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(String::from_utf8(line[..i].to_vec()).expect("a watch line is UTF-8"));
            }
            if self.ended {
                assert!(
                    self.buf.is_empty(),
                    "the stream ended inside a line: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                return None;
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no complete watch line within {timeout:?}"));
            match frame {
                None => self.ended = true,
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => panic!("reading the watch stream: {e}"),
            }
        }
    }

    /// The next event, parsed from exactly one line, or None at the end of the stream.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<Value> {
        let line = self.next_line(timeout).await?;
        let event: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("a watch line is one JSON object ({e}): {line}"));
        assert!(event["type"].is_string() && event["object"].is_object(), "a watch event: {line}");
        Some(event)
    }

    /// The next event; panics when the stream ends first.
    pub async fn expect_event(&mut self, timeout: Duration) -> Value {
        self.next_event(timeout).await.expect("the watch ended before the expected event")
    }

    /// Every remaining event until the stream ends (which it must within `timeout`).
    pub async fn rest(&mut self, timeout: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut events = Vec::new();
        while let Some(ev) = self.next_event(deadline.saturating_duration_since(tokio::time::Instant::now())).await {
            events.push(ev);
        }
        events
    }
}
