//! The filters every request passes, outermost first (k8s.io/apiserver `endpoints/filters` and
//! `server/filters`, one per file): [`goaway`] (HTTP/2 clients sent elsewhere, by chance) → [`compression`] (gzip
//! for the answers that allow it) → [`audit::init`] (the Audit-ID) → [`panic_recovery`] → [`request_info`] (parse
//! the request once) → [`audit`] → [`metrics`] (count and time it) → [`timeout`] → [`cors`] (browsers' origins) →
//! [`authentication`] (who) → [`impersonation`] (acting as whom) → [`max_in_flight`] (overload) →
//! [`authorization`] (may they).
//! Each takes only what it needs; together they wrap the routes in [`apply`].
//!
//! TLS → **filters** → endpoints (resource requests) or discovery, OpenAPI, health, metrics, version.

pub mod audit;
pub mod authentication;
pub mod authorization;
pub mod compression;
pub mod cors;
pub mod goaway;
pub mod impersonation;
pub mod max_in_flight;
pub mod metrics;
pub mod panic_recovery;
pub mod request_info;
pub mod timeout;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use tower::ServiceExt;

use crate::auth::authn::Authenticator;
use crate::auth::authz::{AlwaysAllowPaths, Authorizer};

/// What the filters need.
pub struct FilterDeps {
    pub authenticator: Arc<dyn Authenticator>,
    pub authorizer: Arc<dyn Authorizer>,
    pub always_allow: Arc<AlwaysAllowPaths>,
    pub metrics: Arc<metrics::RequestMetrics>,
    /// `--request-timeout` (zero: none).
    pub request_timeout: Duration,
    pub max_in_flight: Arc<max_in_flight::MaxInFlight>,
    /// The audit policy and log (None: auditing off; responses still carry an `Audit-ID`).
    pub auditor: Option<Arc<crate::audit::Auditor>>,
    /// API answers may be gzip-encoded (feature gate `APIResponseCompression`).
    pub api_response_compression: bool,
    /// `--goaway-chance`.
    pub goaway_chance: f64,
    /// `--cors-allowed-origins` (None: CORS off).
    pub cors: Option<cors::AllowedOrigins>,
}

/// The rest of the chain after a filter: called once, with the request. A filter is a plain async function of its
/// dependencies, the request and its `next`; [`Chain::serve`] nests them into one future, which costs no allocation
/// per filter (axum's `from_fn` layers boxed a service and a future for each of the nine, and moved them: ~10% of a
/// cached GET's CPU).
pub trait Next: FnOnce(Request) -> <Self as Next>::Future {
    type Future: Future<Output = Response>;
}

impl<F, Fut> Next for F
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    type Future = Fut;
}

/// The filters with what they need, in front of the routes.
struct Chain {
    deps: FilterDeps,
    routes: Router,
}

impl Chain {
    /// Every filter, outermost first, then the routes.
    async fn serve(&self, req: Request) -> Response {
        goaway::maybe(self.deps.goaway_chance, req, move |req| self.outer(req)).await
    }

    /// From [`compression`] to [`timeout`]: what every request passes, whoever sends it.
    async fn outer(&self, req: Request) -> Response {
        let deps = &self.deps;
        compression::compress(deps.api_response_compression, req, move |req| async move {
            audit::init(req, move |req| async move {
                panic_recovery::recover(req, move |req| async move {
                    request_info::parse(req, move |req| async move {
                        audit::audit(deps.auditor.as_ref(), req, move |req| async move {
                            metrics::record(&deps.metrics, req, move |req| async move {
                                timeout::limit(deps.request_timeout, req, move |req| self.inner(req)).await
                            })
                            .await
                        })
                        .await
                    })
                    .await
                })
                .await
            })
            .await
        })
        .await
    }

    /// From [`cors`] to [`authorization`]: who calls and whether they may, then the routes.
    async fn inner(&self, req: Request) -> Response {
        let deps = &self.deps;
        let (authenticator, authorizer) = (deps.authenticator.as_ref(), deps.authorizer.as_ref());
        cors::cors(deps.cors.as_ref(), req, move |req| async move {
            authentication::authenticate(authenticator, &deps.always_allow, req, move |req| async move {
                impersonation::impersonate(authorizer, req, move |req| async move {
                    max_in_flight::limit(&deps.max_in_flight, req, move |req| async move {
                        authorization::authorize(authorizer, req, move |req| async move {
                            match self.routes.clone().oneshot(req).await {
                                Ok(resp) => resp,
                                Err(never) => match never {},
                            }
                        })
                        .await
                    })
                    .await
                })
                .await
            })
            .await
        })
        .await
    }
}

/// `routes` wrapped in the filter chain.
pub fn apply(routes: Router, deps: FilterDeps) -> Router {
    let chain = Arc::new(Chain { deps, routes });
    Router::new().fallback(move |req: Request| {
        let chain = chain.clone();
        async move { chain.serve(req).await }
    })
}
