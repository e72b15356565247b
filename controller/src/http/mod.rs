//! HTTP to the databases: [`Http`], what engines use — requests with deadlines and the endpoint's credentials, errors
//! that carry the database's own (sanitised) message, writes retried as the remote-write specification says — over a
//! [`transport::Transport`], and streamed response bodies ([`body`]) read chunk by chunk or line by line in bounded
//! memory.
//!
//! API → controller → engine → **HTTP (this module)** → database.

pub mod body;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::Full;

pub use body::{Body, Lines};
use transport::Transport;

use crate::sanitize;

/// The longest piece of a database's answer held at once when no limit is given (`--max-piece-bytes`).
pub const DEFAULT_PIECE_LIMIT: usize = 32 << 20;
/// Attempts of one write before a restore gives up on it.
const WRITE_ATTEMPTS: u32 = 8;
/// First delay between two attempts of a write; doubled each time, up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// What engines use to talk to a database.
#[derive(Clone)]
pub struct Http {
    transport: Arc<dyn Transport>,
    /// Deadline for the response head, and for each body chunk.
    timeout: Duration,
    /// The `Authorization` header sent with every request (marked sensitive: never printed).
    authorization: Option<HeaderValue>,
    /// The longest line or frame of an answer engines accept (a VictoriaMetrics export line is a whole series).
    pub piece_limit: usize,
    /// Counts the requests that failed (no connection, no answer in time, a non-2xx answer).
    errors: Option<prometheus_client::metrics::counter::Counter>,
}

impl Http {
    pub fn new(transport: Arc<dyn Transport>, timeout: Duration) -> Self {
        Self { transport, timeout, authorization: None, piece_limit: DEFAULT_PIECE_LIMIT, errors: None }
    }

    /// A client without TLS settings or credentials, with the given per-step timeout.
    pub fn plain(timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self::new(transport::Connector::new(timeout)?.default_transport(), timeout))
    }

    /// This client over another transport.
    pub fn with_transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = transport;
        self
    }

    /// This client, sending `value` as the `Authorization` header.
    pub fn with_authorization(mut self, mut value: HeaderValue) -> Self {
        value.set_sensitive(true);
        self.authorization = Some(value);
        self
    }

    /// This client, counting its failed requests in `errors`.
    pub fn with_error_counter(mut self, errors: prometheus_client::metrics::counter::Counter) -> Self {
        self.errors = Some(errors);
        self
    }

    pub async fn get(&self, url: &str) -> anyhow::Result<Body> {
        self.send(Method::GET, url, &[], Bytes::new()).await
    }

    /// Sends a request; a non-2xx answer is a [`StatusError`] quoting the start of the database's reply.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(header::HeaderName, &str)],
        body: Bytes,
    ) -> anyhow::Result<Body> {
        let result = self.send_once(method, url, headers, body).await;
        if result.is_err()
            && let Some(errors) = &self.errors
        {
            errors.inc();
        }
        result
    }

    async fn send_once(
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
        if let Some(authorization) = &self.authorization {
            req = req.header(header::AUTHORIZATION, authorization.clone());
        }
        let req = req.body(Full::new(body)).with_context(|| format!("bad request URL {}", redact(url)))?;
        let resp = tokio::time::timeout(self.timeout, self.transport.send(req))
            .await
            .with_context(|| format!("{method} {}: no answer within {:?}", redact(url), self.timeout))?
            .with_context(|| format!("{method} {}", redact(url)))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let content_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = Body::new(resp.into_body(), self.timeout, content_type);
        if !status.is_success() {
            let text = body.text_prefix(2048).await.unwrap_or_default();
            let text = sanitize::text(text.trim(), sanitize::MAX_QUOTE);
            let message = format!("{method} {}: {status}: {text}", redact(url));
            return Err(StatusError { status, retry_after, message }.into());
        }
        Ok(body)
    }

    /// Sends a write whose answer is small, retried as Prometheus' remote-write specification says: after a 5xx or
    /// 429 answer (waiting `Retry-After` when given) or a failed connection, with exponential backoff, at most
    /// [`WRITE_ATTEMPTS`] times; never after another 4xx, which the same request would get again.
    pub async fn write(
        &self,
        method: Method,
        url: &str,
        headers: &[(header::HeaderName, &str)],
        body: Bytes,
    ) -> anyhow::Result<()> {
        let mut delay = FIRST_RETRY_DELAY;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.send(method.clone(), url, headers, body.clone()).await {
                Ok(answer) => match answer.bytes(64 << 10).await {
                    Ok(_) => return Ok(()),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            let wait = match error.downcast_ref::<StatusError>() {
                Some(s) if s.status.is_server_error() || s.status == StatusCode::TOO_MANY_REQUESTS => {
                    s.retry_after.map_or(delay, |after| after.min(MAX_RETRY_DELAY * 10))
                }
                Some(_) => return Err(error),
                None => delay,
            };
            if attempt >= WRITE_ATTEMPTS {
                return Err(error.context(format!("gave up after {attempt} attempts")));
            }
            tracing::debug!(attempt, retry_in = ?wait, error = %sanitize::message(&format!("{error:#}")), "write failed; retrying");
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    }
}

/// A non-2xx answer, kept typed so callers can tell a client error from a server one.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StatusError {
    pub status: StatusCode,
    /// The answer's `Retry-After`, in seconds.
    pub retry_after: Option<Duration>,
    /// Method, URL (without query) and status, then the start of the answer, sanitised.
    pub message: String,
}

/// The URL without its query (which may be long: selectors, queries) and without credentials.
pub fn redact(url: &str) -> String {
    let path = url.split_once('?').map_or(url, |(path, _)| path);
    match path.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{tail}")
        }
        None => path.to_string(),
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
        assert_eq!(redact("https://user:pw@x:8086/write?u=a&p=b"), "https://x:8086/write");
        assert_eq!(redact("https://user:pw@x"), "https://x");
    }
}
