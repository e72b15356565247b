//! A stand-in for kube-apiserver's endpoints that the server delegates to: TokenReview, SubjectAccessReview, the
//! `kube-system/extension-apiserver-authentication` ConfigMap (get, list, watch) and namespaces (get, list,
//! watch). It speaks kube-apiserver's JSON (k8s-openapi types), serves HTTPS on a loopback port, and counts calls.
//!
//! Only for what a real kube-apiserver cannot be made to do (tokens that expire within a second); the other
//! delegation tests run against a real kube-apiserver (tests/tests/delegation.rs).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use backup_apiserver::tls::{RequestClientCert, ServingCert};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewStatus, UserInfo};
use k8s_openapi::api::authorization::v1::{SubjectAccessReview, SubjectAccessReviewStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, NamespaceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// What the stand-in answers; tests change it while the server runs.
#[derive(Default)]
pub struct Behaviour {
    /// token → (user, groups).
    pub tokens: HashMap<String, (String, Vec<String>)>,
    /// Users allowed by SubjectAccessReview (anything else is denied with a reason).
    pub allowed_users: Vec<String>,
    /// The ConfigMap's data (None: 404).
    pub configmap: Option<BTreeMap<String, String>>,
    /// Namespace name → terminating.
    pub namespaces: BTreeMap<String, bool>,
}

/// Calls seen, by endpoint.
#[derive(Default, Debug, Clone)]
pub struct Counts {
    pub tokenreviews: usize,
    pub sars: usize,
}

pub struct FakeKube {
    pub url: String,
    pub ca_pem: String,
    pub behaviour: Arc<Mutex<Behaviour>>,
    pub counts: Arc<Mutex<Counts>>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

#[derive(Clone)]
struct AppState {
    behaviour: Arc<Mutex<Behaviour>>,
    counts: Arc<Mutex<Counts>>,
    events: broadcast::Sender<Value>,
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":message,"reason":reason,"code":code});
    (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body)).into_response()
}

async fn tokenreview(State(s): State<AppState>, axum::Json(mut tr): axum::Json<TokenReview>) -> Response {
    s.counts.lock().unwrap().tokenreviews += 1;
    let b = s.behaviour.lock().unwrap();
    let token = tr.spec.token.clone().unwrap_or_default();
    tr.status = Some(match b.tokens.get(&token) {
        Some((user, groups)) => TokenReviewStatus {
            authenticated: Some(true),
            user: Some(UserInfo {
                username: Some(user.clone()),
                uid: Some(format!("uid-{user}")),
                groups: Some(groups.clone()),
                extra: None,
            }),
            audiences: tr.spec.audiences.clone(),
            error: None,
        },
        None => TokenReviewStatus {
            authenticated: Some(false),
            error: Some("invalid token".into()),
            ..TokenReviewStatus::default()
        },
    });
    (StatusCode::CREATED, axum::Json(tr)).into_response()
}

async fn sar(State(s): State<AppState>, axum::Json(mut review): axum::Json<SubjectAccessReview>) -> Response {
    let user = review.spec.user.clone().unwrap_or_default();
    s.counts.lock().unwrap().sars += 1;
    let b = s.behaviour.lock().unwrap();
    let allowed = b.allowed_users.contains(&user);
    review.status = Some(SubjectAccessReviewStatus {
        allowed,
        denied: Some(!allowed),
        reason: (!allowed).then(|| "no RBAC policy matched".to_string()),
        evaluation_error: None,
    });
    (StatusCode::CREATED, axum::Json(review)).into_response()
}

fn configmap_object(data: &BTreeMap<String, String>, rv: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some("extension-apiserver-authentication".into()),
            namespace: Some("kube-system".into()),
            resource_version: Some(rv.into()),
            ..ObjectMeta::default()
        },
        data: Some(data.clone()),
        ..ConfigMap::default()
    }
}

async fn configmap_get(State(s): State<AppState>) -> Response {
    let b = s.behaviour.lock().unwrap();
    match &b.configmap {
        Some(d) => axum::Json(configmap_object(d, "1")).into_response(),
        None => status(404, "NotFound", "configmaps \"extension-apiserver-authentication\" not found"),
    }
}

