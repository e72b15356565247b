//! Admission webhooks and the audit log against a real kube-apiserver: Mutating/ValidatingWebhookConfigurations
//! created with kubectl apply to TimeseriesDBBackups created through the aggregator, calling a webhook server on
//! loopback ([`backup_e2e::webhook`]) reached through a Service (an ExternalName to 127.0.0.1, resolved as the
//! aggregator resolves it) or a `url`, verified against the configuration's `caBundle`; and the server's audit log
//! shows those requests under the `Audit-ID` kube-apiserver logged them with.
//!
//! The cluster is shared by the tests of this binary, so webhook configurations (cluster-wide) are confined to each
//! test's namespaces by a `namespaceSelector` on a label only those namespaces carry.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::path::PathBuf;
use std::time::{Duration, Instant};

use backup_e2e::aggregated::AggregatedCluster;
use backup_e2e::webhook::{Behaviour, DENIAL, TEAM_LABEL, WARNING, WebhookServer};
use backup_e2e::{Kubectl, backup, backups};
use http_body_util::BodyExt;
use serde_json::{Value, json};

/// The label a test's namespaces carry, with the test's name.
const SELECTOR_LABEL: &str = "admission-test";
/// How long a configuration may take to reach the server's watch.
const SEEN_TIMEOUT: Duration = Duration::from_secs(30);

const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Request
  resources: [{group: backup.extend-k8s.io}]
- level: None
";

struct Admitted {
    cluster: AggregatedCluster,
    audit_log: PathBuf,
    _dir: tempfile::TempDir,
}

async fn shared() -> &'static Admitted {
    static SHARED: tokio::sync::OnceCell<Admitted> = tokio::sync::OnceCell::const_new();
    SHARED
        .get_or_init(|| {
            backup_e2e::background::run(async {
                let dir = tempfile::tempdir().unwrap();
                let policy = dir.path().join("policy.yaml");
                std::fs::write(&policy, AUDIT_POLICY).unwrap();
                let audit_log = dir.path().join("audit.log");
                let flags = vec![
                    format!("--audit-policy-file={}", policy.display()),
                    format!("--audit-log-path={}", audit_log.display()),
                ];
                Admitted { cluster: AggregatedCluster::start(flags).await, audit_log, _dir: dir }
            })
        })
        .await
}

/// One test's namespace (labelled for its configurations), its webhook server behind Service `webhook` there.
struct Setup {
    ns: String,
    webhook: WebhookServer,
    kubectl: Kubectl,
}

async fn setup(a: &Admitted, ns: &str) -> Setup {
    let c = &a.cluster.cluster;
    c.create_namespace(ns).await;
    let kubectl = c.kubectl();
    kubectl.ok(&["label", "namespace", ns, &format!("{SELECTOR_LABEL}={ns}")]).await;
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "webhook", "namespace": ns},
                         "spec": {"type": "ExternalName", "externalName": "127.0.0.1"}});
    kubectl.ok_stdin(&["apply", "-f", "-"], &service.to_string()).await;
    let webhook = WebhookServer::start(ns, "webhook").await;
    Setup { ns: ns.to_string(), webhook, kubectl }
}

