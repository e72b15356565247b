//! Discovery (legacy and aggregated v2 with ETags), `/api`, `/version`, OpenAPI v2 caching, `/metrics` and the
//! health endpoints, over raw HTTPS.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use backup_e2e::{GV_PATH, Http, Response, TestServer, backup, backup_path, backups, metric_value};
use http::Method;
use serde_json::{Value, json};

const V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
/// What client-go and kube-rs send for aggregated discovery.
const CLIENT_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
                             application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
const VERBS: [&str; 8] = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

async fn get_accept(h: &Http, path: &str, accept: &str) -> Response {
    h.request(Method::GET, path).header("accept", accept).send().await
}

#[tokio::test]
async fn legacy_discovery_documents() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let gv = json!({"groupVersion": "backup.extend-k8s.io/v1", "version": "v1"});
    let group = json!({"kind": "APIGroup", "apiVersion": "v1", "name": "backup.extend-k8s.io", "versions": [gv], "preferredVersion": gv});
    let list = h.get("/apis").await.expect_status(200);
    assert_eq!(list.header("content-type"), "application/json");
    assert_eq!(list.json(), json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]}));
    assert_eq!(h.get("/apis/backup.extend-k8s.io").await.expect_status(200).json(), group);

    let resources = h.get(GV_PATH).await.expect_status(200).json();
    assert_eq!(resources["kind"], "APIResourceList");
    assert_eq!(resources["apiVersion"], "v1");
    assert_eq!(resources["groupVersion"], "backup.extend-k8s.io/v1");
    let by_name = |name: &str| -> Value {
        resources["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name}: {resources}"))
    };
    assert_eq!(
        by_name("timeseriesdbbackups"),
        json!({"name": "timeseriesdbbackups", "singularName": "timeseriesdbbackup", "namespaced": true,
               "kind": "TimeseriesDBBackup", "verbs": VERBS, "shortNames": ["tsdbb"], "categories": ["backups"],
               "storageVersionHash": "KCfWPyXX+gE="})
    );
    assert_eq!(
        by_name("timeseriesdbbackups/status"),
        json!({"name": "timeseriesdbbackups/status", "singularName": "", "namespaced": true, "kind": "TimeseriesDBBackup", "verbs": ["get", "patch", "update"]})
    );
    let restores = by_name("timeseriesdbrestores");
    assert_eq!(restores["shortNames"], json!(["tsdbr"]));
    assert_eq!(restores["singularName"], "timeseriesdbrestore");
    assert_eq!(restores["kind"], "TimeseriesDBRestore");
    by_name("timeseriesdbrestores/status");
    assert_eq!(resources["resources"].as_array().map(Vec::len), Some(4));

    let api = h.get("/api").await.expect_status(200).json();
    assert_eq!(api["kind"], "APIVersions");
    assert_eq!(api["versions"], json!(["v1"]));
    assert_eq!(h.get("/api/v1").await.expect_status(200).json()["resources"], json!([]));
}

#[tokio::test]
async fn aggregated_discovery_with_etag() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let resp = get_accept(&h, "/apis", CLIENT_ACCEPT).await.expect_status(200);
    assert_eq!(resp.header("content-type"), V2);
    let etag = resp.header("etag").to_string();
    assert!(etag.len() == 130 && etag.starts_with('"') && etag.ends_with('"'), "quoted SHA-512 hex: {etag}");
    assert!(etag[1..129].chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()), "upper-case hex: {etag}");
    let doc = resp.json();
    assert_eq!(doc["kind"], "APIGroupDiscoveryList");
    assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
    let group = &doc["items"][0];
    assert_eq!(group["metadata"]["name"], "backup.extend-k8s.io");
    assert_eq!(group["versions"][0]["version"], "v1");
    assert_eq!(group["versions"][0]["freshness"], "Current");
    let resources = group["versions"][0]["resources"].as_array().expect("resources");
    let backups_res = resources.iter().find(|r| r["resource"] == "timeseriesdbbackups").expect("timeseriesdbbackups");
    let kind = json!({"group": "backup.extend-k8s.io", "version": "v1", "kind": "TimeseriesDBBackup"});
    assert_eq!(backups_res["responseKind"], kind);
    assert_eq!(backups_res["scope"], "Namespaced");
    assert_eq!(backups_res["singularResource"], "timeseriesdbbackup");
    assert_eq!(backups_res["verbs"], json!(VERBS));
    assert_eq!(backups_res["shortNames"], json!(["tsdbb"]));
    assert_eq!(backups_res["categories"], json!(["backups"]));
    assert_eq!(
        backups_res["subresources"],
        json!([{"subresource": "status", "responseKind": kind, "verbs": ["get", "patch", "update"]}])
    );
    assert!(resources.iter().any(|r| r["resource"] == "timeseriesdbrestores" && r["shortNames"] == json!(["tsdbr"])));

    let cached =
        h.request(Method::GET, "/apis").header("accept", CLIENT_ACCEPT).header("if-none-match", &etag).send().await;
    let cached = cached.expect_status(304);
    assert!(cached.body.is_empty());
    assert_eq!(cached.header("etag"), etag);
    let stale = h.request(Method::GET, "/apis").header("accept", V2).header("if-none-match", "\"0\"").send().await;
    assert_eq!(stale.expect_status(200).header("etag"), etag);

    let core = get_accept(&h, "/api", CLIENT_ACCEPT).await.expect_status(200);
    assert_eq!(core.header("content-type"), V2);
    // The core group's v1, without resources: client-go's REST mapper learns `v1 List` from it.
    assert_eq!(
        core.json()["items"],
        json!([{"metadata": {"creationTimestamp": null}, "versions": [{"version": "v1", "freshness": "Current"}]}])
    );
    get_accept(&h, "/apis", "application/vnd.kubernetes.protobuf").await.expect_failure(406, "NotAcceptable");
}

