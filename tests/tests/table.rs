//! Server-side printing and metadata transforms: `as=Table` (columns, rows, includeObject, watches) and
//! `as=PartialObjectMetadata[List]` in meta.k8s.io v1 and v1beta1.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::Duration;

use backup_e2e::{Http, Response, TestServer, backup, backup_path, backups, str_at};
use http::Method;
use serde_json::{Value, json};

const TABLE_V1: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";
const KUBECTL_GET: &str =
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

async fn get_as(h: &Http, path: &str, accept: &str) -> Response {
    h.request(Method::GET, path).header("accept", accept).send().await.expect_status(200)
}

/// A backup with a status, so every column has a value.
async fn seed(h: &Http) -> Value {
    let mut obj = backup("nightly");
    obj["metadata"]["labels"] = json!({"app": "metrics"});
    h.create(&backups("default"), &obj).await;
    let status = json!({"status": {"phase": "Succeeded", "lastBackup": {
        "id": "1", "completionTime": "2020-01-01T00:00:00Z", "samples": 12345, "bytes": 3_145_728}}});
    h.merge_patch(&format!("{}/status", backup_path("default", "nightly")), &status).await.expect_status(200).json()
}

#[tokio::test]
async fn list_as_table() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let obj = seed(&h).await;
    let table = get_as(&h, &backups("default"), KUBECTL_GET).await.json();
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
    assert!(table["metadata"]["resourceVersion"].is_string(), "{table}");
    let columns: Vec<(&str, &str, i64)> = table["columnDefinitions"]
        .as_array()
        .expect("columnDefinitions")
        .iter()
        .map(|c| (str_at(c, "/name"), str_at(c, "/type"), c["priority"].as_i64().expect("priority")))
        .collect();
    assert_eq!(
        columns,
        [
            ("Name", "string", 0),
            ("Database", "string", 0),
            ("Phase", "string", 0),
            ("Last Backup", "date", 0),
            ("Samples", "integer", 0),
            ("Size", "string", 0),
            ("Age", "date", 0),
            ("URL", "string", 1),
            ("Schedule", "string", 1),
        ]
    );
    assert_eq!(table["columnDefinitions"][0]["format"], "name");
    assert!(table["columnDefinitions"].as_array().expect("columns").iter().all(|c| c["description"].is_string()));
    let rows = table["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1);
    let cells = rows[0]["cells"].as_array().expect("cells");
    assert_eq!(cells[..3], [json!("nightly"), json!("Prometheus"), json!("Succeeded")]);
    assert!(cells[3].as_str().is_some_and(|age| age.ends_with('y') || age.ends_with('d')), "human age: {}", cells[3]);
    assert_eq!(cells[4], 12345);
    assert_eq!(cells[5], "3.0MiB");
    assert_eq!(cells[7..], [json!("http://prometheus:9090"), json!("0 2 * * *")]);
    let object = &rows[0]["object"];
    assert_eq!(object["kind"], "PartialObjectMetadata", "metadata by default: {object}");
    assert_eq!(object["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(object["metadata"], obj["metadata"]);
}

#[tokio::test]
async fn table_include_object_and_versions() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let obj = seed(&h).await;
    let item = backup_path("default", "nightly");

    let full = get_as(&h, &format!("{}?includeObject=Object", backups("default")), TABLE_V1).await.json();
    assert_eq!(full["rows"][0]["object"], obj, "the whole object");
    let none = get_as(&h, &format!("{}?includeObject=None", backups("default")), TABLE_V1).await.json();
    assert_eq!(none["rows"][0]["object"], Value::Null);
    let resp =
        h.request(Method::GET, &format!("{item}?includeObject=Everything")).header("accept", TABLE_V1).send().await;
    resp.expect_failure(400, "BadRequest");

    let one = get_as(&h, &item, TABLE_V1).await.json();
    assert_eq!(one["kind"], "Table");
    assert_eq!(one["rows"].as_array().map(Vec::len), Some(1));
    assert_eq!(one["rows"][0]["cells"][0], "nightly");
    let beta = get_as(&h, &item, "application/json;as=Table;v=v1beta1;g=meta.k8s.io").await.json();
    assert_eq!(beta["apiVersion"], "meta.k8s.io/v1beta1");
    assert_eq!(beta["rows"][0]["object"]["apiVersion"], "meta.k8s.io/v1beta1");
    let plain = get_as(&h, &item, "application/json;as=Table;v=v2;g=meta.k8s.io, application/json").await.json();
    assert_eq!(plain["kind"], "TimeseriesDBBackup", "an unknown Table version falls through to JSON");
}

#[tokio::test]
async fn partial_object_metadata_transforms() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let obj = seed(&h).await;
    for version in ["v1", "v1beta1"] {
        let accept = format!("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v={version}");
        let one = get_as(&h, &backup_path("default", "nightly"), &accept).await.json();
        assert_eq!(
            one,
            json!({"kind": "PartialObjectMetadata", "apiVersion": format!("meta.k8s.io/{version}"), "metadata": obj["metadata"]})
        );
        let accept = format!("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v={version}");
        let list = get_as(&h, &backups("default"), &accept).await.json();
        assert_eq!(list["kind"], "PartialObjectMetadataList");
        assert_eq!(list["apiVersion"], format!("meta.k8s.io/{version}"));
        assert!(list["metadata"]["resourceVersion"].is_string(), "{list}");
        assert_eq!(list["items"], json!([one]));
    }
}

#[tokio::test]
async fn table_watch_sends_column_definitions_once() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    seed(&h).await;
    let path = format!("{}?watch=true", backups("default"));
    let mut w = h.request(Method::GET, &path).header("accept", KUBECTL_GET).open().await;
    assert_eq!(w.status, 200);
    let step = Duration::from_secs(10);
    let first = w.expect_event(step).await;
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["kind"], "Table");
    assert_eq!(first["object"]["columnDefinitions"].as_array().map(Vec::len), Some(9));
    assert_eq!(first["object"]["rows"][0]["cells"][0], "nightly");
    h.create(&backups("default"), &backup("second")).await;
    let next = w.expect_event(step).await;
    assert_eq!(next["object"]["kind"], "Table");
    assert_eq!(next["object"].get("columnDefinitions"), None, "headers only once: {next}");
    assert_eq!(next["object"]["rows"][0]["cells"][0], "second");
}
