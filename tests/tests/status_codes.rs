//! Every HTTP status code the server answers, over raw HTTPS, and the `Status` body of every error (apiVersion
//! v1, reason, code, details naming the resource as upstream does). 410 lives in `etcd.rs`, which can compact.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use backup_e2e::{GV_PATH, TestServer, backup, backup_path, backups, str_at};
use http::Method;
use serde_json::json;

#[tokio::test]
async fn create_201_get_list_200() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let resp = h.post(&backups("default"), &backup("a")).await.expect_status(201);
    assert_eq!(resp.header("content-type"), "application/json");
    let created = resp.json();
    assert_eq!(created["kind"], "TimeseriesDBBackup");
    assert_eq!(created["apiVersion"], "backup.extend-k8s.io/v1");
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(created["metadata"]["namespace"], "default");
    let uid = str_at(&created, "/metadata/uid");
    assert_eq!(uid.len(), 36, "a UUID: {created}");
    let ts = str_at(&created, "/metadata/creationTimestamp");
    assert!(ts.len() == 20 && ts.ends_with('Z'), "second precision RFC 3339: {ts}");
    let rv: i64 = str_at(&created, "/metadata/resourceVersion").parse().expect("a decimal resourceVersion");
    assert!(rv > 0);

    let got = h.get(&backup_path("default", "a")).await.expect_status(200).json();
    assert_eq!(got, created, "GET returns the object as created");

    let list = h.get(&backups("default")).await.expect_status(200).json();
    assert_eq!(list["kind"], "TimeseriesDBBackupList");
    assert_eq!(list["apiVersion"], "backup.extend-k8s.io/v1");
    assert!(str_at(&list, "/metadata/resourceVersion").parse::<i64>().is_ok_and(|v| v >= rv), "{list}");
    assert_eq!(list["items"], json!([created]), "items carry apiVersion and kind");
    let all = h.get(&format!("{GV_PATH}/timeseriesdbbackups")).await.expect_status(200).json();
    assert_eq!(all["items"].as_array().map(Vec::len), Some(1), "all namespaces: {all}");
}

#[tokio::test]
async fn bad_requests_400() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let path = backups("default");

    let resp = h.request(Method::POST, &path).body("application/json", "{\"apiVersion\":").send().await;
    resp.expect_failure(400, "BadRequest");

    let mut wrong_version = backup("a");
    wrong_version["apiVersion"] = json!("backup.extend-k8s.io/v2");
    let status = h.post(&path, &wrong_version).await.expect_failure(400, "BadRequest");
    assert_eq!(
        status["message"],
        "the API version in the data (backup.extend-k8s.io/v2) does not match the expected API version (backup.extend-k8s.io/v1)"
    );

    let mut wrong_ns = backup("a");
    wrong_ns["metadata"]["namespace"] = json!("other");
    let status = h.post(&path, &wrong_ns).await.expect_failure(400, "BadRequest");
    assert_eq!(
        status["message"],
        "the namespace of the provided object does not match the namespace sent on the request"
    );

    h.get(&format!("{path}?continue=not-a-token")).await.expect_failure(400, "BadRequest");
    h.get(&format!("{path}?labelSelector=a%20in%20(")).await.expect_failure(400, "BadRequest");
    let status = h.get(&format!("{path}?fieldSelector=spec.nope%3Dx")).await.expect_failure(400, "BadRequest");
    assert_eq!(status["message"], "field label not supported: spec.nope", "upstream's words: {status}");
    assert_eq!(h.get(&backups("default")).await.json()["items"], json!([]), "nothing was created");
}

#[tokio::test]
async fn unauthorized_401_but_health_is_open() {
    let srv = TestServer::standalone().await;
    for token in [None, Some("not-the-token")] {
        let h = srv.http_with_token(token);
        let status = h.get(&backups("default")).await.expect_failure(401, "Unauthorized");
        assert_eq!(status["message"], "Unauthorized");
        h.post(&backups("default"), &backup("a")).await.expect_failure(401, "Unauthorized");
        h.get("/apis").await.expect_failure(401, "Unauthorized");
        for open in ["/healthz", "/livez", "/readyz"] {
            let resp = h.get(open).await.expect_status(200);
            assert_eq!(resp.text(), "ok", "{open}");
        }
    }
    srv.http().get(&backup_path("default", "a")).await.expect_failure(404, "NotFound");
}

