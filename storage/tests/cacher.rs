//! The watch cache beyond the conformance suite: consistent reads under concurrent writes (sharing revision
//! reads), resuming after etcd restarts, after relists and from before a new cache's window, 410 outside the
//! window and after compactions the cache did not make, stuck watchers, one backend watch per prefix, reads and
//! encodings without copies or round trips.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use backup_storage::cacher::{CacheWatch, CachedPrefix, Cacher, CacherConfig, Freshness, WakeGroup, WatchEnd};
use backup_storage::conformance::next_event;
use backup_storage::embedded::EmbeddedStorage;
use backup_storage::etcd::EtcdStorage;
use backup_storage::testing::EtcdServer;
use backup_storage::{
    Deleted, KeyValue, ListOptions, ListResult, ProgressWatch, Revision, Storage, StorageError, WatchItem, WatchStream,
};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

const PREFIX: &str = "/g/things/";

fn value(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

async fn ready(backend: Arc<dyn Storage>, config: CacherConfig) -> Arc<Cacher> {
    let cacher = Cacher::new(backend, config).expect("cacher");
    assert!(cacher.wait_ready(Duration::from_secs(10)).await, "the cache did not list within 10 s");
    Arc::new(cacher)
}

async fn next_cached(watch: &mut CacheWatch) -> Result<Arc<backup_storage::cacher::CachedEvent>, WatchEnd> {
    tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("no watch event within 20 s")
        .expect("the watch ended")
}

/// A backend that counts calls and watches, and can end the watch cache's backend watch with an error.
struct Counting {
    inner: Arc<dyn Storage>,
    reads: AtomicUsize,
    revision_reads: AtomicUsize,
    /// Each revision read takes this many milliseconds (to let concurrent reads pile up).
    revision_delay_ms: std::sync::atomic::AtomicU64,
    watches: AtomicUsize,
    inject: std::sync::Mutex<Vec<mpsc::UnboundedSender<backup_storage::Result<WatchItem>>>>,
}

impl Counting {
    fn new(inner: Arc<dyn Storage>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            reads: AtomicUsize::new(0),
            revision_reads: AtomicUsize::new(0),
            revision_delay_ms: std::sync::atomic::AtomicU64::new(0),
            watches: AtomicUsize::new(0),
            inject: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// End every open watch with progress with `error`.
    fn fail_watches(&self, error: StorageError) {
        for tx in self.inject.lock().unwrap().drain(..) {
            let _ = tx.send(Err(error.clone()));
        }
    }
}

#[async_trait::async_trait]
impl Storage for Counting {
    async fn get(&self, key: &str) -> backup_storage::Result<Option<KeyValue>> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str, opts: ListOptions) -> backup_storage::Result<ListResult> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.list(prefix, opts).await
    }
    async fn create(&self, key: &str, value: Bytes) -> backup_storage::Result<KeyValue> {
        self.inner.create(key, value).await
    }
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> backup_storage::Result<KeyValue> {
        self.inner.update(key, value, expected).await
    }
    async fn delete(&self, key: &str, expected: Option<Revision>) -> backup_storage::Result<Deleted> {
        self.inner.delete(key, expected).await
    }
    async fn watch(&self, prefix: &str, start: Revision) -> backup_storage::Result<WatchStream> {
        self.watches.fetch_add(1, Ordering::Relaxed);
        self.inner.watch(prefix, start).await
    }
    async fn watch_with_progress(&self, prefix: &str, start: Revision) -> backup_storage::Result<ProgressWatch> {
        self.watches.fetch_add(1, Ordering::Relaxed);
        let watch = self.inner.watch_with_progress(prefix, start).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        self.inject.lock().unwrap().push(tx);
        let injected = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        Ok(ProgressWatch { items: Box::pin(futures::stream::select(watch.items, injected)), mode: watch.mode })
    }
    async fn current_revision(&self) -> backup_storage::Result<Revision> {
        self.revision_reads.fetch_add(1, Ordering::Relaxed);
        let delay = self.revision_delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.inner.current_revision().await
    }
    async fn compact(&self, revision: Revision) -> backup_storage::Result<()> {
        self.inner.compact(revision).await
    }
}

