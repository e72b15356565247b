//! `/healthz`, `/livez`, `/readyz` with named checks, `?verbose` and `?exclude=`, as k8s.io/apiserver's healthz.
//!
//! Checks: `ping` (always), `log` (always), the storage check (`etcd` or `storage`: a round trip with a 2 s
//! timeout; in healthz and readyz, not livez, so a storage outage does not restart a server whose discovery and
//! OpenAPI still answer), and `shutdown` in readyz (fails once the server is draining).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use backup_storage::Storage;

use crate::rest::params::Params;

/// Which endpoint is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Healthz,
    Livez,
    Readyz,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Self::Healthz => "healthz",
            Self::Livez => "livez",
            Self::Readyz => "readyz",
        }
    }
}

/// The health state of the server.
pub struct Health {
    storage: Arc<dyn Storage>,
    storage_check_name: &'static str,
    shutting_down: AtomicBool,
}

impl Health {
    pub fn new(storage: Arc<dyn Storage>, storage_check_name: &'static str) -> Self {
        Self { storage, storage_check_name, shutting_down: AtomicBool::new(false) }
    }

    /// Mark the server as draining: readyz fails from now on.
    pub fn start_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    fn checks(&self, endpoint: Endpoint) -> Vec<&'static str> {
        let mut c = vec!["ping", "log"];
        if endpoint != Endpoint::Livez {
            c.push(self.storage_check_name);
        }
        if endpoint == Endpoint::Readyz {
            c.push("shutdown");
        }
        c
    }

    async fn run(&self, check: &str) -> Result<(), String> {
        match check {
            "shutdown" if self.shutting_down.load(Ordering::SeqCst) => Err("server is shutting down".into()),
            c if c == self.storage_check_name => {
                match tokio::time::timeout(Duration::from_secs(2), self.storage.health()).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out after 2s".into()),
                }
            }
            _ => Ok(()),
        }
    }

    /// Serve `/<endpoint>` or `/<endpoint>/<check>`.
    pub async fn serve(&self, endpoint: Endpoint, check: Option<&str>, query: Option<&str>) -> Response {
        let params = Params::parse(query);
        let checks = self.checks(endpoint);
        if let Some(one) = check {
            if !checks.contains(&one) {
                return text(StatusCode::NOT_FOUND, "404 page not found\n".into());
            }
            return match self.run(one).await {
                Ok(()) => text(StatusCode::OK, "ok".into()),
                Err(e) => {
                    tracing::warn!(check = one, error = %e, "health check failed");
                    text(StatusCode::INTERNAL_SERVER_ERROR, format!("internal server error: {one} failed\n"))
                }
            };
        }
        let excluded: Vec<&str> = params.get_all("exclude").collect();
        let mut report = String::new();
        let mut failed = false;
        for c in &checks {
            if excluded.contains(c) {
                report.push_str(&format!("[+]{c} excluded: ok\n"));
                continue;
            }
            match self.run(c).await {
                Ok(()) => report.push_str(&format!("[+]{c} ok\n")),
                Err(e) => {
                    tracing::warn!(check = c, error = %e, endpoint = endpoint.name(), "health check failed");
                    failed = true;
                    report.push_str(&format!("[-]{c} failed: reason withheld\n"));
                }
            }
        }
        if failed {
            report.push_str(&format!("{} check failed\n", endpoint.name()));
            return text(StatusCode::INTERNAL_SERVER_ERROR, report);
        }
        if params.get("verbose").is_some() {
            report.push_str(&format!("{} check passed\n", endpoint.name()));
            text(StatusCode::OK, report)
        } else {
            text(StatusCode::OK, "ok".into())
        }
    }
}

fn text(code: StatusCode, body: String) -> Response {
    let mut r = (code, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}
