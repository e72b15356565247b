//! Watch over raw HTTPS: newline-delimited JSON framing, ADDED/MODIFIED/DELETED, resuming from a
//! resourceVersion, bookmarks, timeoutSeconds, selectors (objects leaving the selection yield DELETED) and
//! streaming lists (`sendInitialEvents`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::{Duration, Instant};

use backup_e2e::{GV_PATH, Http, TestServer, WatchStream, backup, backup_path, backups, str_at};
use http::Method;
use serde_json::{Value, json};

const STEP: Duration = Duration::from_secs(10);

async fn watch(h: &Http, query: &str) -> WatchStream {
    let w = h.request(Method::GET, &format!("{}?watch=true&{query}", backups("default"))).open().await;
    assert_eq!(w.status, 200);
    assert_eq!(w.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
    w
}

/// `(type, name)` of an event.
fn summary(ev: &Value) -> (String, String) {
    (str_at(ev, "/type").to_string(), str_at(ev, "/object/metadata/name").to_string())
}

fn rv(obj: &Value) -> i64 {
    str_at(obj, "/metadata/resourceVersion").parse().unwrap_or_else(|_| panic!("no resourceVersion: {obj}"))
}

async fn labelled(h: &Http, name: &str, app: &str) -> Value {
    let mut obj = backup(name);
    obj["metadata"]["labels"] = json!({"app": app});
    h.create(&backups("default"), &obj).await
}

#[tokio::test]
async fn events_one_json_object_per_line() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let a = h.create(&backups("default"), &backup("a")).await;
    let mut w = watch(&h, "").await;
    let first = w.expect_event(STEP).await;
    assert_eq!(summary(&first), ("ADDED".into(), "a".into()), "the current state first");
    assert_eq!(first["object"], a);

    h.create(&backups("default"), &backup("b")).await;
    let patched = h.merge_patch(&backup_path("default", "a"), &json!({"spec": {"suspend": true}})).await.json();
    h.delete(&backup_path("default", "b")).await.expect_status(200);
    let added = w.expect_event(STEP).await;
    assert_eq!(summary(&added), ("ADDED".into(), "b".into()));
    assert_eq!(added["object"]["kind"], "TimeseriesDBBackup");
    assert_eq!(added["object"]["apiVersion"], "backup.extend-k8s.io/v1");
    let modified = w.expect_event(STEP).await;
    assert_eq!(summary(&modified), ("MODIFIED".into(), "a".into()));
    assert_eq!(modified["object"], patched);
    let deleted = w.expect_event(STEP).await;
    assert_eq!(summary(&deleted), ("DELETED".into(), "b".into()));
    assert!(rv(&deleted["object"]) > rv(&modified["object"]), "DELETED carries the delete's resourceVersion");
    assert!(rv(&modified["object"]) > rv(&added["object"]));
}

#[tokio::test]
async fn resume_from_a_resource_version() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let a = h.create(&backups("default"), &backup("a")).await;
    h.merge_patch(&backup_path("default", "a"), &json!({"spec": {"suspend": true}})).await.expect_status(200);
    h.create(&backups("default"), &backup("b")).await;
    let mut w = watch(&h, &format!("resourceVersion={}", rv(&a))).await;
    assert_eq!(summary(&w.expect_event(STEP).await), ("MODIFIED".into(), "a".into()), "only what came after");
    assert_eq!(summary(&w.expect_event(STEP).await), ("ADDED".into(), "b".into()));
    h.create(&backups("default"), &backup("c")).await;
    assert_eq!(summary(&w.expect_event(STEP).await), ("ADDED".into(), "c".into()));
}

#[tokio::test]
async fn timeout_seconds_ends_the_stream_with_a_bookmark() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let a = h.create(&backups("default"), &backup("a")).await;
    let started = Instant::now();
    let mut w = watch(&h, &format!("resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds=2", rv(&a))).await;
    let events = w.rest(STEP).await;
    assert!(started.elapsed() >= Duration::from_millis(1500), "ended early: {:?}", started.elapsed());
    let [bookmark] = events.as_slice() else { panic!("one bookmark expected: {events:?}") };
    assert_eq!(bookmark["type"], "BOOKMARK");
    let object = &bookmark["object"];
    assert_eq!(object["kind"], "TimeseriesDBBackup", "kube-rs requires kind: {bookmark}");
    assert_eq!(object["apiVersion"], "backup.extend-k8s.io/v1", "kube-rs requires apiVersion: {bookmark}");
    assert!(rv(object) >= rv(&a), "{bookmark}");

    let mut w = watch(&h, &format!("resourceVersion={}&timeoutSeconds=1", rv(&a))).await;
    assert!(w.rest(STEP).await.is_empty(), "no bookmark unless allowed");
}

/// When the server stops, its open watches end at once and cleanly (no ERROR, no bookmark), whatever their
/// timeout, and the stop does not wait for them.
#[tokio::test]
async fn watches_end_when_the_server_stops() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let a = h.create(&backups("default"), &backup("a")).await;
    let plain = watch(&h, &format!("resourceVersion={}", rv(&a))).await;
    let long = watch(&h, &format!("resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds=3600", rv(&a))).await;
    let mut watches = [plain, long];
    h.create(&backups("default"), &backup("b")).await;
    for w in &mut watches {
        assert_eq!(summary(&w.expect_event(STEP).await), ("ADDED".into(), "b".into()));
    }
    let started = Instant::now();
    srv.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5), "the stop waited for the watches: {:?}", started.elapsed());
    for w in &mut watches {
        assert_eq!(w.rest(STEP).await, Vec::<Value>::new(), "the end, with nothing after the stop");
    }
}

