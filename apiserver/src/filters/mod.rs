//! The filters every request passes, outermost first (k8s.io/apiserver `endpoints/filters` and
//! `server/filters`, one per file): [`audit::init`] (the Audit-ID) → [`panic_recovery`] → [`request_info`] (parse
//! the request once) → [`audit`] → [`metrics`] (count and time it) → [`timeout`] → [`authentication`] (who) →
//! [`max_in_flight`] (overload) → [`authorization`] (may they). Each takes only what it needs; together they wrap
//! the routes in [`apply`].
//!
//! TLS → **filters** → endpoints (resource requests) or discovery, OpenAPI, health, metrics, version.

pub mod audit;
pub mod authentication;
pub mod authorization;
pub mod max_in_flight;
pub mod metrics;
pub mod panic_recovery;
pub mod request_info;
pub mod timeout;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware;

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
}

/// `routes` wrapped in the filter chain. (A layer added later runs earlier: the list below is innermost first.)
pub fn apply(routes: Router, deps: FilterDeps) -> Router {
    let authn = authentication::Authentication { authenticator: deps.authenticator, always_allow: deps.always_allow };
    routes
        .layer(middleware::from_fn_with_state(deps.authorizer, authorization::authorize))
        .layer(middleware::from_fn_with_state(deps.max_in_flight, max_in_flight::limit))
        .layer(middleware::from_fn_with_state(Arc::new(authn), authentication::authenticate))
        .layer(middleware::from_fn_with_state(deps.request_timeout, timeout::limit))
        .layer(middleware::from_fn_with_state(deps.metrics, metrics::record))
        .layer(middleware::from_fn_with_state(deps.auditor, audit::audit))
        .layer(middleware::from_fn(request_info::parse))
        .layer(middleware::from_fn(panic_recovery::recover))
        .layer(middleware::from_fn(audit::init))
}
