//! The compression filter, outermost: a response its handler marked [`Compressible`] goes out gzip-encoded when the
//! client accepts gzip and the body is large enough, as kube-apiserver sends it (client-go and kubectl ask for gzip
//! on every request, through Go's transport):
//! - API objects, lists, Tables and Statuses (k8s.io/apiserver's `deferredResponseWriter`, feature
//!   `APIResponseCompression`, on by default since 1.16): bodies over 128 KiB, at gzip level 4, with
//!   `Vary: Accept-Encoding`. Watches are never compressed.
//! - The OpenAPI v2 document (kube-openapi's handler behind NYTimes' `gziphandler`): from 512 bytes, at the default
//!   level (6); that handler sends `Vary: Accept-Encoding` whether it compresses or not.
//!
//! A body is compressed as the connection takes it, at most [`INPUT_PER_POLL`] of it per poll, so a large list
//! neither waits whole in memory nor holds a runtime worker for the whole of its compression. Only the body up to the
//! threshold is read before deciding (a list streamed in chunks has no length up front). `Accept-Encoding` is read as
//! RFC 9110 says (`gzip` in any case, `q=0` refuses it): upstream's API path takes only a bare `gzip` token, which is
//! what Go clients send. `HEAD` answers are never compressed (upstream writes no body for them).
//!
//! TLS → **compression** → audit init → panic recovery → request info → … → endpoints.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::Response;
use bytes::{Buf, Bytes, BytesMut};
use flate2::Compression;
use flate2::write::GzEncoder;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame};

use super::Next;

/// How the response it is attached to (as an extension) may be compressed; absent: never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressible {
    /// An API object, list, Table or Status (`SerializeObject`).
    ApiObject,
    /// The OpenAPI v2 document, JSON or protobuf.
    OpenApiV2,
}

impl Compressible {
    /// Whether a body of `len` bytes (or more) is compressed.
    fn compresses(self, len: usize) -> bool {
        match self {
            Self::ApiObject => len > 128 * 1024,
            Self::OpenApiV2 => len >= 512,
        }
    }

    fn level(self) -> Compression {
        match self {
            Self::ApiObject => Compression::new(4),
            Self::OpenApiV2 => Compression::new(6),
        }
    }
}

/// Run the rest of the chain, then compress its response when the request accepts gzip and the response allows it
/// (API answers only when `api_objects`: the feature gate `APIResponseCompression`).
pub async fn compress(api_objects: bool, req: Request, next: impl Next) -> Response {
    let gzip = req.method() != Method::HEAD && accepts_gzip(req.headers());
    let resp = next(req).await;
    if !gzip {
        return resp;
    }
    match resp.extensions().get::<Compressible>().copied() {
        Some(Compressible::ApiObject) if !api_objects => resp,
        Some(how) => gzip_response(resp, how).await,
        None => resp,
    }
}

/// Whether `Accept-Encoding` names `gzip` with a quality above zero.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let codings = headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok());
    codings.flat_map(|v| v.split(',')).any(|coding| {
        let mut parts = coding.split(';').map(str::trim);
        let gzip = parts.next().is_some_and(|name| name.eq_ignore_ascii_case("gzip"));
        let quality = parts.filter_map(|p| p.split_once('=')).find(|(k, _)| k.trim().eq_ignore_ascii_case("q"));
        gzip && quality.is_none_or(|(_, q)| q.trim().parse::<f32>().is_ok_and(|q| q > 0.0))
    })
}

/// `resp` gzip-encoded if its body is large enough for `how`, else as it was.
async fn gzip_response(resp: Response, how: Compressible) -> Response {
    let (mut parts, mut body) = resp.into_parts();
    let mut head = BytesMut::new();
    match body.size_hint().exact() {
        Some(len) if !how.compresses(usize::try_from(len).unwrap_or(usize::MAX)) => {
            return Response::from_parts(parts, body);
        }
        Some(_) => {}
        // A streamed body: read it until it is large enough, or ends (then it goes out whole, with its length).
        None => {
            while !how.compresses(head.len()) {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            head.extend_from_slice(&data);
                        }
                    }
                    Some(Err(e)) => {
                        let read = futures::stream::once(async move { Ok(head.freeze()) });
                        let failed = futures::stream::once(async move { Err(e) });
                        return Response::from_parts(parts, Body::from_stream(futures::StreamExt::chain(read, failed)));
                    }
                    None => return Response::from_parts(parts, Body::from(head.freeze())),
                }
            }
        }
    }
    let headers = &mut parts.headers;
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    if how == Compressible::ApiObject {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    let encoder = Some(GzEncoder::new(Vec::new(), how.level()));
    Response::from_parts(parts, Body::new(GzipBody { input: head.freeze(), rest: Some(body), encoder }))
}

