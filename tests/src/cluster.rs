//! A real Kubernetes control plane for the end-to-end tests: etcd + kube-apiserver v1.20.2 (+ kube-controller-manager
//! when asked), built from Debian's source package by `hack/kube-apiserver.sh`, on free loopback ports with a
//! throw-away PKI generated at start (cluster CA, serving certificate, front-proxy CA and `front-proxy-client`
//! certificate, service-account key pair, admin client certificate in `system:masters`).
//!
//! kube-apiserver takes ~5 s to start, so a test binary usually shares one cluster ([`KubeCluster::shared`]) and
//! each test works in its own namespace. The processes are killed by pid when the cluster is dropped, or, for the
//! shared one, when the test binary exits ([`crate::process`]).
//!
//! kube-apiserver writes an audit log of every TokenReview and SubjectAccessReview (with the request), so tests can
//! see exactly which reviews a delegating server made ([`KubeCluster::reviews_by`]), and of every request for our
//! group at Metadata level (so an `Audit-ID` can be followed from kube-apiserver's log into ours).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use backup_storage::testing::EtcdServer;
use serde_json::Value;

use crate::kubectl::Kubectl;
use crate::pki::{Ca, CertKey, SigningKey, base64};
use crate::process::{ChildProcess, remove_at_exit, unregister_pid};

/// The version `hack/kube-apiserver.sh` builds.
pub const KUBE_VERSION: &str = "v1.20.2";
/// How long kube-apiserver (and kube-controller-manager) may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

const AUDIT_POLICY: &str = "\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Request
    resources:
      - group: authentication.k8s.io
        resources: [tokenreviews]
      - group: authorization.k8s.io
        resources: [subjectaccessreviews]
  - level: Metadata
    resources:
      - group: backup.extend-k8s.io
  - level: None
";

/// What to start besides etcd and kube-apiserver.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClusterOptions {
    /// Also run kube-controller-manager (namespace deletion, garbage collection, service-account tokens, cluster
    /// role aggregation).
    pub controller_manager: bool,
    /// kube-apiserver's `--encryption-provider-config`, this EncryptionConfiguration's text.
    pub encryption_config: Option<&'static str>,
}

/// A running etcd + kube-apiserver (+ kube-controller-manager).
pub struct KubeCluster {
    /// `https://127.0.0.1:<port>` of kube-apiserver.
    pub url: String,
    /// The cluster CA: kube-apiserver's serving certificate and every client certificate.
    pub ca_pem: String,
    /// The front-proxy CA (kube-apiserver's `--requestheader-client-ca-file`).
    pub front_proxy_ca_pem: String,
    /// The certificate kube-apiserver's aggregator presents to extension servers (CN `front-proxy-client`).
    pub front_proxy_client: CertKey,
    cluster_ca: Ca,
    front_proxy_ca: Ca,
    admin_kubeconfig: PathBuf,
    audit_log: PathBuf,
    files: PathBuf,
    counter: AtomicUsize,
    etcd_pid: Option<u32>,
    // Dropped in this order: the controller manager, kube-apiserver, etcd, the files.
    controller_manager: Option<ChildProcess>,
    apiserver: ChildProcess,
    etcd: EtcdServer,
    _dir: tempfile::TempDir,
}

/// TokenReviews and SubjectAccessReviews one client made, from kube-apiserver's audit log.
#[derive(Debug, Default, Clone)]
pub struct Reviews {
    /// How many TokenReviews.
    pub tokenreviews: usize,
    /// The `spec.user` of each SubjectAccessReview, in order.
    pub sar_users: Vec<String>,
    /// The `spec.groups` of each SubjectAccessReview, in order.
    pub sar_groups: Vec<Vec<String>>,
    /// The `spec.uid` of each SubjectAccessReview, in order ("" when none).
    pub sar_uids: Vec<String>,
}

/// The directory holding the Kubernetes binaries: `$KUBE_BIN_DIR`, else `target/k8s/bin` of this workspace.
pub fn kube_bin_dir() -> PathBuf {
    match std::env::var_os("KUBE_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/k8s/bin"),
    }
}

