//! The real-cluster harness itself (tests/src/cluster.rs): a cluster of its own, with kube-controller-manager,
//! comes up and answers, and its processes and files are gone once it is dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::path::Path;
use std::time::{Duration, Instant};

use backup_e2e::cluster::{ClusterOptions, KUBE_VERSION, KubeCluster};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_serves_and_is_gone_when_dropped() {
    let started = Instant::now();
    let cluster = KubeCluster::start(ClusterOptions { controller_manager: true, ..ClusterOptions::default() }).await;
    eprintln!("etcd + kube-apiserver + kube-controller-manager ready in {:?}", started.elapsed());

    let k = cluster.kubectl();
    let version: Value = serde_json::from_str(&k.ok(&["version", "-o", "json"]).await).unwrap();
    assert_eq!(version["serverVersion"]["gitVersion"], KUBE_VERSION, "{version}");
    // The requestheader settings extension servers read, published by kube-apiserver.
    let out =
        k.ok(&["get", "configmap", "-n", "kube-system", "extension-apiserver-authentication", "-o", "json"]).await;
    let configmap: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(configmap["data"]["requestheader-allowed-names"], r#"["front-proxy-client"]"#);
    assert!(configmap["data"]["requestheader-client-ca-file"].as_str().unwrap().contains(&cluster.front_proxy_ca_pem));
    // kube-controller-manager works: it gives every namespace its default ServiceAccount.
    cluster.create_namespace("harness").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !k.run(&["get", "serviceaccount", "default", "-n", "harness"]).await.success {
        assert!(
            Instant::now() < deadline,
            "no default ServiceAccount after 30 s:\n{}",
            cluster.controller_manager_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A user of a client certificate is who the certificate says.
    let out = cluster.kubectl_as("erin", &["ops"]).run(&["get", "namespaces"]).await;
    assert!(out.stderr.contains("User \"erin\" cannot list resource \"namespaces\""), "{}", out.stderr);

    let pids = cluster.pids();
    assert_eq!(pids.len(), 3);
    let dir = cluster.dir().to_path_buf();
    assert!(dir.join("kube-apiserver.log").is_file());
    drop(cluster);
    for pid in pids {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "process {pid} outlived its cluster");
    }
    assert!(!dir.exists(), "{} outlived its cluster", dir.display());
}
