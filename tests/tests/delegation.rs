//! Delegated authentication and authorization against a real kube-apiserver v1.20.2: front-proxy certificates
//! and headers, client certificates, TokenReview with its cache, SubjectAccessReview with upstream's 403 message,
//! the `extension-apiserver-authentication` ConfigMap watched for a new CA, NamespaceLifecycle, and the readyz
//! self-diagnosis when RBAC is missing.
//!
//! Each test starts its own server (in memory, not registered with the aggregator) with an identity of its own
//! towards kube-apiserver (a client certificate), so kube-apiserver's audit log tells exactly which TokenReviews and
//! SubjectAccessReviews that server made. The cluster is shared by the binary; each test has its own namespace.
//! What a real kube-apiserver cannot be made to do stays on the stand-in (apiserver/tests/delegation.rs).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use backup_apiserver::options::Options;
use backup_e2e::aggregated::{kustomize, list};
use backup_e2e::cluster::{KubeCluster, Reviews, cert_user, kubeconfig_yaml};
use backup_e2e::kubectl::Kubectl;
use backup_e2e::pki::{Ca, CertKey};
use backup_e2e::{GV_PATH, Http, Response, backup, backups};
use clap::Parser;
use http::Method;
use serde_json::{Value, json};

/// Servers in this group have the RBAC config/ gives the server: TokenReview and SubjectAccessReview
/// (system:auth-delegator), the authentication ConfigMap, namespaces.
const DELEGATORS: &str = "backup-delegators";
/// ... everything but system:auth-delegator.
const WITHOUT_AUTH_DELEGATOR: &str = "backup-delegators-without-auth-delegator";
/// ... everything but the ConfigMap reader Role.
const WITHOUT_CONFIGMAP_READER: &str = "backup-delegators-without-configmap-reader";

fn binding(kind: &str, name: &str, namespace: Option<&str>, role_kind: &str, role: &str, group: &str) -> Value {
    let mut metadata = json!({"name": name});
    if let Some(ns) = namespace {
        metadata["namespace"] = ns.into();
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
    })
}

/// The shared cluster, with config/'s ClusterRoles and the three groups' bindings applied once.
async fn cluster() -> &'static KubeCluster {
    static RBAC: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let cluster = KubeCluster::shared().await;
    RBAC.get_or_init(|| async {
        let admin = cluster.kubectl();
        let mut docs: Vec<Value> =
            kustomize(&admin, "base/apiserver").await.into_iter().filter(|d| d["kind"] == "ClusterRole").collect();
        let auth_delegator = |g: &str| {
            binding(
                "ClusterRoleBinding",
                &format!("{g}:auth-delegator"),
                None,
                "ClusterRole",
                "system:auth-delegator",
                g,
            )
        };
        let reader = |g: &str| {
            let role = "extension-apiserver-authentication-reader";
            binding("RoleBinding", &format!("{g}:reader"), Some("kube-system"), "Role", role, g)
        };
        let namespaces = |g: &str| {
            binding("ClusterRoleBinding", &format!("{g}:namespaces"), None, "ClusterRole", "backup-apiserver", g)
        };
        docs.extend([auth_delegator(DELEGATORS), reader(DELEGATORS), namespaces(DELEGATORS)]);
        docs.extend([reader(WITHOUT_AUTH_DELEGATOR), namespaces(WITHOUT_AUTH_DELEGATOR)]);
        docs.extend([auth_delegator(WITHOUT_CONFIGMAP_READER), namespaces(WITHOUT_CONFIGMAP_READER)]);
        admin.ok_stdin(&["apply", "-f", "-"], &list(docs)).await;
    })
    .await;
    cluster
}

/// A server delegating to the shared cluster, as `user` in `group`, in namespace `ns` (created) where alice (a
/// service account), carol and dave may use backups.
struct Setup {
    cluster: &'static KubeCluster,
    server: backup_apiserver::Server,
    /// The server's user name towards kube-apiserver.
    user: String,
    ns: String,
    dir: tempfile::TempDir,
}

async fn setup_as(group: &str) -> Setup {
    setup_with(group, &[]).await
}

