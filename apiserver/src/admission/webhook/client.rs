//! Calling a webhook (upstream's `webhook.ClientManager`): HTTPS to its `url`, or to its `service` resolved as
//! kube-apiserver's aggregator resolves services (`ResolveCluster`: the Service object's cluster IP, or an
//! ExternalName's host) and verified for the name `<service>.<namespace>.svc` against the `caBundle`; the request
//! carries `?timeout=<n>s` and is cut off after the webhook's `timeoutSeconds`. Clients are kept per endpoint and
//! CA, so connections are reused; Service lookups are kept for a few seconds.
//!
//! When the server may not read Services (RBAC), the service name itself is dialled, as in-cluster DNS resolves
//! it — upstream's default for extension servers.
//!
//! dispatcher → review → **client** → the webhook.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::hook::{Endpoint, Hook};
use crate::request::body::MAX_BODY_BYTES;

/// How long a resolved Service is used before it is looked up again.
const SERVICE_TTL: Duration = Duration::from_secs(10);
/// How long a Service lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many clients (and resolved services) are kept; beyond, the cache starts over.
const MAX_CACHED: usize = 128;

/// Calls webhooks.
pub struct Caller {
    cluster: kube::Client,
    clients: Mutex<HashMap<ClientKey, kube::Client>>,
    services: Mutex<HashMap<ServiceKey, Resolved>>,
}

/// A Service port: namespace, name, port.
type ServiceKey = (String, String, u16);
/// The host a Service resolved to (or why it did not), and when.
type Resolved = (Result<String, String>, Instant);

/// What a client is for: where it connects, the name it verifies, the CA it trusts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    base: String,
    server_name: Option<String>,
    ca_bundle: Vec<u8>,
}

/// Where one call goes.
struct Target {
    key: ClientKey,
    /// Path and query of the request.
    path: String,
    /// The URL as upstream names it in errors (a service by its DNS name).
    shown: String,
}

impl Caller {
    pub fn new(cluster: kube::Client) -> Self {
        Self { cluster, clients: Mutex::new(HashMap::new()), services: Mutex::new(HashMap::new()) }
    }

    /// POST `review` to `hook`; the answer's body, or why the call failed (upstream's `ErrCallingWebhook`
    /// reason).
    pub async fn call(&self, hook: &Hook, review: Vec<u8>) -> Result<Bytes, String> {
        let target = self.target(hook).await?;
        let client = self.client(&target.key)?;
        let request = http::Request::post(&target.path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(kube::client::Body::from(review))
            .map_err(|e| e.to_string())?;
        let post = |why: String| format!("Post {:?}: {why}", target.shown);
        let exchange = async {
            let response = client.send(request).await.map_err(|e| error_chain(&e))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the response: {e}"))?
                .to_bytes();
            if status.is_success() { Ok(body) } else { Err(unsuccessful(status, &body)) }
        };
        match tokio::time::timeout(hook.timeout, exchange).await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(why)) => Err(post(why)),
            Err(_) => Err(post("context deadline exceeded".into())),
        }
    }

    async fn target(&self, hook: &Hook) -> Result<Target, String> {
        let timeout = format!("timeout={}s", hook.timeout.as_secs());
        let ca_bundle = hook.ca_bundle.clone();
        match &hook.endpoint {
            None => Err("webhook configuration must have either service or URL".into()),
            Some(Endpoint::Url(url)) => {
                let uri: http::Uri = url.parse().map_err(|e| format!("Unparsable URL: {e}"))?;
                let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
                    return Err(format!("Unparsable URL: {url:?} has no scheme or host"));
                };
                let base = format!("{scheme}://{authority}");
                let path = format!("{}?{timeout}", uri.path());
                let shown = format!("{base}{path}");
                Ok(Target { key: ClientKey { base, server_name: None, ca_bundle }, path, shown })
            }
            Some(Endpoint::Service { namespace, name, path, port }) => {
                let server_name = format!("{name}.{namespace}.svc");
                let host = self.resolve(namespace, name, *port).await?;
                let host = if host.contains(':') { format!("[{host}]") } else { host };
                let path = format!("{}?{timeout}", if path.is_empty() { "/" } else { path });
                let shown = format!("https://{server_name}:{port}{path}");
                let key =
                    ClientKey { base: format!("https://{host}:{port}"), server_name: Some(server_name), ca_bundle };
                Ok(Target { key, path, shown })
            }
        }
    }

    /// The host to dial for Service `namespace/name` on `port`, as the aggregator's `ResolveCluster`.
    async fn resolve(&self, namespace: &str, name: &str, port: u16) -> Result<String, String> {
        let key = (namespace.to_string(), name.to_string(), port);
        if let Ok(cache) = self.services.lock()
            && let Some((resolved, at)) = cache.get(&key)
            && at.elapsed() < SERVICE_TTL
        {
            return resolved.clone();
        }
        let api: Api<Service> = Api::namespaced(self.cluster.clone(), namespace);
        let resolved = match tokio::time::timeout(LOOKUP_TIMEOUT, api.get_opt(name)).await {
            Ok(Ok(Some(svc))) => service_host(&svc, name, port),
            Ok(Ok(None)) => Err(format!("service \"{name}\" not found")),
            // Not allowed to read Services: the name, as in-cluster DNS resolves it.
            Ok(Err(kube::Error::Api(e))) if e.code == 403 => Ok(format!("{name}.{namespace}.svc")),
            Ok(Err(e)) => Err(format!("looking up service {namespace}/{name}: {e}")),
            Err(_) => Err(format!("looking up service {namespace}/{name}: timed out")),
        };
        if let Ok(mut cache) = self.services.lock() {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(key, (resolved.clone(), Instant::now()));
        }
        resolved
    }

    fn client(&self, key: &ClientKey) -> Result<kube::Client, String> {
        if let Ok(clients) = self.clients.lock()
            && let Some(c) = clients.get(key)
        {
            return Ok(c.clone());
        }
        let mut config = kube::Config::new(key.base.parse().map_err(|e| format!("Unparsable URL: {e}"))?);
        if !key.ca_bundle.is_empty() {
            let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&key.ca_bundle)
                .map(|c| c.map(|c| c.to_vec()))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("unable to load root certificates: {e}"))?;
            if certs.is_empty() {
                return Err("unable to load root certificates: caBundle holds no PEM certificate".into());
            }
            config.root_cert = Some(certs);
        }
        config.tls_server_name = key.server_name.clone();
        config.default_retry = false;
        let client = kube::Client::try_from(config).map_err(|e| error_chain(&e))?;
        if let Ok(mut clients) = self.clients.lock() {
            if clients.len() >= MAX_CACHED {
                clients.clear();
            }
            clients.insert(key.clone(), client.clone());
        }
        Ok(client)
    }
}