#[tokio::test]
async fn version_and_index() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let version = h.get("/version").await.expect_status(200).json();
    for key in
        ["major", "minor", "gitVersion", "gitCommit", "gitTreeState", "buildDate", "goVersion", "compiler", "platform"]
    {
        assert!(version[key].is_string(), "/version lacks {key}: {version}");
    }
    let index = h.get("/").await.expect_status(200).json();
    let paths = index["paths"].as_array().expect("paths");
    for p in ["/apis", GV_PATH, "/healthz", "/metrics", "/openapi/v2", "/version"] {
        assert!(paths.contains(&json!(p)), "the index lacks {p}: {index}");
    }
}

#[tokio::test]
async fn openapi_v2_etag() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let resp = h.get("/openapi/v2").await.expect_status(200);
    let etag = resp.header("etag").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2, "a quoted ETag: {etag:?}");
    let doc = resp.json();
    let def = doc["definitions"].as_object().expect("definitions").values().find(|d| {
        d["x-kubernetes-group-version-kind"]
            == json!([{"group": "backup.extend-k8s.io", "version": "v1", "kind": "TimeseriesDBBackup"}])
    });
    assert!(def.is_some(), "a definition carries the GVK");
    let cached = h.request(Method::GET, "/openapi/v2").header("if-none-match", &etag).send().await.expect_status(304);
    assert!(cached.body.is_empty());
}