/// [`setup_as`] with `extra` flags for the server.
async fn setup_with(group: &str, extra: &[&str]) -> Setup {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let cluster = cluster().await;
    let ns = cluster.create_namespace(&format!("delegation-{n}")).await;
    let admin = cluster.kubectl();
    // (`kubectl create role` would look the resource up in discovery, and the group is not registered here.)
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "backup-user", "namespace": ns},
        "rules": [{"apiGroups": ["backup.extend-k8s.io"], "resources": ["timeseriesdbbackups"],
                   "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}],
    });
    admin.ok_stdin(&["apply", "-f", "-"], &role.to_string()).await;
    admin
        .ok(&[
            "create",
            "rolebinding",
            "backup-users",
            "-n",
            &ns,
            "--role=backup-user",
            "--user=carol",
            "--user=dave",
            &format!("--serviceaccount={ns}:alice"),
        ])
        .await;
    for user in ["carol", "dave", &format!("system:serviceaccount:{ns}:alice")] {
        wait_allowed(&admin, &ns, user).await;
    }

    let dir = tempfile::tempdir().unwrap();
    let user = format!("delegating-server-{n}");
    let identity = cluster.client_cert(&user, &[group]);
    let kubeconfig = dir.path().join("server.kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_yaml(&cluster.url, &cluster.ca_pem, &cert_user(&identity))).unwrap();
    let kubeconfig_flag = format!("--kubeconfig={}", kubeconfig.display());
    let flags = ["backup-apiserver", "--in-memory", "--secure-port=0", "--bind-address=127.0.0.1", &kubeconfig_flag];
    let options = Options::parse_from([&flags[..], extra].concat());
    let server = backup_apiserver::start(options).await.expect("server starts");
    let s = Setup { cluster, server, user, ns, dir };
    // Let the startup probes (one TokenReview, one SubjectAccessReview) land before a test counts reviews.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let r = s.cluster.reviews_by(&s.user);
        if r.tokenreviews >= 1 && !r.sar_users.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s
}

async fn setup() -> Setup {
    setup_as(DELEGATORS).await
}

/// Wait (bounded) until kube-apiserver's RBAC lets `user` list backups in `ns`: a SubjectAccessReview made before
/// would be denied, and the server caches denials for 10 s.
async fn wait_allowed(admin: &Kubectl, ns: &str, user: &str) {
    // (`kubectl auth can-i` would look the resource up in discovery, and the group is not registered here.)
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "resourceAttributes": {"namespace": ns, "verb": "list", "group": "backup.extend-k8s.io",
                                                      "resource": "timeseriesdbbackups"}},
    })
    .to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = admin.ok_stdin(&["create", "-f", "-", "-o", "jsonpath={.status.allowed}"], &review).await;
        if out.trim() == "true" {
            return;
        }
        assert!(Instant::now() < deadline, "RBAC does not let {user} list backups in {ns}: {out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Setup {
    fn url(&self) -> String {
        format!("https://{}", self.server.addr)
    }

    /// Users asked about in the server's SubjectAccessReviews, without its startup probe (for system:anonymous).
    async fn reviewed_users(&self) -> Vec<String> {
        self.reviews().await.sar_users.into_iter().filter(|u| u != "system:anonymous").collect()
    }

    async fn reviews(&self) -> Reviews {
        self.cluster.settled_reviews_by(&self.user).await
    }

    /// Raw HTTPS to our server with these kubeconfig `user` fields (none: no credentials).
    async fn http(&self, user: &[(&str, String)]) -> Http {
        let path = self.cluster.new_path("client.kubeconfig");
        std::fs::write(&path, kubeconfig_yaml(&self.url(), &self.server.ca_pem, user)).unwrap();
        Http::new(backup_e2e::cluster::client_from_kubeconfig(&path).await)
    }

    async fn request(&self, user: &[(&str, String)], path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = self.http(user).await.request(Method::GET, path);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send().await
    }

    fn front_proxy(&self) -> Vec<(&'static str, String)> {
        cert_user(&self.cluster.front_proxy_client)
    }

    /// The kubeconfig `user` fields of a token of service account `name` in the test's namespace.
    async fn token(&self, name: &str) -> Vec<(&'static str, String)> {
        vec![("token", self.cluster.service_account_token(&self.ns, name).await)]
    }
}