#[tokio::test]
async fn not_found_404() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let status = h.get(&backup_path("default", "missing")).await.expect_failure(404, "NotFound");
    assert_eq!(status["message"], r#"timeseriesdbbackups.backup.extend-k8s.io "missing" not found"#);
    assert_eq!(
        status["details"],
        json!({"name": "missing", "group": "backup.extend-k8s.io", "kind": "timeseriesdbbackups"})
    );
    for method in [Method::PUT, Method::DELETE] {
        let resp = h.request(method, &backup_path("default", "missing")).json(&backup("missing")).send().await;
        resp.expect_failure(404, "NotFound");
    }
    h.merge_patch(&backup_path("default", "missing"), &json!({})).await.expect_failure(404, "NotFound");
    h.get(&backups("default").replace("timeseriesdbbackups", "widgets")).await.expect_failure(404, "NotFound");
    h.get("/apis/other.example.com/v1/namespaces/default/things").await.expect_failure(404, "NotFound");
    h.get(&format!("{}/scale", backup_path("default", "x"))).await.expect_failure(404, "NotFound");
    let resp = h.get("/no/such/path").await;
    assert_eq!(resp.status, 404, "{}", resp.text());
}

#[tokio::test]
async fn method_not_allowed_405() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    h.create(&backups("default"), &backup("a")).await;
    let status_path = format!("{}/status", backup_path("default", "a"));
    h.delete(&status_path).await.expect_failure(405, "MethodNotAllowed");
    h.post(&status_path, &backup("a")).await.expect_failure(405, "MethodNotAllowed");
    h.post(&backup_path("default", "a"), &backup("a")).await.expect_failure(405, "MethodNotAllowed");
    h.put(&backups("default"), &backup("a")).await.expect_failure(405, "MethodNotAllowed");
    h.merge_patch(&backups("default"), &json!({})).await.expect_failure(405, "MethodNotAllowed");
    h.get(&backup_path("default", "a")).await.expect_status(200);
}

#[tokio::test]
async fn not_acceptable_406_unless_json_is_listed() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    h.create(&backups("default"), &backup("a")).await;
    let protobuf = "application/vnd.kubernetes.protobuf";
    for path in [backups("default"), backup_path("default", "a")] {
        let resp = h.request(Method::GET, &path).header("accept", protobuf).send().await;
        let status = resp.expect_failure(406, "NotAcceptable");
        assert!(str_at(&status, "/message").starts_with("only the following media types are accepted:"), "{status}");
        let resp =
            h.request(Method::GET, &path).header("accept", &format!("{protobuf}, application/json")).send().await;
        let resp = resp.expect_status(200);
        assert_eq!(resp.header("content-type"), "application/json");
        assert!(resp.json()["kind"].as_str().is_some_and(|k| k.starts_with("TimeseriesDBBackup")), "{}", resp.text());
    }
    let accept = format!(
        "{protobuf};as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,\
         application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
    );
    let resp = h.request(Method::GET, &backups("default")).header("accept", &accept).send().await.expect_status(200);
    let list = resp.json();
    assert_eq!(list["kind"], "PartialObjectMetadataList", "the metadata client's Accept gets JSON: {list}");
    assert_eq!(list["items"][0]["metadata"]["name"], "a");
    let resp = h
        .request(Method::GET, &backups("default"))
        .header("accept", "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")
        .send()
        .await;
    resp.expect_failure(406, "NotAcceptable");
}

#[tokio::test]
async fn conflicts_409() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let created = h.create(&backups("default"), &backup("x")).await;
    let status = h.post(&backups("default"), &backup("x")).await.expect_failure(409, "AlreadyExists");
    assert_eq!(status["message"], r#"timeseriesdbbackups.backup.extend-k8s.io "x" already exists"#);
    assert_eq!(status["details"], json!({"name": "x", "group": "backup.extend-k8s.io", "kind": "timeseriesdbbackups"}));

    let mut update = created.clone();
    update["spec"]["retention"]["keepLast"] = json!(3);
    let updated = h.put(&backup_path("default", "x"), &update).await.expect_status(200).json();
    assert_ne!(updated["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"]);
    let status = h.put(&backup_path("default", "x"), &update).await.expect_failure(409, "Conflict");
    assert_eq!(
        status["message"],
        "Operation cannot be fulfilled on timeseriesdbbackups.backup.extend-k8s.io \"x\": the object has been modified; \
         please apply your changes to the latest version and try again"
    );
    assert_eq!(status["details"], json!({"name": "x", "group": "backup.extend-k8s.io", "kind": "timeseriesdbbackups"}));
    let stale_patch = json!({"metadata": {"resourceVersion": str_at(&created, "/metadata/resourceVersion")}, "spec": {"suspend": true}});
    h.merge_patch(&backup_path("default", "x"), &stale_patch).await.expect_failure(409, "Conflict");
    let now = h.get(&backup_path("default", "x")).await.json();
    assert_eq!(now, updated, "failed writes change nothing");
}