/// A list, or with `watch=true` a stream of the events the test publishes for `kind`.
async fn list_or_watch(s: &AppState, query: &HashMap<String, String>, kind: &str) -> Response {
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let mut rx = s.events.subscribe();
        let kind = kind.to_string();
        let stream = async_stream(move |tx| async move {
            while let Ok(ev) = rx.recv().await {
                if ev["object"]["kind"] == kind {
                    let mut line = serde_json::to_vec(&ev).unwrap();
                    line.push(b'\n');
                    if tx.send(bytes::Bytes::from(line)).await.is_err() {
                        return;
                    }
                }
            }
        });
        return Response::new(stream);
    }
    let b = s.behaviour.lock().unwrap();
    let items: Vec<Value> = if kind == "ConfigMap" {
        b.configmap.iter().map(|d| serde_json::to_value(configmap_object(d, "1")).unwrap()).collect()
    } else {
        b.namespaces.iter().map(|(n, t)| serde_json::to_value(namespace(n, *t)).unwrap()).collect()
    };
    axum::Json(json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}))
        .into_response()
}

/// A body fed by a task through a channel.
fn async_stream<F, Fut>(f: F) -> Body
where
    F: FnOnce(tokio::sync::mpsc::Sender<bytes::Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    let stream =
        futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok::<_, std::convert::Infallible>);
    Body::from_stream(stream)
}

fn namespace(name: &str, terminating: bool) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            resource_version: Some("1".into()),
            deletion_timestamp: terminating.then(|| Time(jiff::Timestamp::now())),
            ..ObjectMeta::default()
        },
        status: Some(NamespaceStatus {
            phase: Some(if terminating { "Terminating" } else { "Active" }.into()),
            conditions: None,
        }),
        ..Namespace::default()
    }
}

async fn configmaps(State(s): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    list_or_watch(&s, &q, "ConfigMap").await
}

async fn namespaces(State(s): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    list_or_watch(&s, &q, "Namespace").await
}

async fn namespace_get(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    let b = s.behaviour.lock().unwrap();
    match b.namespaces.get(&name) {
        Some(t) => axum::Json(namespace(&name, *t)).into_response(),
        None => status(404, "NotFound", &format!("namespaces \"{name}\" not found")),
    }
}

impl FakeKube {
    pub async fn start(behaviour: Behaviour) -> Self {
        let cert = ServingCert::self_signed(&["127.0.0.1".into(), "localhost".into()]).unwrap();
        let config = cert.server_config(Arc::new(RequestClientCert::new())).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (events, _) = broadcast::channel(64);
        let state = AppState {
            behaviour: Arc::new(Mutex::new(behaviour)),
            counts: Arc::new(Mutex::new(Counts::default())),
            events,
        };
        let app = Router::new()
            .route("/apis/authentication.k8s.io/v1/tokenreviews", post(tokenreview))
            .route("/apis/authorization.k8s.io/v1/subjectaccessreviews", post(sar))
            .route("/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication", get(configmap_get))
            .route("/api/v1/namespaces/kube-system/configmaps", get(configmaps))
            .route("/api/v1/namespaces", get(namespaces))
            .route("/api/v1/namespaces/{name}", get(namespace_get))
            .with_state(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stopped = async {
            let _ = rx.await;
        };
        tokio::spawn(backup_apiserver::tls::serve(
            listener,
            config,
            app,
            stopped,
            backup_apiserver::tls::Transport::new(std::time::Duration::from_secs(5)),
        ));
        Self {
            url: format!("https://{addr}"),
            ca_pem: cert.cert_pem,
            behaviour: state.behaviour,
            counts: state.counts,
            _shutdown: tx,
        }
    }

    pub fn counts(&self) -> Counts {
        self.counts.lock().unwrap().clone()
    }

    /// A kubeconfig (YAML) for the server to reach this stand-in.
    pub fn kubeconfig(&self) -> String {
        kubeconfig(&self.url, &self.ca_pem, "token: server-sa-token")
    }
}

/// A kubeconfig with `user` lines (e.g. `token: x`, or client-certificate-data/client-key-data).
pub fn kubeconfig(server: &str, ca_pem: &str, user: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    {user}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n    namespace: default\ncurrent-context: c\n"
    )
}
