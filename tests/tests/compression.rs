//! gzip-encoded responses (`apiserver/src/filters/compression.rs`), as kube-apiserver sends them to the clients
//! that ask (every Go client does, kubectl included): lists, Tables and YAML over 128 KiB and the OpenAPI v2
//! document are compressed and decompress to the bytes sent plainly; small answers, watches and 304s are not;
//! kubectl reads them; and through a real kube-apiserver our lists are encoded exactly when a CRD's are.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::io::Read;
use std::time::Duration;

use backup_e2e::aggregated::{AggregatedCluster, list};
use backup_e2e::crd::{self, CRD_GROUP};
use backup_e2e::{Http, Response, TestServer, backup, backup_path, backups};
use flate2::read::GzDecoder;
use http::Method;
use serde_json::{Value, json};

/// Objects enough for a list well over 128 KiB: each carries a 1 KiB annotation.
const OBJECTS: usize = 160;
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// A backup of `api_version` with a 1 KiB annotation.
fn large_backup(name: &str, api_version: &str) -> Value {
    let mut b = backup(name);
    b["apiVersion"] = api_version.into();
    b["metadata"]["annotations"] = json!({"example.com/note": "x".repeat(1024)});
    b
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(b).read_to_end(&mut out).expect("a gzip stream");
    out
}

/// `GET path` (200), with `Accept` when given and `Accept-Encoding: gzip` when `gzip`.
async fn get(h: &Http, path: &str, accept: Option<&str>, gzip: bool) -> Response {
    let mut request = h.request(Method::GET, path);
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    if gzip {
        request = request.header("Accept-Encoding", "gzip");
    }
    request.send().await.expect_status(200)
}

fn gzipped(r: &Response) -> bool {
    r.header("content-encoding") == "gzip"
}

fn vary(r: &Response) -> Vec<&str> {
    r.headers.get_all("vary").iter().map(|v| v.to_str().unwrap()).collect()
}

#[tokio::test]
async fn large_answers_are_gzip_encoded_for_clients_that_ask() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    for i in 0..OBJECTS {
        h.create(&backups("default"), &large_backup(&format!("b{i:03}"), backup_e2e::API_VERSION)).await;
    }
    let path = backups("default");

    // The list: byte for byte the plain one once decompressed, without a length, varying with the encoding.
    let plain = get(&h, &path, None, false).await;
    assert!(plain.body.len() > 128 * 1024, "{} bytes", plain.body.len());
    assert!(!gzipped(&plain) && vary(&plain).is_empty(), "{:?}", plain.headers);
    let zipped = get(&h, &path, None, true).await;
    assert!(gzipped(&zipped), "{:?}", zipped.headers);
    assert_eq!(vary(&zipped), ["Accept-Encoding"]);
    assert_eq!(zipped.header("content-type"), "application/json");
    assert!(zipped.headers.get("content-length").is_none());
    assert!(zipped.body.len() < plain.body.len() / 4, "{} bytes compressed", zipped.body.len());
    assert!(gunzip(&zipped.body) == plain.body, "the decompressed list is the plain one");

    // Tables (what kubectl asks for) and YAML too.
    let table = get(&h, &format!("{path}?includeObject=Object"), Some(TABLE), true).await;
    assert!(gzipped(&table));
    let table: Value = serde_json::from_slice(&gunzip(&table.body)).unwrap();
    assert_eq!((table["kind"].as_str(), table["rows"].as_array().map(Vec::len)), (Some("Table"), Some(OBJECTS)));
    let yaml = get(&h, &path, Some("application/yaml"), true).await;
    assert!(gzipped(&yaml) && gunzip(&yaml.body).starts_with(b"apiVersion: backup.extend-k8s.io/v1\n"));

    // Small answers are sent as they are: a page of the list, one object.
    for small in [format!("{path}?limit=3"), backup_path("default", "b000")] {
        let r = get(&h, &small, None, true).await;
        assert!(!gzipped(&r) && vary(&r).is_empty(), "{small}: {:?}", r.headers);
        r.json();
    }
    // A watch is never compressed: its events are read as they come.
    let mut watch = h
        .request(Method::GET, &format!("{path}?watch=true&resourceVersion=0&timeoutSeconds=10"))
        .header("Accept-Encoding", "gzip")
        .open()
        .await;
    assert_eq!((watch.status, watch.headers.get("content-encoding")), (200, None));
    assert_eq!(watch.expect_event(Duration::from_secs(10)).await["type"], "ADDED");

    // The OpenAPI v2 document, JSON and protobuf; every answer varies with the encoding; a 304 has no body.
    for accept in ["application/json", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"] {
        let plain = get(&h, "/openapi/v2", Some(accept), false).await;
        assert!(!gzipped(&plain));
        assert_eq!(vary(&plain), ["Accept", "Accept-Encoding"]);
        let zipped = get(&h, "/openapi/v2", Some(accept), true).await;
        assert!(gzipped(&zipped), "{accept}: {:?}", zipped.headers);
        assert_eq!(vary(&zipped), ["Accept", "Accept-Encoding"]);
        assert!(gunzip(&zipped.body) == plain.body, "{accept}: the decompressed document is the plain one");
        let etag = plain.header("etag");
        let cached = h
            .request(Method::GET, "/openapi/v2")
            .header("Accept", accept)
            .header("Accept-Encoding", "gzip")
            .header("If-None-Match", etag)
            .send()
            .await
            .expect_status(304);
        assert!(!gzipped(&cached) && cached.body.is_empty());
    }

    // kubectl (Go's transport asks for gzip and decompresses) lists all of them, as JSON and as a Table, and
    // explains the kind from the compressed OpenAPI document.
    let k = srv.kubectl();
    let json: Value = serde_json::from_str(&k.ok(&["get", "tsdbb", "-o", "json"]).await).unwrap();
    assert_eq!(json["items"].as_array().map(Vec::len), Some(OBJECTS));
    assert_eq!(k.ok(&["get", "tsdbb", "--no-headers"]).await.lines().count(), OBJECTS);
    assert!(k.ok(&["explain", "tsdbb.spec.database"]).await.contains("url"));
}

