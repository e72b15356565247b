//! The timeout filter (k8s.io/apiserver `WithTimeoutForNonLongRunningRequests`): a request that is not a watch gets
//! `--request-timeout` (default 60 s; a smaller `?timeout=` wins) to answer, else 504 with a Timeout Status. The
//! handler is dropped at the deadline, so what it holds is freed. The 504 is marked [`Terminated`].
//!
//! request info → metrics → **timeout** → authentication → max in flight → authorization → endpoints.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};

use super::Next;
use super::max_in_flight::Terminated;
use crate::error::{ApiError, StatusReason};
use crate::options::parse_duration;
use crate::request::info::{RequestInfo, Verb};
use crate::request::query::Query;

pub async fn limit(request_timeout: Duration, req: Request, next: impl Next) -> Response {
    let info = req.extensions().get::<Arc<RequestInfo>>().cloned();
    if request_timeout.is_zero() || info.as_ref().is_some_and(|i| i.verb == Verb::Watch) {
        return next(req).await;
    }
    let asked =
        req.extensions().get::<Arc<Query>>().and_then(|q| q.get("timeout")).and_then(|t| parse_duration(t).ok());
    let timeout = asked.filter(|t| !t.is_zero() && *t < request_timeout).unwrap_or(request_timeout);
    match tokio::time::timeout(timeout, next(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            if let Some(info) = info {
                tracing::warn!(verb = %info.verb, path = %info.path, ?timeout, "request timed out");
            }
            let mut resp = ApiError::new(
                504,
                StatusReason::Timeout,
                format!("Timeout: request did not complete within requested timeout {}s", timeout.as_secs()),
            )
            .with_details(serde_json::json!({}))
            .into_response();
            resp.extensions_mut().insert(Terminated);
            resp
        }
    }
}
