//! The controller's own HTTP endpoints (`--metrics-bind-address`): `/metrics` for Prometheus, `/healthz` (the
//! process answers: the liveness probe) and `/readyz` (it has reached the API server: the readiness probe). Plain
//! HTTP without authentication: what it shows is counts and object names, and config/'s NetworkPolicy admits only
//! a labelled monitoring namespace and the kubelet's probes.
//!
//! Prometheus, kubelet → **serve (this file)** → metrics, health.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// What the probes report.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Ready: the API server answered (a standby that answers is ready too: it is there to take over).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Binds `addr` and serves until `stop`; the bound address (for port 0).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Shared { metrics, health });
    tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(e) = server.await {
            tracing::warn!(error = %e, "the metrics and health endpoint stopped");
        }
    });
    Ok(bound)
}

async fn metrics_text(State(shared): State<Shared>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], shared.metrics.encode())
        .into_response()
}

async fn readyz(State(shared): State<Shared>) -> Response {
    match shared.health.is_ready() {
        true => (StatusCode::OK, "ok").into_response(),
        false => (StatusCode::SERVICE_UNAVAILABLE, "the API server has not answered yet").into_response(),
    }
}
