//! End to end through a real kube-apiserver v1.20.2's aggregator (tests/src/aggregated.rs): our server registered
//! as a user deploys it, driven with the real kubectl as the admin and as users with and without RBAC, plus what
//! reaches our server directly (service-account tokens, forged front-proxy headers) and what cluster components
//! do with it (the availability check, namespace deletion by kube-controller-manager).
//!
//! One cluster for the whole binary; each test works in its own namespace.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::{Duration, Instant};

use backup_e2e::aggregated::{APISERVICE, AggregatedCluster};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apiservice_is_available() {
    let env = AggregatedCluster::shared().await;
    let out = env.cluster.kubectl().ok(&["get", "apiservice", APISERVICE, "-o", "json"]).await;
    let apiservice: Value = serde_json::from_str(&out).unwrap();
    let conditions = apiservice["status"]["conditions"].as_array().unwrap();
    let available = conditions.iter().find(|c| c["type"] == "Available").unwrap();
    assert_eq!(available["status"], "True", "{available}");
    assert_eq!(available["reason"], "Passed", "{available}");
    assert_eq!(available["message"], "all checks passed", "{available}");
    let _ = (Duration::ZERO, Instant::now());
}
