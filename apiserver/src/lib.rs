//! backup-apiserver: the `backup.extend-k8s.io` aggregated extension API server.
//!
//! Start reading at [`start`], then follow one request down, one file per step:
//!
//! 1. [`tls`]: HTTPS (HTTP/2 and HTTP/1.1) accepts the connection; [`server`] holds the routes.
//! 2. [`filters`], outermost first: [`filters::compression`] gzips large answers for clients that ask;
//!    [`filters::request_info`] parses the request once into a
//!    [`request::info::RequestInfo`] and [`request::query::Query`]; [`filters::metrics`];
//!    [`filters::authentication`], [`filters::impersonation`] and [`filters::authorization`], asking [`auth`]'s
//!    authenticators and authorizers (the whole order is in [`filters`]).
//! 3. [`endpoints`]: the file of the request's verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
//!    `delete_collection`) decodes its [`request::options`] and body and renders through [`endpoints::output`].
//! 4. [`registry`]: the generic store, every verb a method; the kind's [`registry::strategy`] over
//!    `backup_apis::Kind`; the [`fieldmanager`] for managedFields and server-side apply; [`admission`].
//! 5. `backup_storage`: the watch cache over etcd or the embedded store, opened by [`backend`].
//!
//! [`discovery`], [`openapi`], [`health`] and [`metrics`] are served from memory beside the resource endpoints;
//! [`error`] is the `Status` every layer answers with.

// The filter chain is one future nesting every filter's (no allocation per filter): its type is deeper than the
// default limit lets the compiler lay out.
#![recursion_limit = "256"]

pub mod admission;
pub mod audit;
pub mod auth;
pub mod backend;
pub mod discovery;
pub mod encryption;
pub mod endpoints;
pub mod error;
pub mod fieldmanager;
pub mod filters;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod openapi;
pub mod options;
pub mod registry;
pub mod request;
pub mod server;
pub mod standalone;
pub mod tls;
pub mod version;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::filters::FilterDeps;
use crate::filters::max_in_flight::MaxInFlight;
use crate::filters::metrics::RequestMetrics;
use crate::health::Diagnosis;
use crate::metrics::Metrics;
use crate::options::Options;
use crate::server::Routes;

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    /// The serving certificate (PEM), to trust it.
    pub ca_pem: String,
    /// The standalone admin token, when in standalone mode.
    pub admin_token: Option<String>,
    /// The kubeconfig written in standalone mode.
    pub kubeconfig: Option<std::path::PathBuf>,
    health: Arc<health::Health>,
    /// Set to true to stop: the accept loop ends and watches end cleanly.
    stopping: watch::Sender<bool>,
    shutdown_delay: Duration,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Shut down as upstream does on SIGTERM: `/readyz` fails at once; requests are still served for
    /// `--shutdown-delay-duration` (so load balancers and the aggregator stop sending them); then the server stops
    /// accepting, watches end, and in-flight requests finish (bounded by the request timeout).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.health.start_shutdown();
        if !self.shutdown_delay.is_zero() {
            tracing::info!(delay = ?self.shutdown_delay, "shutting down: /readyz fails, still serving");
            tokio::time::sleep(self.shutdown_delay).await;
        }
        let _ = self.stopping.send(true);
        self.task.await.context("server task")?
    }

    /// Wait until the server ends by itself (it does not, unless it fails).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task")?
    }

    /// The server's health state (readyz, draining).
    pub fn health(&self) -> &Arc<health::Health> {
        &self.health
    }
}

