//! Memory and start-up on a fresh etcd: the server's RSS idle; the time from exec to `/readyz` and to a full
//! cache with N objects stored, and its RSS then; with M watches open besides; and its high-water mark after a
//! period of sustained updates that every watcher receives.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use backup_storage::testing::EtcdServer;
use http_body_util::BodyExt;

use super::h2::H2;
use super::process::ServerProcess;
use super::{BoxError, object, send};

/// Updates per second during the sustained phase (4 writers).
const UPDATE_RATE: u64 = 100;

pub struct Memory {
    pub watch_cache: bool,
    pub idle_mib: f64,
    pub ready_ms: f64,
    /// From exec until the cache holds every object (cache on only).
    pub cache_full_ms: Option<f64>,
    pub with_objects_mib: f64,
    pub with_watchers_mib: f64,
    pub sustained: Duration,
    pub updates: usize,
    pub events_received: usize,
    pub after_updates_mib: f64,
    pub hwm_mib: f64,
}

pub async fn run(
    binary: &Path,
    dir: &Path,
    watch_cache: bool,
    objects: usize,
    watchers: usize,
    sustained: Duration,
) -> Result<Memory, BoxError> {
    let etcd = EtcdServer::start().await;
    let mut args = vec!["--etcd-servers".to_string(), etcd.endpoint()];
    if !watch_cache {
        args.push("--watch-cache=false".into());
    }
    let ns = "/apis/backup.extend-k8s.io/v1/namespaces/mem/timeseriesdbbackups";
    let idle_mib = {
        let first = ServerProcess::start(binary, dir, &args).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = first.rss_mib();
        eprintln!("  filling {objects} objects");
        let next = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..32)
            .map(|_| {
                let (client, next) = (first.client.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= objects {
                            return Ok::<_, BoxError>(());
                        }
                        send(&client, "POST", ns, Some(serde_json::to_vec(&object(&format!("m{i:05}")))?)).await?;
                    }
                })
            })
            .collect();
        for w in writers {
            w.await??;
        }
        idle
    };
    let began = Instant::now();
    let server = ServerProcess::start(binary, dir, &args).await?;
    let ready_ms = server.ready_after.as_secs_f64() * 1e3;
    let cache_full_ms = if watch_cache {
        let limit = Duration::from_secs(30);
        server.wait_metric("apiserver_watch_cache_objects", objects as f64, limit).await;
        Some(began.elapsed().as_secs_f64() * 1e3)
    } else {
        None
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with_objects_mib = server.rss_mib();

    let h2 = H2::connect(&server.kubeconfig, watchers).await?;
    let list: serde_json::Value = serde_json::from_slice(&h2.get_body(&format!("{ns}?limit=1")).await?)?;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
    let received = Arc::new(AtomicUsize::new(0));
    let path = format!("{ns}?watch=true&resourceVersion={rv}&timeoutSeconds=900");
    let mut readers = Vec::new();
    for _ in 0..watchers {
        let mut body = h2.get(&path).await?.into_body();
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    received.fetch_add(data.iter().filter(|b| **b == b'\n').count(), Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with_watchers_mib = server.rss_mib();

    eprintln!("  {UPDATE_RATE} updates/s for {sustained:?} to {watchers} watchers");
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Instant::now() + sustained;
    let updaters: Vec<_> = (0..4)
        .map(|w| {
            let (client, done) = (server.client.clone(), done.clone());
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(Duration::from_micros(4_000_000 / UPDATE_RATE));
                let mut n = w;
                while Instant::now() < stop {
                    ticker.tick().await;
                    let patch = serde_json::json!({"metadata": {"labels": {"round": n.to_string()}}});
                    let path = format!("{ns}/m{:05}", n % objects);
                    let req = http::Request::patch(path)
                        .header("content-type", "application/merge-patch+json")
                        .body(kube::client::Body::from(serde_json::to_vec(&patch)?))?;
                    let resp = client.send(req).await?;
                    let _ = resp.into_body().collect().await?;
                    done.fetch_add(1, Ordering::Relaxed);
                    n += 4;
                }
                Ok::<_, BoxError>(())
            })
        })
        .collect();
    for u in updaters {
        u.await??;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_updates_mib = server.rss_mib();
    let hwm_mib = server.hwm_mib();
    for r in readers {
        r.abort();
    }
    Ok(Memory {
        watch_cache,
        idle_mib,
        ready_ms,
        cache_full_ms,
        with_objects_mib,
        with_watchers_mib,
        sustained,
        updates: done.load(Ordering::Relaxed),
        events_received: received.load(Ordering::Relaxed),
        after_updates_mib,
        hwm_mib,
    })
}
