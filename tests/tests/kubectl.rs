//! kubectl against the server, asserting on what kubectl prints: the main flow (apply, get in every output,
//! label, annotate, patch, edit, status, selectors, wait, describe, delete) on the embedded store and on etcd,
//! `apply` updates, `get -w`, discovery-driven commands, chunked lists and `explain`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::Duration;

use backup_e2e::TestServer;
use backup_e2e::kubectl::Kubectl;
use serde_json::Value;

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

/// The columns of a table header line (columns are separated by at least two spaces).
fn columns(line: &str) -> Vec<&str> {
    line.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect()
}

/// The data lines of `kubectl get` output whose first column is `name`.
fn rows<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    out.lines().skip(1).filter(|l| l.split_whitespace().next() == Some(name)).collect()
}

async fn get_json(k: &Kubectl, name: &str) -> Value {
    let out = k.ok(&["get", "tsdbb", name, "-o", "json"]).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl -o json printed no JSON ({e}):\n{out}"))
}

/// The main flow, on whichever store `srv` has.
async fn main_flow(srv: &TestServer) {
    let k = srv.kubectl();
    let out = k.ok_stdin(&["apply", "-f", "-"], NIGHTLY).await;
    assert_eq!(out.trim(), "timeseriesdbbackup.backup.extend-k8s.io/nightly created");

    let out = k.ok(&["get", "tsdbb"]).await;
    let header = out.lines().next().unwrap_or("");
    assert_eq!(columns(header), ["NAME", "DATABASE", "PHASE", "LAST BACKUP", "SAMPLES", "SIZE", "AGE"], "{out}");
    let row = rows(&out, "nightly");
    assert_eq!(row.len(), 1, "{out}");
    assert!(row[0].contains("Prometheus"), "{out}");

    let out = k.ok(&["get", "tsdbb", "-o", "wide"]).await;
    let header = columns(out.lines().next().unwrap_or(""));
    assert_eq!(header[header.len() - 2..], ["URL", "SCHEDULE"], "{out}");
    let row = rows(&out, "nightly");
    assert!(row[0].contains("http://127.0.0.1:9090") && row[0].contains("0 2 * * *"), "{out}");

    let obj = get_json(&k, "nightly").await;
    assert_eq!(obj["apiVersion"], "backup.extend-k8s.io/v1");
    assert_eq!(obj["kind"], "TimeseriesDBBackup");
    assert_eq!(obj["metadata"]["generation"], 1);
    assert_eq!(obj["metadata"]["namespace"], "default");
    assert_eq!(obj["spec"]["destination"]["path"], "nightly", "defaulted");
    assert_eq!(obj["spec"]["destination"]["location"], "default", "defaulted");
    let out = k.ok(&["get", "tsdbb", "nightly", "-o", "yaml"]).await;
    assert!(out.contains("kind: TimeseriesDBBackup") && out.contains("keepLast: 7"), "{out}");

    let out = k.ok(&["label", "tsdbb", "nightly", "tier=gold"]).await;
    assert_eq!(out.trim(), "timeseriesdbbackup.backup.extend-k8s.io/nightly labeled");
    let out = k.ok(&["annotate", "tsdbb", "nightly", "note=hello"]).await;
    assert_eq!(out.trim(), "timeseriesdbbackup.backup.extend-k8s.io/nightly annotated");
    let obj = get_json(&k, "nightly").await;
    assert_eq!(obj["metadata"]["labels"]["tier"], "gold");
    assert_eq!(obj["metadata"]["annotations"]["note"], "hello");
    assert_eq!(obj["metadata"]["generation"], 1, "metadata changes keep the generation");

    let out =
        k.ok(&["patch", "tsdbb", "nightly", "--type", "merge", "-p", r#"{"spec":{"retention":{"keepLast":3}}}"#]).await;
    assert_eq!(out.trim(), "timeseriesdbbackup.backup.extend-k8s.io/nightly patched");
    let patch = r#"[{"op":"replace","path":"/spec/schedule","value":"0 3 * * *"}]"#;
    k.ok(&["patch", "tsdbb", "nightly", "--type", "json", "-p", patch]).await;
    let obj = get_json(&k, "nightly").await;
    assert_eq!(obj["spec"]["retention"]["keepLast"], 3);
    assert_eq!(obj["spec"]["schedule"], "0 3 * * *");
    assert_eq!(obj["metadata"]["generation"], 3);

    let editor = [("KUBE_EDITOR", r#"sed -i -e "s/keepLast: 3/keepLast: 4/""#)];
    let out = k.run_with(&["edit", "tsdbb", "nightly"], "", &editor).await.expect_success(&["edit"]);
    assert_eq!(out.trim(), "timeseriesdbbackup.backup.extend-k8s.io/nightly edited");
    let obj = get_json(&k, "nightly").await;
    assert_eq!(obj["spec"]["retention"]["keepLast"], 4);
    assert_eq!(obj["metadata"]["generation"], 4);

    let other = NIGHTLY.replace("name: nightly", "name: other").replace("app: metrics", "app: other");
    k.ok_stdin(&["apply", "-f", "-"], &other).await;
    for name in ["nightly", "other"] {
        let status = r#"{"status":{"phase":"Failed"}}"#;
        k.ok(&["patch", "tsdbb", name, "--subresource=status", "--type", "merge", "-p", status]).await;
    }
    let obj = get_json(&k, "nightly").await;
    assert_eq!(obj["status"]["phase"], "Failed");
    assert_eq!(obj["metadata"]["generation"], 4, "status changes keep the generation");
    let out = k.ok(&["get", "tsdbb", "-l", "app=metrics", "--field-selector", "status.phase=Failed"]).await;
    assert_eq!(rows(&out, "nightly").len(), 1, "{out}");
    assert!(rows(&out, "nightly")[0].contains("Failed"), "{out}");
    assert!(rows(&out, "other").is_empty(), "the label selector filters: {out}");
    let out = k.run(&["get", "tsdbb", "-l", "app=metrics", "--field-selector", "status.phase=Succeeded"]).await;
    assert!(out.stdout.is_empty() && out.stderr.contains("No resources found in default namespace."), "{out:?}");

    let mut wait = k.spawn(&["wait", "--for=jsonpath={.status.phase}=Succeeded", "tsdbb/nightly", "--timeout=50s"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    k.ok(&[
        "patch",
        "tsdbb",
        "nightly",
        "--subresource=status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"phase":"Succeeded"}}"#,
    ])
    .await;
    let line = wait.next_line(Duration::from_secs(55)).await.expect("kubectl wait printed nothing");
    assert_eq!(line, "timeseriesdbbackup.backup.extend-k8s.io/nightly condition met");

    let out = k.ok(&["describe", "tsdbb", "nightly"]).await;
    for expected in
        ["Name:", "nightly", "Kind:         TimeseriesDBBackup", "app=metrics", "Keep Last:  4", "Succeeded"]
    {
        assert!(out.contains(expected), "describe lacks {expected:?}:\n{out}");
    }

    let out = k.ok(&["delete", "tsdbb", "other"]).await;
    assert_eq!(out.trim(), r#"timeseriesdbbackup.backup.extend-k8s.io "other" deleted"#);
    k.ok_stdin(&["apply", "-f", "-"], &NIGHTLY.replace("name: nightly", "name: third")).await;
    let out = k.ok(&["delete", "tsdbb", "--all"]).await;
    let mut deleted: Vec<&str> = out.lines().collect();
    deleted.sort();
    assert_eq!(
        deleted,
        [
            r#"timeseriesdbbackup.backup.extend-k8s.io "nightly" deleted"#,
            r#"timeseriesdbbackup.backup.extend-k8s.io "third" deleted"#
        ]
    );
    let out = k.run(&["get", "tsdbb"]).await;
    assert!(out.success && out.stdout.is_empty(), "{out:?}");
    assert_eq!(out.stderr.trim(), "No resources found in default namespace.");
    let err = k.fails(&["get", "tsdbb", "nightly"]).await;
    assert_eq!(
        err.trim(),
        r#"Error from server (NotFound): timeseriesdbbackups.backup.extend-k8s.io "nightly" not found"#
    );
}

#[tokio::test]
async fn main_flow_standalone() {
    main_flow(&TestServer::standalone().await).await;
}

#[tokio::test]
async fn main_flow_on_etcd() {
    main_flow(&TestServer::on_etcd().await).await;
}

/// `kubectl apply` twice: create, then update through a patch.
async fn apply_create_then_update(srv: &TestServer) {
    let k = srv.kubectl();
    let out = k.ok_stdin(&["apply", "-f", "-"], NIGHTLY).await;
    assert_eq!(out.trim(), "timeseriesdbbackup.backup.extend-k8s.io/nightly created");
    let out = k.ok_stdin(&["apply", "-f", "-"], NIGHTLY).await;
    assert_eq!(out.trim(), "timeseriesdbbackup.backup.extend-k8s.io/nightly unchanged");
    let out = k.ok_stdin(&["apply", "-f", "-"], &NIGHTLY.replace("keepLast: 7", "keepLast: 5")).await;
    assert_eq!(out.trim(), "timeseriesdbbackup.backup.extend-k8s.io/nightly configured");
    let obj = get_json(&k, "nightly").await;
    assert_eq!(obj["spec"]["retention"]["keepLast"], 5);
    assert_eq!(obj["metadata"]["generation"], 2);
    let applied = obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].as_str();
    assert!(applied.is_some_and(|a| a.contains(r#""keepLast":5"#)), "{obj}");
}

#[tokio::test]
async fn apply_updates_standalone() {
    apply_create_then_update(&TestServer::standalone().await).await;
}

#[tokio::test]
async fn apply_updates_on_etcd() {
    apply_create_then_update(&TestServer::on_etcd().await).await;
}

#[tokio::test]
async fn get_watch_prints_changes() {
    let srv = TestServer::standalone().await;
    let k = srv.kubectl();
    k.ok_stdin(&["apply", "-f", "-"], NIGHTLY).await;
    let mut watch = k.spawn(&["get", "tsdbb", "-w", "--output-watch-events", "--request-timeout=50s"]);
    let step = Duration::from_secs(30);
    let first = watch.until(&["nightly"], step).await;
    assert_eq!(columns(&first[0])[..3], ["EVENT", "NAME", "DATABASE"], "{first:?}");
    assert!(first.last().is_some_and(|l| l.starts_with("ADDED")), "{first:?}");

    k.ok_stdin(&["apply", "-f", "-"], &NIGHTLY.replace("name: nightly", "name: second")).await;
    let seen = watch.until(&["second"], step).await;
    assert!(seen.last().is_some_and(|l| l.starts_with("ADDED")), "{seen:?}");
    k.ok(&["label", "tsdbb", "nightly", "tier=gold"]).await;
    let seen = watch.until(&["nightly"], step).await;
    assert!(seen.last().is_some_and(|l| l.starts_with("MODIFIED")), "{seen:?}");
    k.ok(&["delete", "tsdbb", "second"]).await;
    let seen = watch.until(&["second"], step).await;
    assert!(seen.last().is_some_and(|l| l.starts_with("DELETED")), "{seen:?}");
    watch.stop().await;
}

#[tokio::test]
async fn api_resources_lists_both_kinds() {
    let srv = TestServer::standalone().await;
    let out = srv.kubectl().ok(&["api-resources", "--api-group=backup.extend-k8s.io"]).await;
    assert_eq!(columns(out.lines().next().unwrap_or("")), ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]);
    let lines: Vec<Vec<&str>> = out.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        lines,
        [
            ["timeseriesdbbackups", "tsdbb", "backup.extend-k8s.io/v1", "true", "TimeseriesDBBackup"],
            ["timeseriesdbrestores", "tsdbr", "backup.extend-k8s.io/v1", "true", "TimeseriesDBRestore"],
        ],
        "{out}"
    );
}

#[tokio::test]
async fn chunked_get_pages_through_the_list() {
    let srv = TestServer::standalone().await;
    let k = srv.kubectl();
    let manifests: String =
        (1..=7).map(|i| NIGHTLY.replace("name: nightly", &format!("name: b{i}")) + "---\n").collect();
    k.ok_stdin(&["apply", "-f", "-"], &manifests).await;
    let out = k.run(&["get", "tsdbb", "--chunk-size=2", "-v=6"]).await;
    assert!(out.success, "{out:?}");
    let names: Vec<&str> = out.stdout.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(names, ["b1", "b2", "b3", "b4", "b5", "b6", "b7"], "{}", out.stdout);
    let pages: Vec<&str> =
        out.stderr.lines().filter(|l| l.contains("GET https://") && l.contains("/timeseriesdbbackups?")).collect();
    assert_eq!(pages.len(), 4, "7 objects in pages of 2:\n{}", out.stderr);
    assert!(pages.iter().all(|l| l.contains("limit=2") && l.contains("200 OK")), "{pages:#?}");
    assert_eq!(pages.iter().filter(|l| l.contains("continue=")).count(), 3, "{pages:#?}");
}

#[tokio::test]
async fn explain_describes_fields() {
    let srv = TestServer::standalone().await;
    let out = srv.kubectl().ok(&["explain", "timeseriesdbbackup.spec.database"]).await;
    for expected in [
        "GROUP:      backup.extend-k8s.io",
        "KIND:       TimeseriesDBBackup",
        "VERSION:    v1",
        "FIELD: database <Object>",
        "The database to back up.",
        "-required-",
        "Prometheus, VictoriaMetrics, InfluxDB",
    ] {
        assert!(out.contains(expected), "explain lacks {expected:?}:\n{out}");
    }
    let fields: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains('\t'))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(fields, ["auth", "database", "selector", "tls", "type", "url"], "{out}");
}

#[tokio::test]
async fn restores_through_kubectl() {
    let srv = TestServer::standalone().await;
    let k = srv.kubectl();
    let restore = serde_json::to_string(&backup_e2e::restore("r1", "nightly")).expect("JSON");
    let out = k.ok_stdin(&["create", "-f", "-"], &restore).await;
    assert_eq!(out.trim(), "timeseriesdbrestore.backup.extend-k8s.io/r1 created");
    let out = k.ok(&["get", "tsdbr", "r1", "-o", "jsonpath={.spec.backupRef.name} {.spec.target.type}"]).await;
    assert_eq!(out, "nightly VictoriaMetrics");
    let out = k.ok(&["get", "backups"]).await;
    assert!(out.contains("timeseriesdbrestore.backup.extend-k8s.io/r1"), "the category lists restores:\n{out}");
}

const UNKNOWN_FIELDS: &str = "\
apiVersion: backup.extend-k8s.io/v1
kind: TimeseriesDBBackup
metadata:
  name: checked
spec:
  foo: 1
  database: {type: Prometheus, url: \"http://127.0.0.1:9090\", bar: 2}
";

#[tokio::test]
async fn apply_validate_strict_rejects_and_warn_warns_about_unknown_fields() {
    let srv = TestServer::standalone().await;
    let k = srv.kubectl();
    let out = k.run_with(&["apply", "--validate=strict", "-f", "-"], UNKNOWN_FIELDS, &[]).await;
    assert!(!out.success, "strict validation must fail");
    assert!(out.stderr.contains("strict decoding error"), "{}", out.stderr);
    for field in [r#"unknown field "spec.database.bar""#, r#"unknown field "spec.foo""#] {
        assert!(out.stderr.contains(field), "{}", out.stderr);
    }
    assert!(!k.run(&["get", "tsdbb", "checked"]).await.success, "nothing was stored");

    let out = k.run_with(&["apply", "--validate=warn", "-f", "-"], UNKNOWN_FIELDS, &[]).await;
    assert!(out.success, "{}", out.stderr);
    assert!(out.stderr.contains(r#"Warning: unknown field "spec.foo""#), "{}", out.stderr);
    let stored = k.ok(&["get", "tsdbb", "checked", "-o", "jsonpath={.spec}"]).await;
    assert!(!stored.contains("foo") && !stored.contains("bar"), "unknown fields are pruned: {stored}");
}

#[tokio::test]
async fn explain_with_api_version() {
    let srv = TestServer::standalone().await;
    let out = srv.kubectl().ok(&["explain", "tsdbr.spec.target", "--api-version=backup.extend-k8s.io/v1"]).await;
    assert!(out.contains("KIND:       TimeseriesDBRestore"), "{out}");
    assert!(out.contains("FIELD: target <Object>"), "{out}");
}
