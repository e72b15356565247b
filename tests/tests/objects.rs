//! Object semantics over raw HTTPS: generation, the status subresource, generateName, finalizers, delete
//! preconditions, deletecollection, dryRun and fieldValidation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use backup_e2e::{Http, TestServer, backup, backup_path, backups, str_at};
use http::Method;
use serde_json::{Value, json};

async fn names(h: &Http, query: &str) -> Vec<String> {
    let list = h.get(&format!("{}{query}", backups("default"))).await.expect_status(200).json();
    list["items"].as_array().expect("items").iter().map(|i| str_at(i, "/metadata/name").to_string()).collect()
}

fn generation(obj: &Value) -> i64 {
    obj["metadata"]["generation"].as_i64().unwrap_or_else(|| panic!("no generation: {obj}"))
}

#[tokio::test]
async fn generation_counts_spec_changes_only() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let path = backup_path("default", "g");
    let mut with_status = backup("g");
    with_status["status"] = json!({"phase": "Succeeded"});
    let created = h.create(&backups("default"), &with_status).await;
    assert_eq!(generation(&created), 1);
    assert_eq!(created.get("status"), None, "status is ignored on create: {created}");

    let obj = h.merge_patch(&path, &json!({"metadata": {"labels": {"a": "b"}}})).await.expect_status(200).json();
    assert_eq!(generation(&obj), 1, "metadata changes keep the generation");
    let obj = h.merge_patch(&path, &json!({"spec": {"suspend": true}})).await.expect_status(200).json();
    assert_eq!(generation(&obj), 2, "spec changes bump it");
    let same = h.merge_patch(&path, &json!({"spec": {"suspend": true}})).await.expect_status(200).json();
    assert_eq!(generation(&same), 2, "a no-op keeps it");
    assert_eq!(same["metadata"]["resourceVersion"], obj["metadata"]["resourceVersion"], "a no-op writes nothing");

    let obj = h.merge_patch(&path, &json!({"status": {"phase": "Failed"}})).await.expect_status(200).json();
    assert_eq!(obj.get("status"), None, "status is ignored on the main resource: {obj}");
    let mut put = obj.clone();
    put["status"] = json!({"phase": "Failed"});
    put["metadata"]["generation"] = json!(1);
    let obj = h.put(&path, &put).await.expect_status(200).json();
    assert_eq!(obj.get("status"), None, "status is ignored by PUT too: {obj}");
    assert_eq!(generation(&obj), 2, "clients cannot set the generation");

    let status_path = format!("{path}/status");
    let patch = json!({"spec": {"suspend": false}, "metadata": {"labels": {"c": "d"}}, "status": {"phase": "Running"}});
    let obj = h.merge_patch(&status_path, &patch).await.expect_status(200).json();
    assert_eq!(obj["status"]["phase"], "Running");
    assert_eq!(obj["spec"]["suspend"], true, "the status subresource changes only status");
    assert_eq!(obj["metadata"]["labels"], json!({"a": "b"}), "the status subresource changes only status");
    assert_eq!(generation(&obj), 2, "status changes keep the generation");
    let mut put = obj.clone();
    put["status"]["phase"] = json!("Succeeded");
    let obj = h.put(&status_path, &put).await.expect_status(200).json();
    assert_eq!(obj["status"]["phase"], "Succeeded");
    let got = h.get(&status_path).await.expect_status(200).json();
    assert_eq!(got, obj, "GET on status returns the whole object");
}

