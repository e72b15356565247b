//! On etcd: the storage layout (read with etcd-client directly), resourceVersion = the key's mod_revision, and
//! 410 Expired after a compaction (an ERROR event inside a 200 watch, and expired lists and continue tokens).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::Duration;

use backup_e2e::{GV_PATH, TestServer, backup, backup_path, backups, collection, restore, str_at};
use http::Method;
use serde_json::{Value, json};

const KEY: &str = "/registry/backup.extend-k8s.io/timeseriesdbbackups/default/x";

async fn etcd_client(srv: &TestServer) -> etcd_client::Client {
    let endpoint = srv.etcd.as_ref().expect("an etcd server").endpoint();
    etcd_client::Client::connect([endpoint], None).await.expect("connect to etcd")
}

/// The value and mod_revision stored at `key`.
async fn stored(etcd: &mut etcd_client::Client, key: &str) -> (String, i64) {
    let resp = etcd.get(key, None).await.expect("etcd get");
    let kv = resp.kvs().first().unwrap_or_else(|| panic!("nothing at {key}"));
    (String::from_utf8(kv.value().to_vec()).expect("UTF-8 JSON"), kv.mod_revision())
}

fn rv(obj: &Value) -> i64 {
    str_at(obj, "/metadata/resourceVersion").parse().unwrap_or_else(|_| panic!("no resourceVersion: {obj}"))
}

/// Compact etcd's history up to its current revision; that revision.
async fn compact_all(etcd: &mut etcd_client::Client) -> i64 {
    let status = etcd.status().await.expect("etcd status");
    let revision = status.header().expect("a response header").revision();
    etcd.compact(revision, None).await.expect("compact");
    revision
}