/// The path of a Kubernetes binary; panics, naming the script that builds it, when it is missing.
pub fn kube_binary(name: &str) -> PathBuf {
    let path = kube_bin_dir().join(name);
    if !path.is_file() {
        panic!(
            "{} not found: the real-cluster tests need kube-apiserver and kube-controller-manager {KUBE_VERSION}; \
             build them with hack/kube-apiserver.sh (~5 min once; hack/test.sh does it when they are missing), \
             or set $KUBE_BIN_DIR",
            path.display()
        );
    }
    path
}

/// A free port on 127.0.0.1 (free now: the caller retries if someone takes it first).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port on 127.0.0.1");
    listener.local_addr().expect("local address").port()
}

/// A kubeconfig (YAML) for `server` trusting `ca_pem`, with the `user` fields given (`token`,
/// `client-certificate-data`, ...), namespace `default`.
pub fn kubeconfig_yaml(server: &str, ca_pem: &str, user: &[(&str, String)]) -> String {
    let user: String = user.iter().map(|(k, v)| format!("    {k}: {v}\n")).collect();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: cluster\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {}\nusers:\n- name: user\n  user:\n{user}contexts:\n- name: ctx\n  context:\n    \
         cluster: cluster\n    user: user\n    namespace: default\ncurrent-context: ctx\n",
        base64(ca_pem)
    )
}

/// The kubeconfig `user` fields of a client certificate.
pub fn cert_user(cert: &CertKey) -> Vec<(&'static str, String)> {
    vec![("client-certificate-data", base64(&cert.cert_pem)), ("client-key-data", base64(&cert.key_pem))]
}

/// A kube-rs client from a kubeconfig file, without retries (tests see every answer as it is).
pub async fn client_from_kubeconfig(path: &Path) -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig =
        kube::config::Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("read kubeconfig {}: {e}", path.display()));
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .expect("kubeconfig to client configuration");
    config.default_retry = false;
    kube::Client::try_from(config).expect("build a kube client")
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

impl KubeCluster {
    /// Start etcd, kube-apiserver (and kube-controller-manager if asked) and wait until they are ready. Panics
    /// when a binary is missing or a component does not come up within 90 s (with its log).
    pub async fn start(options: ClusterOptions) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let apiserver_bin = kube_binary("kube-apiserver");
        let controller_manager_bin = options.controller_manager.then(|| kube_binary("kube-controller-manager"));
        let dir = tempfile::Builder::new().prefix("kube-cluster-").tempdir().expect("create a temporary directory");
        remove_at_exit(dir.path());
        let files = dir.path().to_path_buf();
        let file = |name: &str| files.join(name);

        let cluster_ca = Ca::new("kubernetes-ca");
        let front_proxy_ca = Ca::new("front-proxy-ca");
        let serving = cluster_ca.server(&[
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "10.0.0.1",
        ]);
        let front_proxy_client = front_proxy_ca.client("front-proxy-client", &[]);
        let service_account = SigningKey::generate();
        for (name, text) in [
            ("ca.crt", &cluster_ca.cert_pem),
            ("front-proxy-ca.crt", &front_proxy_ca.cert_pem),
            ("apiserver.crt", &serving.cert_pem),
            ("apiserver.key", &serving.key_pem),
            ("front-proxy-client.crt", &front_proxy_client.cert_pem),
            ("front-proxy-client.key", &front_proxy_client.key_pem),
            ("sa.key", &service_account.private_pem),
            ("sa.pub", &service_account.public_pem),
        ] {
            write(&file(name), text);
        }
        write(&file("audit-policy.yaml"), AUDIT_POLICY);
        if let Some(config) = options.encryption_config {
            write(&file("encryption.yaml"), config);
        }

        let etcd = EtcdServer::start().await;
        let etcd_pid = etcd.pid();
        if let Some(pid) = etcd_pid {
            crate::process::register_pid(pid);
        }
        remove_at_exit(etcd.dir());

