//! The metrics filter (k8s.io/apiserver `endpoints/metrics` instrumentation): counts every request by verb, dry
//! run, group, version, resource, subresource, scope and code, times it, counts the requests an inner filter
//! ended in self-defence (`apiserver_request_terminations_total`), keeps open watches in a gauge, and sets the
//! headers every response carries.
//!
//! Label values come only from fixed sets, so no client can grow `/metrics`: the resource labels are kept only for
//! resources this server serves and requests that were authenticated (anything else — a 401, an unknown group,
//! resource or subresource — is counted under empty labels), `dry_run` is `All` or empty, verbs and scopes are
//! enums, codes are the ones the server answers with.
//!
//! request info → **metrics** → timeout → authentication → authorization → endpoints.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper::body::Body as _;

use backup_apis::Kind;

use super::Next;
use super::max_in_flight::Terminated;
use crate::error::ApiError;
use crate::metrics::{DurationLabels, Metrics, RequestLabels, RouteLabels, TerminationLabels, WatchLabels};
use crate::request::info::{RequestInfo, Subresource, Verb};
use crate::request::query::Query;

/// The metrics, and the resources whose names may become label values.
pub struct RequestMetrics {
    pub metrics: Arc<Metrics>,
    served: Vec<Served>,
}

struct Served {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    status: bool,
}

impl RequestMetrics {
    pub fn new(metrics: Arc<Metrics>, kinds: &[Arc<dyn Kind>]) -> Self {
        let served = kinds
            .iter()
            .map(|k| {
                let r = k.resource();
                Served {
                    group: r.group,
                    version: r.version,
                    plural: r.plural,
                    kind: r.kind,
                    status: r.status_subresource,
                }
            })
            .collect();
        Self { metrics, served }
    }

    /// The served resource the request is for (its group, version, resource and subresource served here), if any.
    fn served(&self, info: &RequestInfo) -> Option<&Served> {
        self.served.iter().find(|s| {
            s.group == info.api_group
                && s.version == info.api_version
                && s.plural == info.resource
                && match info.subresource {
                    Subresource::Main => true,
                    Subresource::Status => s.status,
                    Subresource::Other(_) => false,
                }
        })
    }
}

pub async fn record(rm: &RequestMetrics, req: Request, next: impl Next) -> Response {
    let start = Instant::now();
    let (Some(info), Some(query)) =
        (req.extensions().get::<Arc<RequestInfo>>().cloned(), req.extensions().get::<Arc<Query>>().cloned())
    else {
        return ApiError::internal("request info missing").into_response();
    };
    let is_apply = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/apply-patch"));
    let mut resp = next(req).await;
    tracing::debug!(verb = %info.verb, path = %info.path, code = resp.status().as_u16(), "request");
    let h = resp.headers_mut();
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    }
    let verb = metrics_verb(&info, is_apply);
    let code = resp.status().as_u16();
    let served = if info.is_resource_request && code != 401 { rm.served(&info) } else { None };
    let scope = match served {
        None => "",
        Some(_) if !info.name.is_empty() => "resource",
        Some(_) if !info.namespace.is_empty() => "namespace",
        Some(_) => "cluster",
    };
    let (resource, group, version, subresource) = match served {
        Some(s) => (s.plural, s.group, s.version, if info.subresource == Subresource::Status { "status" } else { "" }),
        None => ("", "", "", ""),
    };
    let dry_run = if served.is_some() && query.get_all("dryRun").any(|v| v == "All") { "All" } else { "" };
    let metrics = &rm.metrics;
    metrics
        .requests
        .get_or_create(&RequestLabels {
            verb,
            dry_run,
            group,
            version,
            resource,
            subresource,
            scope,
            component: "apiserver",
            code,
        })
        .inc();
    if resp.extensions().get::<Terminated>().is_some() {
        let labels =
            TerminationLabels { verb, group, version, resource, subresource, scope, component: "apiserver", code };
        metrics.terminations.get_or_create(&labels).inc();
    }
    let durations = DurationLabels { verb, group, version, resource, subresource, scope };
    let route = RouteLabels { verb, group, version, resource, subresource, scope, component: "apiserver" };
    if info.verb == Verb::Watch && resp.status().is_success() {
        // Count the watch as open until its body is dropped.
        let kind = served.map_or("", |s| s.kind);
        let labels = WatchLabels { group, version, kind };
        let watchers = metrics.watchers.get_or_create(&labels).clone();
        let longrunning = metrics.longrunning.get_or_create(&route).clone();
        let guard = WatchGuard::open([watchers, longrunning]);
        // Each data frame of a watch is one event line (endpoints/watch).
        let mut events = metrics.watch_events.open(labels);
        let (parts, body) = resp.into_parts();
        let body = body.map_frame(move |f| {
            let _ = &guard;
            if let Some(line) = f.data_ref() {
                events.record(line.len());
            }
            f
        });
        return Response::from_parts(parts, Body::new(body));
    }
    metrics.durations.get_or_create(&durations).observe(start.elapsed().as_secs_f64());
    let sizes = metrics.response_sizes.get_or_create(&route).clone();
    if let Some(size) = resp.body().size_hint().exact() {
        if size > 0 {
            sizes.observe(size as f64);
        }
        return resp;
    }
    // A streamed answer (a list in chunks): its size is known once it has all been sent.
    let mut counted = SentBytes { bytes: 0, sizes };
    let (parts, body) = resp.into_parts();
    let body = body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            counted.add(data.len());
        }
        frame
    });
    Response::from_parts(parts, Body::new(body))
}

/// The bytes of a streamed answer, observed in `apiserver_response_sizes` when the body is dropped (sent whole, or
/// its client gone).
struct SentBytes {
    bytes: u64,
    sizes: prometheus_client::metrics::histogram::Histogram,
}

impl SentBytes {
    fn add(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
    }
}

impl Drop for SentBytes {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.sizes.observe(self.bytes as f64);
        }
    }
}

/// Counts an open watch in its gauges until it is dropped.
struct WatchGuard([prometheus_client::metrics::gauge::Gauge; 2]);

impl WatchGuard {
    fn open(gauges: [prometheus_client::metrics::gauge::Gauge; 2]) -> Self {
        for gauge in &gauges {
            gauge.inc();
        }
        Self(gauges)
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        for gauge in &self.0 {
            gauge.dec();
        }
    }
}

/// Upstream's verb label: GET, LIST, WATCH, POST, PUT, PATCH, APPLY, DELETE, DELETECOLLECTION; for non-resource
/// requests the HTTP method.
fn metrics_verb(info: &RequestInfo, is_apply: bool) -> &'static str {
    match info.verb {
        Verb::Get => "GET",
        Verb::List => "LIST",
        Verb::Watch => "WATCH",
        Verb::Create | Verb::Post => "POST",
        Verb::Update | Verb::Put => "PUT",
        Verb::Patch if is_apply && info.is_resource_request => "APPLY",
        Verb::Patch => "PATCH",
        Verb::Delete | Verb::UnsafeDeleteIgnoreReadErrors => "DELETE",
        Verb::Impersonate => "IMPERSONATE",
        Verb::DeleteCollection => "DELETECOLLECTION",
        Verb::Head => "HEAD",
        Verb::Options => "OPTIONS",
    }
}
