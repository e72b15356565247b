//! Lists over raw HTTPS: pagination (limit, continue, remainingItemCount, pinned revision), label selectors
//! (equality and set-based), field selectors and resourceVersion semantics.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use backup_e2e::{GV_PATH, Http, TestServer, backup, backup_path, backups, str_at};
use serde_json::{Value, json};

async fn list(h: &Http, query: &str) -> Value {
    h.get(&format!("{}?{query}", backups("default"))).await.expect_status(200).json()
}

fn names(list: &Value) -> Vec<&str> {
    list["items"].as_array().expect("items").iter().map(|i| str_at(i, "/metadata/name")).collect()
}

async fn seed(h: &Http) {
    for (name, app, tier) in
        [("a", "web", "1"), ("b", "web", "2"), ("c", "db", "1"), ("d", "db", "2"), ("e", "cache", "")]
    {
        let mut obj = backup(name);
        obj["metadata"]["labels"] =
            if tier.is_empty() { json!({"app": app}) } else { json!({"app": app, "tier": tier}) };
        h.create(&backups("default"), &obj).await;
    }
}

#[tokio::test]
async fn pages_are_consistent_snapshots() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    seed(&h).await;
    let first = list(&h, "limit=2").await;
    assert_eq!(names(&first), ["a", "b"]);
    assert_eq!(first["metadata"]["remainingItemCount"], 3);
    let rv = str_at(&first, "/metadata/resourceVersion").to_string();

    h.create(&backups("default"), &backup("f")).await;
    h.delete(&backup_path("default", "e")).await.expect_status(200);

    let token = str_at(&first, "/metadata/continue");
    let second = list(&h, &format!("limit=2&continue={token}")).await;
    assert_eq!(names(&second), ["c", "d"]);
    assert_eq!(str_at(&second, "/metadata/resourceVersion"), rv, "pages share the first page's revision");
    assert_eq!(second["metadata"]["remainingItemCount"], 1);
    let token = str_at(&second, "/metadata/continue");
    let last = list(&h, &format!("limit=2&continue={token}")).await;
    assert_eq!(names(&last), ["e"], "the snapshot, not the changes made since");
    assert_eq!(last["metadata"].get("continue"), None, "{last}");
    assert_eq!(last["metadata"].get("remainingItemCount"), None, "{last}");
    assert_eq!(names(&list(&h, "").await), ["a", "b", "c", "d", "f"]);
}

#[tokio::test]
async fn selectors_filter_and_page() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    seed(&h).await;
    assert_eq!(names(&list(&h, "labelSelector=app%3Dweb").await), ["a", "b"]);
    assert_eq!(names(&list(&h, "labelSelector=app!%3Dweb").await), ["c", "d", "e"]);
    assert_eq!(names(&list(&h, "labelSelector=app%20in%20(db,cache)").await), ["c", "d", "e"]);
    assert_eq!(names(&list(&h, "labelSelector=app%20notin%20(db),tier").await), ["a", "b"]);
    assert_eq!(names(&list(&h, "labelSelector=!tier").await), ["e"]);
    assert_eq!(names(&list(&h, "labelSelector=tier%3D1,app%3Ddb").await), ["c"]);
    assert_eq!(names(&list(&h, "fieldSelector=metadata.name%3Dd").await), ["d"]);
    assert_eq!(
        names(&list(&h, "fieldSelector=metadata.name!%3Dd,spec.database.type%3DPrometheus").await),
        ["a", "b", "c", "e"]
    );

    let page = list(&h, "labelSelector=tier&limit=3").await;
    assert_eq!(names(&page), ["a", "b", "c"]);
    assert_eq!(page["metadata"].get("remainingItemCount"), None, "no count with a selector: {page}");
    let token = str_at(&page, "/metadata/continue");
    assert_eq!(names(&list(&h, &format!("labelSelector=tier&limit=3&continue={token}")).await), ["d"]);

    let across = h.get(&format!("{GV_PATH}/timeseriesdbbackups?fieldSelector=metadata.namespace%3Ddefault")).await;
    assert_eq!(names(&across.expect_status(200).json()).len(), 5);
}

#[tokio::test]
async fn resource_version_semantics() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let a = h.create(&backups("default"), &backup("a")).await;
    let before = str_at(&a, "/metadata/resourceVersion").to_string();
    h.merge_patch(&backup_path("default", "a"), &json!({"spec": {"suspend": true}})).await.expect_status(200);
    h.create(&backups("default"), &backup("b")).await;

    let exact = list(&h, &format!("resourceVersion={before}&resourceVersionMatch=Exact")).await;
    assert_eq!(names(&exact), ["a"], "the state at that revision");
    assert_eq!(exact["items"][0]["spec"]["suspend"], false);
    assert_eq!(str_at(&exact, "/metadata/resourceVersion"), before);
    let newer = list(&h, &format!("resourceVersion={before}&resourceVersionMatch=NotOlderThan")).await;
    assert_eq!(names(&newer), ["a", "b"]);
    assert_eq!(names(&list(&h, "resourceVersion=0").await), ["a", "b"]);

    let forbidden = format!("{}?resourceVersionMatch=Exact", backups("default"));
    h.get(&forbidden).await.expect_failure(422, "Invalid");
    h.get(&format!("{}?resourceVersion=abc", backups("default"))).await.expect_failure(400, "BadRequest");
}

/// A list larger than the piece the server writes at a time goes out in pieces (chunked, as upstream sends a large
/// list) and reads back whole: every item as a GET returns it, in order. A small list has a Content-Length.
#[tokio::test]
async fn large_lists_stream_whole() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let filler = "x".repeat(2000);
    let expected: Vec<String> = (0..60).map(|i| format!("big-{i:02}")).collect();
    for name in &expected {
        let mut obj = backup(name);
        obj["metadata"]["annotations"] = json!({"filler": filler});
        h.create(&backups("default"), &obj).await;
    }
    let resp = h.get(&backups("default")).await.expect_status(200);
    assert_eq!(resp.header("transfer-encoding"), "chunked", "{:?}", resp.headers);
    assert!(resp.body.len() > 120_000, "{} bytes", resp.body.len());
    let big = resp.json();
    assert_eq!(names(&big), expected);
    for item in big["items"].as_array().unwrap() {
        let got = h.get(&backup_path("default", str_at(item, "/metadata/name"))).await.expect_status(200).json();
        assert_eq!(item, &got, "a listed item is the object as a GET returns it");
    }
    assert_eq!(str_at(&big, "/kind"), "TimeseriesDBBackupList");
    assert!(!str_at(&big, "/metadata/resourceVersion").is_empty(), "{}", big["metadata"]);

    h.create(&backups("small"), &backup("one")).await;
    let resp = h.get(&backups("small")).await.expect_status(200);
    assert_eq!(resp.header("content-length"), resp.body.len().to_string(), "{:?}", resp.headers);
    assert_eq!(names(&resp.json()), ["one"]);
}