#[tokio::test]
async fn generate_name_makes_unique_names() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let mut obj = backup("");
    obj["metadata"] = json!({"generateName": "nightly-"});
    let mut seen = Vec::new();
    for _ in 0..3 {
        let created = h.create(&backups("default"), &obj).await;
        let name = str_at(&created, "/metadata/name").to_string();
        assert_eq!(name.len(), "nightly-".len() + 5, "{name}");
        assert!(name.starts_with("nightly-"), "{name}");
        assert!(name[8..].bytes().all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)), "{name}");
        assert_eq!(created["metadata"]["generateName"], "nightly-");
        assert_eq!(
            created["spec"]["destination"],
            json!({"location": "default", "path": name}),
            "defaults use the generated name"
        );
        seen.push(name);
    }
    seen.sort();
    assert_eq!(names(&h, "").await, seen);
    let status = h.post(&backups("default"), &json!({"apiVersion": "backup.extend-k8s.io/v1", "kind": "TimeseriesDBBackup", "metadata": {}, "spec": backup("x")["spec"]})).await.expect_failure(422, "Invalid");
    assert!(
        str_at(&status, "/message").contains("metadata.name: Required value: name or generateName is required"),
        "{status}"
    );
}

#[tokio::test]
async fn finalizers_hold_deletion() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let path = backup_path("default", "f");
    let mut obj = backup("f");
    obj["metadata"]["finalizers"] = json!(["backup.extend-k8s.io/cleanup"]);
    h.create(&backups("default"), &obj).await;

    let marked = h.delete(&path).await.expect_status(200).json();
    assert_eq!(marked["kind"], "TimeseriesDBBackup", "the object comes back, marked: {marked}");
    assert!(marked["metadata"]["deletionTimestamp"].is_string(), "{marked}");
    let got = h.get(&path).await.expect_status(200).json();
    assert!(got["metadata"]["deletionTimestamp"].is_string(), "still there while the finalizer is: {got}");
    let again = h.delete(&path).await.expect_status(200).json();
    assert_eq!(again["metadata"]["deletionTimestamp"], got["metadata"]["deletionTimestamp"]);

    let adding = json!({"metadata": {"finalizers": ["backup.extend-k8s.io/cleanup", "another.io/x"]}});
    h.merge_patch(&path, &adding).await.expect_failure(422, "Invalid");

    let gone = h.merge_patch(&path, &json!({"metadata": {"finalizers": null}})).await.expect_status(200).json();
    assert_eq!(gone["metadata"]["name"], "f");
    h.get(&path).await.expect_failure(404, "NotFound");
}

#[tokio::test]
async fn delete_preconditions() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let created = h.create(&backups("default"), &backup("p")).await;
    let path = backup_path("default", "p");
    let uid = str_at(&created, "/metadata/uid");
    let rv = str_at(&created, "/metadata/resourceVersion");

    let wrong_uid = json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}});
    let status = h.request(Method::DELETE, &path).json(&wrong_uid).send().await.expect_failure(409, "Conflict");
    assert!(str_at(&status, "/message").contains("Precondition failed: UID in precondition"), "{status}");
    assert_eq!(status["details"]["kind"], "timeseriesdbbackups");
    let wrong_rv = json!({"preconditions": {"resourceVersion": "1"}});
    h.request(Method::DELETE, &path).json(&wrong_rv).send().await.expect_failure(409, "Conflict");
    h.get(&path).await.expect_status(200);

    let right = json!({"preconditions": {"uid": uid, "resourceVersion": rv}, "propagationPolicy": "Background"});
    // client-go's metadata client sends DeleteOptions without a Content-Type.
    let resp = h.request(Method::DELETE, &path).raw_body(right.to_string()).send().await.expect_status(200);
    let body = resp.json();
    assert!(body["kind"] == "Status" || body["kind"] == "TimeseriesDBBackup", "{body}");
    h.get(&path).await.expect_failure(404, "NotFound");
}

#[tokio::test]
async fn deletecollection_with_a_label_selector() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    for (name, app) in [("a1", "a"), ("a2", "a"), ("b1", "b")] {
        let mut obj = backup(name);
        obj["metadata"]["labels"] = json!({"app": app});
        h.create(&backups("default"), &obj).await;
    }
    let mut elsewhere = backup("a3");
    elsewhere["metadata"]["labels"] = json!({"app": "a"});
    h.create(&backups("other"), &elsewhere).await;

    let resp = h.delete(&format!("{}?labelSelector=app%3Da", backups("default"))).await.expect_status(200);
    let deleted = resp.json();
    assert_eq!(deleted["kind"], "TimeseriesDBBackupList", "{deleted}");
    let mut gone: Vec<&str> =
        deleted["items"].as_array().expect("items").iter().map(|i| str_at(i, "/metadata/name")).collect();
    gone.sort();
    assert_eq!(gone, ["a1", "a2"]);
    assert_eq!(names(&h, "").await, ["b1"]);
    h.get(&backup_path("other", "a3")).await.expect_status(200);
}