/// `--feature-gates=APIResponseCompression=false`: API answers go out as they are, the OpenAPI document is still
/// compressed (upstream's gate covers only the first).
#[tokio::test]
async fn the_feature_gate_turns_off_compression_of_api_answers() {
    let srv = TestServer::standalone_with(&["--feature-gates=APIResponseCompression=false"]).await;
    let h = srv.http();
    for i in 0..OBJECTS {
        h.create(&backups("default"), &large_backup(&format!("b{i:03}"), backup_e2e::API_VERSION)).await;
    }
    let list = get(&h, &backups("default"), None, true).await;
    assert!(list.body.len() > 128 * 1024 && !gzipped(&list), "{:?}", list.headers);
    assert!(gzipped(&get(&h, "/openapi/v2", Some("application/json"), true).await));
}

/// Through kube-apiserver's aggregator, a list of ours is gzip-encoded exactly when the same list of a CRD is: over
/// 128 KiB and asked for, not a page of three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_through_kube_apiserver_are_encoded_as_a_crds_are() {
    const NAMESPACE: &str = "gzip";
    let env = AggregatedCluster::shared().await;
    let admin = env.cluster.kubectl();
    env.cluster.create_namespace(NAMESPACE).await;
    crd::install(&admin).await;
    let h = Http::new(env.cluster.client().await);

    let mut seen = Vec::new();
    for group in [backup_apis::GROUP, CRD_GROUP] {
        let api_version = format!("{group}/v1");
        let items = (0..OBJECTS).map(|i| large_backup(&format!("b{i:03}"), &api_version)).collect();
        admin.ok_stdin(&["create", "-n", NAMESPACE, "-f", "-"], &list(items)).await;
        let path = format!("/apis/{group}/v1/namespaces/{NAMESPACE}/timeseriesdbbackups");
        let mut answers = Vec::new();
        for (query, gzip) in [("", true), ("", false), ("?limit=3", true)] {
            let r = get(&h, &format!("{path}{query}"), None, gzip).await;
            let body = if gzipped(&r) { gunzip(&r.body) } else { r.body.to_vec() };
            let list: Value = serde_json::from_slice(&body).unwrap();
            let count = list["items"].as_array().map_or(0, Vec::len);
            let varies = vary(&r).contains(&"Accept-Encoding");
            answers.push((query, gzip, gzipped(&r), varies, count));
        }
        seen.push(answers);
    }
    // (query, gzip asked, gzip received, varies with Accept-Encoding, items)
    let crd =
        [("", true, true, true, OBJECTS), ("", false, false, false, OBJECTS), ("?limit=3", true, false, false, 3)];
    assert_eq!(seen[1], crd, "the CRD");
    // Ours: the same, but for the header saying that the list varies with the encoding when the client did not ask
    // for gzip. kube-apiserver's proxy then asks for it itself (Go's transport does, for a request without
    // `Accept-Encoding`) and decompresses the answer, which keeps its `Vary`. A server on k8s.io/apiserver, whose
    // response writer compresses as ours does, would answer the same.
    let ours =
        [("", true, true, true, OBJECTS), ("", false, false, true, OBJECTS), ("?limit=3", true, false, false, 3)];
    assert_eq!(seen[0], ours, "ours");
}
