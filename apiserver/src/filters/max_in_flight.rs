//! The max-in-flight filter (k8s.io/apiserver `WithMaxInFlightLimit`): at most `--max-requests-inflight` (400)
//! read-only and `--max-mutating-requests-inflight` (200) mutating requests are served at once; more get 429 with
//! `Retry-After: 1`. Watches (long-running) are not counted, and `system:masters` (the aggregator's probes and
//! discovery) is never refused, as upstream. 0 disables a limit.
//!
//! authentication → **max in flight** → authorization → endpoints.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::auth::authn::{MASTERS_GROUP, UserInfo};
use crate::error::{ApiError, StatusReason};
use crate::request::info::{RequestInfo, Verb};

/// The two limits.
pub struct MaxInFlight {
    read_only: Option<Semaphore>,
    mutating: Option<Semaphore>,
}

impl MaxInFlight {
    pub fn new(read_only: usize, mutating: usize) -> Self {
        let limit = |n: usize| (n > 0).then(|| Semaphore::new(n));
        Self { read_only: limit(read_only), mutating: limit(mutating) }
    }
}

pub async fn limit(State(limits): State<Arc<MaxInFlight>>, req: Request, next: Next) -> Response {
    let Some(info) = req.extensions().get::<Arc<RequestInfo>>().cloned() else {
        return ApiError::internal("request info missing").into_response();
    };
    let exempt = req.extensions().get::<Arc<UserInfo>>().is_some_and(|u| u.groups.iter().any(|g| g == MASTERS_GROUP));
    if info.verb == Verb::Watch || exempt {
        return next.run(req).await;
    }
    let semaphore = if info.verb.is_mutating() { &limits.mutating } else { &limits.read_only };
    let Some(semaphore) = semaphore else {
        return next.run(req).await;
    };
    match semaphore.try_acquire() {
        Ok(_permit) => next.run(req).await,
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