        let started = Instant::now();
        let admin = cluster_ca.client("kubernetes-admin", &["system:masters"]);
        let mut failure = String::new();
        // The free port may be taken before kube-apiserver binds it: try another one.
        for _ in 0..3 {
            let port = free_port();
            let url = format!("https://127.0.0.1:{port}");
            let admin_kubeconfig = file("admin.kubeconfig");
            write(&admin_kubeconfig, &kubeconfig_yaml(&url, &cluster_ca.cert_pem, &cert_user(&admin)));
            let mut command = Command::new(&apiserver_bin);
            command.args(apiserver_args(&files, port, &etcd.endpoint()));
            if options.encryption_config.is_some() {
                command.arg(format!("--encryption-provider-config={}", file("encryption.yaml").display()));
            }
            let mut apiserver = ChildProcess::spawn("kube-apiserver", command, &file("kube-apiserver.log"));
            let client = client_from_kubeconfig(&admin_kubeconfig).await;
            match wait_ok(&mut apiserver, client, "/readyz").await {
                Ok(()) => {
                    let mut cluster = Self {
                        url,
                        ca_pem: cluster_ca.cert_pem.clone(),
                        front_proxy_ca_pem: front_proxy_ca.cert_pem.clone(),
                        front_proxy_client,
                        cluster_ca,
                        front_proxy_ca,
                        admin_kubeconfig,
                        audit_log: file("audit.log"),
                        files: files.clone(),
                        counter: AtomicUsize::new(0),
                        etcd_pid,
                        controller_manager: None,
                        apiserver,
                        etcd,
                        _dir: dir,
                    };
                    eprintln!("kube-apiserver {KUBE_VERSION} ready at {} in {:?}", cluster.url, started.elapsed());
                    if let Some(binary) = controller_manager_bin {
                        cluster.start_controller_manager(&binary).await;
                    }
                    return cluster;
                }
                Err(e) => failure = e,
            }
        }
        panic!("kube-apiserver did not start: {failure}");
    }

    /// The cluster shared by every test of this test binary (etcd + kube-apiserver, no controller manager),
    /// started by the first test that asks, on the background runtime ([`crate::background`]).
    pub async fn shared() -> &'static KubeCluster {
        static SHARED: tokio::sync::OnceCell<KubeCluster> = tokio::sync::OnceCell::const_new();
        SHARED.get_or_init(|| crate::background::run(Self::start(ClusterOptions::default()))).await
    }

    async fn start_controller_manager(&mut self, binary: &Path) {
        let kubeconfig = self.files.join("controller-manager.kubeconfig");
        let cert = self.cluster_ca.client("system:kube-controller-manager", &[]);
        write(&kubeconfig, &kubeconfig_yaml(&self.url, &self.ca_pem, &cert_user(&cert)));
        let started = Instant::now();
        let mut failure = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut command = Command::new(binary);
            command.args(controller_manager_args(&self.files, &kubeconfig, port));
            let mut process = ChildProcess::spawn(
                "kube-controller-manager",
                command,
                &self.files.join("kube-controller-manager.log"),
            );
            match wait_ok(&mut process, insecure_client(port), "/healthz").await {
                Ok(()) => {
                    eprintln!("kube-controller-manager ready in {:?}", started.elapsed());
                    self.controller_manager = Some(process);
                    return;
                }
                Err(e) => failure = e,
            }
        }
        panic!("kube-controller-manager did not start: {failure}");
    }

    /// etcd's client URL (extension servers may keep their own prefix there).
    pub fn etcd_url(&self) -> String {
        self.etcd.endpoint()
    }

    /// The admin's kubeconfig (client certificate in `system:masters`).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// A client certificate signed by the cluster CA for `user` in `groups`.
    pub fn client_cert(&self, user: &str, groups: &[&str]) -> CertKey {
        self.cluster_ca.client(user, groups)
    }

    /// A client certificate signed by the front-proxy CA with common name `cn` (only `front-proxy-client` is an
    /// allowed name).
    pub fn front_proxy_cert(&self, cn: &str) -> CertKey {
        self.front_proxy_ca.client(cn, &[])
    }

    /// A fresh path in the cluster's directory, e.g. for a kubeconfig or a kubectl cache.
    pub fn new_path(&self, name: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        self.files.join(format!("{n}-{safe}"))
    }

    /// A kubeconfig for kube-apiserver as `user` in `groups` (a client certificate signed by the cluster CA).
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> PathBuf {
        let path = self.new_path(&format!("{user}.kubeconfig"));
        let cert = self.client_cert(user, groups);
        write(&path, &kubeconfig_yaml(&self.url, &self.ca_pem, &cert_user(&cert)));
        path
    }

    /// A kubeconfig for kube-apiserver with a bearer token.
    pub fn kubeconfig_with_token(&self, token: &str) -> PathBuf {
        let path = self.new_path("token.kubeconfig");
        write(&path, &kubeconfig_yaml(&self.url, &self.ca_pem, &[("token", token.to_string())]));
        path
    }

    /// kubectl as the admin, with its own discovery cache.
    pub fn kubectl(&self) -> Kubectl {
        self.kubectl_with(self.admin_kubeconfig.clone())
    }

    /// kubectl as `user` in `groups`.
    pub fn kubectl_as(&self, user: &str, groups: &[&str]) -> Kubectl {
        self.kubectl_with(self.kubeconfig_for(user, groups))
    }

    /// kubectl with `kubeconfig` and its own discovery cache.
    pub fn kubectl_with(&self, kubeconfig: PathBuf) -> Kubectl {
        let cache = self.new_path("kubectl");
        std::fs::create_dir_all(&cache).expect("create a kubectl cache directory");
        Kubectl::new(kubeconfig, &cache)
    }

    /// A kube-rs client as the admin (create it in the runtime that uses it: a client belongs to its runtime).
    pub async fn client(&self) -> kube::Client {
        client_from_kubeconfig(&self.admin_kubeconfig).await
    }

    /// A kube-rs client as `user` in `groups`.
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> kube::Client {
        client_from_kubeconfig(&self.kubeconfig_for(user, groups)).await
    }

    /// Create namespace `name` (as the admin) and return its name.
    pub async fn create_namespace(&self, name: &str) -> String {
        self.kubectl().ok(&["create", "namespace", name]).await;
        name.to_string()
    }

    /// A token of service account `namespace/name` (created if missing) from the TokenRequest API, valid 1 h.
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let k = self.kubectl();
        let exists = k.run(&["get", "serviceaccount", "-n", namespace, name]).await;
        if !exists.success {
            k.ok(&["create", "serviceaccount", "-n", namespace, name]).await;
        }
        let token = k.ok(&["create", "token", "-n", namespace, name, "--duration=1h"]).await;
        token.trim().to_string()
    }

    /// Every event of kube-apiserver's audit log so far (TokenReviews and SubjectAccessReviews with their
    /// requests).
    pub fn audit_events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.audit_log).unwrap_or_default();
        text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }

    /// The reviews `client_user` made so far.
    pub fn reviews_by(&self, client_user: &str) -> Reviews {
        let mut reviews = Reviews::default();
        for event in self.audit_events() {
            if event["user"]["username"] != client_user || event["verb"] != "create" {
                continue;
            }
            match event["objectRef"]["resource"].as_str() {
                Some("tokenreviews") => reviews.tokenreviews += 1,
                Some("subjectaccessreviews") => {
                    let spec = &event["requestObject"]["spec"];
                    reviews.sar_users.push(spec["user"].as_str().unwrap_or("").to_string());
                    reviews.sar_uids.push(spec["uid"].as_str().unwrap_or("").to_string());
                    let groups = spec["groups"].as_array().cloned().unwrap_or_default();
                    reviews.sar_groups.push(groups.iter().filter_map(|g| g.as_str().map(String::from)).collect());
                }
                _ => {}
            }
        }
        reviews
    }

    /// The reviews of `client_user` once the audit log has stopped growing for them (the audit event of a request
    /// is written as its response completes, so it may trail the response a little). Bounded: 2 s.
    pub async fn settled_reviews_by(&self, client_user: &str) -> Reviews {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut last = self.reviews_by(client_user);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.reviews_by(client_user);
            let same = now.tokenreviews == last.tokenreviews && now.sar_users == last.sar_users;
            if same || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }

    /// The last lines of kube-apiserver's log (for failure messages).
    pub fn apiserver_log(&self) -> String {
        self.apiserver.log_tail(40)
    }

    /// The last lines of kube-controller-manager's log, if it runs.
    pub fn controller_manager_log(&self) -> String {
        self.controller_manager.as_ref().map_or_else(String::new, |c| c.log_tail(40))
    }

    /// The pids of the cluster's processes: etcd, kube-apiserver and, if it runs, kube-controller-manager.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.etcd_pid.into_iter().collect();
        pids.push(self.apiserver.pid());
        pids.extend(self.controller_manager.as_ref().map(ChildProcess::pid));
        pids
    }

    /// The directory of the cluster's certificates, kubeconfigs and logs (removed with the cluster).
    pub fn dir(&self) -> &Path {
        &self.files
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        // EtcdServer kills etcd itself when dropped (right after this).
        if let Some(pid) = self.etcd_pid {
            unregister_pid(pid);
        }
    }
}

