//! The max-in-flight filter (k8s.io/apiserver `WithMaxInFlightLimit`): at most `--max-requests-inflight` (400)
//! read-only and `--max-mutating-requests-inflight` (200) mutating requests are served at once; more get 429 with
//! `Retry-After: 1`. Watches (long-running) are not counted, and `system:masters` (the aggregator's probes and
//! discovery) is never refused, as upstream. 0 disables a limit. The requests held under each limit are the gauge
//! `apiserver_current_inflight_requests{request_kind="readOnly"|"mutating"}`, those refused the counter
//! `apiserver_dropped_requests_total{request_kind}`; a refusal is marked [`Terminated`] for
//! `apiserver_request_terminations_total`.
//!
//! authentication → **max in flight** → authorization → endpoints.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
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

/// One limit, the gauge of the requests it holds and the counter of those it refused.
struct Limit {
    permits: Semaphore,
    serving: Gauge,
    dropped: Counter,
}

impl MaxInFlight {
    /// `serving` and `dropped` are `[readOnly, mutating]`: the gauges the held requests are counted in, the
    /// counters of the refused ones.
    pub fn new(read_only: usize, mutating: usize, serving: [Gauge; 2], dropped: [Counter; 2]) -> Self {
        let [read_only_serving, mutating_serving] = serving;
        let [read_only_dropped, mutating_dropped] = dropped;
        let limit = |n: usize, serving: Gauge, dropped: Counter| {
            (n > 0).then(|| Limit { permits: Semaphore::new(n), serving, dropped })
        };
        Self {
            read_only: limit(read_only, read_only_serving, read_only_dropped),
            mutating: limit(mutating, mutating_serving, mutating_dropped),
        }
    }
}

/// Marks a response the server gave in self-defence (this filter's 429, the timeout filter's 504): the metrics
/// filter counts it in `apiserver_request_terminations_total`.
#[derive(Debug, Clone, Copy)]
pub struct Terminated;

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
        Err(_) => {
            limit.dropped.inc();
            let mut resp = too_many_requests().into_response();
            resp.extensions_mut().insert(Terminated);
            resp
        }
    }
}

/// Upstream's 429 for a server at its limit.
pub fn too_many_requests() -> ApiError {
    let mut e = ApiError::new(429, StatusReason::TooManyRequests, "Too many requests, please try again later.")
        .with_details(json!({"retryAfterSeconds": 1}));
    e.retry_after = Some(1);
    e
}