/// At most this much of a body is compressed per poll (~0.1 ms at level 4): the connection's task yields between.
const INPUT_PER_POLL: usize = 64 * 1024;
/// A poll returns once this much compressed output is ready.
const OUTPUT_FRAME: usize = 16 * 1024;

/// A body gzip-encoded as it is read.
struct GzipBody {
    /// The piece being compressed (first, what was read before deciding to compress).
    input: Bytes,
    /// The rest of the body; `None` once it ended.
    rest: Option<Body>,
    /// `None` once the gzip trailer went out (or the body failed).
    encoder: Option<GzEncoder<Vec<u8>>>,
}

impl HttpBody for GzipBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let Some(encoder) = this.encoder.as_mut() else { return Poll::Ready(None) };
        let (mut compressed, mut waiting, mut ended) = (0, false, false);
        while compressed < INPUT_PER_POLL && encoder.get_ref().len() < OUTPUT_FRAME {
            if this.input.is_empty() {
                let Some(rest) = this.rest.as_mut() else {
                    ended = true;
                    break;
                };
                match Pin::new(rest).poll_frame(cx) {
                    // Trailers: none of the compressible bodies has them.
                    Poll::Ready(Some(Ok(frame))) => this.input = frame.into_data().unwrap_or_default(),
                    Poll::Ready(Some(Err(e))) => {
                        this.encoder = None;
                        return Poll::Ready(Some(Err(e)));
                    }
                    Poll::Ready(None) => this.rest = None,
                    Poll::Pending => {
                        waiting = true;
                        break;
                    }
                }
                continue;
            }
            let piece = this.input.len().min(INPUT_PER_POLL - compressed);
            encoder.write_all(&this.input[..piece]).map_err(axum::Error::new)?;
            this.input.advance(piece);
            compressed += piece;
        }
        if ended {
            // The rest of the compressed stream and the gzip trailer.
            let last = this.encoder.take().map(GzEncoder::finish).transpose().map_err(axum::Error::new)?;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(last.unwrap_or_default())))));
        }
        let out = std::mem::take(encoder.get_mut());
        if !out.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
        }
        if !waiting {
            // The budget went on input the encoder still holds: come back after the others had their turn.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::io::Read;

    use axum::http::StatusCode;
    use flate2::read::GzDecoder;

    use super::*;

    fn headers(accept_encoding: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in accept_encoding {
            h.append(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn gzip_is_accepted_when_named_with_a_quality_above_zero() {
        for yes in [
            &["gzip"][..],
            &["gzip, deflate, br"],
            &["br;q=1.0, GZip;q=0.5"],
            &["identity", "gzip"],
            &[" gzip ; q = 1"],
        ] {
            assert!(accepts_gzip(&headers(yes)), "{yes:?}");
        }
        for no in [&[][..], &[""], &["deflate"], &["gzip;q=0"], &["gzip;q=0.0, br"], &["gzip;q=x"], &["x-gzip"], &["*"]]
        {
            assert!(!accepts_gzip(&headers(no)), "{no:?}");
        }
    }

    fn marked(body: Body, how: Compressible) -> Response {
        let mut resp = Response::new(body);
        *resp.status_mut() = StatusCode::OK;
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp.extensions_mut().insert(how);
        resp
    }

    /// A body of `len` bytes of JSON-like text, in pieces of `piece` bytes.
    fn streamed(len: usize, piece: usize) -> (Body, Vec<u8>) {
        let whole: Vec<u8> = (0..len).map(|i| b"{\"name\":\"item-0123456789\"},"[i % 27]).collect();
        let pieces: Vec<Bytes> = whole.chunks(piece).map(Bytes::copy_from_slice).collect();
        let body = Body::from_stream(futures::stream::iter(pieces.into_iter().map(Ok::<_, Infallible>)));
        (body, whole)
    }

    async fn bytes(resp: Response) -> Bytes {
        resp.into_body().collect().await.unwrap().to_bytes()
    }

    fn gunzip(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GzDecoder::new(b).read_to_end(&mut out).unwrap();
        out
    }

    /// Upstream compresses an API body larger than 128 KiB, not one of exactly 128 KiB; the OpenAPI document from
    /// 512 bytes. Whole bodies and streamed ones alike.
    #[tokio::test]
    async fn bodies_are_compressed_above_the_threshold_only() {
        let cases = [
            (Compressible::ApiObject, 128 * 1024, false),
            (Compressible::ApiObject, 128 * 1024 + 1, true),
            (Compressible::OpenApiV2, 511, false),
            (Compressible::OpenApiV2, 512, true),
        ];
        for (how, len, compressed) in cases {
            for streamed_in in [None, Some(1000), Some(64 * 1024)] {
                let (body, whole) = match streamed_in {
                    Some(piece) => streamed(len, piece),
                    None => {
                        let (_, whole) = streamed(len, len);
                        (Body::from(whole.clone()), whole)
                    }
                };
                let resp = gzip_response(marked(body, how), how).await;
                let what = format!("{how:?} {len} bytes in pieces of {streamed_in:?}");
                let encoding = resp.headers().get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap().to_string());
                let vary: Vec<_> = resp.headers().get_all(header::VARY).iter().collect();
                if compressed {
                    assert_eq!(encoding.as_deref(), Some("gzip"), "{what}");
                    assert!(resp.headers().get(header::CONTENT_LENGTH).is_none(), "{what}");
                    let expected_vary: &[&str] =
                        if how == Compressible::ApiObject { &["Accept-Encoding"] } else { &[] };
                    assert_eq!(vary, expected_vary, "{what}");
                    let body = bytes(resp).await;
                    assert!(body.len() < len / 4, "{what}: {} bytes compressed", body.len());
                    assert!(gunzip(&body) == whole, "{what}: the body decompresses to what it was");
                } else {
                    assert_eq!(encoding, None, "{what}");
                    assert!(vary.is_empty(), "{what}");
                    assert_eq!(resp.body().size_hint().exact(), Some(len as u64), "{what}: sent with its length");
                    assert!(bytes(resp).await == whole, "{what}");
                }
            }
        }
    }

    /// A large body is compressed over many polls, none taking more than [`INPUT_PER_POLL`] of it: a poll whose
    /// input all stayed in the encoder asks to be polled again instead of going on.
    #[tokio::test]
    async fn a_large_body_is_compressed_a_piece_per_poll() {
        let (body, whole) = streamed(4 << 20, 1 << 20);
        let mut body = gzip_response(marked(body, Compressible::ApiObject), Compressible::ApiObject).await.into_body();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let (mut polls, mut out) = (0, Vec::new());
        loop {
            polls += 1;
            assert!(polls < 10_000, "the body never ends");
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(frame)) => out.extend_from_slice(&frame.unwrap().into_data().unwrap()),
                Poll::Ready(None) => break,
                Poll::Pending => {}
            }
        }
        assert!(polls > (4 << 20) / INPUT_PER_POLL, "{polls} polls");
        assert!(gunzip(&out) == whole);
    }

    /// Responses without the mark, `HEAD` requests, clients that do not accept gzip and, with the feature gate off,
    /// API answers get the body as it was.
    #[tokio::test]
    async fn only_marked_responses_to_clients_accepting_gzip_are_compressed() {
        let large = || Body::from(vec![b'a'; 256 * 1024]);
        let request = |method: Method, accept: &str| {
            let mut req = Request::new(Body::empty());
            *req.method_mut() = method;
            if !accept.is_empty() {
                req.headers_mut().insert(header::ACCEPT_ENCODING, HeaderValue::from_str(accept).unwrap());
            }
            req
        };
        let encoding = |resp: &Response| resp.headers().get(header::CONTENT_ENCODING).is_some();
        let api = |_| async { marked(large(), Compressible::ApiObject) };
        let openapi = |_| async { marked(large(), Compressible::OpenApiV2) };
        assert!(encoding(&compress(true, request(Method::GET, "gzip"), api).await));
        let resp = compress(true, request(Method::GET, "gzip"), |_| async { Response::new(large()) }).await;
        assert!(!encoding(&resp), "not marked");
        assert!(!encoding(&compress(true, request(Method::HEAD, "gzip"), api).await), "HEAD");
        assert!(!encoding(&compress(true, request(Method::GET, ""), api).await), "no Accept-Encoding");
        // APIResponseCompression=false: API answers as they are; the OpenAPI document still compressed.
        assert!(!encoding(&compress(false, request(Method::GET, "gzip"), api).await), "the gate off");
        assert!(encoding(&compress(false, request(Method::GET, "gzip"), openapi).await), "OpenAPI, the gate off");
    }
}
