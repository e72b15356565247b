//! The panic-recovery filter (k8s.io/apiserver `WithPanicRecovery`), outermost: a handler that panics answers
//! 500 with a Status and the server goes on serving; the panic is logged with the request's method and path.
//!
//! TLS → **panic recovery** → request info → … → endpoints.

use std::any::Any;

use axum::body::Body;
use axum::http::Response;
use axum::response::IntoResponse;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;

/// What a panic carries, and the answer made of it.
type PanicHandler = fn(Box<dyn Any + Send + 'static>) -> Response<Body>;

/// The layer that turns a panic into a 500 Status.
pub fn layer() -> CatchPanicLayer<PanicHandler> {
    CatchPanicLayer::custom(respond as PanicHandler)
}

fn respond(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = what, "a request handler panicked");
    ApiError::internal("This request caused apiserver to panic. Look in the logs for details.").into_response()
}