#[tokio::test]
async fn dry_run_stores_nothing() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let dry = |p: &str| format!("{p}?dryRun=All");
    let created = h.post(&dry(&backups("default")), &backup("ghost")).await.expect_status(201).json();
    assert_eq!(created["metadata"]["name"], "ghost", "the object as it would be");
    assert!(names(&h, "").await.is_empty());

    let real = h.create(&backups("default"), &backup("real")).await;
    let path = backup_path("default", "real");
    let mut update = real.clone();
    update["spec"]["suspend"] = json!(true);
    let would = h.put(&dry(&path), &update).await.expect_status(200).json();
    assert_eq!(would["spec"]["suspend"], true);
    let would = h.merge_patch(&dry(&path), &json!({"spec": {"schedule": "@hourly"}})).await.expect_status(200).json();
    assert_eq!(would["spec"]["schedule"], "@hourly");
    let would =
        h.json_patch(&dry(&path), &json!([{"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}])).await;
    assert_eq!(would.expect_status(200).json()["metadata"]["labels"]["x"], "y");
    h.delete(&dry(&path)).await.expect_status(200);
    let body = json!({"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]});
    h.request(Method::DELETE, &path).json(&body).send().await.expect_status(200);
    h.delete(&dry(&backups("default"))).await.expect_status(200);
    assert_eq!(h.get(&path).await.expect_status(200).json(), real, "nothing changed");

    h.post(&format!("{}?dryRun=Some", backups("default")), &backup("x")).await.expect_failure(400, "BadRequest");
}

#[tokio::test]
async fn field_validation_strict_and_warn() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let mut unknown = backup("u");
    unknown["spec"]["foo"] = json!(1);
    unknown["spec"]["database"]["bar"] = json!("x");

    let status = h
        .post(&format!("{}?fieldValidation=Strict", backups("default")), &unknown)
        .await
        .expect_failure(400, "BadRequest");
    let message = str_at(&status, "/message");
    assert!(message.contains("strict decoding error"), "{message}");
    assert!(
        message.contains(r#"unknown field "spec.foo""#) && message.contains(r#"unknown field "spec.database.bar""#),
        "{message}"
    );
    assert!(names(&h, "").await.is_empty());

    for query in ["", "?fieldValidation=Warn"] {
        let resp = h.post(&format!("{}{query}", backups("default")), &unknown).await.expect_status(201);
        let warnings: Vec<&str> = resp.headers.get_all("warning").iter().filter_map(|v| v.to_str().ok()).collect();
        assert!(warnings.contains(&r#"299 - "unknown field \"spec.foo\"""#), "{query}: {warnings:?}");
        assert!(warnings.contains(&r#"299 - "unknown field \"spec.database.bar\"""#), "{query}: {warnings:?}");
        let obj = resp.json();
        assert_eq!(obj["spec"].get("foo"), None, "unknown fields are dropped: {obj}");
        h.delete(&backup_path("default", "u")).await.expect_status(200);
    }

    let resp = h.post(&format!("{}?fieldValidation=Ignore", backups("default")), &unknown).await.expect_status(201);
    assert!(resp.headers.get("warning").is_none(), "Ignore warns about nothing");
    let path = format!("{}?fieldValidation=Strict", backup_path("default", "u"));
    let status = h.merge_patch(&path, &json!({"spec": {"baz": true}})).await.expect_failure(400, "BadRequest");
    assert!(str_at(&status, "/message").contains(r#"unknown field "spec.baz""#), "{status}");
}