fn apiserver_args(files: &Path, port: u16, etcd_url: &str) -> Vec<String> {
    let f = |name: &str| files.join(name).display().to_string();
    vec![
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        "--insecure-port=0".into(),
        "--advertise-address=127.0.0.1".into(),
        "--endpoint-reconciler-type=none".into(),
        format!("--etcd-servers={etcd_url}"),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        format!("--cert-dir={}", f("apiserver-certs")),
        format!("--client-ca-file={}", f("ca.crt")),
        format!("--tls-cert-file={}", f("apiserver.crt")),
        format!("--tls-private-key-file={}", f("apiserver.key")),
        "--authorization-mode=Node,RBAC".into(),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", f("sa.pub")),
        format!("--service-account-signing-key-file={}", f("sa.key")),
        format!("--requestheader-client-ca-file={}", f("front-proxy-ca.crt")),
        "--requestheader-allowed-names=front-proxy-client".into(),
        "--requestheader-username-headers=X-Remote-User".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
        format!("--proxy-client-cert-file={}", f("front-proxy-client.crt")),
        format!("--proxy-client-key-file={}", f("front-proxy-client.key")),
        // The aggregator dials <service>.<namespace>.svc:<port>; an ExternalName Service to 127.0.0.1 makes that
        // loopback (routing to endpoints would break ExternalName backends).
        "--enable-aggregator-routing=false".into(),
        format!("--audit-policy-file={}", f("audit-policy.yaml")),
        format!("--audit-log-path={}", f("audit.log")),
        "--profiling=false".into(),
    ]
}

