//! The watch cache through the real server: the same lines for every representation with the cache on and off
//! (two servers on one etcd), the same lists and gets, consistent reads never older than an acknowledged write,
//! watches resumed across an apiserver restart (a new cache, younger than the client's resourceVersion) and an
//! etcd restart, a stuck watcher cut off while memory stays bounded, and one etcd watch per resource for 1,000
//! watchers. (410 for a resourceVersion etcd compacted while the cache's window still holds it: `etcd.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use backup_e2e::{Http, TestServer, WatchStream, backup, backup_path, backups, str_at};
use backup_storage::testing::EtcdServer;
use http::Method;
use serde_json::{Value, json};

const STEP: Duration = Duration::from_secs(20);

fn rv(obj: &Value) -> i64 {
    str_at(obj, "/metadata/resourceVersion").parse().unwrap_or_else(|_| panic!("no resourceVersion: {obj}"))
}

async fn labelled(h: &Http, name: &str, app: &str) -> Value {
    let mut obj = backup(name);
    obj["metadata"]["labels"] = json!({"app": app});
    h.create(&backups("default"), &obj).await
}

async fn open(h: &Http, path: &str, accept: &str) -> WatchStream {
    let w = h.request(Method::GET, path).header("accept", accept).open().await;
    assert_eq!(w.status, 200, "{path}");
    w
}

/// Every line until the stream ends.
async fn lines(mut w: WatchStream) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(line) = w.next_line(STEP).await {
        out.push(line);
    }
    out
}

/// A Table cell that shows an age ("5s", "3m20s", "2d"): relative to the moment of rendering.
fn is_age(cell: &str) -> bool {
    let starts_with_digit = cell.chars().next().is_some_and(|c| c.is_ascii_digit());
    let ends_with_unit = cell.chars().last().is_some_and(|c| "smhdy".contains(c));
    starts_with_digit && ends_with_unit && cell.chars().all(|c| c.is_ascii_digit() || "smhdy".contains(c))
}

/// The line with every age cell of a Table replaced: the only part that depends on when it was rendered.
fn without_ages(line: &str) -> String {
    let mut event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("a JSON line ({e}): {line}"));
    if let Some(rows) = event.pointer_mut("/object/rows").and_then(Value::as_array_mut) {
        for cell in rows.iter_mut().filter_map(|r| r.get_mut("cells")).filter_map(Value::as_array_mut).flatten() {
            if cell.as_str().is_some_and(is_age) {
                *cell = json!("<age>");
            }
        }
    }
    event.to_string()
}

const JSON: &str = "application/json";
const POM_V1: &str = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io";
const POM_V1BETA1: &str = "application/json;as=PartialObjectMetadata;v=v1beta1;g=meta.k8s.io";
const TABLE_V1: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";
const TABLE_V1BETA1: &str = "application/json;as=Table;v=v1beta1;g=meta.k8s.io";

