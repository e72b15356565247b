//! End to end through a real kube-apiserver v1.20.2's aggregator (tests/src/aggregated.rs): our server registered
//! as a user deploys it, driven with the real kubectl as the admin and as users with and without RBAC, plus what
//! reaches our server directly (service-account tokens, forged front-proxy headers) and what cluster components
//! do with it (the availability check, discovery, OpenAPI, namespace deletion by kube-controller-manager).
//!
//! One cluster for the whole binary; each test works in its own namespace.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use backup_e2e::aggregated::{APISERVICE, AggregatedCluster, SERVER_USER};
use backup_e2e::cluster::cert_user;
use backup_e2e::kubectl::{Kubectl, Output};
use backup_e2e::{GV_PATH, Http, backups, collection};
use serde_json::{Value, json};

const NIGHTLY: &str = "\
apiVersion: backup.extend-k8s.io/v1
kind: TimeseriesDBBackup
metadata:
  name: nightly
  labels: {app: metrics}
spec:
  database: {type: Prometheus, url: \"http://127.0.0.1:9090\"}
  schedule: \"0 2 * * *\"
  retention: {keepLast: 7}
";

fn backup_yaml(name: &str) -> String {
    NIGHTLY.replace("name: nightly", &format!("name: {name}"))
}

/// A fresh namespace for one test (created as the admin).
async fn namespace(env: &AggregatedCluster, prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed));
    env.cluster.create_namespace(&name).await
}

