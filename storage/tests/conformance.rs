//! The conformance suite (`backup_storage::conformance`) against every backend — etcd (a fresh server per case),
//! the embedded store on disk and in memory, and the watch cache over etcd and over the embedded store (caching
//! `/c/`, where every case writes), and encryption at rest of `/c/` over etcd and under a cache — plus what only one backend can show: restarts and history limits.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::sync::Arc;
use std::time::Duration;

use backup_storage::cacher::{CachedPrefix, Cacher, CacherConfig};
use backup_storage::conformance::{self, next_event};
use backup_storage::embedded::{EmbeddedConfig, EmbeddedStorage};
use backup_storage::encryption::{
    Cipher, EncryptedStorage, GcmKey, NamedKey, Provider, ProviderKind, ResourceTransformer, Transformer,
};
use backup_storage::etcd::EtcdStorage;
use backup_storage::testing::EtcdServer;
use backup_storage::{EventType, ListOptions, Storage, StorageError};
use bytes::Bytes;

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod etcd {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let server = EtcdServer::start().await;
                    let storage = EtcdStorage::connect(&server.config("/registry")).await.expect("connect");
                    conformance::$case(Arc::new(storage)).await;
                }
            )*
        }
        mod embedded_file {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let storage = EmbeddedStorage::open(dir.path().join("store.redb")).expect("open");
                    conformance::$case(Arc::new(storage)).await;
                }
            )*
        }
        mod embedded_memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    conformance::$case(Arc::new(EmbeddedStorage::in_memory().expect("open"))).await;
                }
            )*
        }
        mod cacher_etcd {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let server = EtcdServer::start().await;
                    let storage = EtcdStorage::connect(&server.config("/registry")).await.expect("connect");
                    conformance::$case(cached(Arc::new(storage)).await).await;
                }
            )*
        }
        mod encrypted_etcd {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let server = EtcdServer::start().await;
                    let storage = EtcdStorage::connect(&server.config("/registry")).await.expect("connect");
                    conformance::$case(encrypted(Arc::new(storage))).await;
                }
            )*
        }
        mod cacher_encrypted_embedded {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let storage = EmbeddedStorage::in_memory().expect("open");
                    conformance::$case(cached(encrypted(Arc::new(storage))).await).await;
                }
            )*
        }
        mod cacher_embedded {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    conformance::$case(cached(Arc::new(EmbeddedStorage::in_memory().expect("open"))).await).await;
                }
            )*
        }
    };
}

/// A watch cache of `/c/` over `backend`, with its initial list in.
async fn cached(backend: Arc<dyn Storage>) -> Arc<dyn Storage> {
    let cacher = Cacher::new(backend, CacherConfig::new([CachedPrefix::new("/c/")])).expect("cacher");
    assert!(cacher.wait_ready(Duration::from_secs(10)).await, "the cache did not list /c/ within 10 s");
    Arc::new(cacher)
}

/// `/c/` of `backend` encrypted with AES-GCM (the key named `k`).
fn encrypted(backend: Arc<dyn Storage>) -> Arc<dyn Storage> {
    let key = NamedKey { name: "k".into(), cipher: Cipher::AesGcm(GcmKey::new(&[7; 32]).expect("a key")) };
    let transformer = Transformer::new(vec![Provider::new(ProviderKind::AesGcm, vec![key])]).expect("providers");
    let resources = vec![ResourceTransformer { prefix: "/c/".into(), transformer: Arc::new(transformer) }];
    Arc::new(EncryptedStorage::new(backend, "/registry", resources))
}

suite!(
    create_get_update_delete,
    create_existing_is_already_exists,
    update_conflict_carries_current,
    missing_key_errors,
    delete_respects_expected_revision,
    concurrent_compare_and_swap,
    list_prefix_and_order,
    list_pagination_is_consistent,
    list_at_past_revision,
    compaction_and_revision_bounds,
    watch_replays_from_old_revision,
    watch_from_now,
    watch_from_compacted_revision,
    watchers_see_every_write_once,
    invalid_keys_are_rejected,
    value_size_limit,
);

fn value(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// Data, history and the revision counter survive closing and reopening the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_restart_keeps_data_and_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.redb");
    let (a, first, last) = {
        let s = EmbeddedStorage::open(&path).expect("open");
        let a = s.create("/r/ns/a", value("a1")).await.expect("create");
        let a = s.update("/r/ns/a", value("a2"), a.mod_revision).await.expect("update");
        s.create("/r/ns/b", value("b1")).await.expect("create");
        s.delete("/r/ns/b", None).await.expect("delete");
        (a.clone(), a.create_revision, s.current_revision().await.expect("revision"))
    };
    let s = EmbeddedStorage::open(&path).expect("reopen");
    assert_eq!(s.current_revision().await.expect("revision"), last);
    assert_eq!(s.get("/r/ns/a").await.expect("get"), Some(a.clone()));
    assert_eq!(s.get("/r/ns/b").await.expect("get"), None);
    let c = s.create("/r/ns/c", value("c1")).await.expect("create after reopen");
    assert_eq!(c.mod_revision, last + 1, "the revision counter goes on");
    let then = s.list("/r/ns/", ListOptions { revision: Some(last - 1), ..ListOptions::default() }).await;
    let keys: Vec<String> = then.expect("list at a past revision").items.into_iter().map(|kv| kv.key).collect();
    assert_eq!(keys, ["/r/ns/a", "/r/ns/b"]);
    let mut watch = s.watch("/r/ns/", first).await.expect("watch");
    let mut revisions = Vec::new();
    for _ in first..=last + 1 {
        revisions.push(next_event(&mut watch).await.expect("event").revision());
    }
    assert_eq!(revisions, (first..=last + 1).collect::<Vec<_>>(), "history from before the restart replays");
}