/// The Service's host for `port`: an ExternalName's name, else its cluster IP (which must serve the port).
fn service_host(svc: &Service, name: &str, port: u16) -> Result<String, String> {
    let spec = svc.spec.clone().unwrap_or_default();
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or("");
    match kind {
        "ExternalName" => spec.external_name.filter(|n| !n.is_empty()).ok_or_else(|| "no externalName".into()),
        "ClusterIP" if cluster_ip == "None" => Err("cannot route to service with ClusterIP \"None\"".into()),
        "ClusterIP" | "NodePort" | "LoadBalancer" => {
            if !spec.ports.iter().flatten().any(|p| p.port == i32::from(port)) {
                return Err(format!("no service port {port} found for service {name:?}"));
            }
            Ok(cluster_ip.to_string())
        }
        other => Err(format!("unsupported service type {other:?}")),
    }
}

/// What a non-2xx answer says, as client-go words it.
fn unsuccessful(status: http::StatusCode, body: &[u8]) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .filter(|v| v["kind"] == "Status")
        .and_then(|v| v["message"].as_str().map(str::to_string));
    match message {
        Some(m) => m,
        None if body.is_empty() => {
            format!("the server responded with the status code {} but did not return more information", status.as_u16())
        }
        None => {
            let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
            format!("an error on the server ({text:?}) has prevented the request from succeeding")
        }
    }
}

/// An error with its causes, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.ends_with(&s_text) {
            text = format!("{text}: {s_text}");
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn services_resolve_as_the_aggregator_resolves_them() {
        let external = service(serde_json::json!({"spec": {"type": "ExternalName", "externalName": "127.0.0.1"}}));
        assert_eq!(service_host(&external, "w", 8443).unwrap(), "127.0.0.1");
        let ip = service(serde_json::json!({"spec": {"clusterIP": "10.0.0.7", "ports": [{"port": 443}]}}));
        assert_eq!(service_host(&ip, "w", 443).unwrap(), "10.0.0.7");
        assert_eq!(service_host(&ip, "w", 8443).unwrap_err(), "no service port 8443 found for service \"w\"");
        let headless = service(serde_json::json!({"spec": {"clusterIP": "None"}}));
        assert!(service_host(&headless, "w", 443).unwrap_err().contains("ClusterIP \"None\""));
    }

    #[test]
    fn unsuccessful_answers() {
        let status = br#"{"kind":"Status","message":"no such path"}"#;
        assert_eq!(unsuccessful(http::StatusCode::NOT_FOUND, status), "no such path");
        assert!(unsuccessful(http::StatusCode::BAD_GATEWAY, b"").contains("status code 502"));
        assert!(unsuccessful(http::StatusCode::INTERNAL_SERVER_ERROR, b"boom").contains("(\"boom\")"));
    }
}