/// Two servers on one etcd, the cache on and off, watchers at every representation (and with selectors, a
/// namespace, initial events, a streaming list, resourceVersion "0" and a compacted one) on both while one script
/// writes: every watcher gets the same lines from both, byte for byte but for the ages in Table cells.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_representation_renders_alike_with_and_without_the_cache() {
    let etcd = EtcdServer::start().await;
    let cached = TestServer::on_shared_etcd(&etcd.endpoint(), &[]).await;
    let direct = TestServer::on_shared_etcd(&etcd.endpoint(), &["--watch-cache=false"]).await;
    let h = cached.http();
    let old = labelled(&h, "a", "a").await;
    labelled(&h, "b", "b").await;
    let mut finalized = backup("f");
    finalized["metadata"]["finalizers"] = json!(["backup.extend-k8s.io/cleanup"]);
    let setup = h.create(&backups("default"), &finalized).await;
    // Compact the history before `a`'s last version: a watch from `old` is 410 on both.
    let patch = json!({"spec": {"retention": {"keepLast": 3}}});
    h.merge_patch(&backup_path("default", "a"), &patch).await.expect_status(200);
    let mut client = etcd_client::Client::connect([etcd.endpoint()], None).await.expect("connect to etcd");
    client.compact(rv(&setup) + 1, None).await.expect("compact");
    // The cache has caught up (a consistent read waits for it), so "0" reads the same state on both.
    let latest = h.get(&backups("default")).await.expect_status(200).json();
    let from = rv(&latest);

    let all = "/apis/backup.extend-k8s.io/v1/timeseriesdbbackups";
    let ns = backups("default");
    let tail = "allowWatchBookmarks=true&timeoutSeconds=10";
    let mut watchers: Vec<(String, String, &str)> = Vec::new();
    for (name, accept, extra) in [
        ("json", JSON, ""),
        ("table v1 none", TABLE_V1, "&includeObject=None"),
        ("table v1 metadata", TABLE_V1, ""),
        ("table v1 object", TABLE_V1, "&includeObject=Object"),
        ("table v1beta1 none", TABLE_V1BETA1, "&includeObject=None"),
        ("table v1beta1 metadata", TABLE_V1BETA1, "&includeObject=Metadata"),
        ("table v1beta1 object", TABLE_V1BETA1, "&includeObject=Object"),
        ("metadata v1", POM_V1, ""),
        ("metadata v1beta1", POM_V1BETA1, ""),
        ("labels json", JSON, "&labelSelector=app%3Da"),
        ("labels table", TABLE_V1, "&labelSelector=app%3Da"),
        ("fields json", JSON, "&fieldSelector=status.phase%3DFailed"),
    ] {
        watchers.push((name.into(), format!("{all}?watch=true&resourceVersion={from}&{tail}{extra}"), accept));
    }
    watchers.push(("namespace".into(), format!("{ns}?watch=true&resourceVersion={from}&{tail}"), JSON));
    watchers.push(("initial json".into(), format!("{all}?watch=true&{tail}"), JSON));
    watchers.push(("initial table".into(), format!("{all}?watch=true&{tail}"), TABLE_V1));
    watchers.push(("any json".into(), format!("{all}?watch=true&resourceVersion=0&{tail}"), JSON));
    watchers.push(("any metadata".into(), format!("{all}?watch=true&resourceVersion=0&{tail}"), POM_V1));
    let streaming = "sendInitialEvents=true&resourceVersionMatch=NotOlderThan";
    watchers.push(("streaming json".into(), format!("{all}?watch=true&{streaming}&{tail}"), JSON));
    watchers.push(("streaming table".into(), format!("{all}?watch=true&{streaming}&{tail}"), TABLE_V1));
    watchers.push(("compacted".into(), format!("{all}?watch=true&resourceVersion={}&{tail}", rv(&old)), JSON));

    let (hc, hd) = (cached.http(), direct.http());
    let mut streams = Vec::new();
    for (name, path, accept) in &watchers {
        streams.push((name.clone(), open(&hc, path, accept).await, open(&hd, path, accept).await));
    }
    // The script: creations, updates, selector transitions both ways, status changes, a finalized deletion.
    let h = direct.http();
    labelled(&h, "c", "a").await;
    h.merge_patch(&backup_path("default", "a"), &json!({"spec": {"suspend": true}})).await.expect_status(200);
    h.merge_patch(&backup_path("default", "b"), &json!({"metadata": {"labels": {"app": "a"}}}))
        .await
        .expect_status(200);
    h.merge_patch(&backup_path("default", "a"), &json!({"metadata": {"labels": {"app": "b"}}}))
        .await
        .expect_status(200);
    let status = |phase: &str| json!({"status": {"phase": phase}});
    let b_status = format!("{}/status", backup_path("default", "b"));
    h.merge_patch(&b_status, &status("Failed")).await.expect_status(200);
    h.merge_patch(&b_status, &status("Succeeded")).await.expect_status(200);
    h.delete(&backup_path("default", "f")).await.expect_status(200);
    h.merge_patch(&backup_path("default", "f"), &json!({"metadata": {"finalizers": []}})).await.expect_status(200);
    h.delete(&backup_path("default", "c")).await.expect_status(200);

    for (name, with_cache, without) in streams {
        let (with_cache, without) = tokio::join!(lines(with_cache), lines(without));
        let normalise = |lines: &[String]| lines.iter().map(|l| without_ages(l)).collect::<Vec<_>>();
        assert_eq!(normalise(&with_cache), normalise(&without), "watcher {name:?}: the cache changed its lines");
        let minimum = match name.as_str() {
            "compacted" => 1,
            "fields json" => 3,
            "labels json" | "labels table" => 8,
            _ => 10,
        };
        assert!(with_cache.len() >= minimum, "watcher {name:?} got too little: {with_cache:#?}");
        if name == "compacted" {
            assert!(with_cache[0].contains(r#""code":410"#), "{with_cache:?}");
        }
    }
    assert!(cached.metric("apiserver_watch_cache_encodings_total").await > 0.0, "lines were made once and shared");
    assert_eq!(direct.metric("apiserver_watch_cache_watchers").await, 0.0, "no cache without --watch-cache");
}

/// The same lists and gets from both servers on one etcd, the cache on and off: every resourceVersion form,
/// pages with continue tokens, selectors, Tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_and_gets_are_the_same_with_and_without_the_cache() {
    let etcd = EtcdServer::start().await;
    let cached = TestServer::on_shared_etcd(&etcd.endpoint(), &[]).await;
    let direct = TestServer::on_shared_etcd(&etcd.endpoint(), &["--watch-cache=false"]).await;
    let h = cached.http();
    for (name, app) in [("a", "x"), ("b", "y"), ("c", "x"), ("d", "x"), ("e", "y")] {
        labelled(&h, name, app).await;
    }
    let created = h.merge_patch(&backup_path("default", "c"), &json!({"spec": {"suspend": true}})).await.json();
    let latest = rv(&h.get(&backups("default")).await.expect_status(200).json());
    let ns = backups("default");
    let mut paths = vec![
        ns.clone(),
        format!("{ns}?resourceVersion=0"),
        format!("{ns}?resourceVersion={latest}"),
        format!("{ns}?resourceVersion={}&resourceVersionMatch=Exact", rv(&created) - 1),
        format!("{ns}?resourceVersion={latest}&resourceVersionMatch=NotOlderThan"),
        format!("{ns}?labelSelector=app%3Dx"),
        format!("{ns}?labelSelector=app%3Dx&limit=2"),
        format!("{ns}?limit=2"),
        format!("{ns}?limit=2&resourceVersion=0"),
        "/apis/backup.extend-k8s.io/v1/timeseriesdbbackups".into(),
        backup_path("default", "c"),
        format!("{}?resourceVersion=0", backup_path("default", "c")),
        format!("{}?resourceVersion={latest}", backup_path("default", "c")),
    ];
    // The pages after the first, through the continue token of each server.
    let first = h.get(&format!("{ns}?limit=2")).await.expect_status(200).json();
    paths.push(format!("{ns}?limit=2&continue={}", str_at(&first, "/metadata/continue")));
    let first = h.get(&format!("{ns}?limit=1&labelSelector=app%3Dy")).await.expect_status(200).json();
    paths.push(format!("{ns}?limit=1&labelSelector=app%3Dy&continue={}", str_at(&first, "/metadata/continue")));
    let (hc, hd) = (cached.http(), direct.http());
    for path in &paths {
        for accept in [JSON, TABLE_V1, "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"] {
            let is_list = !path.starts_with(&backup_path("default", "c"));
            let accept = if !is_list && accept.contains("List") { POM_V1 } else { accept };
            let a = hc.request(Method::GET, path).header("accept", accept).send().await;
            let b = hd.request(Method::GET, path).header("accept", accept).send().await;
            assert_eq!(a.status, b.status, "{path} as {accept}: {} / {}", a.text(), b.text());
            assert_eq!(without_ages_in(&a.json()), without_ages_in(&b.json()), "{path} as {accept}");
        }
    }
    assert!(cached.metric("apiserver_cache_list_total").await > 0.0, "lists came from the cache");
}

