//! `EtcdStorage` with several `--etcd-servers`, one of which does not answer: requests move to the member that
//! does after at most one failure, whichever member the channel started on, and watches follow.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::Duration;

use backup_storage::etcd::{EtcdConfig, EtcdStorage};
use backup_storage::testing::EtcdServer;
use backup_storage::{EventType, Storage, StorageError};
use futures::StreamExt;

/// A loopback URL on which nothing listens (the port was free a moment ago).
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://{}", listener.local_addr().expect("address"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_move_to_the_member_that_answers() {
    let etcd = EtcdServer::start().await;
    for (round, servers) in [[closed_port(), etcd.endpoint()], [etcd.endpoint(), closed_port()]].into_iter().enumerate()
    {
        // The member the channel starts on is chosen at random: a few connections per order.
        for attempt in 0..4 {
            let config = EtcdConfig { servers: servers.to_vec(), ..etcd.config("/registry") };
            let storage = EtcdStorage::connect(&config).await.expect("connect is lazy");
            let key = format!("/members/ns/{round}-{attempt}");
            let mut failures = 0;
            let created = loop {
                match storage.create(&key, "v".into()).await {
                    Ok(created) => break created,
                    Err(StorageError::Unavailable(_)) if failures == 0 => failures += 1,
                    Err(e) => panic!("{servers:?}: a second failure: {e:?}"),
                }
            };
            for _ in 0..20 {
                assert_eq!(storage.get(&key).await.expect("get after the move"), Some(created.clone()));
            }
            let mut watch = storage.watch("/members/ns/", created.mod_revision).await.expect("watch");
            storage.delete(&key, None).await.expect("delete");
            for expected in [EventType::Put, EventType::Delete] {
                let event =
                    tokio::time::timeout(Duration::from_secs(10), watch.next()).await.expect("an event in time");
                let event = event.expect("the watch goes on").expect("an event");
                assert_eq!((event.event_type, event.kv.key.as_str()), (expected, key.as_str()));
            }
        }
    }
}