/// 4 writers update their own keys while 4 readers get and list them through the cache: no read returns a
/// version older than one whose write was acknowledged before the read started. ~10k operations.
async fn consistent_reads(backend: Arc<dyn Storage>) -> backup_storage::cacher::CacheMetricsSnapshot {
    const KEYS: usize = 16;
    const WRITES_PER_KEY: usize = 300;
    const READS: usize = 5_000;
    let cacher = ready(backend, CacherConfig::new([CachedPrefix::new(PREFIX)])).await;
    let key = |k: usize| format!("{PREFIX}ns/k{k:02}");
    let acked: Arc<Vec<AtomicI64>> = Arc::new((0..KEYS).map(|_| AtomicI64::new(0)).collect());
    for k in 0..KEYS {
        let kv = cacher.create(&key(k), value("0")).await.expect("create");
        acked[k].store(kv.mod_revision, Ordering::SeqCst);
    }
    let work = async {
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (cacher, acked) = (cacher.clone(), acked.clone());
                tokio::spawn(async move {
                    for i in 0..WRITES_PER_KEY {
                        for k in (w * KEYS / 4)..((w + 1) * KEYS / 4) {
                            let expected = acked[k].load(Ordering::SeqCst);
                            let kv = cacher.update(&key(k), value(&i.to_string()), expected).await.expect("update");
                            acked[k].store(kv.mod_revision, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        let readers: Vec<_> = (0..4)
            .map(|r| {
                let (cacher, acked) = (cacher.clone(), acked.clone());
                tokio::spawn(async move {
                    for i in 0..READS / 4 {
                        if i % 8 == 0 {
                            let before: Vec<i64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
                            let list = cacher.list(PREFIX, ListOptions::default()).await.expect("list");
                            assert_eq!(list.items.len(), KEYS);
                            for (k, kv) in list.items.iter().enumerate() {
                                assert!(kv.mod_revision >= before[k], "list: {} older than acknowledged", kv.key);
                            }
                        } else {
                            let k = (i * 7 + r) % KEYS;
                            let before = acked[k].load(Ordering::SeqCst);
                            let kv = cacher.get(&key(k)).await.expect("get").expect("the key exists");
                            assert!(kv.mod_revision >= before, "get {}: {} < {before}", kv.key, kv.mod_revision);
                        }
                    }
                })
            })
            .collect();
        for task in writers.into_iter().chain(readers) {
            task.await.expect("task");
        }
    };
    tokio::time::timeout(Duration::from_secs(240), work).await.expect("10k operations within 240 s");
    cacher.metrics().snapshot()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_reads_are_never_stale_embedded() {
    let metrics = consistent_reads(Arc::new(EmbeddedStorage::in_memory().expect("open"))).await;
    // The embedded store reports progress continuously: reads are served from memory (a few may wait too long
    // on this shared machine and go to the store).
    assert!(metrics.backend_fallbacks < 500, "{metrics:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_reads_are_never_stale_etcd() {
    let server = EtcdServer::start().await;
    let storage = EtcdStorage::connect(&server.config("/registry")).await.expect("connect");
    consistent_reads(Arc::new(storage)).await;
}

/// etcd is killed and started again: the cache's backend watch resumes from its last revision (no relist), a
/// watcher opened before sees every write after it once, and consistent reads see the new writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_survives_etcd_restart() {
    let mut server = EtcdServer::start().await;
    let storage = Arc::new(EtcdStorage::connect(&server.config("/registry")).await.expect("connect"));
    let cacher = ready(storage, CacherConfig::new([CachedPrefix::new(PREFIX)])).await;
    let a = cacher.create(&format!("{PREFIX}ns/a"), value("a1")).await.expect("create");
    let mut watch = cacher.watch(PREFIX, 0).await.expect("watch");
    let a2 = cacher.update(&a.key, value("a2"), a.mod_revision).await.expect("update");
    assert_eq!(next_event(&mut watch).await.expect("event").kv, a2);

    server.stop().await;
    assert!(matches!(cacher.get(&a.key).await, Err(StorageError::Unavailable(_))), "a consistent read needs etcd");
    assert_eq!(
        cacher.get_not_older_than(&a.key, 0).await.expect("a not-older-than read from memory"),
        Some(a2.clone())
    );
    server.restart().await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while cacher.current_revision().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the client did not reconnect within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = cacher.create(&format!("{PREFIX}ns/b"), value("b1")).await.expect("create after restart");
    assert_eq!(next_event(&mut watch).await.expect("event after restart").kv, b);
    let a3 = cacher.update(&a.key, value("a3"), a2.mod_revision).await.expect("update after restart");
    assert_eq!(next_event(&mut watch).await.expect("event").kv, a3.clone());
    assert_eq!(cacher.get(&a.key).await.expect("get"), Some(a3));
    assert_eq!(cacher.list(PREFIX, ListOptions::default()).await.expect("list").items.len(), 2);
    assert_eq!(cacher.metrics().snapshot().relists, 0, "the backend watch resumed, no relist");
}

/// The backend watch ends with `Compacted` (as after etcd compacted past it while it was away): the cache lists
/// again, its watchers are closed (they lag), a watcher resuming before the new list gets 410 and one that
/// relists from the cache and watches from there sees the next writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_resume_or_relist_after_the_cache_is_rebuilt() {
    let backend = Counting::new(Arc::new(EmbeddedStorage::in_memory().expect("open")));
    let cacher = ready(backend.clone(), CacherConfig::new([CachedPrefix::new(PREFIX)])).await;
    let a = cacher.create(&format!("{PREFIX}ns/a"), value("a1")).await.expect("create");
    let mut watch = cacher.watch_cached(PREFIX, a.mod_revision, WakeGroup::default()).await.expect("watch");
    assert_eq!(next_cached(&mut watch).await.expect("event").object().expect("put").kv(), &a);

    let b = cacher.create(&format!("{PREFIX}ns/b"), value("b1")).await.expect("create");
    backend.fail_watches(StorageError::Compacted { requested: b.mod_revision, compacted: b.mod_revision });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cacher.metrics().snapshot().relists == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no relist within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The old watcher may have taken b before the relist; then it is closed.
    let end = loop {
        match next_cached(&mut watch).await {
            Ok(event) => assert_eq!(event.object().expect("put").kv(), &b),
            Err(end) => break end,
        }
    };
    let WatchEnd::Lagged { resume_from } = end else { panic!("expected Lagged, got {end:?}") };
    assert!(resume_from <= b.mod_revision + 1);
    assert_eq!(backend.watches.load(Ordering::Relaxed), 2, "one backend watch before the relist, one after");

    // Resuming from before the new list: 410, as the events in between are not in the new window.
    let mut resumed = cacher.watch_cached(PREFIX, a.mod_revision, WakeGroup::default()).await.expect("watch");
    match next_cached(&mut resumed).await {
        Err(WatchEnd::Failed(StorageError::Compacted { requested, .. })) => assert_eq!(requested, a.mod_revision),
        other => panic!("expected Compacted, got {other:?}"),
    }
    // Relist from the cache, watch from its revision: the next write arrives.
    let list = cacher.list_cached(PREFIX, ListOptions::default(), Freshness::NotOlderThan(0)).await.expect("list");
    assert_eq!(list.items.len(), 2);
    let mut rewatch = cacher.watch_cached(PREFIX, list.revision + 1, WakeGroup::default()).await.expect("watch");
    let c = cacher.create(&format!("{PREFIX}ns/c"), value("c1")).await.expect("create");
    assert_eq!(next_cached(&mut rewatch).await.expect("event").object().expect("put").kv(), &c);
}

/// A watch from a revision whose events left the window fails with `Compacted` (410); from inside it replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_outside_the_window_is_410() {
    let backend = Arc::new(EmbeddedStorage::in_memory().expect("open"));
    let config = CacherConfig { window_events: 10, ..CacherConfig::new([CachedPrefix::new(PREFIX)]) };
    let cacher = ready(backend, config).await;
    let mut revisions = Vec::new();
    for i in 0..30 {
        revisions.push(cacher.create(&format!("{PREFIX}ns/k{i:02}"), value("v")).await.expect("create").mod_revision);
    }
    // Wait until the cache has every event.
    cacher.list(PREFIX, ListOptions::default()).await.expect("list");
    let mut old = cacher.watch(PREFIX, revisions[0]).await.expect("watch");
    match next_event(&mut old).await {
        Err(StorageError::Compacted { requested, compacted }) => {
            assert_eq!((requested, compacted), (revisions[0], revisions[20]), "the window holds the last 10");
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    let mut recent = cacher.watch(PREFIX, revisions[20]).await.expect("watch");
    for expected in &revisions[20..] {
        assert_eq!(next_event(&mut recent).await.expect("event").revision(), *expected);
    }
    // A list at a revision before the window goes to the backend, which still has it.
    let then = cacher
        .list(PREFIX, ListOptions { revision: Some(revisions[5]), ..ListOptions::default() })
        .await
        .expect("list then");
    assert_eq!(then.items.len(), 6);
    assert!(cacher.metrics().snapshot().backend_fallbacks >= 1);
}

/// A watcher that never reads is closed once more than its budget of bytes waits for it, while another
/// watcher gets everything; the window stays within its byte limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_watcher_is_closed_and_memory_stays_bounded() {
    const WINDOW_BYTES: usize = 1024 * 1024;
    let backend = Arc::new(EmbeddedStorage::in_memory().expect("open"));
    let config = CacherConfig {
        window_bytes: WINDOW_BYTES,
        watcher_lag_bytes: 64 * 1024,
        ..CacherConfig::new([CachedPrefix::new(PREFIX)])
    };
    let cacher = ready(backend, config).await;
    let mut stuck = cacher.watch_cached(PREFIX, 0, WakeGroup::default()).await.expect("watch");
    let mut live = cacher.watch(PREFIX, 0).await.expect("watch");
    let big = Bytes::from(vec![b'x'; 4096]);
    let reader = tokio::spawn(async move {
        let mut seen = 0;
        while seen < 500 {
            next_event(&mut live).await.expect("event");
            seen += 1;
        }
        seen
    });
    let mut max_window = 0;
    for i in 0..500 {
        cacher.create(&format!("{PREFIX}ns/k{i:03}"), big.clone()).await.expect("create");
        max_window = max_window.max(cacher.metrics().snapshot().window_bytes);
    }
    assert_eq!(reader.await.expect("reader"), 500, "the reading watcher got every event");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while cacher.metrics().snapshot().watchers_closed_lagging == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the stuck watcher was not closed within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = cacher.metrics().snapshot();
    assert_eq!(metrics.watchers_closed_lagging, 1, "{metrics:?}");
    assert!(max_window as usize <= WINDOW_BYTES + 8192, "window {max_window} bytes over its limit");
    assert!(metrics.window_events < 500, "old events left the window: {metrics:?}");
    match next_cached(&mut stuck).await {
        Err(WatchEnd::Lagged { resume_from }) => assert!(resume_from > 0),
        other => panic!("expected Lagged, got {other:?}"),
    }
    assert!(stuck.next().await.is_none(), "then the stream ends");
}

/// However many watchers (in several namespaces), the backend has one watch per cached prefix: counted by a
/// wrapping backend, and by etcd itself (`etcd_debugging_mvcc_watcher_total`). An event counts once as dispatched,
/// as upstream's metric, whatever the number of its watchers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_backend_watch_per_prefix() {
    let server = EtcdServer::start().await;
    let etcd: Arc<dyn Storage> = Arc::new(EtcdStorage::connect(&server.config("/registry")).await.expect("connect"));
    let backend = Counting::new(etcd);
    let prefixes = [CachedPrefix::new("/g/backups/"), CachedPrefix::new("/g/restores/")];
    let cacher = ready(backend.clone(), CacherConfig::new(prefixes)).await;
    let mut watches = Vec::new();
    for i in 0..500 {
        let resource = if i % 2 == 0 { "backups" } else { "restores" };
        let prefix = if i % 3 == 0 { format!("/g/{resource}/") } else { format!("/g/{resource}/ns{}/", i % 10) };
        watches.push(cacher.watch(&prefix, 0).await.expect("watch"));
    }
    let created = cacher.create("/g/backups/ns4/a", value("a")).await.expect("create");
    let mut delivered = 0;
    for (i, watch) in watches.iter_mut().enumerate() {
        let sees = i % 2 == 0 && (i % 3 == 0 || i % 10 == 4);
        if sees {
            assert_eq!(next_event(watch).await.expect("event").kv, created);
            delivered += 1;
        }
    }
    assert!(delivered > 0);
    assert_eq!(cacher.metrics().snapshot().events_dispatched, 1, "counted once per event, not per watcher");
    assert_eq!(backend.watches.load(Ordering::Relaxed), 2, "one backend watch per prefix");
    assert_eq!(cacher.metrics().snapshot().watchers, 500);
    let in_etcd = server.metric("etcd_debugging_mvcc_watcher_total").await;
    assert_eq!(in_etcd, 2.0, "etcd counts one watcher per cached prefix");
    drop(watches);
    assert_eq!(cacher.metrics().snapshot().watchers, 0);
}

/// resourceVersion=0 reads come from memory without a backend call; a consistent read costs one revision read;
/// objects carry the hook's attributes; every watcher gets the same event and its encodings are made once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_encodings_are_shared() {
    let backend = Counting::new(Arc::new(EmbeddedStorage::in_memory().expect("open")));
    let hook: backup_storage::cacher::AttrsHook = Arc::new(|kv: &KeyValue| Some(Arc::new(kv.value.len()) as _));
    let cacher = ready(backend.clone(), CacherConfig::new([CachedPrefix::with_attrs(PREFIX, hook)])).await;
    for i in 0..20 {
        cacher.create(&format!("{PREFIX}ns/k{i:02}"), value(&"v".repeat(i + 1))).await.expect("create");
    }
    let consistent = cacher.list_cached(PREFIX, ListOptions::default(), Freshness::Consistent).await.expect("list");
    assert_eq!(consistent.items.len(), 20);
    let (reads, revision_reads) =
        (backend.reads.load(Ordering::Relaxed), backend.revision_reads.load(Ordering::Relaxed));
    let any = cacher.list_cached(PREFIX, ListOptions::default(), Freshness::NotOlderThan(0)).await.expect("list");
    let one = cacher.get_cached(&format!("{PREFIX}ns/k03"), Freshness::NotOlderThan(0)).await.expect("get");
    assert_eq!(backend.reads.load(Ordering::Relaxed), reads, "no backend read");
    assert_eq!(backend.revision_reads.load(Ordering::Relaxed), revision_reads, "no revision read");
    assert_eq!(one.expect("k03").attrs::<usize>(), Some(&4));
    for (a, b) in consistent.items.iter().zip(&any.items) {
        assert!(Arc::ptr_eq(a, b), "the same cached object, not a copy");
        assert_eq!(a.attrs::<usize>(), Some(&a.value().len()));
    }
    cacher.get(&format!("{PREFIX}ns/k03")).await.expect("get");
    assert_eq!(backend.revision_reads.load(Ordering::Relaxed), revision_reads + 1, "one revision read");
    assert_eq!(backend.reads.load(Ordering::Relaxed), reads, "and no backend read");

    let mut watches = Vec::new();
    for i in 0..50 {
        // Watchers in three wake groups (as three HTTP/2 connections') and in the default one.
        let group = if i % 4 == 3 { WakeGroup::default() } else { WakeGroup(1 + i % 4) };
        watches.push(cacher.watch_cached(PREFIX, 0, group).await.expect("watch"));
    }
    let created = cacher.create(&format!("{PREFIX}ns/new"), value("new")).await.expect("create");
    let encodings_before = cacher.metrics().snapshot().encodings;
    let mut first: Option<(Arc<backup_storage::cacher::CachedEvent>, Bytes, Bytes)> = None;
    for watch in &mut watches {
        let event = next_cached(watch).await.expect("event");
        assert_eq!(event.object().expect("put").kv(), &created);
        assert_eq!(event.object().expect("put").attrs::<usize>(), Some(&3));
        let json = event.encoded(1, |e| Bytes::from(format!("json {}\n", e.revision())));
        let table = event.encoded(2, |e| Bytes::from(format!("table {}\n", e.key())));
        match &first {
            None => first = Some((event, json, table)),
            Some((e, j, t)) => {
                assert!(Arc::ptr_eq(e, &event), "every watcher gets the same event");
                assert_eq!((j.as_ptr(), t.as_ptr()), (json.as_ptr(), table.as_ptr()), "the same bytes");
            }
        }
    }
    assert_eq!(cacher.metrics().snapshot().encodings - encodings_before, 2, "one encoding per representation");
    assert!(watches.iter().all(|w| w.revision() >= created.mod_revision), "bookmarks may say the event's revision");
}

/// Consistent reads that arrive while a revision read is under way wait for the next one and share it: 64
/// concurrent gets cost a few revision reads, each read still sees the write acknowledged before it began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_consistent_reads_share_revision_reads() {
    let backend = Counting::new(Arc::new(EmbeddedStorage::in_memory().expect("open")));
    let cacher = ready(backend.clone(), CacherConfig::new([CachedPrefix::new(PREFIX)])).await;
    let written = cacher.create(&format!("{PREFIX}ns/a"), value("a1")).await.expect("create");
    backend.revision_delay_ms.store(100, Ordering::Relaxed);
    let before = backend.revision_reads.load(Ordering::Relaxed);
    let reads: Vec<_> = (0..64)
        .map(|_| {
            let (cacher, key) = (cacher.clone(), written.key.clone());
            tokio::spawn(async move { cacher.get(&key).await })
        })
        .collect();
    for read in reads {
        let kv = read.await.expect("task").expect("get").expect("the key exists");
        assert!(kv.mod_revision >= written.mod_revision);
    }
    let revision_reads = backend.revision_reads.load(Ordering::Relaxed) - before;
    assert!((1..=4).contains(&revision_reads), "64 reads took {revision_reads} revision reads");
    assert_eq!(cacher.metrics().snapshot().revision_reads as usize, revision_reads);
}

/// A new cache (a restarted apiserver) has a window that starts at its first list; a client that resumes from
/// an older revision the backend still has gets the events in between from a backend watch of its own, which
/// hands over to the window once it reaches it. The window-only watch still answers 410 there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_before_the_window_bridges_to_it() {
    let backend: Arc<dyn Storage> = Arc::new(EmbeddedStorage::in_memory().expect("open"));
    let mut revisions = Vec::new();
    for i in 0..5 {
        revisions.push(backend.create(&format!("{PREFIX}ns/k{i}"), value("v")).await.expect("create").mod_revision);
    }
    let cacher = ready(backend.clone(), CacherConfig::new([CachedPrefix::new(PREFIX)])).await;
    match next_cached(&mut cacher.watch_cached(PREFIX, revisions[1] + 1, WakeGroup::default()).await.expect("watch"))
        .await
    {
        Err(WatchEnd::Failed(StorageError::Compacted { .. })) => {}
        other => panic!("the window starts at the cache's list: expected Compacted, got {other:?}"),
    }
    let mut resumed = cacher.resume_watch(PREFIX, revisions[1] + 1, WakeGroup::default()).await.expect("resume");
    for expected in &revisions[2..] {
        let event = next_cached(&mut resumed).await.expect("an event from the backend's history");
        assert_eq!(event.revision(), *expected);
    }
    assert_eq!(cacher.metrics().snapshot().backend_watches, 1);
    // Once past the window's start it reads the window: the next writes come, and the backend watch is gone.
    for i in 5..8 {
        let kv = cacher.create(&format!("{PREFIX}ns/k{i}"), value("v")).await.expect("create");
        assert_eq!(next_cached(&mut resumed).await.expect("event").revision(), kv.mod_revision);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cacher.metrics().snapshot().backend_watchers != 0 {
        assert!(tokio::time::Instant::now() < deadline, "still on the backend watch after 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cacher.metrics().snapshot().watchers, 1, "now a watcher of the window");
}

/// etcd compacted (by another replica, or an operator) without the cache knowing: the window still holds the
/// events, but a resumed watch and an exact list from before the compaction are 410 as they would be on etcd;
/// from the compacted revision on they are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compactions_the_cache_did_not_make_are_410() {
    let server = EtcdServer::start().await;
    let etcd: Arc<dyn Storage> = Arc::new(EtcdStorage::connect(&server.config("/registry")).await.expect("connect"));
    let cacher = ready(etcd.clone(), CacherConfig::new([CachedPrefix::new(PREFIX)])).await;
    let a = cacher.create(&format!("{PREFIX}ns/a"), value("a1")).await.expect("create");
    let mut last = a.clone();
    for i in 2..5 {
        last = cacher.update(&a.key, value(&format!("a{i}")), last.mod_revision).await.expect("update");
    }
    cacher.list(PREFIX, ListOptions::default()).await.expect("the cache has every event");
    let relists = cacher.metrics().snapshot().relists;
    etcd.compact(last.mod_revision).await.expect("compact behind the cache's back");

    match next_cached(&mut cacher.resume_watch(PREFIX, a.mod_revision + 1, WakeGroup::default()).await.expect("watch"))
        .await
    {
        Err(WatchEnd::Failed(StorageError::Compacted { requested, compacted })) => {
            assert_eq!((requested, compacted), (a.mod_revision + 1, last.mod_revision));
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    let exact = ListOptions { revision: Some(a.mod_revision), ..ListOptions::default() };
    assert!(matches!(cacher.list(PREFIX, exact).await, Err(StorageError::Compacted { .. })), "an exact list too");
    let at = ListOptions { revision: Some(last.mod_revision), ..ListOptions::default() };
    assert_eq!(cacher.list(PREFIX, at).await.expect("at the compacted revision").items, vec![last.clone()]);
    let mut fresh = cacher.resume_watch(PREFIX, last.mod_revision + 1, WakeGroup::default()).await.expect("watch");
    let next = cacher.update(&a.key, value("a5"), last.mod_revision).await.expect("update");
    let event = match next_cached(&mut fresh).await {
        // On a loaded machine the reflector's backend watch may have been restarted from before the compaction
        // and relisted, closing its watchers: a consumer resumes where it was told, and sees the event there.
        Err(WatchEnd::Lagged { resume_from }) => {
            assert_eq!(resume_from, last.mod_revision + 1, "resumed where it was");
            let mut resumed =
                cacher.resume_watch(PREFIX, resume_from, WakeGroup::default()).await.expect("watch again");
            next_cached(&mut resumed).await.expect("event after resuming")
        }
        other => other.expect("event"),
    };
    assert_eq!(event.revision(), next.mod_revision);
    // The exact list below the compaction needed no question: the first answer taught the cache of it.
    if cacher.metrics().snapshot().relists == relists {
        assert_eq!(cacher.metrics().snapshot().revision_checks, 3);
    }
}
