//! The audit log of a standalone server: a policy at each level gives the expected events for create, get, list,
//! watch, patch and delete; the `Audit-ID` a client sends is the events' `auditID` and comes back in the response;
//! a request denied by authorization is audited with its decision (the real-cluster test of the same, behind the
//! aggregator with kube-apiserver's Audit-ID, is in the admission and audit suite).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::Duration;

use backup_e2e::{TestServer, backup, backups};
use http::Method;
use serde_json::{Value, json};

const POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: []
rules:
- level: None
  nonResourceURLs: ["/livez", "/readyz", "/healthz*"]
- level: RequestResponse
  resources: [{group: backup.extend-k8s.io, resources: ["timeseriesdbbackups/status"]}]
- level: Request
  verbs: [create, patch, update]
- level: Metadata
"#;

struct Audited {
    server: TestServer,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn audited(policy: &str) -> Audited {
    let dir = tempfile::tempdir().unwrap();
    let policy_path = dir.path().join("policy.yaml");
    std::fs::write(&policy_path, policy).unwrap();
    let log = dir.path().join("audit.log");
    let (p, l) = (policy_path.display().to_string(), log.display().to_string());
    let server = TestServer::standalone_with(&["--audit-policy-file", &p, "--audit-log-path", &l]).await;
    Audited { server, log, _dir: dir }
}

impl Audited {
    /// The events with `auditID`, waiting (bounded) until `count` of them are written.
    async fn events(&self, audit_id: &str, count: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let events: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .filter(|e| e["auditID"] == audit_id)
                .collect();
            if events.len() >= count || tokio::time::Instant::now() > deadline {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn stages(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["stage"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn each_level_records_what_it_should() {
    let a = audited(POLICY).await;
    let http = a.server.http();
    let send = |method: Method, path: &str, id: &str| http.request(method, path).header("Audit-ID", id);
    // Create at Request level: the request object, no response object.
    let resp = send(Method::POST, &backups("default"), "create-1").json(&backup("x")).send().await.expect_status(201);
    assert_eq!(resp.header("audit-id"), "create-1");
    let events = a.events("create-1", 2).await;
    assert_eq!(stages(&events), ["RequestReceived", "ResponseComplete"]);
    let done = &events[1];
    assert_eq!(done["level"], "Request");
    assert_eq!(done["verb"], "create");
    assert_eq!(done["user"]["username"], "admin");
    assert_eq!(
        done["objectRef"],
        json!({"resource": "timeseriesdbbackups", "namespace": "default",
                                          "apiGroup": "backup.extend-k8s.io", "apiVersion": "v1"})
    );
    assert_eq!(done["responseStatus"]["code"], 201);
    assert_eq!(done["requestObject"]["metadata"]["name"], "x");
    assert!(done.get("responseObject").is_none());
    assert_eq!(done["annotations"]["authorization.k8s.io/decision"], "allow");
    assert!(done["requestReceivedTimestamp"].as_str().unwrap().ends_with('Z'));
    assert!(!done["sourceIPs"].as_array().unwrap().is_empty());

    // Get and list at Metadata level: no objects.
    send(Method::GET, &format!("{}/x", backups("default")), "get-1").send().await.expect_status(200);
    let events = a.events("get-1", 2).await;
    assert_eq!((events[1]["level"].as_str(), events[1]["verb"].as_str()), (Some("Metadata"), Some("get")));
    assert!(events[1].get("requestObject").is_none() && events[1].get("responseObject").is_none());
    send(Method::GET, &backups("default"), "list-1").send().await.expect_status(200);
    assert_eq!(a.events("list-1", 2).await[1]["verb"], "list");

    // Status at RequestResponse level: both objects.
    let status = json!({"status": {"phase": "Running"}});
    send(Method::PATCH, &format!("{}/x/status", backups("default")), "status-1")
        .body("application/merge-patch+json", status.to_string())
        .send()
        .await
        .expect_status(200);
    let events = a.events("status-1", 2).await;
    assert_eq!(events[1]["level"], "RequestResponse");
    assert_eq!(events[1]["requestObject"], status);
    assert_eq!(events[1]["responseObject"]["status"]["phase"], "Running");
    assert_eq!(events[1]["objectRef"]["subresource"], "status");

    // A watch: ResponseStarted, then ResponseComplete when it ends.
    let mut watch =
        send(Method::GET, &format!("{}?watch=true&timeoutSeconds=1", backups("default")), "watch-1").open().await;
    assert_eq!(watch.status, 200);
    let _ = watch.rest(Duration::from_secs(10)).await;
    let events = a.events("watch-1", 3).await;
    assert_eq!(stages(&events), ["RequestReceived", "ResponseStarted", "ResponseComplete"]);
    assert_eq!(events[2]["verb"], "watch");

    // A failure: the Status the client got.
    send(Method::DELETE, &format!("{}/nothere", backups("default")), "delete-1").send().await.expect_status(404);
    let events = a.events("delete-1", 2).await;
    assert_eq!(events[1]["responseStatus"]["reason"], "NotFound");
    assert_eq!(events[1]["responseStatus"]["code"], 404);

    // Health checks are not audited; a request without an Audit-ID gets a new one.
    let resp = http.get("/livez").await;
    assert!(!resp.header("audit-id").is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.events(resp.header("audit-id"), 1).await.is_empty());
}

#[tokio::test]
async fn omitted_stages_and_level_none() {
    let policy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n  verbs: [get]\n";
    let a = audited(policy).await;
    let http = a.server.http();
    http.request(Method::GET, "/version").header("Audit-ID", "v-1").send().await.expect_status(200);
    let events = a.events("v-1", 1).await;
    assert_eq!(stages(&events), ["ResponseComplete"]);
    assert_eq!(events[0]["requestURI"], "/version");
    assert!(events[0].get("objectRef").is_none());
    http.request(Method::POST, &backups("default")).header("Audit-ID", "c-1").json(&backup("y")).send().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.events("c-1", 1).await.is_empty(), "no rule matches a create: level None");
}

/// A request that impersonates (kubectl's `--as`, `--as-group`) is audited with the authenticated user as `user`
/// and the one it acted as as `impersonatedUser`, as upstream records it.
#[tokio::test]
async fn impersonated_requests_name_both_users() {
    let a = audited(POLICY).await;
    let id = "impersonated-1";
    a.server
        .http()
        .request(Method::GET, &backups("default"))
        .header("Audit-ID", id)
        .header("Impersonate-User", "bob")
        .header("Impersonate-Group", "team")
        .header("Impersonate-Extra-Reason", "audit test")
        .send()
        .await
        .expect_status(200);
    let events = a.events(id, 2).await;
    let done = &events[1];
    assert_eq!(done["user"]["username"], "admin");
    assert_eq!(
        done["impersonatedUser"],
        json!({"username": "bob", "groups": ["team", "system:authenticated"], "extra": {"reason": ["audit test"]}})
    );
    let kubectl_as_bob =
        ["--as", "bob", "--as-group", "team", "get", "timeseriesdbbackups", "-n", "default", "-o", "name"];
    let out = a.server.kubectl().ok(&kubectl_as_bob).await;
    assert!(out.is_empty(), "{out}");
    let text = std::fs::read_to_string(&a.log).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains(r#""impersonatedUser":{"username":"bob","groups":["team","system:authenticated"]}"#)),
        "kubectl --as is audited as bob: {text}"
    );
}

/// `--audit-webhook-config-file`: events reach the webhook the kubeconfig names (its path, CA and bearer token) as
/// `audit.k8s.io/v1` EventLists, in batches; a batch the webhook refuses with 503 is sent again after the backoff.
/// With the log as well, both get every event. A webhook that never accepts loses the events, counted in
/// `apiserver_audit_error_total{plugin="webhook"}`.
#[tokio::test]
async fn the_webhook_gets_batches_and_retries_them() {
    use backup_e2e::audit_sink::{Answer, AuditSink};
    let sink = AuditSink::start(Answer::FailFirst(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let (policy, log, kubeconfig) =
        (dir.path().join("policy.yaml"), dir.path().join("audit.log"), dir.path().join("webhook.kubeconfig"));
    std::fs::write(&policy, POLICY).unwrap();
    let url = format!("https://127.0.0.1:{}/audit/events", sink.port);
    let token = [("token", "audit-secret".to_string())];
    std::fs::write(&kubeconfig, backup_e2e::cluster::kubeconfig_yaml(&url, &sink.ca_pem, &token)).unwrap();
    let [policy, log_path, kubeconfig] = [&policy, &log, &kubeconfig].map(|p| p.display().to_string());
    let webhook_flags = [
        "--audit-policy-file",
        &policy,
        "--audit-webhook-config-file",
        &kubeconfig,
        "--audit-webhook-batch-max-wait=200ms",
        "--audit-webhook-initial-backoff=100ms",
    ];
    let server = TestServer::standalone_with(&[&webhook_flags[..], &["--audit-log-path", &log_path]].concat()).await;
    let http = server.http();
    http.request(Method::POST, &backups("default"))
        .header("Audit-ID", "hook-1")
        .json(&backup("x"))
        .send()
        .await
        .expect_status(201);
    http.request(Method::GET, &format!("{}/x", backups("default"))).header("Audit-ID", "hook-2").send().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let events = loop {
        let events = sink.events();
        let done = |id: &str| events.iter().any(|e| e["auditID"] == id && e["stage"] == "ResponseComplete");
        if done("hook-1") && done("hook-2") {
            break events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the webhook did not get both requests: {:#?}",
            sink.received()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let received = sink.received();
    assert!(received.len() >= 3, "two refusals, then the batch again: {received:#?}");
    assert_eq!(received.iter().filter(|r| r.status == 503).count(), 2);
    for r in &received {
        assert_eq!((r.path.as_str(), r.authorization.as_str()), ("/audit/events", "Bearer audit-secret"));
        assert!(r.content_type.starts_with("application/json"), "{}", r.content_type);
        assert_eq!(
            (r.body["kind"].as_str(), r.body["apiVersion"].as_str()),
            (Some("EventList"), Some("audit.k8s.io/v1"))
        );
    }
    for refused in received.iter().filter(|r| r.status == 503) {
        let again = received.iter().any(|r| r.status == 200 && r.body == refused.body);
        assert!(again, "a refused batch is sent again as it was: {received:#?}");
    }
    let create: Vec<&Value> = events.iter().filter(|e| e["auditID"] == "hook-1").collect();
    assert_eq!(
        create.iter().map(|e| e["stage"].as_str().unwrap()).collect::<Vec<_>>(),
        ["RequestReceived", "ResponseComplete"]
    );
    assert_eq!(create[1]["level"], "Request");
    assert_eq!(create[1]["requestObject"]["metadata"]["name"], "x");
    let logged = Audited { server, log, _dir: dir };
    assert_eq!(logged.events("hook-1", 2).await.len(), 2, "the log gets the events too");

    let failing = AuditSink::start(Answer::AlwaysFail).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("webhook.kubeconfig");
    let url = format!("https://127.0.0.1:{}/audit/events", failing.port);
    std::fs::write(&kubeconfig, backup_e2e::cluster::kubeconfig_yaml(&url, &failing.ca_pem, &token)).unwrap();
    let kubeconfig = kubeconfig.display().to_string();
    let flags = [
        "--audit-policy-file",
        &policy,
        "--audit-webhook-config-file",
        &kubeconfig,
        "--audit-webhook-batch-max-wait=100ms",
        "--audit-webhook-initial-backoff=50ms",
    ];
    let server = TestServer::standalone_with(&flags).await;
    server.http().get(&backups("default")).await.expect_status(200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let lost = server.metric("apiserver_audit_error_total{plugin=\"webhook\"}").await;
        if lost >= 2.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the lost events are not counted ({lost})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tries = failing.received();
    let first = tries.iter().filter(|r| r.body == tries[0].body).count();
    assert_eq!(first, 5, "five tries of a batch, then it is given up: {tries:#?}");
}

/// What is not implemented stops the server at start with a message, instead of auditing differently than asked:
/// the blocking webhook modes, another event version or log format, a policy with no backend.
#[tokio::test]
async fn unsupported_audit_settings_are_refused_at_start() {
    use backup_apiserver::options::Options;
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let policy = policy.display().to_string();
    let base = ["backup-apiserver", "--standalone", "--in-memory", "--secure-port=0", "--audit-policy-file", &policy];
    for (flag, message) in [
        ("--audit-webhook-mode=blocking", "possible values: batch"),
        ("--audit-webhook-version=audit.k8s.io/v1beta1", "possible values: audit.k8s.io/v1"),
        ("--audit-log-version=audit.k8s.io/v1beta1", "possible values: audit.k8s.io/v1"),
        ("--audit-log-format=legacy", "possible values: json"),
    ] {
        let error = Options::try_parse_from([&base[..], &[flag]].concat()).unwrap_err().to_string();
        assert!(error.contains(message), "{flag}: {error}");
    }
    let error = match backup_apiserver::start(Options::parse_from(base)).await {
        Ok(_) => panic!("a policy without a backend started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("needs --audit-log-path"), "{error}");
}

/// `omitManagedFields` (the policy's, or a rule's own) leaves `metadata.managedFields` out of the recorded request
/// and response objects, of lists' items too.
#[tokio::test]
async fn managed_fields_are_left_out_when_the_policy_says() {
    let policy = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitManagedFields: true
rules:
- level: RequestResponse
  resources: [{group: backup.extend-k8s.io, resources: ["timeseriesdbbackups/status"]}]
  omitManagedFields: false
- level: RequestResponse
"#;
    let a = audited(policy).await;
    let http = a.server.http();
    let send = |method: Method, path: &str, id: &str| http.request(method, path).header("Audit-ID", id);
    let mut object = backup("m");
    object["metadata"]["managedFields"] =
        json!([{"manager": "test", "operation": "Update", "apiVersion": "backup.extend-k8s.io/v1"}]);
    send(Method::POST, &backups("default"), "omit-1").json(&object).send().await.expect_status(201);
    let done = a.events("omit-1", 2).await.pop().unwrap();
    assert!(
        done["requestObject"]["metadata"].is_object()
            && done["requestObject"]["metadata"].get("managedFields").is_none(),
        "{done}"
    );
    assert!(
        done["responseObject"]["metadata"]["name"] == "m"
            && done["responseObject"]["metadata"].get("managedFields").is_none(),
        "{done}"
    );
    send(Method::GET, &backups("default"), "omit-2").send().await.expect_status(200);
    let done = a.events("omit-2", 2).await.pop().unwrap();
    let item = &done["responseObject"]["items"][0];
    assert!(item["metadata"]["name"] == "m" && item["metadata"].get("managedFields").is_none(), "{done}");
    let status = json!({"status": {"phase": "Running"}});
    send(Method::PATCH, &format!("{}/m/status", backups("default")), "omit-3")
        .body("application/merge-patch+json", status.to_string())
        .send()
        .await
        .expect_status(200);
    let done = a.events("omit-3", 2).await.pop().unwrap();
    assert!(done["responseObject"]["metadata"]["managedFields"].is_array(), "the rule keeps them: {done}");
}
