//! The panic-recovery filter (k8s.io/apiserver `WithPanicRecovery`), near the outside: a handler that panics answers
//! 500 with a Status and the server goes on serving; the panic is logged with the request's method and path, as
//! upstream's "apiserver panic'd" line.
//!
//! TLS → compression → audit init → **panic recovery** → request info → … → endpoints.

use std::any::Any;
use std::panic::AssertUnwindSafe;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;

use super::Next;
use crate::error::ApiError;

/// Run the rest of the chain; a panic anywhere in it (when the inner services are called or polled) becomes a 500.
pub async fn recover(req: Request, next: impl Next) -> Response {
    // Both are cheap to keep: the method is an enum for the standard ones, the URI shares the request's bytes.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    match AssertUnwindSafe(next(req)).catch_unwind().await {
        Ok(resp) => resp,
        Err(panic) => {
            tracing::error!(%method, path = %uri.path(), panic = message(panic.as_ref()), "apiserver panic'd");
            ApiError::internal("This request caused apiserver to panic. Look in the logs for details.").into_response()
        }
    }
}

/// What a panic says: `panic!` with a literal carries a `&str`, with a format a `String`.
fn message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)")
}
