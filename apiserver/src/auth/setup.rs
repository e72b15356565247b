//! Building the authentication chain and the authorizer from the flags: in standalone mode a fixed admin token
//! and allow-all; in a cluster the front proxy's headers, client certificates, TokenReview and
//! SubjectAccessReview against kube-apiserver (with the authentication ConfigMap watched).
//!
//! start → **auth setup** → the authentication and authorization filters.

use std::sync::Arc;

use super::authn::{Authenticator, Chain};
use super::authz::{AllowAll, AlwaysAllowPaths, Authorizer, Union};
use super::cert_sources::{CertAuthSources, Overrides};
use super::delegation::{kube_client, probe_reviews, start_configmap_sync};
use super::static_token::StaticToken;
use super::token_file::TokenFile;
use super::webhook::{SubjectAccessReviewAuthorizer, TokenReviewAuthenticator};
use super::x509::{ClientCertAuthenticator, RequestHeaderAuthenticator, SharedCertAuthConfig};
use crate::health::Diagnosis;
use crate::options::Options;

/// Who may call, and what they may do.
pub struct Auth {
    pub authenticator: Arc<dyn Authenticator>,
    pub authorizer: Arc<dyn Authorizer>,
    pub always_allow: Arc<AlwaysAllowPaths>,
    /// The standalone admin's bearer token.
    pub admin_token: Option<String>,
    /// The kube-apiserver client (outside standalone mode), for admission.
    pub cluster: Option<kube::Client>,
}

/// Build the authenticators and authorizers `opts` ask for; `diagnosis` learns what is wrong with the setup.
pub async fn build(opts: &Options, diagnosis: &Arc<Diagnosis>) -> anyhow::Result<Auth> {
    let cert_config = Arc::new(SharedCertAuthConfig::default());
    let overrides = Overrides::from_options(opts)?;
    // The front proxy's headers first: it is also what strips them from every other request.
    let mut authenticators: Vec<Arc<dyn Authenticator>> = vec![
        Arc::new(RequestHeaderAuthenticator(cert_config.clone())),
        Arc::new(ClientCertAuthenticator(cert_config.clone())),
    ];
    if let Some(path) = &opts.token_auth_file {
        authenticators.push(Arc::new(TokenFile::load(path)?));
    }
    let always_allow = Arc::new(AlwaysAllowPaths(opts.authorization_always_allow_paths.clone()));
    let union = |inner: Box<dyn Authorizer>| -> Arc<dyn Authorizer> {
        Arc::new(Union { always_allow: always_allow.clone(), inner })
    };
    if opts.standalone {
        let admin = StaticToken::standalone_admin();
        let token = admin.token.clone();
        authenticators.push(Arc::new(admin));
        CertAuthSources::new(cert_config, overrides, None).watch_files();
        return Ok(Auth {
            authenticator: Arc::new(Chain(authenticators)),
            authorizer: union(Box::new(AllowAll)),
            always_allow: always_allow.clone(),
            admin_token: Some(token),
            cluster: None,
        });
    }
    let client = kube_client(opts.kubeconfig.as_deref()).await?;
    let authn_client = match &opts.authentication_kubeconfig {
        Some(p) => kube_client(Some(p)).await?,
        None => client.clone(),
    };
    let authz_client = match &opts.authorization_kubeconfig {
        Some(p) => kube_client(Some(p)).await?,
        None => client.clone(),
    };
    let sources = CertAuthSources::new(cert_config, overrides, Some(diagnosis.clone()));
    sources.watch_files();
    if !opts.authentication_skip_lookup {
        start_configmap_sync(authn_client.clone(), sources, diagnosis.clone()).await;
    }
    tokio::spawn(probe_reviews(authn_client.clone(), authz_client.clone(), diagnosis.clone()));
    authenticators.push(Arc::new(TokenReviewAuthenticator::new(
        authn_client,
        opts.authentication_token_webhook_cache_ttl,
        opts.api_audiences.clone(),
        diagnosis.clone(),
    )));
    let authorizer = SubjectAccessReviewAuthorizer::new(
        authz_client,
        opts.authorization_webhook_cache_authorized_ttl,
        opts.authorization_webhook_cache_unauthorized_ttl,
        diagnosis.clone(),
    );
    Ok(Auth {
        authenticator: Arc::new(Chain(authenticators)),
        authorizer: union(Box::new(authorizer)),
        always_allow: always_allow.clone(),
        admin_token: None,
        cluster: Some(client),
    })
}
