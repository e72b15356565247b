//! HTTP side of the documents, as kube-openapi's `handler` (v2) and `handler3` (v3) serve them through Go's
//! `http.ServeContent`: `ETag` = quoted uppercase hex SHA-512 of the body, `If-None-Match` (then
//! `If-Modified-Since`) → 304, `Last-Modified`, `Vary: Accept`; JSON (and v2 in protobuf), else 406.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use jiff::Timestamp;
use jiff::fmt::rfc2822::{DateTimeParser, DateTimePrinter};
use serde_json::{Value, json};
use sha2::{Digest, Sha512};

/// A serialized document and its hash.
pub(super) struct Served {
    pub body: Bytes,
    /// Uppercase hex SHA-512 of `body`: the `?hash=` of v3 and, quoted, the ETag.
    pub hash: String,
    etag: HeaderValue,
    content_type: &'static str,
}

impl Served {
    /// A document in JSON.
    pub fn new(doc: &Value) -> Self {
        Self::from_bytes(serde_json::to_vec(doc).unwrap_or_default(), "application/json")
    }

    /// A document already serialized as `content_type`.
    pub fn from_bytes(body: Vec<u8>, content_type: &'static str) -> Self {
        let body = Bytes::from(body);
        let hash = hex::encode_upper(Sha512::digest(&body));
        let etag = header_value(&format!("\"{hash}\""));
        Self { body, hash, etag, content_type }
    }
}

/// A header value from text known to be valid (hex, dates, paths).
pub(super) fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub(super) fn http_date(t: Timestamp) -> HeaderValue {
    header_value(&DateTimePrinter::new().timestamp_to_rfc9110_string(&t).unwrap_or_default())
}

/// Which of `offered` (in the server's order) the Accept header picks, as kube-openapi's handler does: clauses by
/// quality, then specificity (a stable sort), and the first clause matching any offered type wins; an absent or
/// empty header means `*/*`; clauses with `q=0` are refusals. None: 406.
pub(super) fn negotiate<'a>(headers: &HeaderMap, offered: &[&'a str]) -> Option<&'a str> {
    let accept: Vec<&str> = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect();
    let accept = accept.join(",");
    let accept = if accept.trim().is_empty() { "*/*".to_string() } else { accept };
    let mut clauses: Vec<(String, String, f32)> = accept
        .split(',')
        .filter_map(|clause| {
            let mut parts = clause.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let (ty, sub) = media.split_once('/').map(|(t, s)| (t.to_string(), s.to_string()))?;
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(1.0, |(_, v)| v.trim().parse::<f32>().unwrap_or(0.0));
            (q > 0.0).then_some((ty, sub, q))
        })
        .collect();
    clauses.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| (a.0 == "*", a.1 == "*").cmp(&(b.0 == "*", b.1 == "*"))));
    clauses.iter().find_map(|(ty, sub, _)| {
        offered.iter().copied().find(|o| {
            let (oty, osub) = o.split_once('/').unwrap_or((o, ""));
            (ty == "*" || ty == oty) && (sub == "*" || sub == osub)
        })
    })
}

/// Whether the Accept header admits JSON.
pub(super) fn accepts_json(headers: &HeaderMap) -> bool {
    negotiate(headers, &["application/json"]).is_some()
}

/// `ServeContent`'s precondition: `If-None-Match` names the ETag (or `*`, weak or strong); without it,
/// `If-Modified-Since` is not before `last_modified`.
pub(super) fn not_modified(headers: &HeaderMap, served: &Served, last_modified: Timestamp) -> bool {
    let inm: Vec<&str> = headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).collect();
    if !inm.is_empty() {
        let ours = served.etag.to_str().unwrap_or_default();
        return inm
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == ours);
    }
    let since = headers.get(header::IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok());
    let since = since.and_then(|s| DateTimeParser::new().parse_timestamp(s.trim()).ok());
    since.is_some_and(|since| last_modified.as_second() <= since.as_second())
}

/// A response with `status`, `headers` and `body`.
pub(super) fn response(status: StatusCode, headers: HeaderMap, body: Bytes) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// A `Status` failure (`{"kind":"Status",…,"code":N}`).
pub(super) fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    response(code, headers, Bytes::from(serde_json::to_vec(&body).unwrap_or_default()))
}

pub(super) fn not_acceptable() -> Response {
    status(StatusCode::NOT_ACCEPTABLE, "NotAcceptable", "only the following media types are accepted: application/json")
}

pub(super) fn not_found() -> Response {
    status(StatusCode::NOT_FOUND, "NotFound", "the server could not find the requested resource")
}

/// The document with `ETag`, `Vary`, `Last-Modified` and `extra` headers, or 304 when the client has it.
pub(super) fn document(
    served: &Served,
    request: &HeaderMap,
    last_modified: Timestamp,
    mut headers: HeaderMap,
) -> Response {
    headers.insert(header::ETAG, served.etag.clone());
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    if not_modified(request, served, last_modified) {
        return response(StatusCode::NOT_MODIFIED, headers, Bytes::new());
    }
    headers.insert(header::LAST_MODIFIED, http_date(last_modified));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(served.content_type));
    response(StatusCode::OK, headers, served.body.clone())
}

/// 301 to `location` (a stale v3 `?hash=`), with the current ETag.
pub(super) fn moved(served: &Served, location: &str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::LOCATION, header_value(location));
    headers.insert(header::ETAG, served.etag.clone());
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    response(StatusCode::MOVED_PERMANENTLY, headers, Bytes::new())
}
