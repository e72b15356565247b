//! `/healthz`, `/livez`, `/readyz` with named checks, `?verbose` and `?exclude=`, as k8s.io/apiserver's healthz.
//!
//! Checks: `ping` (always), `log` (always), the storage check (`etcd` or `storage`: a round trip with a 2 s
//! timeout; in healthz and readyz, not livez, so a storage outage does not restart a server whose discovery and
//! OpenAPI still answer), `shutdown` in readyz (fails once the server is draining), and in readyz the
//! self-diagnosis checks of [`Diagnosis`] (delegated authentication and authorization), whose failures say in
//! plain words what is wrong with the setup.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use backup_storage::Storage;

use crate::request::query::Query;

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

/// Named setup checks with their current problem (None = fine), kept current by whoever can tell.
#[derive(Debug, Default)]
pub struct Diagnosis(Mutex<BTreeMap<&'static str, Option<String>>>);

impl Diagnosis {
    /// Record the state of `check`: `None` when it is fine, else what is wrong and how to fix it. A new problem
    /// is logged once.
    pub fn set(&self, check: &'static str, problem: Option<String>) {
        if let Ok(mut m) = self.0.lock() {
            let previous = m.insert(check, problem.clone());
            if let Some(p) = &problem
                && previous.flatten().as_ref() != Some(p)
            {
                tracing::error!(check, "{p}");
            }
        }
    }

    fn get(&self, check: &str) -> Option<Option<String>> {
        self.0.lock().ok().and_then(|m| m.get(check).cloned())
    }

    fn names(&self) -> Vec<&'static str> {
        self.0.lock().map(|m| m.keys().copied().collect()).unwrap_or_default()
    }
}

/// The health state of the server.
pub struct Health {
    storage: Arc<dyn Storage>,
    storage_check_name: &'static str,
    storage_timeout: Duration,
    shutting_down: AtomicBool,
    diagnosis: Arc<Diagnosis>,
}

impl Health {
    /// `storage` checked under `storage_check_name`, given `storage_timeout` to answer (`--etcd-healthcheck-timeout`).
    pub fn new(
        storage: Arc<dyn Storage>,
        storage_check_name: &'static str,
        storage_timeout: Duration,
        diagnosis: Arc<Diagnosis>,
    ) -> Self {
        Self { storage, storage_check_name, storage_timeout, shutting_down: AtomicBool::new(false), diagnosis }
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
            c.extend(self.diagnosis.names());
        }
        c
    }

    async fn run(&self, check: &str) -> Result<(), String> {
        match check {
            "shutdown" if self.shutting_down.load(Ordering::SeqCst) => Err("server is shutting down".into()),
            c if c == self.storage_check_name => {
                match tokio::time::timeout(self.storage_timeout, self.storage.health()).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("timed out after {:?}", self.storage_timeout)),
                }
            }
            c => match self.diagnosis.get(c) {
                Some(Some(problem)) => Err(problem),
                _ => Ok(()),
            },
        }
    }

    /// Whether a failed check's reason may be shown (the self-diagnosis ones exist to be read).
    fn reveals_reason(&self, check: &str) -> bool {
        self.diagnosis.get(check).is_some()
    }

    /// Serve `/<endpoint>` or `/<endpoint>/<check>`.
    pub async fn serve(&self, endpoint: Endpoint, check: Option<&str>, params: &Query) -> Response {
        let checks = self.checks(endpoint);
        if let Some(one) = check {
            if !checks.contains(&one) {
                return text(StatusCode::NOT_FOUND, "404 page not found\n".into());
            }
            return match self.run(one).await {
                Ok(()) => text(StatusCode::OK, "ok".into()),
                Err(e) => {
                    tracing::warn!(check = one, error = %e, "health check failed");
                    let reason = if self.reveals_reason(one) { e } else { format!("{one} failed") };
                    text(StatusCode::INTERNAL_SERVER_ERROR, format!("internal server error: {reason}\n"))
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
                    if self.reveals_reason(c) {
                        report.push_str(&format!("[-]{c} failed: {e}\n"));
                    } else {
                        report.push_str(&format!("[-]{c} failed: reason withheld\n"));
                    }
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
