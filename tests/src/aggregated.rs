//! Our server registered with a real kube-apiserver's aggregator, deployed the way a user deploys it: the
//! Namespace, ServiceAccount, RBAC and APIService rendered from `config/` (`kubectl kustomize`), a serving
//! certificate for `backup-apiserver.kube-extensions.svc` generated at test time, and the server itself running
//! in-process outside standalone mode, with a service-account token (TokenRequest) as its identity towards
//! kube-apiserver.
//!
//! No pod runs it, so the Service is `type: ExternalName` to `127.0.0.1`: with `--enable-aggregator-routing=false`
//! the aggregator dials `backup-apiserver.kube-extensions.svc:<APIService port>`, resolved to loopback, and still
//! verifies our certificate against the APIService's `caBundle` with that ServerName.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use backup_apiserver::options::Options;
use clap::Parser;
use serde_json::{Value, json};

use crate::cluster::{ClusterOptions, KubeCluster, client_from_kubeconfig, kubeconfig_yaml};
use crate::kubectl::Kubectl;
use crate::pki::{Ca, CertKey, base64};

/// Where `config/` deploys the server.
pub const NAMESPACE: &str = "kube-extensions";
/// The Service (and ServiceAccount) name.
pub const SERVICE: &str = "backup-apiserver";
/// The APIService's name.
pub const APISERVICE: &str = "v1.backup.extend-k8s.io";
/// The server's user name towards kube-apiserver (its ServiceAccount).
pub const SERVER_USER: &str = "system:serviceaccount:kube-extensions:backup-apiserver";
/// How long the APIService may take to become Available.
const AVAILABLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The kinds of `config/base/apiserver` and `config/base/kube-system` that a loopback registration applies: the
/// Deployment, its Service, PodDisruptionBudget and NetworkPolicies concern pods, which do not exist here.
const APPLIED_KINDS: &[&str] =
    &["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];

/// Our server, running in-process and registered through the aggregator of a [`KubeCluster`].
pub struct AggregatedServer {
    pub server: backup_apiserver::Server,
    /// `https://127.0.0.1:<port>` (to talk to the server directly, bypassing kube-apiserver).
    pub url: String,
    /// The CA of the serving certificate (the APIService's `caBundle`).
    pub ca_pem: String,
    dir: tempfile::TempDir,
}

/// The repository's `config/` directory.
pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

/// `kubectl kustomize config/<path>`, parsed: one JSON value per document.
pub async fn kustomize(kubectl: &Kubectl, path: &str) -> Vec<Value> {
    let dir = config_dir().join(path);
    let yaml = kubectl.ok(&["kustomize", &dir.display().to_string()]).await;
    serde_saphyr::from_multiple::<Value>(&yaml)
        .unwrap_or_else(|e| panic!("kubectl kustomize {path} printed YAML that does not parse: {e}\n{yaml}"))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// `{"kind": "List", "items": items}`, for `kubectl apply -f -`.
pub fn list(items: Vec<Value>) -> String {
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

impl AggregatedServer {
    /// Deploy and start the server against `cluster` and wait (bounded) until the APIService is Available.
    ///
    /// The server's tasks run on the current runtime: register from the runtime that outlives the tests using it
    /// (see [`AggregatedCluster::shared`]).
    pub async fn register(cluster: &KubeCluster) -> Self {
        Self::register_with(cluster, &[]).await
    }

    /// [`Self::register`], with extra flags for the server.
    pub async fn register_with(cluster: &KubeCluster, extra: &[String]) -> Self {
        let started = Instant::now();
        let dir = tempfile::Builder::new().prefix("backup-aggregated-").tempdir().expect("a temporary directory");
        crate::process::remove_at_exit(dir.path());
        let admin = cluster.kubectl();

        // Namespace, ServiceAccount and RBAC from config/, as `kubectl apply -k` would create them.
        let mut documents = kustomize(&admin, "base/apiserver").await;
        documents.extend(kustomize(&admin, "base/kube-system").await);
        let apiservice = documents
            .iter()
            .find(|d| d["kind"] == "APIService")
            .cloned()
            .expect("config/base/apiserver has the APIService");
        let mut applied: Vec<Value> =
            documents.into_iter().filter(|d| APPLIED_KINDS.contains(&d["kind"].as_str().unwrap_or(""))).collect();
        applied.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": NAMESPACE},
            "spec": {"type": "ExternalName", "externalName": "127.0.0.1"},
        }));
        admin.ok_stdin(&["apply", "-f", "-"], &list(applied)).await;

        // The server's identity: its ServiceAccount's token, as in a pod.
        let token = cluster.service_account_token(NAMESPACE, SERVICE).await;
        let kubeconfig = dir.path().join("server.kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(&cluster.url, &cluster.ca_pem, &[("token", token)]))
            .expect("write the server's kubeconfig");

        // The serving certificate for the name the aggregator verifies (and 127.0.0.1, for direct requests).
        let ca = Ca::new("backup-apiserver-ca");
        let svc = format!("{SERVICE}.{NAMESPACE}.svc");
        let serving: CertKey = ca.server(&[&svc, &format!("{svc}.cluster.local"), "127.0.0.1"]);
        let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert_file, &serving.cert_pem).expect("write the serving certificate");
        std::fs::write(&key_file, &serving.key_pem).expect("write the serving key");

        let path = |p: &Path| p.display().to_string();
        let options = Options::parse_from(
            [
                "backup-apiserver".to_string(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                format!("--tls-cert-file={}", path(&cert_file)),
                format!("--tls-private-key-file={}", path(&key_file)),
                format!("--kubeconfig={}", path(&kubeconfig)),
                format!("--etcd-servers={}", cluster.etcd_url()),
                "--etcd-prefix=/backup-apiserver/registry".into(),
                "--etcd-compaction-interval=0".into(),
            ]
            .into_iter()
            .chain(extra.iter().cloned()),
        );
        let server = tokio::time::timeout(crate::STEP_TIMEOUT, backup_apiserver::start(options))
            .await
            .expect("the server did not start in time")
            .expect("start the server");
        let url = format!("https://{}", server.addr);
        let this = Self { url, ca_pem: ca.cert_pem.clone(), server, dir };
        // Register only once it is ready: the aggregator re-checks a failing APIService only every 30 s.
        this.wait_ready().await;

        let mut apiservice = apiservice;
        apiservice["spec"]["caBundle"] = base64(&ca.cert_pem).into();
        apiservice["spec"]["service"]["port"] = this.server.addr.port().into();
        admin.ok_stdin(&["apply", "-f", "-"], &apiservice.to_string()).await;
        wait_available(&admin).await;
        // Available comes from the availability controller's own probe; the proxy route is installed by another
        // controller of kube-apiserver, maybe a moment later.
        wait_served(cluster).await;
        eprintln!("backup-apiserver registered and Available at {} in {:?}", this.url, started.elapsed());
        this
    }

    /// Poll our `/readyz` (no credentials needed) until 200; bounded.
    async fn wait_ready(&self) {
        let client = self.client(&[]).await;
        let deadline = Instant::now() + crate::STEP_TIMEOUT;
        loop {
            let request = http::Request::get("/readyz?verbose").body(Vec::new()).expect("a request");
            let answer = tokio::time::timeout(Duration::from_secs(5), client.request_text(request)).await;
            if let Ok(Ok(_)) = answer {
                return;
            }
            assert!(Instant::now() < deadline, "backup-apiserver not ready in time: {answer:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A kubeconfig for talking to the server directly with these `user` fields (none: anonymous).
    pub fn kubeconfig(&self, name: &str, user: &[(&str, String)]) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.kubeconfig"));
        std::fs::write(&path, kubeconfig_yaml(&self.url, &self.ca_pem, user)).expect("write a kubeconfig");
        path
    }

    /// A kube-rs client talking to the server directly with these `user` fields (none: anonymous).
    pub async fn client(&self, user: &[(&str, String)]) -> kube::Client {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        client_from_kubeconfig(&self.kubeconfig(&format!("client-{n}"), user)).await
    }
}

/// Wait (bounded) until APIService v1.backup.extend-k8s.io reports `Available=True`.
pub async fn wait_available(admin: &Kubectl) {
    let deadline = Instant::now() + AVAILABLE_TIMEOUT;
    loop {
        let out = admin.ok(&["get", "apiservice", APISERVICE, "-o", "json"]).await;
        let apiservice: Value = serde_json::from_str(&out).expect("kubectl printed JSON");
        let available = apiservice["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Available"))
            .cloned()
            .unwrap_or(Value::Null);
        if available["status"] == "True" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "APIService {APISERVICE} not Available within {AVAILABLE_TIMEOUT:?}: {available}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Wait (bounded) until kube-apiserver proxies `/apis/backup.extend-k8s.io/v1` to us.
async fn wait_served(cluster: &KubeCluster) {
    let client = cluster.client().await;
    let deadline = Instant::now() + AVAILABLE_TIMEOUT;
    loop {
        let request = http::Request::get(crate::GV_PATH).body(Vec::new()).expect("a request");
        let answer = client.request_text(request).await;
        match answer {
            Ok(text) if text.contains("APIResourceList") => return,
            _ => assert!(Instant::now() < deadline, "kube-apiserver does not serve {}: {answer:?}", crate::GV_PATH),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A real cluster (etcd, kube-apiserver, kube-controller-manager) with our server registered, shared by the tests
/// of a test binary.
pub struct AggregatedCluster {
    pub cluster: KubeCluster,
    pub server: AggregatedServer,
}

impl AggregatedCluster {
    /// Started by the first test that asks, on the background runtime ([`crate::background`]).
    pub async fn shared() -> &'static AggregatedCluster {
        static SHARED: tokio::sync::OnceCell<AggregatedCluster> = tokio::sync::OnceCell::const_new();
        SHARED.get_or_init(|| crate::background::run(Self::start(Vec::new()))).await
    }

    /// A new cluster with the server registered with `extra` flags (run it on the background runtime, as
    /// [`Self::shared`] does, when tests share it).
    pub async fn start(extra: Vec<String>) -> AggregatedCluster {
        let cluster =
            KubeCluster::start(ClusterOptions { controller_manager: true, ..ClusterOptions::default() }).await;
        let server = AggregatedServer::register_with(&cluster, &extra).await;
        AggregatedCluster { cluster, server }
    }
}
