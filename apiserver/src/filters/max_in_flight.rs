//! The max-in-flight filter (k8s.io/apiserver `WithMaxInFlightLimit`): at most `--max-requests-inflight` (400)
//! read-only and `--max-mutating-requests-inflight` (200) mutating requests are served at once; more get 429 with
//! `Retry-After: 1`. Watches (long-running) are not counted, and `system:masters` (the aggregator's probes and
//! discovery) is never refused, as upstream. 0 disables a limit. The requests held under each limit are the gauge
//! `apiserver_current_inflight_requests{request_kind="readOnly"|"mutating"}`.
//!
//! authentication → **max in flight** → authorization → endpoints.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::gauge::Gauge;
use serde_json::json;
use tokio::sync::Semaphore;

use super::Next;
use crate::auth::authn::{MASTERS_GROUP, UserInfo};
use crate::error::{ApiError, StatusReason};
use crate::request::info::{RequestInfo, Verb};

/// The two limits.
pub struct MaxInFlight {
    read_only: Option<Limit>,
    mutating: Option<Limit>,
}

/// One limit and the gauge of the requests it holds.
struct Limit {
    permits: Semaphore,
    serving: Gauge,
}

impl MaxInFlight {
    /// `serving` is `[readOnly, mutating]`: the gauges the held requests are counted in.
    pub fn new(read_only: usize, mutating: usize, serving: [Gauge; 2]) -> Self {
        let [read_only_serving, mutating_serving] = serving;
        let limit = |n: usize, serving: Gauge| (n > 0).then(|| Limit { permits: Semaphore::new(n), serving });
        Self { read_only: limit(read_only, read_only_serving), mutating: limit(mutating, mutating_serving) }
    }
}

/// Counts a request in its gauge while it is served, however it ends (a client gone, a timeout).
struct Serving<'a>(&'a Gauge);

impl<'a> Serving<'a> {
    fn start(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub async fn limit(limits: &MaxInFlight, req: Request, next: impl Next) -> Response {
    let Some(info) = req.extensions().get::<Arc<RequestInfo>>().cloned() else {
        return ApiError::internal("request info missing").into_response();
    };
    let exempt = req.extensions().get::<Arc<UserInfo>>().is_some_and(|u| u.groups.iter().any(|g| g == MASTERS_GROUP));
    if info.verb == Verb::Watch || exempt {
        return next(req).await;
    }
    let limit = if info.verb.is_mutating() { &limits.mutating } else { &limits.read_only };
    let Some(limit) = limit else {
        return next(req).await;
    };
    match limit.permits.try_acquire() {
        Ok(_permit) => {
            let _serving = Serving::start(&limit.serving);
            next(req).await
        }
        Err(_) => too_many_requests().into_response(),
    }
}

/// Upstream's 429 for a server at its limit.
pub fn too_many_requests() -> ApiError {
    let mut e = ApiError::new(429, StatusReason::TooManyRequests, "Too many requests, please try again later.")
        .with_details(json!({"retryAfterSeconds": 1}));
    e.retry_after = Some(1);
    e
}
