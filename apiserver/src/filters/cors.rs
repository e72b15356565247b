//! The CORS filter (k8s.io/apiserver `WithCORS`, `--cors-allowed-origins`): a request whose `Origin` matches one
//! of the patterns (regular expressions, as upstream's) gets upstream's `Access-Control-*` headers, and a preflight
//! `OPTIONS` from such an origin is answered 204 before authentication; anything else passes untouched. Off without
//! the flag.
//!
//! timeout → **cors** → authentication → ….

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use regex::RegexSet;

use super::Next;

/// The longest `Origin` matched; a longer one is not allowed.
const MAX_ORIGIN_BYTES: usize = 4096;

/// The origins allowed.
#[derive(Debug, Clone)]
pub struct AllowedOrigins(RegexSet);

impl AllowedOrigins {
    /// The patterns of `--cors-allowed-origins` (none: CORS off); a pattern that does not compile is an error.
    pub fn new(patterns: &[String]) -> anyhow::Result<Option<Self>> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let set = regex::RegexSetBuilder::new(patterns)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| anyhow::anyhow!("--cors-allowed-origins: {e}"))?;
        Ok(Some(Self(set)))
    }

    fn allows(&self, origin: &str) -> bool {
        origin.len() <= MAX_ORIGIN_BYTES && self.0.is_match(origin)
    }
}

pub async fn cors(allowed: Option<&AllowedOrigins>, req: Request, next: impl Next) -> Response {
    let origin = allowed.and_then(|allowed| {
        let origin = req.headers().get(header::ORIGIN)?;
        allowed.allows(origin.to_str().ok()?).then(|| origin.clone())
    });
    let Some(origin) = origin else { return next(req).await };
    let mut resp =
        if req.method() == Method::OPTIONS { StatusCode::NO_CONTENT.into_response() } else { next(req).await };
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE, PATCH"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(
            "Content-Type, Content-Length, Accept-Encoding, X-CSRF-Token, Authorization, X-Requested-With, \
             If-Modified-Since",
        ),
    );
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Date"));
    h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(AllowedOrigins::new(&[]).unwrap().is_none());
        let allowed =
            AllowedOrigins::new(&[r"^https://ui\.example\.com$".into(), "//localhost(:|$)".into()]).unwrap().unwrap();
        assert!(allowed.allows("https://ui.example.com"));
        assert!(allowed.allows("http://localhost:3000"));
        assert!(!allowed.allows("https://evil.example.com"));
        assert!(!allowed.allows(&format!("http://localhost:{}", "1".repeat(MAX_ORIGIN_BYTES))));
        assert!(AllowedOrigins::new(&["(".into()]).unwrap_err().to_string().contains("--cors-allowed-origins"));
    }
}