#[tokio::test]
async fn request_entity_too_large_413() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let mut big = backup("big");
    big["metadata"]["annotations"] = json!({"filler": "x".repeat(3 * 1024 * 1024 + 1)});
    let status = h.post(&backups("default"), &big).await.expect_failure(413, "RequestEntityTooLarge");
    assert_eq!(status["message"], "Request entity too large: limit is 3145728");
    h.get(&backup_path("default", "big")).await.expect_failure(404, "NotFound");
}

#[tokio::test]
async fn unsupported_media_type_415() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    h.create(&backups("default"), &backup("a")).await;
    let path = backup_path("default", "a");
    let resp = h.request(Method::PATCH, &path).body("application/x-unknown-patch", "{}").send().await;
    resp.expect_failure(415, "UnsupportedMediaType");
    let resp = h.request(Method::PATCH, &path).body("text/plain", r#"{"spec":{"suspend":true}}"#).send().await;
    resp.expect_failure(415, "UnsupportedMediaType");
    let resp = h.request(Method::POST, &backups("default")).body("text/plain", backup("b").to_string()).send().await;
    resp.expect_failure(415, "UnsupportedMediaType");
    assert_eq!(h.get(&path).await.json()["spec"]["suspend"], false);
}

#[tokio::test]
async fn invalid_422_names_the_fields() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let cases = [
        ("/spec/database/type", json!("Graphite"), "bad-type", "spec.database.type", "FieldValueNotSupported"),
        ("/spec/database/url", json!("ftp://prometheus"), "bad-url", "spec.database.url", "FieldValueInvalid"),
        ("/spec/schedule", json!("every day"), "bad-cron", "spec.schedule", "FieldValueInvalid"),
        ("/spec/retention/keepLast", json!(0), "bad-keep", "spec.retention.keepLast", "FieldValueInvalid"),
        ("/metadata/name", json!("Bad_Name"), "Bad_Name", "metadata.name", "FieldValueInvalid"),
    ];
    for (pointer, value, name, field, reason) in cases {
        let mut obj = backup(name);
        *obj.pointer_mut(pointer).expect("the fixture has the field") = value;
        let status = h.post(&backups("default"), &obj).await.expect_failure(422, "Invalid");
        let message = str_at(&status, "/message");
        assert!(
            message.starts_with(&format!("TimeseriesDBBackup.backup.extend-k8s.io \"{name}\" is invalid: {field}: ")),
            "{status}"
        );
        assert_eq!(status["details"]["name"], name);
        assert_eq!(status["details"]["group"], "backup.extend-k8s.io");
        assert_eq!(status["details"]["kind"], "TimeseriesDBBackup");
        let causes = status["details"]["causes"].as_array().expect("causes");
        assert!(causes.iter().any(|c| c["field"] == field && c["reason"] == reason), "{field} {reason}: {status}");
    }
    let mut missing = backup("x");
    missing["spec"]["database"].as_object_mut().expect("database").remove("url");
    let status = h.post(&backups("default"), &missing).await.expect_failure(422, "Invalid");
    assert_eq!(status["details"]["causes"][0]["field"], "spec.database.url", "{status}");
    assert_eq!(status["details"]["causes"][0]["reason"], "FieldValueRequired", "{status}");

    let created = h.create(&backups("default"), &backup("x")).await;
    let mut no_rv = created.clone();
    no_rv["metadata"].as_object_mut().expect("metadata").remove("resourceVersion");
    let status = h.put(&backup_path("default", "x"), &no_rv).await.expect_failure(422, "Invalid");
    assert_eq!(
        status["message"],
        "timeseriesdbbackups.backup.extend-k8s.io \"x\" is invalid: metadata.resourceVersion: Invalid value: 0x0: \
         must be specified for an update"
    );
    assert_eq!(status["details"]["kind"], "timeseriesdbbackups", "upstream names the resource here: {status}");
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.resourceVersion", "{status}");
    let list = h.get(&backups("default")).await.json();
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "only the valid object exists: {list}");
}

#[tokio::test]
async fn future_resource_version_504() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let query = "resourceVersion=1000000&resourceVersionMatch=NotOlderThan";
    let resp = h.get(&format!("{}?{query}", backups("default"))).await;
    assert_eq!(resp.header("retry-after"), "1");
    let status = resp.expect_failure(504, "Timeout");
    assert_eq!(status["details"]["retryAfterSeconds"], 1, "{status}");
    assert_eq!(status["details"]["causes"][0]["reason"], "ResourceVersionTooLarge", "{status}");
}
