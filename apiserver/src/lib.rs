//! backup-apiserver: the `backup.extend-k8s.io` aggregated extension API server.
//!
//! The request flow, top to bottom: [`tls`] (HTTPS, HTTP/2) → [`server`] (request info, metrics) → [`auth`]
//! (authn → authz) → [`rest`] (generic REST handlers and store) → the kind's strategy (`backup_apis::Kind`) →
//! `backup_storage` (etcd or the embedded store). [`discovery`], [`openapi`], [`health`] and [`metrics`] are
//! served from memory beside it.

pub mod admission;
pub mod auth;
pub mod discovery;
pub mod error;
pub mod health;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod options;
pub mod request_info;
pub mod rest;
pub mod server;
pub mod standalone;
pub mod tls;
pub mod version;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use backup_storage::Storage;
use backup_storage::embedded::EmbeddedStorage;
use backup_storage::etcd::{EtcdConfig, EtcdStorage};
use tokio::sync::oneshot;

use crate::admission::{Admission, NamespaceLifecycle};
use crate::auth::authn::{Authenticator, Chain, UserInfo};
use crate::auth::authz::{AlwaysAllow, Authorizer, Union};
use crate::auth::delegation::{Overrides, kube_client, probe_reviews, start_configmap_sync};
use crate::auth::token_file::TokenFile;
use crate::auth::webhook::{SubjectAccessReviewAuthorizer, TokenReviewAuthenticator};
use crate::auth::x509::{ClientCertAuthenticator, RequestHeaderAuthenticator, SharedCertAuthConfig};
use crate::health::Diagnosis;
use crate::metrics::{InstrumentedStorage, Metrics};
use crate::options::Options;
use crate::server::AppState;

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
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Stop accepting, drain, and wait for the server to end.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.health.start_shutdown();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
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