impl Setup {
    /// A webhook of this test reached through the Service, for CREATE and UPDATE of backups in its namespaces.
    fn hook(&self, name: &str, behaviour: Behaviour, extra: Value) -> Value {
        let mut hook = json!({
            "name": name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "timeoutSeconds": 5,
            "clientConfig": {
                "service": {"namespace": self.ns, "name": "webhook", "port": self.webhook.port, "path": behaviour.path()},
                "caBundle": self.webhook.ca_bundle,
            },
            "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": ["backup.extend-k8s.io"], "apiVersions": ["v1"],
                       "resources": ["timeseriesdbbackups"]}],
            "namespaceSelector": {"matchLabels": {SELECTOR_LABEL: self.ns}},
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            hook[k] = v.clone();
        }
        hook
    }

    /// `kubectl apply` a configuration of `kind` named after the namespace.
    async fn configure(&self, api_version: &str, kind: &str, hooks: Vec<Value>) {
        let configuration =
            json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": self.ns}, "webhooks": hooks});
        self.kubectl.ok_stdin(&["apply", "-f", "-"], &configuration.to_string()).await;
    }

    /// `kubectl create` of `object` in this namespace.
    async fn create(&self, object: &Value, extra: &[&str]) -> backup_e2e::kubectl::Output {
        let mut args = vec!["create", "-n", &self.ns, "-f", "-"];
        args.extend_from_slice(extra);
        self.kubectl.run_with(&args, &object.to_string(), &[]).await
    }

    /// Dry-run creates until `behaviour` has been called: the server has seen the configuration.
    async fn until_called(&self, behaviour: Behaviour) {
        let deadline = Instant::now() + SEEN_TIMEOUT;
        while self.webhook.reviews(behaviour).is_empty() {
            assert!(Instant::now() < deadline, "the server did not call {behaviour:?} within {SEEN_TIMEOUT:?}");
            self.create(&labelled(backup("probe")), &["--dry-run=server"]).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Dry-run creates of an unlabelled backup until one fails saying `message`; its stderr.
    async fn until_refused(&self, message: &str) -> String {
        let deadline = Instant::now() + SEEN_TIMEOUT;
        loop {
            let out = self.create(&backup("probe"), &["--dry-run=server"]).await;
            if !out.success && out.stderr.contains(message) {
                return out.stderr;
            }
            assert!(Instant::now() < deadline, "no create refused with {message:?} in time; last: {}", out.stderr);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn get(&self, name: &str) -> Value {
        serde_json::from_str(
            &self.kubectl.ok(&["get", "tsdbb", "-n", &self.ns, name, "-o", "json", "--show-managed-fields"]).await,
        )
        .unwrap()
    }
}

fn labelled(mut object: Value) -> Value {
    object["metadata"]["labels"] = json!({TEAM_LABEL: "storage"});
    object
}

/// POST `object` to kube-apiserver (proxied to us) with header `Audit-ID: <audit_id>`: status, Audit-ID answered,
/// body.
async fn post_with_audit_id(a: &Admitted, ns: &str, object: &Value, audit_id: &str) -> (u16, String, Value) {
    let client = a.cluster.cluster.client().await;
    let request = http::Request::post(backups(ns))
        .header("Content-Type", "application/json")
        .header("Audit-ID", audit_id)
        .body(kube::client::Body::from(object.to_string().into_bytes()))
        .unwrap();
    let response = client.send(request).await.unwrap();
    let status = response.status().as_u16();
    let echoed = response.headers().get("audit-id").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, echoed, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Our audit log's ResponseComplete event with `audit_id` (waiting, bounded, for it to be written).
async fn our_event(a: &Admitted, audit_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&a.audit_log).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["auditID"] == audit_id && e["stage"] == "ResponseComplete");
        if let Some(event) = found {
            return event;
        }
        assert!(Instant::now() < deadline, "no audit event {audit_id} in our log");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether kube-apiserver's audit log has an event with `audit_id` (waiting, bounded).
async fn kube_apiserver_logged(a: &Admitted, audit_id: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if a.cluster.cluster.audit_events().iter().any(|e| e["auditID"] == audit_id) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_validating_webhook_denies_a_create_through_the_aggregator() {
    let a = shared().await;
    let s = setup(a, "adm-deny").await;
    let hook = "deny.adm-deny.test";
    s.configure(
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        vec![s.hook(hook, Behaviour::DenyUnlabelled, json!({}))],
    )
    .await;
    s.until_called(Behaviour::DenyUnlabelled).await;
    let dry_run = s.webhook.reviews(Behaviour::DenyUnlabelled)[0].clone();
    assert_eq!(dry_run["request"]["dryRun"], true, "sideEffects None: called on a dry run, told so");

    // kubectl shows upstream's message, with the webhook's code and reason, and its warning.
    let out = s.create(&backup("x"), &[]).await;
    assert!(!out.success);
    assert!(
        out.stderr.contains(&format!(
            "Error from server (Forbidden): error when creating \"STDIN\": admission webhook \"{hook}\" denied the request: {DENIAL}"
        )),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(&format!("Warning: {WARNING}")), "{}", out.stderr);

    // What the webhook was sent.
    let review = s.webhook.reviews(Behaviour::DenyUnlabelled).last().unwrap().clone();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    let r = &review["request"];
    assert!(!r["uid"].as_str().unwrap().is_empty());
    let gvk = json!({"group": "backup.extend-k8s.io", "version": "v1", "kind": "TimeseriesDBBackup"});
    let gvr = json!({"group": "backup.extend-k8s.io", "version": "v1", "resource": "timeseriesdbbackups"});
    assert_eq!((&r["kind"], &r["requestKind"]), (&gvk, &gvk));
    assert_eq!((&r["resource"], &r["requestResource"]), (&gvr, &gvr));
    assert_eq!(
        (r["operation"].as_str(), r["namespace"].as_str(), r["name"].as_str()),
        (Some("CREATE"), Some("adm-deny"), Some("x"))
    );
    assert_eq!(r["userInfo"]["username"], "kubernetes-admin", "the user the aggregator passed on");
    assert!(r["userInfo"]["groups"].as_array().unwrap().contains(&json!("system:masters")));
    assert_eq!(r["dryRun"], false);
    assert_eq!(r["options"]["kind"], "CreateOptions");
    assert_eq!(r["object"]["metadata"]["name"], "x");
    assert!(r["oldObject"].is_null() && r.get("subResource").is_none());

    // Allowed when labelled; an UPDATE that drops the label is denied, with the stored object as oldObject.
    s.create(&labelled(backup("y")), &[]).await.expect_success(&["create y"]);
    let err = s.kubectl.fails(&["label", "tsdbb", "-n", &s.ns, "y", &format!("{TEAM_LABEL}-")]).await;
    assert!(err.contains(&format!("admission webhook \"{hook}\" denied the request: {DENIAL}")), "{err}");
    let update = s.webhook.reviews(Behaviour::DenyUnlabelled).last().unwrap().clone();
    assert_eq!(update["request"]["operation"], "UPDATE");
    assert_eq!(update["request"]["oldObject"]["metadata"]["labels"][TEAM_LABEL], "storage");
    assert_eq!(update["request"]["options"]["kind"], "UpdateOptions");

    // namespaceSelector: a namespace without the label is not the webhook's business.
    let other = a.cluster.cluster.create_namespace("adm-deny-unlabelled").await;
    let calls = s.webhook.reviews(Behaviour::DenyUnlabelled).len();
    s.kubectl.ok_stdin(&["create", "-n", &other, "-f", "-"], &backup("x").to_string()).await;
    assert_eq!(s.webhook.reviews(Behaviour::DenyUnlabelled).len(), calls);

    // Audit: the denial is in our log under the Audit-ID kube-apiserver logged it with, with the webhook's
    // annotation.
    let (status, echoed, body) = post_with_audit_id(a, &s.ns, &backup("z"), "adm-deny-audit-1").await;
    assert_eq!((status, echoed.as_str()), (403, "adm-deny-audit-1"), "{body}");
    assert_eq!(body["message"], format!("admission webhook \"{hook}\" denied the request: {DENIAL}"));
    assert_eq!(body["reason"], "Forbidden");
    let event = our_event(a, "adm-deny-audit-1").await;
    assert_eq!(event["verb"], "create");
    assert_eq!(event["user"]["username"], "kubernetes-admin");
    assert_eq!(event["responseStatus"]["code"], 403);
    assert_eq!(event["annotations"][format!("{hook}/behaviour")], "deny-unlabelled");
    assert!(kube_apiserver_logged(a, "adm-deny-audit-1").await, "kube-apiserver logged the same Audit-ID");
}

#[tokio::test]
async fn a_mutating_webhook_adds_a_label() {
    let a = shared().await;
    let s = setup(a, "adm-mutate").await;
    let hook = "label.adm-mutate.test";
    let skip = json!({"objectSelector": {"matchExpressions": [{"key": "skip-mutation", "operator": "DoesNotExist"}]},
                      "reinvocationPolicy": "IfNeeded"});
    s.configure(
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        vec![s.hook(hook, Behaviour::AddLabel, skip)],
    )
    .await;
    let deadline = Instant::now() + SEEN_TIMEOUT;
    loop {
        let out = s.create(&backup("probe"), &["--dry-run=server", "-o", "json"]).await;
        let dry: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        if dry["metadata"]["labels"][TEAM_LABEL] == "platform" {
            break;
        }
        assert!(Instant::now() < deadline, "the dry run was never mutated: {}{}", out.stdout, out.stderr);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The label is on the stored object; as upstream, managedFields are those of the request as it was sent (the
    // field manager runs before mutating admission), so the webhook's label belongs to no manager.
    s.create(&backup("x"), &[]).await.expect_success(&["create x"]);
    let stored = s.get("x").await;
    assert_eq!(stored["metadata"]["labels"][TEAM_LABEL], "platform");
    let managed = stored["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(managed.len(), 1);
    assert_eq!(managed[0]["manager"], "kubectl-create");
    assert!(managed[0]["fieldsV1"]["f:spec"].is_object());
    assert!(managed[0]["fieldsV1"]["f:metadata"]["f:labels"].is_null(), "{}", managed[0]);
    let review = s.webhook.reviews(Behaviour::AddLabel).last().unwrap().clone();
    assert_eq!(review["request"]["object"]["metadata"]["labels"], Value::Null, "the webhook saw the request's object");

    // objectSelector: an object with the label skip-mutation is left alone.
    let mut skipped = backup("y");
    skipped["metadata"]["labels"] = json!({"skip-mutation": "yes"});
    s.create(&skipped, &[]).await.expect_success(&["create y"]);
    assert_eq!(s.get("y").await["metadata"]["labels"], json!({"skip-mutation": "yes"}));

    // Audit: the mutation and its patch, under kube-apiserver's Audit-ID.
    let (status, echoed, body) = post_with_audit_id(a, &s.ns, &backup("z"), "adm-mutate-audit-1").await;
    assert_eq!((status, echoed.as_str()), (201, "adm-mutate-audit-1"), "{body}");
    assert_eq!(body["metadata"]["labels"][TEAM_LABEL], "platform");
    let event = our_event(a, "adm-mutate-audit-1").await;
    let annotations = event["annotations"].as_object().unwrap();
    let mutation = annotations
        .iter()
        .find(|(k, v)| {
            k.starts_with("mutation.webhook.admission.k8s.io/round_0_index_") && v.as_str().unwrap().contains(hook)
        })
        .map(|(_, v)| serde_json::from_str::<Value>(v.as_str().unwrap()).unwrap());
    assert_eq!(mutation, Some(json!({"configuration": "adm-mutate", "webhook": hook, "mutated": true})));
    let patch = annotations
        .iter()
        .find(|(k, v)| {
            k.starts_with("patch.webhook.admission.k8s.io/round_0_index_") && v.as_str().unwrap().contains(hook)
        })
        .map(|(_, v)| serde_json::from_str::<Value>(v.as_str().unwrap()).unwrap())
        .expect("the patch is annotated at Request level");
    assert_eq!(patch["patchType"], "JSONPatch");
    assert_eq!(patch["patch"][0]["path"], "/metadata/labels");
    assert!(kube_apiserver_logged(a, "adm-mutate-audit-1").await, "kube-apiserver logged the same Audit-ID");
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn failure_policy_decides_when_the_webhook_is_down() {
    let a = shared().await;
    let s = setup(a, "adm-down").await;
    let down = |name: &str, policy: &str| {
        let url = format!("https://127.0.0.1:{}/allow", closed_port());
        let mut hook = s.hook(name, Behaviour::Allow, json!({"failurePolicy": policy}));
        hook["clientConfig"] = json!({"url": url, "caBundle": s.webhook.ca_bundle});
        hook
    };
    // Ignore: the request goes on (the second webhook shows the configuration was seen).
    s.configure(
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        vec![down("down.adm-down.test", "Ignore"), s.hook("up.adm-down.test", Behaviour::Allow, json!({}))],
    )
    .await;
    s.until_called(Behaviour::Allow).await;
    s.create(&backup("ignored"), &[]).await.expect_success(&["create ignored"]);

    // Fail: 500, upstream's words.
    s.configure(
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        vec![down("down.adm-down.test", "Fail")],
    )
    .await;
    let err = s.until_refused("failed calling webhook \"down.adm-down.test\"").await;
    assert!(
        err.contains("Error from server (InternalError)")
            && err.contains(
                "Internal error occurred: failed calling webhook \"down.adm-down.test\": Post \"https://127.0.0.1:"
            ),
        "{err}"
    );
}

#[tokio::test]
async fn a_webhook_that_times_out() {
    let a = shared().await;
    let s = setup(a, "adm-slow").await;
    let slow = |policy: &str| {
        s.hook("slow.adm-slow.test", Behaviour::Slow, json!({"timeoutSeconds": 1, "failurePolicy": policy}))
    };
    s.configure("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", vec![slow("Fail")]).await;
    let err = s.until_refused("context deadline exceeded").await;
    assert!(err.contains("failed calling webhook \"slow.adm-slow.test\""), "{err}");
    let review = s.webhook.reviews(Behaviour::Slow).last().unwrap().clone();
    assert_eq!(review["request"]["dryRun"], true);

    s.configure("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", vec![slow("Ignore")]).await;
    let deadline = Instant::now() + SEEN_TIMEOUT;
    while !s.create(&backup("x"), &[]).await.success {
        assert!(Instant::now() < deadline, "failurePolicy Ignore never let the create through");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn dry_run_never_reaches_a_webhook_with_side_effects() {
    let a = shared().await;
    let s = setup(a, "adm-effects").await;
    // admissionregistration v1beta1 still allows sideEffects Unknown (v1 only None and NoneOnDryRun).
    let hook = "effects.adm-effects.test";
    s.configure(
        "admissionregistration.k8s.io/v1beta1",
        "ValidatingWebhookConfiguration",
        vec![s.hook(hook, Behaviour::Allow, json!({"sideEffects": "Unknown", "admissionReviewVersions": ["v1beta1"]}))],
    )
    .await;
    let err = s.until_refused("does not support dry run").await;
    assert!(
        err.contains(&format!("Error from server (BadRequest): error when creating \"STDIN\": admission webhook \"{hook}\" does not support dry run")),
        "{err}"
    );
    assert!(s.webhook.reviews(Behaviour::Allow).is_empty(), "a dry run never reaches it");
    s.create(&backup("x"), &[]).await.expect_success(&["create x"]);
    let review = s.webhook.reviews(Behaviour::Allow).last().unwrap().clone();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1beta1");
    assert_eq!(review["request"]["dryRun"], false);
}