/// Run `kubectl args` until it succeeds (RBAC changes take a moment to reach every cache); bounded: 30 s.
async fn eventually_ok(k: &Kubectl, args: &[&str], stdin: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out: Output = k.run_with(args, stdin, &[]).await;
        if out.success {
            return out.stdout;
        }
        assert!(Instant::now() < deadline, "kubectl {args:?} kept failing:\n{}", out.stderr);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The upstream 403 message for `user` doing `verb` on backups in `ns`.
fn forbidden(user: &str, verb: &str, ns: &str) -> String {
    format!(
        "timeseriesdbbackups.backup.extend-k8s.io is forbidden: User \"{user}\" cannot {verb} resource \
         \"timeseriesdbbackups\" in API group \"backup.extend-k8s.io\" in the namespace \"{ns}\""
    )
}

/// Raw HTTPS straight to our server (bypassing kube-apiserver) with these kubeconfig `user` fields.
async fn direct(env: &AggregatedCluster, user: &[(&str, String)]) -> Http {
    Http::new(env.server.client(user).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apiservice_is_available() {
    let env = AggregatedCluster::shared().await;
    let out = env.cluster.kubectl().ok(&["get", "apiservice", APISERVICE, "-o", "json"]).await;
    let apiservice: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(apiservice["spec"]["groupPriorityMinimum"], 2000);
    assert_eq!(apiservice["spec"]["versionPriority"], 10);
    assert_eq!(apiservice["spec"]["service"]["name"], "backup-apiserver");
    assert_eq!(apiservice["spec"]["service"]["namespace"], "kube-extensions");
    let conditions = apiservice["status"]["conditions"].as_array().unwrap();
    let available = conditions.iter().find(|c| c["type"] == "Available").unwrap();
    assert_eq!(available["status"], "True", "{available}");
    assert_eq!(available["reason"], "Passed", "{available}");
    assert_eq!(available["message"], "all checks passed", "{available}");

    // `kubectl get apiservice` shows it the way operators look at it.
    let out = env.cluster.kubectl().ok(&["get", "apiservice", APISERVICE]).await;
    let row = out.lines().nth(1).unwrap_or("");
    assert_eq!(
        row.split_whitespace().take(3).collect::<Vec<_>>(),
        [APISERVICE, "kube-extensions/backup-apiserver", "True"],
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_creates_gets_lists_watches_patches_and_deletes_through_kube_apiserver() {
    let env = AggregatedCluster::shared().await;
    let ns = namespace(env, "crud").await;
    let k = env.cluster.kubectl();
    let mut watch = k.spawn(&["get", "tsdbb", "-n", &ns, "--watch", "--output-watch-events"]);

    let out = k.ok_stdin(&["apply", "-n", &ns, "-f", "-"], NIGHTLY).await;
    assert_eq!(out.trim(), "timeseriesdbbackup.backup.extend-k8s.io/nightly created");
    let out = k.ok_stdin(&["create", "-n", &ns, "-f", "-"], &backup_yaml("hourly")).await;
    assert_eq!(out.trim(), "timeseriesdbbackup.backup.extend-k8s.io/hourly created");

    let out = k.ok(&["get", "tsdbb", "-n", &ns]).await;
    let header: Vec<&str> =
        out.lines().next().unwrap_or("").split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(header, ["NAME", "DATABASE", "PHASE", "LAST BACKUP", "SAMPLES", "SIZE", "AGE"], "{out}");
    let names: Vec<&str> = out.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(names, ["hourly", "nightly"], "{out}");
    assert!(out.lines().nth(2).unwrap_or("").contains("Prometheus"), "{out}");

    let obj: Value = serde_json::from_str(&k.ok(&["get", "tsdbb", "nightly", "-n", &ns, "-o", "json"]).await).unwrap();
    assert_eq!(obj["apiVersion"], "backup.extend-k8s.io/v1");
    assert_eq!(obj["kind"], "TimeseriesDBBackup");
    assert_eq!(obj["metadata"]["namespace"], ns.as_str());
    assert_eq!(obj["metadata"]["labels"]["app"], "metrics");
    assert_eq!(obj["spec"]["schedule"], "0 2 * * *");
    assert!(!obj["metadata"]["uid"].as_str().unwrap_or("").is_empty(), "{obj}");

    let list: Value = serde_json::from_str(
        &k.ok(&["get", "timeseriesdbbackups.backup.extend-k8s.io", "-n", &ns, "-l", "app=metrics", "-o", "json"]).await,
    )
    .unwrap();
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");

    let out = k
        .ok(&["patch", "tsdbb", "nightly", "-n", &ns, "--type=merge", "-p", r#"{"spec":{"schedule":"0 3 * * *"}}"#])
        .await;
    assert_eq!(out.trim(), "timeseriesdbbackup.backup.extend-k8s.io/nightly patched");
    let out = k.ok(&["get", "tsdbb", "nightly", "-n", &ns, "-o", "jsonpath={.spec.schedule}"]).await;
    assert_eq!(out, "0 3 * * *");
    let out = k.ok(&["label", "tsdbb", "nightly", "-n", &ns, "tier=gold"]).await;
    assert_eq!(out.trim(), "timeseriesdbbackup.backup.extend-k8s.io/nightly labeled");

    let out = k.ok(&["delete", "tsdbb", "nightly", "-n", &ns]).await;
    assert_eq!(out.trim(), "timeseriesdbbackup.backup.extend-k8s.io \"nightly\" deleted");
    let err = k.fails(&["get", "tsdbb", "nightly", "-n", &ns]).await;
    assert!(
        err.contains("Error from server (NotFound): timeseriesdbbackups.backup.extend-k8s.io \"nightly\" not found"),
        "{err}"
    );

    // The watch, through the aggregator, saw it all in order.
    // The watch, through the aggregator, saw it all in order (EVENT and NAME columns of kubectl's table).
    let seen = watch.until(&["DELETED", "nightly"], Duration::from_secs(30)).await;
    let events: Vec<(&str, &str)> = seen
        .iter()
        .filter_map(|l| {
            let mut columns = l.split_whitespace();
            Some((columns.next()?, columns.next()?))
        })
        .filter(|(event, _)| *event != "EVENT")
        .collect();
    assert_eq!(events.len(), 5, "{seen:?}");
    // Both creates may come before the watch starts, and then its initial list is sorted by name.
    let mut added = events[..2].to_vec();
    added.sort();
    assert_eq!(added, [("ADDED", "hourly"), ("ADDED", "nightly")], "{seen:?}");
    assert_eq!(events[2..], [("MODIFIED", "nightly"), ("MODIFIED", "nightly"), ("DELETED", "nightly")], "{seen:?}");
    watch.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_with_a_role_without_one_and_read_only() {
    let env = AggregatedCluster::shared().await;
    let ns = namespace(env, "rbac").await;
    let admin = env.cluster.kubectl();
    // alice: a Role of her own; carol: the built-in `view`, which config/'s aggregated ClusterRoles extend to our
    // kinds (kube-controller-manager's clusterrole-aggregation controller); bob: nothing.
    admin
        .ok(&[
            "create",
            "role",
            "backup-editor",
            "-n",
            &ns,
            "--verb=*",
            "--resource=timeseriesdbbackups.backup.extend-k8s.io",
        ])
        .await;
    admin.ok(&["create", "rolebinding", "alice-edits", "-n", &ns, "--role=backup-editor", "--user=alice"]).await;
    admin.ok(&["create", "rolebinding", "carol-views", "-n", &ns, "--clusterrole=view", "--user=carol"]).await;

    let alice = env.cluster.kubectl_as("alice", &["team-a"]);
    let out = eventually_ok(&alice, &["create", "-n", &ns, "-f", "-"], &backup_yaml("by-alice")).await;
    assert_eq!(out.trim(), "timeseriesdbbackup.backup.extend-k8s.io/by-alice created");
    let out = alice.ok(&["get", "tsdbb", "-n", &ns, "-o", "name"]).await;
    assert_eq!(out.trim(), "timeseriesdbbackup.backup.extend-k8s.io/by-alice");

    let bob = env.cluster.kubectl_as("bob", &[]);
    let err = bob.fails(&["get", "tsdbb", "-n", &ns]).await;
    assert_eq!(err.trim(), format!("Error from server (Forbidden): {}", forbidden("bob", "list", &ns)), "{err}");
    let err = bob.fails(&["get", "tsdbb", "by-alice", "-n", &ns]).await;
    assert_eq!(
        err.trim(),
        format!(
            "Error from server (Forbidden): timeseriesdbbackups.backup.extend-k8s.io \"by-alice\" is forbidden: User \
             \"bob\" cannot get resource \"timeseriesdbbackups\" in API group \"backup.extend-k8s.io\" in the \
             namespace \"{ns}\""
        ),
        "{err}"
    );

    let carol = env.cluster.kubectl_as("carol", &[]);
    let out = eventually_ok(&carol, &["get", "tsdbb", "by-alice", "-n", &ns, "-o", "name"], "").await;
    assert_eq!(out.trim(), "timeseriesdbbackup.backup.extend-k8s.io/by-alice");
    let out = carol.ok(&["get", "tsdbb", "-n", &ns, "-o", "name"]).await;
    assert_eq!(out.trim(), "timeseriesdbbackup.backup.extend-k8s.io/by-alice");
    let out = carol.run_with(&["create", "-n", &ns, "-f", "-"], &backup_yaml("by-carol"), &[]).await;
    assert!(!out.success, "carol may only read: {}", out.stdout);
    assert!(out.stderr.contains(&forbidden("carol", "create", &ns)), "{}", out.stderr);
    assert!(out.stderr.starts_with("Error from server (Forbidden): error when creating \"STDIN\": "), "{}", out.stderr);
    let err = carol.fails(&["delete", "tsdbb", "by-alice", "-n", &ns]).await;
    assert!(err.contains("cannot delete resource \"timeseriesdbbackups\""), "{err}");

    // `kubectl auth can-i` asks kube-apiserver, which knows the same RBAC.
    let out = carol.run(&["auth", "can-i", "create", "tsdbb", "-n", &ns]).await;
    assert_eq!(out.stdout.trim(), "no");
    let out = alice.ok(&["auth", "can-i", "delete", "tsdbb", "-n", &ns]).await;
    assert_eq!(out.trim(), "yes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_token_is_reviewed_by_our_server() {
    let env = AggregatedCluster::shared().await;
    let ns = namespace(env, "tokens").await;
    let admin = env.cluster.kubectl();
    admin
        .ok(&[
            "create",
            "role",
            "reader",
            "-n",
            &ns,
            "--verb=get,list",
            "--resource=timeseriesdbbackups.backup.extend-k8s.io",
        ])
        .await;
    admin
        .ok(&[
            "create",
            "rolebinding",
            "robot-reads",
            "-n",
            &ns,
            "--role=reader",
            &format!("--serviceaccount={ns}:robot"),
        ])
        .await;
    let robot = env.cluster.service_account_token(&ns, "robot").await;
    let nobody = env.cluster.service_account_token(&ns, "nobody").await;

    // Straight to our server with the bearer token: TokenReview, then SubjectAccessReview.
    let h = direct(env, &[("token", robot)]).await;
    let list = h.get(&backups(&ns)).await.expect_status(200).json();
    assert_eq!(list["kind"], "TimeseriesDBBackupList");
    let robot_user = format!("system:serviceaccount:{ns}:robot");
    let reviews = env.cluster.settled_reviews_by(SERVER_USER).await;
    assert!(reviews.tokenreviews >= 1, "{reviews:?}");
    let i = reviews.sar_users.iter().position(|u| *u == robot_user).unwrap_or_else(|| panic!("{reviews:?}"));
    let groups = &reviews.sar_groups[i];
    for g in ["system:serviceaccounts", &format!("system:serviceaccounts:{ns}"), "system:authenticated"] {
        assert!(groups.iter().any(|x| x == g), "{g} missing from {groups:?}");
    }

    let h = direct(env, &[("token", nobody)]).await;
    let status = h.get(&backups(&ns)).await.expect_failure(403, "Forbidden");
    assert_eq!(status["message"], forbidden(&format!("system:serviceaccount:{ns}:nobody"), "list", &ns));

    let h = direct(env, &[("token", "not-a-token".to_string())]).await;
    let status = h.get(&backups(&ns)).await.expect_failure(401, "Unauthorized");
    assert_eq!(status["message"], "Unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_front_proxy_headers_without_its_certificate_are_rejected() {
    let env = AggregatedCluster::shared().await;
    let ns = namespace(env, "forged").await;
    let forged = |h: &Http| {
        h.request(http::Method::GET, &backups(&ns))
            .header("X-Remote-User", "system:admin")
            .header("X-Remote-Group", "system:masters")
    };

    // With the aggregator's certificate the headers name the user...
    let proxy = direct(env, &cert_user(&env.cluster.front_proxy_client)).await;
    forged(&proxy).send().await.expect_status(200);
    // ...without any certificate they are ignored: 401.
    let anonymous = direct(env, &[]).await;
    let status = forged(&anonymous).send().await.expect_failure(401, "Unauthorized");
    assert_eq!(status["code"], 401);
    // With a client certificate of the cluster CA (CN front-proxy-client, but not signed by the front-proxy CA) the
    // request is the certificate's user, whose headers count for nothing.
    let impostor = env.cluster.client_cert("front-proxy-client", &[]);
    let h = direct(env, &cert_user(&impostor)).await;
    let status = forged(&h).send().await.expect_failure(403, "Forbidden");
    assert_eq!(status["message"], forbidden("front-proxy-client", "list", &ns));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_removes_our_objects_through_the_controller_manager() {
    let env = AggregatedCluster::shared().await;
    let ns = namespace(env, "doomed").await;
    let k = env.cluster.kubectl();
    k.ok_stdin(&["create", "-n", &ns, "-f", "-"], &backup_yaml("one")).await;
    k.ok_stdin(&["create", "-n", &ns, "-f", "-"], &backup_yaml("two")).await;
    let restore = json!({"apiVersion": "backup.extend-k8s.io/v1", "kind": "TimeseriesDBRestore",
        "metadata": {"name": "back"}, "spec": {"backupRef": {"name": "one"}, "target": {"type": "VictoriaMetrics", "url": "http://vm:8428"}}});
    k.ok_stdin(&["create", "-n", &ns, "-f", "-"], &restore.to_string()).await;

    k.ok(&["delete", "namespace", &ns, "--wait=false"]).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = k.run(&["get", "namespace", &ns, "-o", "json"]).await;
        if !out.success && out.stderr.contains("NotFound") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "namespace {ns} not deleted within 120 s:\n{}\n{}",
            out.stdout,
            env.cluster.controller_manager_log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Nothing of ours is left in it, as our server itself reports.
    let proxy = direct(env, &cert_user(&env.cluster.front_proxy_client)).await;
    for plural in ["timeseriesdbbackups", "timeseriesdbrestores"] {
        let list = proxy
            .request(http::Method::GET, &collection(&ns, plural))
            .header("X-Remote-User", "system:admin")
            .header("X-Remote-Group", "system:masters")
            .send()
            .await
            .expect_status(200)
            .json();
        assert_eq!(list["items"], json!([]), "{plural} left in {ns}: {list}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_discovers_and_explains_our_kinds_through_the_aggregator() {
    let env = AggregatedCluster::shared().await;
    let k = env.cluster.kubectl();
    let out = k.ok(&["api-resources", "--api-group=backup.extend-k8s.io", "--no-headers"]).await;
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        [
            ["timeseriesdbbackups", "tsdbb", "backup.extend-k8s.io/v1", "true", "TimeseriesDBBackup"],
            ["timeseriesdbrestores", "tsdbr", "backup.extend-k8s.io/v1", "true", "TimeseriesDBRestore"],
        ],
        "{out}"
    );
    let out = k.ok(&["get", "--raw", GV_PATH]).await;
    let resources: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(resources["groupVersion"], "backup.extend-k8s.io/v1");

    // kube-apiserver merges our OpenAPI v2 into its own (downloaded when the APIService appears).
    let out = eventually_ok(&k, &["explain", "timeseriesdbbackups.spec.database"], "").await;
    assert!(out.contains("KIND:") && out.contains("TimeseriesDBBackup"), "{out}");
    assert!(out.contains("VERSION:") && out.contains("v1"), "{out}");
    assert!(out.contains("url"), "{out}");
    let out = k.ok(&["explain", "tsdbr.spec", "--recursive"]).await;
    assert!(out.contains("backupRef"), "{out}");
}
