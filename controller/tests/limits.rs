//! Bounded work: backups wait for a slot (overall and per database) and never hold more connections to a database
//! than its slots; a failing backup's backoff survives a controller restart; an answer piece over the piece limit
//! fails the backup, naming the flag.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::collections::HashMap;
use std::time::{Duration, Instant};

use backup_apis::database::DatabaseType::VictoriaMetrics;
use backup_apis::status::Phase;
use backup_controller::controller::Backoff;
use backup_controller::controller::jobs::Limits;
use backup_controller::testing::dataset::float_series;
use backup_controller::testing::fake::{Behaviour, FakeDatabase};
use backup_controller::testing::proxy::Proxy;
use backup_controller::testing::stack::{Stack, backup_spec};
use backup_controller::testing::victoria::Victoria;
use backup_controller::testing::wait_for;
use kube::api::ListParams;

const TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_wait_for_slots_overall_and_per_database() {
    let mut stack = Stack::start().await;
    stack.settings.limits = Limits { backups: 3, restores: 1, per_database: 2 };
    let (a, b) = (Victoria::start().await, Victoria::start().await);
    let data = float_series(11, 5, 200, false);
    a.load(&data).await;
    b.load(&data).await;
    // Slow answers (~35 kB each, in about half a second): backups overlap.
    let (proxy_a, proxy_b) = (Proxy::start(a.port, 60_000).await, Proxy::start(b.port, 60_000).await);
    stack.start_controller();
    for i in 0..8 {
        stack.create_backup(&format!("a-{i}"), backup_spec(VictoriaMetrics, &proxy_a.url, None)).await;
        stack.create_backup(&format!("b-{i}"), backup_spec(VictoriaMetrics, &proxy_b.url, None)).await;
    }
    let api = stack.backups();
    let (mut most_running, mut most_per_database, mut queued_seen) = (0, 0, false);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "16 backups within {TIMEOUT:?}");
        let list = api.list(&ListParams::default()).await.unwrap();
        let mut running: HashMap<String, usize> = HashMap::new();
        let mut succeeded = 0;
        for b in &list.items {
            let status = b.status.clone().unwrap_or_default();
            match status.phase {
                Some(Phase::Running) => *running.entry(b.spec.database.endpoint.url.clone()).or_default() += 1,
                Some(Phase::Succeeded) => succeeded += 1,
                _ => {}
            }
            queued_seen |=
                status.message.as_deref().is_some_and(|m| m.starts_with("queued: waiting for a backup slot"));
        }
        most_running = most_running.max(running.values().sum());
        most_per_database = most_per_database.max(running.values().copied().max().unwrap_or(0));
        if succeeded == 16 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(most_running <= 3, "at most 3 backups at once, saw {most_running}");
    assert!(most_per_database <= 2, "at most 2 per database, saw {most_per_database}");
    assert!(most_running >= 2, "backups did run side by side: {most_running}");
    assert!(queued_seen, "waiting backups say so");
    for proxy in [&proxy_a, &proxy_b] {
        assert!(proxy.most_connections() <= 2, "connections to one database at once: {}", proxy.most_connections());
        assert!(proxy.total_connections() >= 1);
    }
    assert_eq!(stack.files().len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_is_kept_across_a_restart() {
    let mut stack = Stack::start().await;
    stack.settings.backoff = Backoff::new(Duration::from_secs(4), Duration::from_secs(60));
    let db = FakeDatabase::start(Behaviour::Answer { status: 500, content_type: "text/plain", body: b"boom".to_vec() })
        .await;
    stack.start_controller();
    stack.create_backup("failing", backup_spec(VictoriaMetrics, &db.url, None)).await;
    let failed = stack.wait_backup("failing", Phase::Failed, TIMEOUT).await;
    let status = failed.status.unwrap();
    assert_eq!(status.consecutive_failures, Some(1));
    let retry = status.next_retry_time.expect("nextRetryTime").0;
    let wait = retry.duration_since(jiff::Timestamp::now()).as_secs_f64();
    assert!((2.0..=4.5).contains(&wait), "the retry is about 4 s away: {wait}");
    assert!(status.message.unwrap().contains("500"));
    assert_eq!(db.requests(), 1);

    // A restart does not retry at once: it waits for nextRetryTime.
    stack.stop_controller().await;
    stack.start_controller();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(db.requests(), 1, "no attempt before nextRetryTime");
    wait_for("the retry after the backoff", TIMEOUT, || async {
        if db.requests() >= 2 { Ok(()) } else { Err(format!("{} requests", db.requests())) }
    })
    .await;
    assert!(jiff::Timestamp::now() >= retry, "the retry came after nextRetryTime");
    let obj = wait_for("the second failure in status", TIMEOUT, || async {
        let obj = stack.backups().get("failing").await.map_err(|e| e.to_string())?;
        let failures = obj.status.as_ref().and_then(|s| s.consecutive_failures);
        if failures == Some(2) { Ok(obj) } else { Err(format!("{failures:?}")) }
    })
    .await;
    let retry = obj.status.unwrap().next_retry_time.unwrap().0;
    let wait = retry.duration_since(jiff::Timestamp::now()).as_secs_f64();
    assert!((5.0..=8.5).contains(&wait), "the delay doubled: {wait}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_over_the_piece_limit_fails_the_backup() {
    let mut stack = Stack::start().await;
    stack.settings.piece_limit = 1 << 20;
    // One "series" of 3 MB without a line end, as a huge or hostile export would send.
    let mut body = br#"{"metric":{"__name__":"m"},"values":["#.to_vec();
    body.resize(3 << 20, b'1');
    let db = FakeDatabase::start(Behaviour::Answer { status: 200, content_type: "application/json", body }).await;
    stack.start_controller();
    stack.create_backup("huge", backup_spec(VictoriaMetrics, &db.url, None)).await;
    let failed = stack.wait_backup("huge", Phase::Failed, TIMEOUT).await;
    let message = failed.status.unwrap().message.unwrap();
    assert!(message.contains("longer than 1048576 bytes (--max-piece-bytes)"), "{message}");
    assert!(stack.files().is_empty(), "{:?}", stack.files());
}