#[tokio::test]
async fn objects_are_stored_as_json_under_the_registry_prefix() {
    let srv = TestServer::on_etcd().await;
    let h = srv.http();
    let mut etcd = etcd_client(&srv).await;
    let created = h.create(&backups("default"), &backup("x")).await;
    let (value, mod_revision) = stored(&mut etcd, KEY).await;
    assert!(
        value.starts_with(r#"{"apiVersion":"backup.extend-k8s.io/v1","kind":"TimeseriesDBBackup","metadata":{"#),
        "{value}"
    );
    assert_eq!(mod_revision, rv(&created), "resourceVersion = mod_revision");
    let decoded: Value = serde_json::from_str(&value).expect("JSON");
    assert_eq!(decoded["spec"], created["spec"]);
    assert_eq!(decoded["metadata"]["uid"], created["metadata"]["uid"]);

    let updated = h
        .merge_patch(&backup_path("default", "x"), &json!({"spec": {"suspend": true}}))
        .await
        .expect_status(200)
        .json();
    let (value, mod_revision) = stored(&mut etcd, KEY).await;
    assert_eq!(mod_revision, rv(&updated));
    assert!(value.contains(r#""suspend":true"#), "{value}");

    h.create(&collection("default", "timeseriesdbrestores"), &restore("r", "x")).await;
    let (value, _) = stored(&mut etcd, "/registry/backup.extend-k8s.io/timeseriesdbrestores/default/r").await;
    assert!(value.starts_with(r#"{"apiVersion":"backup.extend-k8s.io/v1","kind":"TimeseriesDBRestore","metadata":{"#));

    h.delete(&backup_path("default", "x")).await.expect_status(200);
    let resp = etcd.get(KEY, None).await.expect("etcd get");
    assert!(resp.kvs().is_empty(), "deleted from etcd");
}

#[tokio::test]
async fn watch_from_a_compacted_revision_is_410_inside_200() {
    let srv = TestServer::on_etcd().await;
    let h = srv.http();
    let mut etcd = etcd_client(&srv).await;
    let created = h.create(&backups("default"), &backup("x")).await;
    for keep in 1..=3 {
        h.merge_patch(&backup_path("default", "x"), &json!({"spec": {"retention": {"keepLast": keep}}}))
            .await
            .expect_status(200);
    }
    let compacted = compact_all(&mut etcd).await;
    let path = format!("{}?watch=true&resourceVersion={}", backups("default"), rv(&created));
    let mut w = h.request(Method::GET, &path).open().await;
    assert_eq!(w.status, 200, "the error comes inside the stream");
    let step = Duration::from_secs(10);
    let ev = w.expect_event(step).await;
    assert_eq!(ev["type"], "ERROR", "{ev}");
    let status = &ev["object"];
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["apiVersion"], "v1");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["code"], 410);
    assert_eq!(status["reason"], "Expired");
    assert!(str_at(status, "/message").starts_with("too old resource version:"), "{status}");
    assert!(w.next_event(step).await.is_none(), "the watch ends after the error");

    let fresh = format!("{}?watch=true&resourceVersion={compacted}&timeoutSeconds=1", backups("default"));
    let mut w = h.request(Method::GET, &fresh).open().await;
    assert!(w.rest(step).await.is_empty(), "watching from the compaction point works");

    let exact = format!("{}?resourceVersion={}&resourceVersionMatch=Exact", backups("default"), rv(&created));
    h.get(&exact).await.expect_failure(410, "Expired");
}

#[tokio::test]
async fn expired_continue_token_is_410_with_a_fresh_token() {
    let srv = TestServer::on_etcd().await;
    let h = srv.http();
    let mut etcd = etcd_client(&srv).await;
    for name in ["a", "b", "c"] {
        h.create(&backups("default"), &backup(name)).await;
    }
    let first = h.get(&format!("{}?limit=1", backups("default"))).await.expect_status(200).json();
    assert_eq!(first["metadata"]["remainingItemCount"], 2, "{first}");
    let token = str_at(&first, "/metadata/continue").to_string();
    assert!(!token.is_empty(), "{first}");
    h.merge_patch(&backup_path("default", "c"), &json!({"spec": {"suspend": true}})).await.expect_status(200);
    compact_all(&mut etcd).await;

    let status =
        h.get(&format!("{}?limit=1&continue={token}", backups("default"))).await.expect_failure(410, "Expired");
    assert!(str_at(&status, "/message").starts_with("The provided continue parameter is too old"), "{status}");
    let fresh = str_at(&status, "/metadata/continue").to_string();
    assert!(!fresh.is_empty() && fresh != token, "a token to go on with: {status}");
    let rest = h.get(&format!("{}?continue={fresh}", backups("default"))).await.expect_status(200).json();
    let names: Vec<&str> =
        rest["items"].as_array().expect("items").iter().map(|i| str_at(i, "/metadata/name")).collect();
    assert_eq!(names, ["b", "c"], "the rest of the list, at the latest revision");
}

#[tokio::test]
async fn etcd_down_fails_readiness_and_storage_requests_only() {
    let mut srv = TestServer::on_etcd().await;
    let h = srv.http();
    h.create(&backups("default"), &backup("x")).await;
    let text = h.get("/readyz?verbose").await.expect_status(200).text();
    assert!(text.lines().any(|l| l == "[+]etcd ok"), "{text}");

    srv.etcd.as_mut().expect("etcd").stop().await;
    let resp = h.get("/readyz?verbose").await;
    assert_eq!(resp.status, 500, "{}", resp.text());
    assert!(resp.text().lines().any(|l| l == "[-]etcd failed: reason withheld"), "{}", resp.text());
    assert_eq!(h.get("/livez").await.expect_status(200).text(), "ok", "a storage outage is no reason to restart");
    h.get(GV_PATH).await.expect_status(200);
    let status = h.get(&backup_path("default", "x")).await.expect_failure(503, "ServiceUnavailable");
    assert!(str_at(&status, "/message").contains("unavailable"), "{status}");

    srv.etcd.as_mut().expect("etcd").restart().await;
    let mut ready = false;
    for _ in 0..100 {
        if h.get(&backup_path("default", "x")).await.status == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the server recovers when etcd is back");
}
