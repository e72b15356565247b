//! HTTP to the databases: a small [`Transport`] trait (plain http over hyper-util's pooled client today; an https
//! transport can be added beside it) and [`Http`], the helpers engines use: requests with deadlines, errors that
//! carry the database's own message, and streamed response bodies read chunk by chunk or line by line.
//!
//! API → controller → engine → **HTTP (this file)** → database.

use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Sends one request and returns the response head, its body unread.
#[async_trait]
pub trait Transport: Send + Sync {
    async fn send(&self, req: Request<Full<Bytes>>) -> anyhow::Result<Response<Incoming>>;
}

/// Plain `http://` over hyper-util's legacy (pooled, keep-alive) client.
pub struct PlainHttp {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl PlainHttp {
    pub fn new(connect_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        Self { client: Client::builder(TokioExecutor::new()).build(connector) }
    }
}

#[async_trait]
impl Transport for PlainHttp {
    async fn send(&self, req: Request<Full<Bytes>>) -> anyhow::Result<Response<Incoming>> {
        if req.uri().scheme_str() != Some("http") {
            bail!("{}: only http:// database URLs are supported by this controller", req.uri());
        }
        Ok(self.client.request(req).await?)
    }
}

/// What engines use to talk to a database.
#[derive(Clone)]
pub struct Http {
    transport: std::sync::Arc<dyn Transport>,
    /// Deadline for the response head, and for each body chunk.
    timeout: Duration,
}

impl Http {
    pub fn new(transport: std::sync::Arc<dyn Transport>, timeout: Duration) -> Self {
        Self { transport, timeout }
    }

    /// A plain-http client with the given per-step timeout.
    pub fn plain(timeout: Duration) -> Self {
        Self::new(std::sync::Arc::new(PlainHttp::new(timeout)), timeout)
    }

    pub async fn get(&self, url: &str) -> anyhow::Result<Body> {
        self.send(Method::GET, url, &[], Bytes::new()).await
    }

    /// Sends a request; a non-2xx answer is an error quoting the start of the database's reply.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(header::HeaderName, &str)],
        body: Bytes,
    ) -> anyhow::Result<Body> {
        let mut req = Request::builder().method(method.clone()).uri(url);
        for (name, value) in headers {
            req = req.header(name, *value);
        }
        let req = req.body(Full::new(body)).with_context(|| format!("bad request URL {url}"))?;
        let resp = tokio::time::timeout(self.timeout, self.transport.send(req))
            .await
            .with_context(|| format!("{method} {}: no answer within {:?}", redact(url), self.timeout))?
            .with_context(|| format!("{method} {}", redact(url)))?;
        let status = resp.status();
        let content_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = Body { source: Source::Direct(resp.into_body()), timeout: self.timeout, content_type };
        if !status.is_success() {
            let text = body.text_prefix(2048).await.unwrap_or_default();
            return Err(StatusError {
                status,
                message: format!("{method} {}: {status}: {}", redact(url), text.trim()),
            }
            .into());
        }
        Ok(body)
    }
}

/// A non-2xx answer, kept typed so callers can tell a client error from a server one.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StatusError {
    pub status: StatusCode,
    pub message: String,
}

/// The URL without its query (which may be long: selectors, queries).
fn redact(url: &str) -> &str {
    url.split_once('?').map_or(url, |(path, _)| path)
}

/// A response body, read as it arrives.
pub struct Body {
    source: Source,
    timeout: Duration,
    content_type: Option<String>,
}

