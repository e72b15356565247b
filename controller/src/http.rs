//! HTTP to the databases: a small [`Transport`] trait (plain http over hyper-util's pooled client today; an https
//! transport can be added beside it) and [`Http`], the helpers engines use: requests with deadlines, errors that
//! carry the database's own message, and streamed response bodies read chunk by chunk or line by line.
//!
//! API → controller → engine → **HTTP (this file)** → database.

use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
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
        Lines {
            body: self,
            chunk: Bytes::new(),
            line: Bytes::new(),
            partial: Vec::new(),
            partial_returned: false,
            max_line,
            done: false,
        }
    }
}

/// Newline-delimited records of a streamed body, in bounded memory. A line inside one chunk is handed out in place;
/// only a line spread over chunks is copied, into one reused buffer.
pub struct Lines {
    body: Body,
    /// The rest of the last chunk read, after the lines already returned.
    chunk: Bytes,
    /// The line returned last, when it lay inside one chunk.
    line: Bytes,
    /// The start of a line spread over chunks (and the line returned last, when `partial_returned`).
    partial: Vec<u8>,
    partial_returned: bool,
    max_line: usize,
    done: bool,
}

impl Lines {
    /// The next non-empty line, without its `\n`; valid until the next call.
    pub async fn next(&mut self) -> anyhow::Result<Option<&[u8]>> {
        if std::mem::take(&mut self.partial_returned) {
            self.partial.clear();
        }
        loop {
            if let Some(pos) = memchr::memchr(b'\n', &self.chunk) {
                let mut head = self.chunk.split_to(pos + 1);
                head.truncate(pos);
                if self.partial.len() + head.len() > self.max_line {
                    bail!("a line of the answer is longer than {} bytes", self.max_line);
                }
                if self.partial.is_empty() {
                    if head.is_empty() {
                        continue;
                    }
                    self.line = head;
                    return Ok(Some(&self.line));
                }
                self.partial.extend_from_slice(&head);
                self.partial_returned = true;
                return Ok(Some(&self.partial));
            }
            if self.partial.len() + self.chunk.len() > self.max_line {
                bail!("a line of the answer is longer than {} bytes", self.max_line);
            }
            self.partial.extend_from_slice(&std::mem::take(&mut self.chunk));
            if self.done {
                if self.partial.is_empty() {
                    return Ok(None);
                }
                self.partial_returned = true;
                return Ok(Some(&self.partial));
            }
            match self.body.chunk().await? {
                Some(chunk) => self.chunk = chunk,
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

    /// A body that yields `chunks`, as a read-ahead one does.
    fn body_of(chunks: &[&str]) -> Body {
        let (tx, rx) = tokio::sync::mpsc::channel(chunks.len() + 1);
        for c in chunks {
            tx.try_send(Ok(Some(Bytes::copy_from_slice(c.as_bytes())))).unwrap();
        }
        tx.try_send(Ok(None)).unwrap();
        let reader = AbortOnDrop(tokio::spawn(async {}));
        Body {
            source: Source::Ahead { chunks: rx, _reader: reader },
            timeout: Duration::from_secs(1),
            content_type: None,
        }
    }

    async fn all_lines(chunks: &[&str], max_line: usize) -> anyhow::Result<Vec<String>> {
        let mut lines = body_of(chunks).lines(max_line);
        let mut out = Vec::new();
        while let Some(line) = lines.next().await? {
            out.push(String::from_utf8(line.to_vec())?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn lines_inside_and_across_chunks() {
        let want = ["ab", "c", "defgh", "ij", "k"];
        for chunks in [
            &["ab\nc\ndefgh\nij\nk"][..],
            &["ab\nc\nde", "fg", "h\nij\n", "k"],
            &["a", "b", "\n", "c\n", "\n\ndefgh", "\nij\nk\n"],
            &["ab\n\nc", "\ndefgh\n", "ij", "\nk", "\n\n"],
        ] {
            assert_eq!(all_lines(chunks, 10).await.unwrap(), want, "{chunks:?}");
        }
        assert!(all_lines(&[], 10).await.unwrap().is_empty());
        assert!(all_lines(&["\n\n", "\n"], 10).await.unwrap().is_empty());
        assert_eq!(all_lines(&["12345", "678\n"], 8).await.unwrap(), ["12345678"]);
        for chunks in [&["12345", "6789\n"][..], &["123456789\n"], &["1234", "56789"]] {
            let err = all_lines(chunks, 8).await.unwrap_err();
            assert!(err.to_string().contains("longer than 8 bytes"), "{err}");
        }
    }
}
