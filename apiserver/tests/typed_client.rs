//! The typed-client example (`apis/examples/typed_client`) against the standalone server, started in process: kube-rs
//! `Api<TimeseriesDBBackup>` create, list, status patch and a kube-runtime watcher, exactly as the example runs them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

#[path = "../../apis/examples/typed_client/demo.rs"]
mod demo;

use backup_apis::status::Phase;

use backup_apiserver::options::Options;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_client_example_against_the_standalone_server() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("standalone.kubeconfig");
    let server = backup_apiserver::start(Options::ephemeral(&kubeconfig)).await?;

    // The example's own client construction: from the kubeconfig the server wrote.
    let client = demo::client(Some(&kubeconfig)).await?;
    let outcome = demo::run(client.clone(), "default", "typed-client-test").await?;
    assert!(!outcome.uid.is_empty());
    assert_eq!(outcome.keep_last, 3, "spec came back as sent");
    assert_eq!(outcome.listed, 1, "the label selector found the object");
    assert_eq!(outcome.restores, 0);
    assert_eq!(outcome.watched_phase, Some(Phase::Succeeded), "the watcher saw the status patch");
    assert_eq!(outcome.events.first().map(String::as_str), Some("Init"), "{:?}", outcome.events);
    assert!(outcome.events.contains(&"InitDone".to_string()), "{:?}", outcome.events);
    assert_eq!(outcome.events.last().map(String::as_str), Some("Delete typed-client-test"), "{:?}", outcome.events);
    assert!(!demo::LABEL.is_empty());

    // Running it again (same name, in another namespace too) works: nothing is left behind.
    let again = demo::run(client.clone(), "default", "typed-client-test").await?;
    assert_ne!(again.uid, outcome.uid);
    demo::run(client, "other", "typed-client-test").await?;

    server.shutdown().await
}