async fn open_storage(opts: &Options) -> anyhow::Result<(Arc<dyn Storage>, &'static str)> {
    if !opts.etcd_servers.is_empty() {
        let config = EtcdConfig {
            servers: opts.etcd_servers.clone(),
            cafile: opts.etcd_cafile.clone(),
            certfile: opts.etcd_certfile.clone(),
            keyfile: opts.etcd_keyfile.clone(),
            prefix: opts.etcd_prefix.clone(),
            compaction_interval: opts.etcd_compaction_interval,
            ..EtcdConfig::default()
        };
        let s = EtcdStorage::connect(&config).await.context("connecting to etcd")?;
        return Ok((Arc::new(s), "etcd"));
    }
    if opts.in_memory {
        return Ok((Arc::new(EmbeddedStorage::in_memory().context("opening the in-memory store")?), "storage"));
    }
    let dir = match (&opts.data_dir, opts.standalone) {
        (Some(d), _) => d.clone(),
        (None, true) => "standalone-data".into(),
        (None, false) => anyhow::bail!("no storage: give --etcd-servers, or --data-dir for the embedded store"),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("store.redb");
    let s = tokio::task::spawn_blocking(move || EmbeddedStorage::open(path))
        .await
        .context("opening the embedded store")?
        .context("opening the embedded store")?;
    Ok((Arc::new(s), "storage"))
}

/// Start the server described by `opts`; it runs until [`Server::shutdown`].
pub async fn start(opts: Options) -> anyhow::Result<Server> {
    let (raw_storage, check_name) = open_storage(&opts).await?;
    let metrics = Arc::new(Metrics::default());
    let storage: Arc<dyn Storage> = Arc::new(InstrumentedStorage { inner: raw_storage, metrics: metrics.clone() });
    let kinds = backup_apis::kinds();

    let diagnosis = Arc::new(Diagnosis::default());
    let cert_config = Arc::new(SharedCertAuthConfig::default());
    let overrides = Overrides::from_options(&opts)?;
    // The front proxy's headers first: it is also what strips them from every other request.
    let mut authenticators: Vec<Arc<dyn Authenticator>> = vec![
        Arc::new(RequestHeaderAuthenticator(cert_config.clone())),
        Arc::new(ClientCertAuthenticator(cert_config.clone())),
    ];
    if let Some(path) = &opts.token_auth_file {
        authenticators.push(Arc::new(TokenFile::load(path)?));
    }
    let mut admin_token = None;
    let mut authorizer: Box<dyn Authorizer> = Box::new(AlwaysAllow);
    let mut admission: Option<Arc<dyn Admission>> = None;
    if opts.standalone {
        let token = standalone::random_token();
        authenticators.push(Arc::new(StaticToken { token: token.clone(), user: standalone::admin_user() }));
        admin_token = Some(token);
        cert_config.set(overrides.resolve(None));
    } else {
        let base = opts.kubeconfig.as_deref();
        let client = kube_client(base).await?;
        let authn_client = match &opts.authentication_kubeconfig {
            Some(p) => kube_client(Some(p)).await?,
            None => client.clone(),
        };
        let authz_client = match &opts.authorization_kubeconfig {
            Some(p) => kube_client(Some(p)).await?,
            None => client.clone(),
        };
        start_configmap_sync(authn_client.clone(), cert_config.clone(), overrides, diagnosis.clone()).await;
        tokio::spawn(probe_reviews(authn_client.clone(), authz_client.clone(), diagnosis.clone()));
        authenticators.push(Arc::new(TokenReviewAuthenticator::new(
            authn_client,
            opts.authentication_token_webhook_cache_ttl,
            opts.api_audiences.clone(),
            diagnosis.clone(),
        )));
        authorizer = Box::new(SubjectAccessReviewAuthorizer::new(
            authz_client,
            opts.authorization_webhook_cache_authorized_ttl,
            opts.authorization_webhook_cache_unauthorized_ttl,
            diagnosis.clone(),
        ));
        admission = Some(Arc::new(NamespaceLifecycle::start(client, diagnosis.clone())));
    }
    let authz = Union { always_allow_paths: opts.authorization_always_allow_paths.clone(), inner: authorizer };

    let health = Arc::new(health::Health::new(storage.clone(), check_name, diagnosis));
    let state = Arc::new(AppState {
        registry: rest::Registry::new(&kinds, storage.clone(), admission),
        discovery: discovery::Discovery::new(&kinds),
        openapi: openapi::OpenApi::new(&kinds),
        health: health.clone(),
        metrics,
        authn: Chain(authenticators),
        authz,
        version: version::info(),
    });

    let default_bind =
        if opts.standalone { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
    let bind = opts.bind_address.unwrap_or(default_bind);
    let port = opts.secure_port.unwrap_or(if opts.standalone { 8443 } else { 443 });
    let listener =
        tokio::net::TcpListener::bind((bind, port)).await.with_context(|| format!("listening on {bind}:{port}"))?;
    let addr = listener.local_addr()?;

    let cert = match (&opts.tls_cert_file, &opts.tls_private_key_file) {
        (Some(c), Some(k)) => tls::ServingCert::load(c, k)?,
        _ => {
            let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            if !bind.is_unspecified() && !bind.is_loopback() {
                hosts.push(bind.to_string());
            }
            tls::ServingCert::self_signed(&hosts)?
        }
    };
    let config = cert.server_config(Arc::new(tls::RequestClientCert::new()))?;

    let mut kubeconfig = None;
    if let Some(token) = &admin_token {
        let host = if bind.is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { bind };
        let url = format!("https://{}", SocketAddr::new(host, addr.port()));
        standalone::write_kubeconfig(&opts.write_kubeconfig, &standalone::kubeconfig(&url, &cert.cert_pem, token))?;
        kubeconfig = Some(opts.write_kubeconfig.clone());
    }

    let (tx, rx) = oneshot::channel();
    let app = server::router(state);
    let task = tokio::spawn(tls::serve(listener, config, app, async {
        let _ = rx.await;
    }));
    Ok(Server { addr, ca_pem: cert.cert_pem, admin_token, kubeconfig, health, shutdown: Some(tx), task })
}

/// One fixed bearer token (the standalone admin).
struct StaticToken {
    token: String,
    user: UserInfo,
}

#[async_trait::async_trait]
impl Authenticator for StaticToken {
    async fn authenticate(
        &self,
        parts: &mut axum::http::request::Parts,
    ) -> Result<Option<UserInfo>, auth::authn::AuthnError> {
        match auth::authn::bearer_token(parts) {
            Some(t) if t == self.token => Ok(Some(self.user.clone())),
            _ => Ok(None),
        }
    }
}