/// History is trimmed to its limit: older revisions read as compacted, recent ones still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_history_is_bounded() {
    let config = EmbeddedConfig { history_limit: 100, ..EmbeddedConfig::default() };
    let s = EmbeddedStorage::with_config(config).expect("open");
    let first = s.create("/h/ns/k", value("0")).await.expect("create").mod_revision;
    let mut revision = first;
    for i in 1..300 {
        revision = s.update("/h/ns/k", value(&i.to_string()), revision).await.expect("update").mod_revision;
    }
    let old = s.list("/h/ns/", ListOptions { revision: Some(first), ..ListOptions::default() }).await;
    let Err(StorageError::Compacted { compacted, .. }) = old else { panic!("expected Compacted, got {old:?}") };
    assert!(
        compacted > revision - 111 && compacted <= revision - 99,
        "about 100 events kept, compacted at {compacted}"
    );
    let mut watch = s.watch("/h/ns/", first).await.expect("watch");
    assert!(matches!(next_event(&mut watch).await, Err(StorageError::Compacted { .. })));
    let recent = s.list("/h/ns/", ListOptions { revision: Some(revision - 50), ..ListOptions::default() }).await;
    assert_eq!(recent.expect("recent list").items[0].value, value("249"));
}

/// A watcher far slower than the writes overflows the live buffer and re-reads history: still every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_lagging_watch_loses_nothing() {
    let config = EmbeddedConfig { watch_buffer: 4, ..EmbeddedConfig::default() };
    let s = Arc::new(EmbeddedStorage::with_config(config).expect("open"));
    let start = s.current_revision().await.expect("revision") + 1;
    let mut watch = s.watch("/lag/ns/", 0).await.expect("watch");
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..250 {
                    s.create(&format!("/lag/ns/{w}-{i}"), value("v")).await.expect("create");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    for expected in start..start + 2000 {
        assert_eq!(next_event(&mut watch).await.expect("event").revision(), expected);
    }
}

/// etcd stops and comes back: the same storage reports `Unavailable` meanwhile, then works again, and a watch
/// opened before the restart sees the writes after it (and nothing twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restart_is_survived() {
    let mut server = EtcdServer::start().await;
    let s = EtcdStorage::connect(&server.config("/registry")).await.expect("connect");
    let a = s.create("/r/ns/a", value("a1")).await.expect("create");
    let mut watch = s.watch("/r/ns/", 0).await.expect("watch");
    let a2 = s.update("/r/ns/a", value("a2"), a.mod_revision).await.expect("update");
    assert_eq!(next_event(&mut watch).await.expect("event").kv, a2);

    server.stop().await;
    match s.create("/r/ns/down", value("x")).await {
        Err(StorageError::Unavailable(_)) => {}
        other => panic!("expected Unavailable while etcd is down, got {other:?}"),
    }
    server.restart().await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while s.current_revision().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the client did not reconnect within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = s.create("/r/ns/b", value("b1")).await.expect("create after restart");
    let event = next_event(&mut watch).await.expect("event after restart");
    assert_eq!((event.event_type, event.kv), (EventType::Put, b), "the next event is the first write after restart");
    let a3 = s.update("/r/ns/a", value("a3"), a2.mod_revision).await.expect("update after restart");
    assert_eq!(next_event(&mut watch).await.expect("event").kv, a3);
}

/// The watch cache's own etcd watch leaves out the previous values (which the cache holds); the other watches
/// carry them. Both see the same events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_watch_for_cache_omits_previous_values() {
    use backup_storage::WatchItem;
    use futures::StreamExt;
    let server = EtcdServer::start().await;
    let s = EtcdStorage::connect(&server.config("/registry")).await.expect("connect");
    let a = s.create("/r/ns/a", value("a1")).await.expect("create");
    let a2 = s.update("/r/ns/a", value("a2"), a.mod_revision).await.expect("update");
    let deleted = s.delete("/r/ns/a", None).await.expect("delete");
    let events = |watch: backup_storage::ProgressWatch| async move {
        let items = watch.items.filter_map(|item| async move {
            match item.expect("watch item") {
                WatchItem::Event(e) => Some((e.event_type, e.kv.mod_revision, e.prev.map(|p| p.mod_revision))),
                WatchItem::Progress(_) => None,
            }
        });
        tokio::time::timeout(Duration::from_secs(10), items.take(3).collect::<Vec<_>>()).await.expect("three events")
    };
    let with_prev = events(s.watch_with_progress("/r/ns/", a.mod_revision).await.expect("watch")).await;
    let for_cache = events(s.watch_for_cache("/r/ns/", a.mod_revision).await.expect("watch")).await;
    let put = EventType::Put;
    assert_eq!(
        with_prev,
        vec![
            (put, a.mod_revision, None),
            (put, a2.mod_revision, Some(a.mod_revision)),
            (EventType::Delete, deleted.revision, Some(a2.mod_revision)),
        ]
    );
    assert_eq!(
        for_cache,
        vec![(put, a.mod_revision, None), (put, a2.mod_revision, None), (EventType::Delete, deleted.revision, None)]
    );
}
