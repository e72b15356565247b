//! The backend conformance suite (feature `testing`): etcd semantics every [`Storage`] must show, written once and
//! run against each backend by `tests/conformance.rs` (a fresh, empty store per case).
//!
//! Each case panics on the first broken expectation. Cases assume nobody else writes to the store meanwhile
//! (they check exact revisions) and bound every wait and every load loop.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{Event, EventType, KeyValue, ListOptions, MAX_VALUE_BYTES, Revision, Storage, StorageError, WatchStream};

/// The next watch event, waiting at most 20 s; panics when there is none or the stream ended.
pub async fn next_event(stream: &mut WatchStream) -> Result<Event, StorageError> {
    tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("no watch event within 20 s")
        .expect("the watch stream ended")
}

/// Assert that no watch event arrives within `wait`.
pub async fn assert_quiet(stream: &mut WatchStream, wait: Duration) {
    if let Ok(item) = tokio::time::timeout(wait, stream.next()).await {
        panic!("expected no watch event, got {item:?}");
    }
}

fn value(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn at(revision: Revision) -> ListOptions {
    ListOptions { revision: Some(revision), ..ListOptions::default() }
}

/// create → get → update → get → delete → get, with the revisions each step must produce.
pub async fn create_get_update_delete(s: Arc<dyn Storage>) {
    let key = "/c/crud/ns/a";
    let start = s.current_revision().await.expect("current revision");
    let created = s.create(key, value("v1")).await.expect("create");
    assert_eq!(
        created,
        KeyValue { key: key.into(), value: value("v1"), create_revision: start + 1, mod_revision: start + 1 }
    );
    assert_eq!(s.current_revision().await.expect("revision"), start + 1);
    assert_eq!(s.get(key).await.expect("get"), Some(created.clone()));

    let updated = s.update(key, value("v2"), created.mod_revision).await.expect("update");
    assert_eq!(
        updated,
        KeyValue { key: key.into(), value: value("v2"), create_revision: start + 1, mod_revision: start + 2 }
    );
    assert_eq!(s.get(key).await.expect("get"), Some(updated.clone()));

    let deleted = s.delete(key, None).await.expect("delete");
    assert_eq!(deleted.prev, updated);
    assert_eq!(deleted.revision, start + 3);
    assert_eq!(s.get(key).await.expect("get"), None);
    assert_eq!(s.current_revision().await.expect("revision"), start + 3);
    s.health().await.expect("health");

    let again = s.create(key, value("v3")).await.expect("create after delete");
    assert_eq!(again.create_revision, start + 4, "a re-created key starts a new life");
}

/// Creating an existing key fails with `AlreadyExists` and changes nothing.
pub async fn create_existing_is_already_exists(s: Arc<dyn Storage>) {
    let key = "/c/exists/ns/a";
    let created = s.create(key, value("first")).await.expect("create");
    match s.create(key, value("second")).await {
        Err(StorageError::AlreadyExists { key: k }) => assert_eq!(k, key),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(s.get(key).await.expect("get"), Some(created.clone()));
    assert_eq!(s.current_revision().await.expect("revision"), created.mod_revision, "a failed write is no revision");
}

/// An update with a stale revision fails with `Conflict` carrying the current value, and changes nothing.
pub async fn update_conflict_carries_current(s: Arc<dyn Storage>) {
    let key = "/c/conflict/ns/a";
    let v1 = s.create(key, value("v1")).await.expect("create");
    let v2 = s.update(key, value("v2"), v1.mod_revision).await.expect("update");
    match s.update(key, value("stale"), v1.mod_revision).await {
        Err(StorageError::Conflict { key: k, expected, current }) => {
            assert_eq!((k.as_str(), expected), (key, v1.mod_revision));
            assert_eq!(*current, v2);
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(s.get(key).await.expect("get"), Some(v2.clone()));
    assert_eq!(s.current_revision().await.expect("revision"), v2.mod_revision);
}

/// Missing keys: `None` on get, `NotFound` on update and delete, and an expected revision of 0 creates nothing.
pub async fn missing_key_errors(s: Arc<dyn Storage>) {
    let key = "/c/missing/ns/a";
    let start = s.current_revision().await.expect("revision");
    assert_eq!(s.get(key).await.expect("get"), None);
    for result in [s.update(key, value("x"), 0).await.map(|_| ()), s.update(key, value("x"), 5).await.map(|_| ())] {
        assert!(matches!(result, Err(StorageError::NotFound { .. })), "update: {result:?}");
    }
    for expected in [None, Some(0), Some(5)] {
        let result = s.delete(key, expected).await;
        assert!(matches!(result, Err(StorageError::NotFound { .. })), "delete {expected:?}: {result:?}");
    }
    assert_eq!(s.get(key).await.expect("get"), None);
    assert_eq!(s.current_revision().await.expect("revision"), start);
}

/// A delete with an expected revision removes only that version and returns the last value.
pub async fn delete_respects_expected_revision(s: Arc<dyn Storage>) {
    let key = "/c/delete/ns/a";
    let v1 = s.create(key, value("v1")).await.expect("create");
    let v2 = s.update(key, value("v2"), v1.mod_revision).await.expect("update");
    match s.delete(key, Some(v1.mod_revision)).await {
        Err(StorageError::Conflict { current, expected, .. }) => {
            assert_eq!((*current, expected), (v2.clone(), v1.mod_revision));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    let deleted = s.delete(key, Some(v2.mod_revision)).await.expect("delete");
    assert_eq!(deleted.prev, v2);
    assert_eq!(deleted.revision, v2.mod_revision + 1);
    assert_eq!(s.get(key).await.expect("get"), None);
}

/// 16 concurrent compare-and-swaps of one version: exactly one wins, the others see its value in `Conflict`.
pub async fn concurrent_compare_and_swap(s: Arc<dyn Storage>) {
    const WRITERS: usize = 16;
    let key = "/c/cas/ns/a";
    let base = s.create(key, value("base")).await.expect("create");
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.update(key, value(&format!("writer-{i}")), base.mod_revision).await })
        })
        .collect();
    let mut winners = Vec::new();
    let mut conflicts = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(kv) => winners.push(kv),
            Err(StorageError::Conflict { current, .. }) => conflicts.push(*current),
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins");
    assert_eq!(conflicts.len(), WRITERS - 1);
    let winner = &winners[0];
    assert_eq!(winner.mod_revision, base.mod_revision + 1);
    assert!(conflicts.iter().all(|c| c == winner), "every loser sees the winner's value");
    assert_eq!(s.get(key).await.expect("get").as_ref(), Some(winner));
}

/// Lists return the keys under the prefix (not a sibling prefix), in key order, at the current revision.
pub async fn list_prefix_and_order(s: Arc<dyn Storage>) {
    for key in ["/c/list/ns/b", "/c/list/ns/a", "/c/list/ns/c", "/c/list/ns2/z", "/c/list/n/z"] {
        s.create(key, value(key)).await.expect("create");
    }
    let revision = s.current_revision().await.expect("revision");
    let list = s.list("/c/list/ns/", ListOptions::default()).await.expect("list");
    let keys: Vec<_> = list.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/c/list/ns/a", "/c/list/ns/b", "/c/list/ns/c"]);
    assert!(list.items.iter().all(|kv| kv.value == kv.key.as_bytes()));
    assert_eq!((list.revision, list.more, list.remaining), (revision, false, 0));
    assert_eq!(s.list("/c/list/", ListOptions::default()).await.expect("list").items.len(), 5);
    assert!(s.list("/c/nothing/", ListOptions::default()).await.expect("list").items.is_empty());

    let limited = s.list("/c/list/ns/", ListOptions { limit: Some(2), ..ListOptions::default() }).await.expect("list");
    assert_eq!((limited.items.len(), limited.more, limited.remaining), (2, true, 1));
    let outside = ListOptions { start_key: Some("/c/other/a".into()), ..ListOptions::default() };
    assert!(matches!(s.list("/c/list/ns/", outside).await, Err(StorageError::InvalidKey { .. })));
}

/// A paginated list stays at the first page's revision while the keys change between pages.
pub async fn list_pagination_is_consistent(s: Arc<dyn Storage>) {
    let prefix = "/c/pages/ns/";
    let key = |i: usize| format!("{prefix}k{i:02}");
    let mut original = Vec::new();
    for i in 0..10 {
        original.push(s.create(&key(i), value(&format!("v{i}"))).await.expect("create"));
    }
    let page =
        |start_key: Option<String>, revision: Option<Revision>| ListOptions { limit: Some(3), start_key, revision };
    let first = s.list(prefix, page(None, None)).await.expect("page 1");
    assert_eq!((first.items.len(), first.more, first.remaining), (3, true, 7));
    let revision = first.revision;
    let mut seen = first.items.clone();
    let mut last = first;
    for (changes, expected_remaining) in [4, 1, 0].into_iter().enumerate() {
        // Writes between pages: delete an unread key, update one, create one past the end.
        s.delete(&key(3 + changes * 3), None).await.expect("delete");
        let current = s.get(&key(5)).await.expect("get").expect("k05");
        s.update(&key(5), value("changed"), current.mod_revision).await.expect("update");
        s.create(&format!("{prefix}z{changes}"), value("late")).await.expect("create");

        let after = format!("{}\0", last.items.last().expect("a non-empty page").key);
        let next = s.list(prefix, page(Some(after), Some(revision))).await.expect("next page");
        assert_eq!(next.revision, revision);
        assert_eq!((next.remaining, next.more), (expected_remaining, expected_remaining > 0));
        seen.extend(next.items.clone());
        last = next;
    }
    assert_eq!(seen, original, "the pages together are the list at the first page's revision");
    let now = s.list(prefix, ListOptions::default()).await.expect("list now");
    assert_eq!(now.items.len(), 10 - 3 + 3, "three deleted, three created");
}

/// A list at a past revision shows the values, deleted keys and absent keys of then.
pub async fn list_at_past_revision(s: Arc<dyn Storage>) {
    let prefix = "/c/past/ns/";
    let a = s.create("/c/past/ns/a", value("a1")).await.expect("create a");
    let b = s.create("/c/past/ns/b", value("b1")).await.expect("create b");
    let then = s.current_revision().await.expect("revision");
    s.update("/c/past/ns/a", value("a2"), a.mod_revision).await.expect("update a");
    s.delete("/c/past/ns/b", None).await.expect("delete b");
    s.create("/c/past/ns/c", value("c1")).await.expect("create c");
    s.create("/c/past/other", value("x")).await.expect("create outside");

    let old = s.list(prefix, at(then)).await.expect("list then");
    assert_eq!(old.items, vec![a.clone(), b.clone()]);
    assert_eq!(old.revision, then);
    let limited = s.list(prefix, ListOptions { limit: Some(1), ..at(then) }).await.expect("list then, limit 1");
    assert_eq!((limited.items, limited.more, limited.remaining), (vec![a], true, 1));
    let now = s.list(prefix, ListOptions::default()).await.expect("list now");
    let keys: Vec<_> = now.items.iter().map(|kv| (kv.key.as_str(), kv.value.clone())).collect();
    assert_eq!(keys, [("/c/past/ns/a", value("a2")), ("/c/past/ns/c", value("c1"))]);
}

/// Reads below the compacted revision fail with `Compacted`, above the current one with `FutureRevision`;
/// compaction keeps the latest values.
pub async fn compaction_and_revision_bounds(s: Arc<dyn Storage>) {
    let prefix = "/c/compact/ns/";
    let key = "/c/compact/ns/a";
    let r1 = s.create(key, value("v1")).await.expect("create").mod_revision;
    let r2 = s.update(key, value("v2"), r1).await.expect("update").mod_revision;
    let r3 = s.update(key, value("v3"), r2).await.expect("update").mod_revision;
    s.compact(r2).await.expect("compact");
    match s.list(prefix, at(r1)).await {
        Err(StorageError::Compacted { requested, compacted }) => assert_eq!((requested, compacted), (r1, r2)),
        other => panic!("expected Compacted, got {other:?}"),
    }
    let kept = s.list(prefix, at(r2)).await.expect("the compacted revision itself is readable");
    assert_eq!(
        kept.items.iter().map(|kv| (kv.mod_revision, kv.value.clone())).collect::<Vec<_>>(),
        [(r2, value("v2"))]
    );
    match s.list(prefix, at(r3 + 10)).await {
        Err(StorageError::FutureRevision { requested, current }) => assert_eq!((requested, current), (r3 + 10, r3)),
        other => panic!("expected FutureRevision, got {other:?}"),
    }
    s.compact(r1).await.expect("compacting an older revision is a no-op");
    s.compact(r2).await.expect("compacting the same revision again is a no-op");
    assert!(matches!(s.compact(r3 + 5).await, Err(StorageError::FutureRevision { .. })));
    assert_eq!(s.get(key).await.expect("get").map(|kv| kv.value), Some(value("v3")));
    s.compact(r3).await.expect("compact to the current revision");
    assert_eq!(s.list(prefix, ListOptions::default()).await.expect("list").items.len(), 1);
}

/// A watch from an old revision replays every event under the prefix in order, with previous values, then
/// goes on live.
pub async fn watch_replays_from_old_revision(s: Arc<dyn Storage>) {
    let prefix = "/c/replay/ns/";
    let a1 = s.create("/c/replay/ns/a", value("a1")).await.expect("create a");
    s.create("/c/replay/other/x", value("x")).await.expect("create outside");
    let a2 = s.update("/c/replay/ns/a", value("a2"), a1.mod_revision).await.expect("update a");
    let b1 = s.create("/c/replay/ns/b", value("b1")).await.expect("create b");
    let deleted = s.delete("/c/replay/ns/a", None).await.expect("delete a");

    let mut watch = s.watch(prefix, a1.mod_revision).await.expect("watch");
    let mut events = Vec::new();
    for _ in 0..4 {
        events.push(next_event(&mut watch).await.expect("event"));
    }
    let tombstone =
        KeyValue { key: a1.key.clone(), value: Bytes::new(), create_revision: 0, mod_revision: deleted.revision };
    assert_eq!(
        events,
        [
            Event { event_type: EventType::Put, kv: a1.clone(), prev: None },
            Event { event_type: EventType::Put, kv: a2.clone(), prev: Some(a1) },
            Event { event_type: EventType::Put, kv: b1.clone(), prev: None },
            Event { event_type: EventType::Delete, kv: tombstone, prev: Some(a2) },
        ]
    );
    let b2 = s.update("/c/replay/ns/b", value("b2"), b1.mod_revision).await.expect("update b");
    let live = next_event(&mut watch).await.expect("live event");
    assert_eq!(live, Event { event_type: EventType::Put, kv: b2, prev: Some(b1.clone()) });

    let mut from_b = s.watch(prefix, b1.mod_revision).await.expect("watch from b");
    assert_eq!(next_event(&mut from_b).await.expect("event").kv, b1, "the start revision itself is included");
}

/// A watch from now sees only later events, and only under its prefix.
pub async fn watch_from_now(s: Arc<dyn Storage>) {
    let a = s.create("/c/now/ns/a", value("a1")).await.expect("create");
    let mut watch = s.watch("/c/now/ns/", 0).await.expect("watch");
    s.create("/c/now/ns2/x", value("sibling prefix")).await.expect("create outside");
    let b = s.create("/c/now/ns/b", value("b1")).await.expect("create b");
    let a2 = s.update("/c/now/ns/a", value("a2"), a.mod_revision).await.expect("update a");
    assert_eq!(next_event(&mut watch).await.expect("event").kv, b);
    let event = next_event(&mut watch).await.expect("event");
    assert_eq!((event.kv, event.prev), (a2, Some(a)));
    assert_quiet(&mut watch, Duration::from_millis(300)).await;
}

/// A watch from below the compacted revision fails with `Compacted` as its first item; from the compacted
/// revision itself it works.
pub async fn watch_from_compacted_revision(s: Arc<dyn Storage>) {
    let key = "/c/wcompact/ns/a";
    let r1 = s.create(key, value("v1")).await.expect("create").mod_revision;
    let r2 = s.update(key, value("v2"), r1).await.expect("update").mod_revision;
    let r3 = s.update(key, value("v3"), r2).await.expect("update").mod_revision;
    // A consistent read first: a cache in front of the backend has then taken r3 from its own backend watch. A
    // compaction past a backend watch that is still behind ends it (etcd's too), and the cache would relist and
    // close the watch below as lagging, which is not what this case is about.
    s.get(key).await.expect("get");
    s.compact(r3).await.expect("compact");
    let mut watch = s.watch("/c/wcompact/ns/", r1).await.expect("watch");
    match next_event(&mut watch).await {
        Err(StorageError::Compacted { requested, compacted }) => assert_eq!((requested, compacted), (r1, r3)),
        other => panic!("expected Compacted, got {other:?}"),
    }
    let mut watch = s.watch("/c/wcompact/ns/", r3).await.expect("watch");
    let event = next_event(&mut watch).await.expect("event at the compacted revision");
    assert_eq!((event.event_type, event.kv.mod_revision, event.kv.value), (EventType::Put, r3, value("v3")));
}

/// 10,000 concurrent creates: three live watchers and one that starts after the writes each see every event
/// exactly once, in revision order.
pub async fn watchers_see_every_write_once(s: Arc<dyn Storage>) {
    const WRITES: usize = 10_000;
    const WRITERS: usize = 16;
    let prefix = "/c/load/ns/";
    let start = s.current_revision().await.expect("revision") + 1;
    let collect = |mut watch: WatchStream| {
        tokio::spawn(async move {
            let mut events = Vec::with_capacity(WRITES);
            while events.len() < WRITES {
                events.push(next_event(&mut watch).await.expect("event"));
            }
            events
        })
    };
    let mut watchers = Vec::new();
    for _ in 0..3 {
        watchers.push(collect(s.watch(prefix, start).await.expect("watch")));
    }
    let work = async {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let s = s.clone();
                tokio::spawn(async move {
                    for i in (w..WRITES).step_by(WRITERS) {
                        s.create(&format!("{prefix}k{i:05}"), value(&format!("value {i}"))).await.expect("create");
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.expect("writer");
        }
        watchers.push(collect(s.watch(prefix, start).await.expect("late watch")));
        let mut all = Vec::new();
        for watcher in watchers {
            all.push(watcher.await.expect("watcher"));
        }
        all
    };
    let all = tokio::time::timeout(Duration::from_secs(180), work).await.expect("10k writes and watches within 180 s");
    let expected: Vec<Revision> = (start..start + WRITES as i64).collect();
    for events in all {
        let revisions: Vec<Revision> = events.iter().map(Event::revision).collect();
        assert_eq!(revisions, expected, "every revision once, in order");
        assert!(events.iter().all(|e| e.event_type == EventType::Put && e.prev.is_none()));
        let keys: BTreeSet<&str> = events.iter().map(|e| e.kv.key.as_str()).collect();
        assert_eq!(keys.len(), WRITES);
    }
}

/// Malformed keys and prefixes fail with `InvalidKey` and write nothing.
pub async fn invalid_keys_are_rejected(s: Arc<dyn Storage>) {
    let start = s.current_revision().await.expect("revision");
    for bad in ["", "relative/key", "/a//b", "/a/./b", "/a/../b", "/a/b/", "/a/\nb"] {
        let invalid = |r: Result<(), StorageError>| matches!(r, Err(StorageError::InvalidKey { .. }));
        assert!(invalid(s.create(bad, value("x")).await.map(|_| ())), "create {bad:?}");
        assert!(invalid(s.get(bad).await.map(|_| ())), "get {bad:?}");
        assert!(invalid(s.update(bad, value("x"), 1).await.map(|_| ())), "update {bad:?}");
        assert!(invalid(s.delete(bad, None).await.map(|_| ())), "delete {bad:?}");
    }
    for bad in ["/a/b", "a/", "/a//"] {
        assert!(matches!(s.list(bad, ListOptions::default()).await, Err(StorageError::InvalidKey { .. })), "{bad:?}");
        assert!(matches!(s.watch(bad, 0).await.map(|_| ()), Err(StorageError::InvalidKey { .. })), "{bad:?}");
    }
    assert_eq!(s.current_revision().await.expect("revision"), start);
}

/// Values over `MAX_VALUE_BYTES` fail with `ValueTooLarge`; a 1 MiB value round-trips.
pub async fn value_size_limit(s: Arc<dyn Storage>) {
    let key = "/c/size/ns/a";
    let too_large = Bytes::from(vec![b'x'; MAX_VALUE_BYTES + 1]);
    let expected = StorageError::ValueTooLarge { size: MAX_VALUE_BYTES + 1, limit: MAX_VALUE_BYTES };
    assert_eq!(s.create(key, too_large.clone()).await.err(), Some(expected.clone()));
    let big = Bytes::from(vec![b'y'; 1024 * 1024]);
    let created = s.create(key, big.clone()).await.expect("a 1 MiB value");
    assert_eq!(s.get(key).await.expect("get").map(|kv| kv.value), Some(big));
    assert_eq!(s.update(key, too_large, created.mod_revision).await.err(), Some(expected));
}