fn controller_manager_args(files: &Path, kubeconfig: &Path, port: u16) -> Vec<String> {
    let f = |name: &str| files.join(name).display().to_string();
    let kubeconfig = kubeconfig.display();
    vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        format!("--service-account-private-key-file={}", f("sa.key")),
        format!("--root-ca-file={}", f("ca.crt")),
        "--use-service-account-credentials=true".into(),
        // Every default controller but the cloud provider's.
        "--controllers=*,-cloud-node-lifecycle,-route,-service".into(),
        "--leader-elect=false".into(),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        "--port=0".into(),
        format!("--cert-dir={}", f("controller-manager-certs")),
        "--profiling=false".into(),
    ]
}

/// Poll `path` with `client` until it answers `ok`; fails when the process exits or 90 s pass (with its log).
async fn wait_ok(process: &mut ChildProcess, client: kube::Client, path: &str) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let request = http::Request::get(path).body(Vec::new()).expect("a request");
        let last = match tokio::time::timeout(Duration::from_secs(5), client.request_text(request)).await {
            Ok(Ok(text)) if text.trim() == "ok" => return Ok(()),
            Ok(Ok(text)) => text,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer within 5 s".into(),
        };
        if let Some(status) = process.exited() {
            return Err(format!("exited ({status}); {}", process.log_tail(40)));
        }
        if Instant::now() > deadline {
            return Err(format!("{path} not ok within {READY_TIMEOUT:?} (last: {last}); {}", process.log_tail(40)));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An anonymous client of `https://127.0.0.1:<port>` that accepts any serving certificate (the controller
/// manager's self-signed one; only for its /healthz).
fn insecure_client(port: u16) -> kube::Client {
    let mut config = kube::Config::new(format!("https://127.0.0.1:{port}").parse().expect("URL"));
    config.accept_invalid_certs = true;
    config.default_retry = false;
    kube::Client::try_from(config).expect("build a kube client")
}