fn other_ca_cert(cn: &str) -> CertKey {
    Ca::new("other").client(cn, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_proxy_headers_are_trusted_only_with_its_certificate() {
    let s = setup().await;
    let headers = [("X-Remote-User", "carol"), ("X-Remote-Group", "team")];
    s.request(&s.front_proxy(), &backups(&s.ns), &headers).await.expect_status(200);
    assert_eq!(s.reviewed_users().await, ["carol"]);

    // The same headers with no certificate, a certificate from another CA, or a CN outside the allowed names.
    for (what, user) in [
        ("no certificate", vec![]),
        ("another CA", cert_user(&other_ca_cert("front-proxy-client"))),
        ("a CN not allowed", cert_user(&s.cluster.front_proxy_cert("someone-else"))),
    ] {
        let status = s.request(&user, &backups(&s.ns), &headers).await.expect_failure(401, "Unauthorized");
        assert_eq!(status["message"], "Unauthorized", "{what}");
    }
    assert_eq!(s.reviewed_users().await, ["carol"], "no SubjectAccessReview for unauthenticated requests");
}

/// The front proxy's UID header (`--requestheader-uid-headers`, or the ConfigMap's key, which kube-apiserver ≥ 1.33
/// publishes): the UID goes into the SubjectAccessReview; without it configured, an `X-Remote-Uid` is ignored
/// (and removed), as upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_proxys_uid_header_is_read_when_configured() {
    let with_uid = setup_with(DELEGATORS, &["--requestheader-uid-headers=X-Remote-Uid"]).await;
    let headers = [("X-Remote-User", "carol"), ("X-Remote-Uid", "carol-uid-1"), ("X-Remote-Group", "team")];
    with_uid.request(&with_uid.front_proxy(), &backups(&with_uid.ns), &headers).await.expect_status(200);
    let reviews = with_uid.reviews().await;
    let i = reviews.sar_users.iter().position(|u| u == "carol").unwrap_or_else(|| panic!("{reviews:?}"));
    assert_eq!(reviews.sar_uids[i], "carol-uid-1", "{reviews:?}");

    let without = setup().await;
    without.request(&without.front_proxy(), &backups(&without.ns), &headers).await.expect_status(200);
    let reviews = without.reviews().await;
    let i = reviews.sar_users.iter().position(|u| u == "carol").unwrap_or_else(|| panic!("{reviews:?}"));
    assert_eq!(reviews.sar_uids[i], "", "not configured: no UID: {reviews:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masters_skip_the_review_and_the_aggregator_probe_is_fast() {
    let s = setup().await;
    let headers = [("X-Remote-User", "system:kube-aggregator"), ("X-Remote-Group", "system:masters")];
    let body = s.request(&s.front_proxy(), GV_PATH, &headers).await.expect_status(200).json();
    assert_eq!(body["kind"], "APIResourceList");
    assert!(s.reviewed_users().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_reviewed_once_per_ttl_and_denials_are_403_with_upstreams_message() {
    let s = setup().await;
    let alice = s.token("alice").await;
    let before = s.reviews().await.tokenreviews;
    s.request(&alice, &backups(&s.ns), &[]).await.expect_status(200);
    s.request(&alice, &backups(&s.ns), &[]).await.expect_status(200);
    assert_eq!(s.reviews().await.tokenreviews - before, 1, "the second request is answered from the cache");
    let alice_user = format!("system:serviceaccount:{}:alice", s.ns);
    assert_eq!(s.reviewed_users().await, [alice_user.as_str()], "the allow decision is cached too");

    s.request(&[("token", "wrong".into())], &backups(&s.ns), &[]).await.expect_failure(401, "Unauthorized");

    let bob = s.token("bob").await;
    let body = s.request(&bob, &format!("{}/x", backups(&s.ns)), &[]).await.expect_failure(403, "Forbidden");
    assert_eq!(
        body["message"],
        format!(
            "timeseriesdbbackups.backup.extend-k8s.io \"x\" is forbidden: User \"system:serviceaccount:{ns}:bob\" \
             cannot get resource \"timeseriesdbbackups\" in API group \"backup.extend-k8s.io\" in the namespace \
             \"{ns}\"",
            ns = s.ns
        )
    );
    assert_eq!(body["details"]["kind"], "timeseriesdbbackups");
    assert_eq!(body["details"]["name"], "x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_name_the_user_and_groups() {
    let s = setup().await;
    let dave = cert_user(&s.cluster.client_cert("dave", &["ops"]));
    s.request(&dave, &backups(&s.ns), &[]).await.expect_status(200);
    let reviews = s.reviews().await;
    let i = reviews.sar_users.iter().position(|u| u == "dave").unwrap_or_else(|| panic!("{reviews:?}"));
    assert_eq!(reviews.sar_groups[i], ["ops", "system:authenticated"], "{reviews:?}");
    assert_eq!(s.reviewed_users().await, ["dave"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_update_with_a_new_ca_is_honoured_without_restart() {
    let s = setup().await;
    let new_ca = Ca::new("rotated-front-proxy-ca");
    let fp = cert_user(&new_ca.client("front-proxy-client", &[]));
    let headers = [("X-Remote-User", "carol")];
    s.request(&fp, &backups(&s.ns), &headers).await.expect_failure(401, "Unauthorized");

    // What an operator rotating the front-proxy CA does: add the new CA to the bundle kube-apiserver publishes.
    let admin = s.cluster.kubectl();
    let key = "requestheader-client-ca-file";
    let out =
        admin.ok(&["get", "configmap", "-n", "kube-system", "extension-apiserver-authentication", "-o", "json"]).await;
    let configmap: Value = serde_json::from_str(&out).unwrap();
    let bundle = format!("{}{}", configmap["data"][key].as_str().unwrap(), new_ca.cert_pem);
    let patch = json!({"data": {key: bundle}}).to_string();
    admin
        .ok(&[
            "patch",
            "configmap",
            "-n",
            "kube-system",
            "extension-apiserver-authentication",
            "--type=merge",
            "-p",
            &patch,
        ])
        .await;

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let code = s.request(&fp, &backups(&s.ns), &headers).await.status;
        if code == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the rotated CA is not trusted within 5 s ({code})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_lifecycle() {
    let s = setup().await;
    let admin = [("X-Remote-User", "admin"), ("X-Remote-Group", "system:masters")];
    let fp = s.http(&s.front_proxy()).await;
    let post = |path: String, name: &str| {
        let mut req = fp.request(Method::POST, &path).json(&backup(name));
        for (k, v) in admin {
            req = req.header(k, v);
        }
        req.send()
    };
    post(backups(&s.ns), "ok").await.expect_status(201);
    let body = post(backups("nope"), "x").await.expect_failure(404, "NotFound");
    assert_eq!(body["message"], "namespaces \"nope\" not found");

    // A namespace being deleted (no kube-controller-manager runs here, so it stays Terminating).
    let dying = s.cluster.create_namespace(&format!("{}-dying", s.ns)).await;
    s.cluster.kubectl().ok(&["delete", "namespace", &dying, "--wait=false"]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in 0.. {
        let name = format!("x{n}");
        let answer = post(backups(&dying), &name).await;
        if answer.status == 403 {
            let body = answer.expect_failure(403, "Forbidden");
            assert_eq!(
                body["message"],
                format!(
                    "timeseriesdbbackups.backup.extend-k8s.io \"{name}\" is forbidden: unable to create new content in \
                     namespace {dying} because it is being terminated"
                )
            );
            assert_eq!(body["details"]["causes"][0]["reason"], "NamespaceTerminating");
            break;
        }
        answer.expect_status(201);
        assert!(Instant::now() < deadline, "creates in terminating namespace {dying} still succeed after 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_no_credentials_but_everything_else_does() {
    let s = setup().await;
    for path in ["/healthz", "/livez", "/readyz"] {
        s.request(&[], path, &[]).await.expect_status(200);
    }
    for path in ["/apis", "/openapi/v2", "/metrics", &backups(&s.ns)] {
        let r = s.request(&[], path, &[]).await;
        assert_eq!(r.status, 401, "{path}: {}", r.text());
    }
}

/// `/readyz?verbose` once it lists the delegation checks (bounded: 5 s).
async fn readyz_verbose(s: &Setup, user: &[(&str, String)], headers: &[(&str, &str)]) -> Response {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = s.request(user, "/readyz?verbose", headers).await;
        if r.text().contains("delegated-authorization") || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_a_missing_auth_delegator_binding() {
    let s = setup_as(WITHOUT_AUTH_DELEGATOR).await;
    let admin = [("X-Remote-User", "admin"), ("X-Remote-Group", "system:masters")];
    let text = readyz_verbose(&s, &s.front_proxy(), &admin).await.text();
    assert!(text.contains("[-]delegated-authentication failed: TokenReview is forbidden"), "{text}");
    assert!(text.contains("system:auth-delegator"), "{text}");
    assert!(text.contains("[-]delegated-authorization failed: SubjectAccessReview is forbidden"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_a_missing_configmap_reader_binding_and_no_front_proxy_ca() {
    let s = setup_as(WITHOUT_CONFIGMAP_READER).await;
    let dave = cert_user(&s.cluster.client_cert("dave", &[]));
    let r = readyz_verbose(&s, &dave, &[]).await;
    assert_eq!(r.status, 500, "{}", r.text());
    let text = r.text();
    assert!(
        text.contains(
            "[-]authentication-configmap failed: cannot read ConfigMap kube-system/extension-apiserver-authentication: forbidden"
        ),
        "{text}"
    );
    assert!(text.contains("extension-apiserver-authentication-reader"), "{text}");
    assert!(text.contains("[-]front-proxy-ca failed: no front-proxy CA"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_works_with_client_certificate_and_token_kubeconfigs() {
    let s = setup().await;
    let dave = cert_user(&s.cluster.client_cert("dave", &["ops"]));
    let alice = s.token("alice").await;
    for (name, user) in [("cert", dave), ("token", alice)] {
        let kubeconfig = s.dir.path().join(format!("{name}.kubeconfig"));
        std::fs::write(&kubeconfig, kubeconfig_yaml(&s.url(), &s.server.ca_pem, &user)).unwrap();
        let k = Kubectl::new(kubeconfig, &s.dir.path().join(name));
        let manifest = backup(&format!("from-{name}")).to_string();
        let out = k.ok_stdin(&["apply", "-n", &s.ns, "-f", "-"], &manifest).await;
        assert_eq!(out.trim(), format!("timeseriesdbbackup.backup.extend-k8s.io/from-{name} created"));
        let out = k.ok(&["get", "tsdbb", "-n", &s.ns]).await;
        assert!(out.contains(&format!("from-{name}")), "{out}");
    }
}

/// `Impersonate-User`/`-Group`/`-Extra-*` sent straight to the server: each impersonated name is a
/// SubjectAccessReview (`impersonate` on `users`, `groups`, `userextras/<key>`) answered by kube-apiserver's RBAC,
/// and the request then acts as the impersonated user; a name RBAC does not allow is upstream's 403, a group
/// without a user a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_is_authorized_by_kube_apiserver() {
    let s = setup().await;
    let admin = s.cluster.kubectl();
    let impersonator = format!("impersonator-{}", s.ns);
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": impersonator},
        "rules": [
            {"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"], "resourceNames": ["carol"]},
            {"apiGroups": [""], "resources": ["groups"], "verbs": ["impersonate"], "resourceNames": ["ops"]},
            {"apiGroups": ["authentication.k8s.io"], "resources": ["userextras/scopes"], "verbs": ["impersonate"]},
        ],
    });
    admin.ok_stdin(&["apply", "-f", "-"], &role.to_string()).await;
    let bind = ["create", "clusterrolebinding", &impersonator, "--clusterrole", &impersonator, "--user", &impersonator];
    admin.ok(&bind).await;
    let can_impersonate_carol = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": impersonator, "resourceAttributes": {"verb": "impersonate", "resource": "users", "name": "carol"}},
    })
    .to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin.ok_stdin(&["create", "-f", "-", "-o", "jsonpath={.status.allowed}"], &can_impersonate_carol).await
        != "true"
    {
        assert!(Instant::now() < deadline, "RBAC does not let {impersonator} impersonate carol");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let me = cert_user(&s.cluster.client_cert(&impersonator, &[]));
    let path = backups(&s.ns);
    s.request(&me, &path, &[]).await.expect_failure(403, "Forbidden");
    s.request(&me, &path, &[("Impersonate-User", "carol")]).await.expect_status(200);
    let as_carol =
        [("Impersonate-User", "carol"), ("Impersonate-Group", "ops"), ("Impersonate-Extra-Scopes", "backups")];
    s.request(&me, &path, &as_carol).await.expect_status(200);
    let reviews = s.reviews().await;
    let i = reviews.sar_users.iter().rposition(|u| u == "carol").unwrap_or_else(|| panic!("{reviews:?}"));
    assert_eq!(reviews.sar_groups[i], ["ops", "system:authenticated"], "the list is authorized as carol: {reviews:?}");

    let body = s.request(&me, &path, &[("Impersonate-User", "dave")]).await.expect_failure(403, "Forbidden");
    assert_eq!(
        body["message"],
        format!(
            "users \"dave\" is forbidden: User \"{impersonator}\" cannot impersonate resource \"users\" in API group \
             \"\" at the cluster scope"
        )
    );
    let wrong_group = [("Impersonate-User", "carol"), ("Impersonate-Group", "system:masters")];
    let body = s.request(&me, &path, &wrong_group).await.expect_failure(403, "Forbidden");
    assert!(body["message"].as_str().unwrap().starts_with("groups \"system:masters\" is forbidden"), "{body}");
    let body = s.request(&me, &path, &[("Impersonate-Group", "ops")]).await.expect_failure(400, "BadRequest");
    assert!(body["message"].as_str().unwrap().contains("needs Impersonate-User"), "{body}");
}