/// A body with every age cell of a Table replaced.
fn without_ages_in(body: &Value) -> Value {
    let wrapped = json!({"object": body}).to_string();
    let normal: Value = serde_json::from_str(&without_ages(&wrapped)).expect("JSON");
    normal["object"].clone()
}

/// Writers update their own objects through HTTP while readers get and list them (resourceVersion unset): no
/// read returns a version older than one whose write was acknowledged before the read began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_reads_are_never_older_than_acknowledged_writes() {
    const OBJECTS: usize = 8;
    const WRITES_PER_OBJECT: usize = 60;
    const READS_PER_READER: usize = 250;
    let srv = TestServer::on_etcd().await;
    let h = srv.http();
    let acked: Arc<Vec<AtomicI64>> = Arc::new((0..OBJECTS).map(|_| AtomicI64::new(0)).collect());
    for i in 0..OBJECTS {
        acked[i].store(rv(&h.create(&backups("default"), &backup(&format!("o{i}"))).await), Ordering::SeqCst);
    }
    let work = async {
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (h, acked) = (h.clone(), acked.clone());
                tokio::spawn(async move {
                    for n in 0..WRITES_PER_OBJECT {
                        for i in (w * OBJECTS / 4)..((w + 1) * OBJECTS / 4) {
                            let patch = json!({"spec": {"retention": {"keepLast": n + 1}}});
                            let written = h.merge_patch(&backup_path("default", &format!("o{i}")), &patch).await;
                            acked[i].store(rv(&written.expect_status(200).json()), Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        let readers: Vec<_> = (0..4)
            .map(|r| {
                let (h, acked) = (h.clone(), acked.clone());
                tokio::spawn(async move {
                    for n in 0..READS_PER_READER {
                        if n % 5 == 0 {
                            let before: Vec<i64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
                            let list = h.get(&backups("default")).await.expect_status(200).json();
                            for item in list["items"].as_array().expect("items") {
                                let i: usize = str_at(item, "/metadata/name")[1..].parse().expect("o<i>");
                                assert!(rv(item) >= before[i], "list: o{i} at {} older than {}", rv(item), before[i]);
                            }
                        } else {
                            let i = (n * 3 + r) % OBJECTS;
                            let before = acked[i].load(Ordering::SeqCst);
                            let got = h.get(&backup_path("default", &format!("o{i}"))).await.expect_status(200).json();
                            assert!(rv(&got) >= before, "get o{i}: {} older than {before}", rv(&got));
                        }
                    }
                })
            })
            .collect();
        for task in writers.into_iter().chain(readers) {
            task.await.expect("a writer or reader failed");
        }
    };
    tokio::time::timeout(Duration::from_secs(300), work).await.expect("1,480 requests within 300 s");
    assert!(srv.metric("apiserver_cache_list_total").await > 0.0, "reads came from the cache");
}

/// A client watching from a resourceVersion it got from the previous apiserver process: the new process's cache
/// started after it, so the events in between come from etcd's history (a storage watch of the watcher's own),
/// then the watch moves onto the cache. Then etcd restarts: the watch goes on, and a resume from before works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_resume_across_apiserver_and_etcd_restarts() {
    let mut etcd = EtcdServer::start().await;
    let first = TestServer::on_shared_etcd(&etcd.endpoint(), &[]).await;
    let h = first.http();
    let a = h.create(&backups("default"), &backup("a")).await;
    let a2 = h.merge_patch(&backup_path("default", "a"), &json!({"spec": {"suspend": true}})).await.json();
    let b = h.create(&backups("default"), &backup("b")).await;
    first.shutdown().await;

    let second = TestServer::on_shared_etcd(&etcd.endpoint(), &[]).await;
    let h = second.http();
    let path = format!("{}?watch=true&resourceVersion={}", backups("default"), rv(&a));
    let mut w = open(&h, &path, JSON).await;
    let ev = w.expect_event(STEP).await;
    assert_eq!((ev["type"].as_str(), rv(&ev["object"])), (Some("MODIFIED"), rv(&a2)), "{ev}");
    let ev = w.expect_event(STEP).await;
    assert_eq!((ev["type"].as_str(), rv(&ev["object"])), (Some("ADDED"), rv(&b)), "{ev}");
    assert_eq!(second.metric("apiserver_watch_cache_storage_watches_total").await, 1.0);
    let c = h.create(&backups("default"), &backup("c")).await;
    assert_eq!(rv(&w.expect_event(STEP).await["object"]), rv(&c));
    // etcd's periodic progress notifications bring it past the window's start: it moves onto the cache.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while second.metric("apiserver_watch_cache_storage_watchers").await != 0.0 {
        assert!(tokio::time::Instant::now() < deadline, "still on its own storage watch after 15 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    etcd.restart().await;
    let mut d = None;
    for _ in 0..100 {
        let resp = h.post(&backups("default"), &backup("d")).await;
        if resp.status == 201 {
            d = Some(resp.json());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let d = d.expect("writes work again within 20 s of etcd's restart");
    assert_eq!(rv(&w.expect_event(STEP).await["object"]), rv(&d), "the open watch goes on");
    let path = format!("{}?watch=true&resourceVersion={}", backups("default"), rv(&b));
    let mut resumed = open(&h, &path, JSON).await;
    for expected in [&c, &d] {
        assert_eq!(rv(&resumed.expect_event(STEP).await["object"]), rv(expected));
    }
}

/// RSS of this process (the server runs in it), in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

/// A client opens a watch and never reads it while 400 objects of 200 KiB are created and deleted (160 MiB of
/// events, more than the cache's 64 MiB window): the server cuts it off (its cache watcher goes away although the
/// client keeps the connection), a reading watcher gets every event, and memory grows by about the window, not
/// by what the stuck watcher missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_watcher_is_cut_off_and_memory_stays_bounded() {
    const OBJECTS: usize = 400;
    let srv = TestServer::on_etcd().await;
    let h = srv.http();
    let path = format!("{}?watch=true&resourceVersion=0", backups("default"));
    let stuck = open(&h, &path, JSON).await;
    let mut live = open(&h, &path, JSON).await;
    let reader = tokio::spawn(async move {
        let mut seen = 0;
        while seen < 2 * OBJECTS {
            live.expect_event(STEP).await;
            seen += 1;
        }
        seen
    });
    let before = rss_mib();
    let annotation = "x".repeat(200 * 1024);
    for i in 0..OBJECTS {
        let name = format!("big-{i:03}");
        let mut obj = backup(&name);
        obj["metadata"]["annotations"] = json!({"example.com/blob": annotation});
        h.post(&backups("default"), &obj).await.expect_status(201);
        h.delete(&backup_path("default", &name)).await.expect_status(200);
    }
    assert_eq!(reader.await.expect("reader"), 2 * OBJECTS, "the reading watcher got every event");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while srv.metric("apiserver_watch_cache_watchers").await > 0.0 {
        assert!(tokio::time::Instant::now() < deadline, "the stuck watcher was not cut off within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let grown = rss_mib() - before;
    assert!(grown < 120.0, "RSS grew {grown:.0} MiB for 160 MiB of events: the window is 64 MiB");
    assert!(srv.metric("apiserver_watch_cache_window_bytes").await <= 72.0 * 1024.0 * 1024.0);
    drop(stuck);
}

/// 1,000 watchers of one resource (all namespaces, one namespace, a label selector) cost etcd one watch per
/// resource (`etcd_debugging_mvcc_watcher_total`: backups and restores), and every one gets its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watchers_cost_one_etcd_watch_per_resource() {
    let srv = TestServer::on_etcd().await;
    let h = srv.http();
    let all = "/apis/backup.extend-k8s.io/v1/timeseriesdbbackups?watch=true&resourceVersion=0";
    let mut watchers = Vec::new();
    for i in 0..1000 {
        let path = match i % 3 {
            0 => all.to_string(),
            1 => format!("{}?watch=true&resourceVersion=0", backups(&format!("ns{}", i % 10))),
            _ => format!("{all}&labelSelector=app%3Dx"),
        };
        watchers.push((i, open(&h, &path, JSON).await));
    }
    let etcd = srv.etcd.as_ref().expect("etcd");
    assert_eq!(etcd.metric("etcd_debugging_mvcc_watcher_total").await, 2.0, "one etcd watch per resource");
    assert_eq!(srv.metric("apiserver_watch_cache_watchers").await, 1000.0);
    let mut obj = backup("a");
    obj["metadata"]["labels"] = json!({"app": "x"});
    let created = h.create(&backups("ns4"), &obj).await;
    for (i, w) in &mut watchers {
        if *i % 3 != 1 || *i % 10 == 4 {
            let ev = w.expect_event(STEP).await;
            assert_eq!(rv(&ev["object"]), rv(&created), "watcher {i}: {ev}");
        }
    }
}