#[tokio::test]
async fn metrics_count_requests() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    h.create(&backups("default"), &backup("m")).await;
    h.get(&backup_path("default", "m")).await.expect_status(200);
    h.get(&backup_path("default", "missing")).await.expect_status(404);
    h.get(&backups("default")).await.expect_status(200);
    let text = h.get("/metrics").await.expect_status(200).text();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("apiserver_request_total{")).collect();
    let has = |verb: &str, code: &str, scope: &str| {
        lines.iter().any(|l| {
            l.contains(&format!("verb=\"{verb}\""))
                && l.contains(&format!("code=\"{code}\""))
                && l.contains("resource=\"timeseriesdbbackups\"")
                && l.contains("group=\"backup.extend-k8s.io\"")
                && l.contains(&format!("scope=\"{scope}\""))
        })
    };
    assert!(has("POST", "201", "namespace"), "{lines:#?}");
    assert!(has("GET", "200", "resource"), "{lines:#?}");
    assert!(has("GET", "404", "resource"), "{lines:#?}");
    assert!(has("LIST", "200", "namespace"), "{lines:#?}");
    assert!(text.contains("apiserver_request_duration_seconds"), "durations are exported");
    // Answer sizes, whole (a GET) or streamed (a list): counted, with their bytes.
    for verb in ["GET", "LIST"] {
        let series = |suffix: &str| {
            let prefix = format!("apiserver_response_sizes_{suffix}{{verb=\"{verb}\",group=\"backup.extend-k8s.io\"");
            text.lines()
                .filter(|l| l.starts_with(&prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        };
        assert!(series("count") >= 1.0 && series("sum") > 100.0, "{verb}: {text}");
    }

    // An open watch is in upstream's two gauges, by kind and by the request's labels, until it ends.
    let watch = h.request(Method::GET, &format!("{}?watch=true&timeoutSeconds=60", backups("default"))).open().await;
    assert_eq!(watch.status, 200);
    let watchers =
        r#"apiserver_registered_watchers{group="backup.extend-k8s.io",version="v1",kind="TimeseriesDBBackup"}"#;
    let longrunning = r#"apiserver_longrunning_requests{verb="WATCH",group="backup.extend-k8s.io",version="v1",resource="timeseriesdbbackups",subresource="",scope="namespace",component="apiserver"}"#;
    let text = h.get("/metrics").await.expect_status(200).text();
    assert_eq!((metric_value(&text, watchers), metric_value(&text, longrunning)), (Some(1.0), Some(1.0)), "{text}");
    drop(watch);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = h.get("/metrics").await.expect_status(200).text();
        if metric_value(&text, watchers) == Some(0.0) && metric_value(&text, longrunning) == Some(0.0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the ended watch is still counted:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Its events (an ADDED for each object in the namespace), counted with their bytes, after it ended too.
    let text = h.get("/metrics").await.expect_status(200).text();
    let kind = r#"{group="backup.extend-k8s.io",version="v1",kind="TimeseriesDBBackup"}"#;
    let events = metric_value(&text, &format!("apiserver_watch_events_total{kind}")).unwrap_or(0.0);
    let sizes = metric_value(&text, &format!("apiserver_watch_events_sizes_count{kind}"));
    let bytes = metric_value(&text, &format!("apiserver_watch_events_sizes_sum{kind}")).unwrap_or(0.0);
    assert!(events >= 1.0 && sizes == Some(events) && bytes > 100.0 * events, "{text}");
}

/// Upstream's other series: `process_*` (as every Go server's), `apiserver_storage_objects` counted in storage
/// every `--etcd-count-metric-poll-period`, and `apiserver_tls_handshake_errors_total` for a client that speaks
/// plain HTTP to the TLS port.
#[tokio::test]
async fn process_storage_and_handshake_metrics() {
    let srv = TestServer::standalone_with(&["--etcd-count-metric-poll-period=200ms"]).await;
    let h = srv.http();
    for name in ["s1", "s2", "s3"] {
        h.create(&backups("default"), &backup(name)).await;
    }
    let mut plain = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut plain, b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut plain, &mut answer),
    )
    .await;
    let objects = "apiserver_storage_objects{resource=\"timeseriesdbbackups.backup.extend-k8s.io\"}";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let text = h.get("/metrics").await.expect_status(200).text();
        let counted = metric_value(&text, objects) == Some(3.0);
        if counted && metric_value(&text, "apiserver_tls_handshake_errors_total") == Some(1.0) {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "objects or the handshake error not counted:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let restores = "apiserver_storage_objects{resource=\"timeseriesdbrestores.backup.extend-k8s.io\"}";
    assert_eq!(metric_value(&text, restores), Some(0.0));
    for name in ["process_resident_memory_bytes", "process_virtual_memory_bytes", "process_max_fds"] {
        assert!(metric_value(&text, name).is_some_and(|v| v > 0.0), "{name}:\n{text}");
    }
    assert!(metric_value(&text, "process_open_fds").is_some_and(|v| v >= 3.0), "{text}");
    assert!(metric_value(&text, "process_cpu_seconds_total").is_some_and(|v| v > 0.0), "{text}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let started = metric_value(&text, "process_start_time_seconds").unwrap();
    assert!(started <= now && started > now - 3600.0, "started {started}, now {now}");
}

#[tokio::test]
async fn health_checks_are_named() {
    let srv = TestServer::standalone().await;
    let h = srv.http_with_token(None);
    let ready = h.get("/readyz?verbose").await.expect_status(200).text();
    for line in ["[+]ping ok", "[+]log ok", "[+]storage ok", "[+]shutdown ok", "readyz check passed"] {
        assert!(ready.lines().any(|l| l == line), "readyz lacks {line:?}:\n{ready}");
    }
    let live = h.get("/livez?verbose").await.expect_status(200).text();
    assert!(live.contains("[+]ping ok") && live.contains("livez check passed"), "{live}");
    let excluded = h.get("/readyz?verbose&exclude=storage").await.expect_status(200).text();
    assert!(excluded.contains("[+]storage excluded: ok"), "{excluded}");
    let admin = srv.http();
    assert_eq!(admin.get("/healthz/ping").await.expect_status(200).text(), "ok");
    assert_eq!(admin.get("/healthz/nope").await.status, 404);
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let srv = TestServer::standalone().await;
    let addr = srv.addr;
    srv.http().get("/readyz").await.expect_status(200);
    srv.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "nothing listens after shutdown");
}