enum Source {
    Direct(Incoming),
    /// Read ahead by a task (see [`Body::read_ahead`]), which is aborted when the body is dropped.
    Ahead {
        chunks: tokio::sync::mpsc::Receiver<anyhow::Result<Option<Bytes>>>,
        _reader: AbortOnDrop,
    },
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Body {
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// Reads ahead in a task, up to `depth` chunks, so the database keeps sending while the caller decodes what
    /// came (on another core); memory stays bounded by `depth` chunks.
    pub fn read_ahead(self, depth: usize) -> Body {
        let Body { source, timeout, content_type } = self;
        let inner = match source {
            Source::Direct(inner) => inner,
            ahead => return Body { source: ahead, timeout, content_type },
        };
        let (tx, rx) = tokio::sync::mpsc::channel(depth);
        let mut direct = Body { source: Source::Direct(inner), timeout, content_type: None };
        let task = tokio::spawn(async move {
            loop {
                let next = direct.chunk().await;
                let end = !matches!(next, Ok(Some(_)));
                if tx.send(next).await.is_err() || end {
                    break;
                }
            }
        });
        Body { source: Source::Ahead { chunks: rx, _reader: AbortOnDrop(task) }, timeout, content_type }
    }

    /// The next data chunk; `None` at the end.
    pub async fn chunk(&mut self) -> anyhow::Result<Option<Bytes>> {
        let inner = match &mut self.source {
            Source::Direct(inner) => inner,
            Source::Ahead { chunks, .. } => return chunks.recv().await.unwrap_or(Ok(None)),
        };
        loop {
            let frame = tokio::time::timeout(self.timeout, inner.frame())
                .await
                .with_context(|| format!("no data from the database within {:?}", self.timeout))?;
            match frame {
                None => return Ok(None),
                Some(frame) => {
                    if let Ok(data) = frame.context("reading the response")?.into_data()
                        && !data.is_empty()
                    {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// Reads the whole body (for small answers), failing beyond `limit` bytes.
    pub async fn bytes(mut self, limit: usize) -> anyhow::Result<Bytes> {
        let mut out = BytesMut::new();
        while let Some(chunk) = self.chunk().await? {
            if out.len() + chunk.len() > limit {
                bail!("answer larger than {limit} bytes");
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    async fn text_prefix(&mut self, limit: usize) -> anyhow::Result<String> {
        let mut out = Vec::new();
        while out.len() < limit {
            match self.chunk().await? {
                Some(chunk) => out.extend_from_slice(&chunk[..chunk.len().min(limit - out.len())]),
                None => break,
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Splits the body into lines, each at most `max_line` bytes.
    pub fn lines(self, max_line: usize) -> Lines {
        Lines { body: self, buf: BytesMut::new(), scanned: 0, max_line, done: false }
    }
}

/// Newline-delimited records of a streamed body, in bounded memory.
pub struct Lines {
    body: Body,
    buf: BytesMut,
    /// How much of `buf` is known to hold no newline.
    scanned: usize,
    max_line: usize,
    done: bool,
}

impl Lines {
    /// The next non-empty line, without its `\n`.
    pub async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        loop {
            if let Some(found) = memchr::memchr(b'\n', &self.buf[self.scanned..]) {
                let pos = self.scanned + found;
                self.scanned = 0;
                let line = self.buf.split_to(pos + 1).freeze().slice(..pos);
                if line.is_empty() {
                    continue;
                }
                return Ok(Some(line));
            }
            if self.done {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                self.scanned = 0;
                return Ok(Some(self.buf.split().freeze()));
            }
            self.scanned = self.buf.len();
            if self.buf.len() > self.max_line {
                bail!("a line of the answer is longer than {} bytes", self.max_line);
            }
            match self.body.chunk().await? {
                Some(chunk) => self.buf.extend_from_slice(chunk.chunk()),
                None => self.done = true,
            }
        }
    }
}

/// `base` (a database URL, maybe with a path prefix) joined with `path` and the encoded `query`.
pub fn url(base: &str, path: &str, query: &[(&str, &str)]) -> String {
    let mut out = format!("{}{path}", base.trim_end_matches('/'));
    if !query.is_empty() {
        out.push('?');
        out.push_str(&form_urlencoded::Serializer::new(String::new()).extend_pairs(query).finish());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            url("http://vm:8428/", "/api/v1/export", &[("match[]", "{a=\"b c\"}")]),
            "http://vm:8428/api/v1/export?match%5B%5D=%7Ba%3D%22b+c%22%7D"
        );
        assert_eq!(url("http://p:9090/prefix", "/api/v1/read", &[]), "http://p:9090/prefix/api/v1/read");
        assert_eq!(redact("http://x/q?db=a"), "http://x/q");
    }
}