/// Start the server described by `opts`; it runs until [`Server::shutdown`].
pub async fn start(opts: Options) -> anyhow::Result<Server> {
    opts.validate()?;
    let metrics = Arc::new(Metrics::default());
    let kinds = backup_apis::kinds();
    let backend = backend::open(&opts, &metrics, &kinds).await?;
    let diagnosis = Arc::new(Diagnosis::default());
    let auth = auth::setup::build(&opts, &diagnosis).await?;
    let admission = auth
        .cluster
        .clone()
        .and_then(|client| admission::start(client, &opts.disable_admission_plugins, diagnosis.clone()));
    let health = Arc::new(health::Health::new(
        backend.storage.clone(),
        backend.check_name,
        opts.etcd_healthcheck_timeout,
        diagnosis,
    ));
    let (stopping, stopping_rx) = watch::channel(false);
    metrics::storage_objects::start(
        backend.storage.clone(),
        &kinds,
        &metrics,
        opts.etcd_count_metric_poll_period,
        stopping_rx.clone(),
    );
    let routes = Arc::new(Routes {
        registry: registry::Registry::new(
            &kinds,
            backend.storage,
            backend.cache,
            admission,
            opts.standalone,
            &stopping_rx,
            registry::store::Tuning {
                min_request_timeout: opts.min_request_timeout,
                delete_collection_workers: opts.delete_collection_workers,
            },
        ),
        discovery: discovery::Discovery::new(&kinds),
        openapi: openapi::OpenApi::new(&kinds),
        health: health.clone(),
        metrics: metrics.clone(),
        version: version::info(),
        authorizer: auth.authorizer.clone(),
        debug_flags: opts.profiling,
    });
    let auditor = audit::setup::from_options(&opts, &metrics).await?.map(Arc::new);
    let max_in_flight = MaxInFlight::new(
        opts.max_requests_inflight,
        opts.max_mutating_requests_inflight,
        metrics.in_flight_gauges(),
        metrics.dropped_counters(),
    );
    let handshake_errors = metrics.tls_handshake_errors.clone();
    let filters = FilterDeps {
        authenticator: auth.authenticator,
        authorizer: auth.authorizer,
        always_allow: auth.always_allow,
        metrics: Arc::new(RequestMetrics::new(metrics, &kinds)),
        request_timeout: opts.request_timeout,
        max_in_flight: Arc::new(max_in_flight),
        auditor,
        api_response_compression: opts.api_response_compression(),
        goaway_chance: opts.goaway_chance,
        cors: filters::cors::AllowedOrigins::new(&opts.cors_allowed_origins)?,
    };
    let app = server::router(routes, filters);
    serve(&opts, app, auth.admin_token, health, stopping, handshake_errors).await
}

/// A listening socket on `addr` (SO_REUSEADDR, as Go's; SO_REUSEPORT with `--permit-port-sharing`).
fn listen(addr: SocketAddr, share_port: bool) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    if share_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Listen, load or make the serving certificate, write the standalone kubeconfig, and serve `app`.
async fn serve(
    opts: &Options,
    app: axum::Router,
    admin_token: Option<String>,
    health: Arc<health::Health>,
    stopping: watch::Sender<bool>,
    handshake_errors: prometheus_client::metrics::counter::Counter,
) -> anyhow::Result<Server> {
    let default_bind =
        if opts.standalone { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
    let bind = opts.bind_address.unwrap_or(default_bind);
    let port = opts.secure_port.unwrap_or(if opts.standalone { 8443 } else { 443 });
    let listener = listen(SocketAddr::new(bind, port), opts.permit_port_sharing)
        .with_context(|| format!("listening on {bind}:{port}"))?;
    let addr = listener.local_addr()?;

    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if !bind.is_unspecified() && !bind.is_loopback() {
        hosts.push(bind.to_string());
    }
    let files = opts.tls_cert_file.as_deref().zip(opts.tls_private_key_file.as_deref());
    let (default_cert, ca_pem) = tls::default_cert(files, opts.cert_dir.as_deref(), &hosts)?;
    let certs = Arc::new(tls::ServingCerts::new(default_cert, opts.tls_sni_cert_key.clone())?);
    certs.watch_files();
    let settings = opts.tls_settings();
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    let config = tls::server_config(Arc::new(tls::RequestClientCert::new()), certs, &settings)?;

    let mut kubeconfig = None;
    if let Some(token) = &admin_token {
        let host = if bind.is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { bind };
        let url = format!("https://{}", SocketAddr::new(host, addr.port()));
        standalone::write_kubeconfig(&opts.write_kubeconfig, &standalone::kubeconfig(&url, &ca_pem, token))?;
        kubeconfig = Some(opts.write_kubeconfig.clone());
    }

    let mut stop = stopping.subscribe();
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    // In-flight requests get their own timeout to finish, and a little more.
    let drain = opts.request_timeout.max(Duration::from_secs(1)) + Duration::from_secs(5);
    let transport =
        tls::Transport { drain, max_concurrent_streams: opts.http2_max_streams_per_connection, handshake_errors };
    let task = tokio::spawn(tls::serve(listener, config, app, stopped, transport));
    let shutdown_delay = opts.shutdown_delay_duration;
    Ok(Server { addr, ca_pem, admin_token, kubeconfig, health, stopping, shutdown_delay, task })
}