#[tokio::test]
async fn label_selector_transitions_are_added_and_deleted() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let mut w = watch(&h, "labelSelector=app%3Da").await;
    labelled(&h, "b1", "b").await;
    labelled(&h, "a1", "a").await;
    assert_eq!(summary(&w.expect_event(STEP).await), ("ADDED".into(), "a1".into()), "b1 is not selected");
    h.merge_patch(&backup_path("default", "a1"), &json!({"metadata": {"labels": {"app": "b"}}}))
        .await
        .expect_status(200);
    let left = w.expect_event(STEP).await;
    assert_eq!(summary(&left), ("DELETED".into(), "a1".into()), "leaving the selection");
    h.merge_patch(&backup_path("default", "b1"), &json!({"metadata": {"labels": {"app": "a"}}}))
        .await
        .expect_status(200);
    assert_eq!(summary(&w.expect_event(STEP).await), ("ADDED".into(), "b1".into()), "entering the selection");
    h.merge_patch(&backup_path("default", "b1"), &json!({"spec": {"suspend": true}})).await.expect_status(200);
    assert_eq!(summary(&w.expect_event(STEP).await), ("MODIFIED".into(), "b1".into()));
}

#[tokio::test]
async fn field_selector_on_status_phase() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    h.create(&backups("default"), &backup("x")).await;
    h.create(&backups("default"), &backup("y")).await;
    let mut w = watch(&h, "fieldSelector=status.phase%3DFailed").await;
    let status = |phase: &str| json!({"status": {"phase": phase}});
    let y_status = format!("{}/status", backup_path("default", "y"));
    let x_status = format!("{}/status", backup_path("default", "x"));
    h.merge_patch(&y_status, &status("Running")).await.expect_status(200);
    h.merge_patch(&x_status, &status("Failed")).await.expect_status(200);
    let ev = w.expect_event(STEP).await;
    assert_eq!(summary(&ev), ("ADDED".into(), "x".into()));
    assert_eq!(ev["object"]["status"]["phase"], "Failed");
    h.merge_patch(&x_status, &status("Succeeded")).await.expect_status(200);
    assert_eq!(summary(&w.expect_event(STEP).await), ("DELETED".into(), "x".into()));
}

#[tokio::test]
async fn streaming_list_ends_initial_events_with_a_bookmark() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    h.create(&backups("default"), &backup("a")).await;
    let b = h.create(&backups("default"), &backup("b")).await;
    let mut w = watch(&h, "sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true").await;
    assert_eq!(summary(&w.expect_event(STEP).await), ("ADDED".into(), "a".into()));
    assert_eq!(summary(&w.expect_event(STEP).await), ("ADDED".into(), "b".into()));
    let end = w.expect_event(STEP).await;
    assert_eq!(end["type"], "BOOKMARK", "{end}");
    assert_eq!(end["object"]["metadata"]["annotations"], json!({"k8s.io/initial-events-end": "true"}), "{end}");
    assert_eq!(end["object"]["kind"], "TimeseriesDBBackup");
    assert!(rv(&end["object"]) >= rv(&b), "{end}");
    h.create(&backups("default"), &backup("c")).await;
    assert_eq!(summary(&w.expect_event(STEP).await), ("ADDED".into(), "c".into()));

    let resp = h.get(&format!("{}?watch=true&sendInitialEvents=true", backups("default"))).await;
    resp.expect_failure(422, "Invalid");
}

#[tokio::test]
async fn watch_one_name_and_all_namespaces() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let path = format!("{GV_PATH}/watch/namespaces/default/timeseriesdbbackups/a");
    let mut one = h.request(Method::GET, &path).open().await;
    assert_eq!(one.status, 200);
    let mut all = h.request(Method::GET, &format!("{GV_PATH}/timeseriesdbbackups?watch=1")).open().await;
    h.create(&backups("default"), &backup("b")).await;
    h.create(&backups("other"), &backup("a")).await;
    h.create(&backups("default"), &backup("a")).await;
    let ev = one.expect_event(STEP).await;
    assert_eq!(summary(&ev), ("ADDED".into(), "a".into()));
    assert_eq!(ev["object"]["metadata"]["namespace"], "default", "only default/a: {ev}");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let ev = all.expect_event(STEP).await;
        seen.push(format!("{}/{}", str_at(&ev, "/object/metadata/namespace"), str_at(&ev, "/object/metadata/name")));
    }
    assert_eq!(seen, ["default/b", "other/a", "default/a"]);
}

#[tokio::test]
async fn finalized_deletion_is_modified_then_deleted() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let mut obj = backup("f");
    obj["metadata"]["finalizers"] = json!(["backup.extend-k8s.io/cleanup"]);
    let created = h.create(&backups("default"), &obj).await;
    let mut w = watch(&h, &format!("resourceVersion={}", rv(&created))).await;
    h.delete(&backup_path("default", "f")).await.expect_status(200);
    let marked = w.expect_event(STEP).await;
    assert_eq!(summary(&marked), ("MODIFIED".into(), "f".into()));
    assert!(marked["object"]["metadata"]["deletionTimestamp"].is_string(), "{marked}");
    h.merge_patch(&backup_path("default", "f"), &json!({"metadata": {"finalizers": []}})).await.expect_status(200);
    let deleted = w.expect_event(STEP).await;
    assert_eq!(summary(&deleted), ("DELETED".into(), "f".into()));
    assert!(rv(&deleted["object"]) > rv(&marked["object"]));

    h.create(&backups("default"), &backup("g")).await;
    let mut from_zero = watch(&h, "resourceVersion=0").await;
    assert_eq!(
        summary(&from_zero.expect_event(STEP).await),
        ("ADDED".into(), "g".into()),
        "\"0\" starts with the state"
    );
}
