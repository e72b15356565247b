//! Encryption at rest (`--encryption-provider-config`), as an operator uses it: turn it on over objects stored in
//! clear, rewrite them all with kubectl, rotate to a new key, and drop the old one; what etcd holds is read with
//! etcd-client at each step. Then wire parity: values kube-apiserver v1.20.2 encrypted open here, and values this
//! server's providers seal are read by kube-apiserver (its Secrets, same configuration format and key).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::path::{Path, PathBuf};

use backup_apiserver::options::Options;
use backup_e2e::cluster::{ClusterOptions, KubeCluster};
use backup_e2e::{TestServer, backup, backup_path, backups, str_at};
use backup_storage::encryption::{
    AesKey, Cipher, GcmKey, NamedKey, Provider, ProviderKind, SECRETBOX_KEY, Transformer,
};
use backup_storage::testing::EtcdServer;
use base64::Engine;
use clap::Parser;
use serde_json::Value;

const KEY1: [u8; 32] = [0x11; 32];
const KEY2: [u8; 32] = [0x22; 32];
/// In every object's spec (`backup()`): must never be in etcd once encryption is on.
const PLAINTEXT: &[u8] = b"http://prometheus:9090";

fn b64(key: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// An EncryptionConfiguration for this group with `providers` (YAML flow items).
fn config(dir: &Path, name: &str, providers: &[String]) -> PathBuf {
    let path = dir.join(name);
    let text = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n\
         - resources: ['*.backup.extend-k8s.io']\n  providers:\n{}",
        providers.iter().map(|p| format!("  - {p}\n")).collect::<String>()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn aesgcm(keys: &[(&str, &[u8])]) -> String {
    let keys: Vec<String> = keys.iter().map(|(n, k)| format!("{{name: {n}, secret: '{}'}}", b64(k))).collect();
    format!("aesgcm: {{keys: [{}]}}", keys.join(", "))
}

const IDENTITY: &str = "identity: {}";

fn key(name: &str) -> String {
    format!("/registry/backup.extend-k8s.io/timeseriesdbbackups/default/{name}")
}

/// The raw values of `names` in etcd.
async fn raw(etcd: &mut etcd_client::Client, names: &[&str]) -> Vec<Vec<u8>> {
    let mut values = Vec::new();
    for name in names {
        let resp = etcd.get(key(name), None).await.unwrap();
        values.push(resp.kvs().first().unwrap_or_else(|| panic!("nothing at {}", key(name))).value().to_vec());
    }
    values
}

fn assert_sealed(values: &[Vec<u8>], prefix: &str) {
    for v in values {
        assert!(v.starts_with(prefix.as_bytes()), "not {prefix}: {:?}", String::from_utf8_lossy(&v[..40.min(v.len())]));
        assert!(!v.windows(PLAINTEXT.len()).any(|w| w == PLAINTEXT), "plaintext in etcd");
    }
}

async fn server(endpoint: &str, config: &Path) -> TestServer {
    TestServer::on_shared_etcd(endpoint, &["--encryption-provider-config", config.to_str().unwrap()]).await
}

/// `kubectl get -A -o json | kubectl replace -f -`: the upstream procedure that rewrites every object.
async fn rewrite_all(srv: &TestServer) {
    let kubectl = srv.kubectl();
    let all = kubectl.ok(&["get", "timeseriesdbbackups", "-A", "-o", "json"]).await;
    kubectl.ok_stdin(&["replace", "-f", "-"], &all).await;
}

fn rv(obj: &Value) -> String {
    str_at(obj, "/metadata/resourceVersion").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_turned_on_rotated_and_its_old_key_dropped() {
    let etcd_server = EtcdServer::start().await;
    let endpoint = etcd_server.endpoint();
    let mut etcd = etcd_client::Client::connect([endpoint.clone()], None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    // In clear, before any configuration.
    let plain = TestServer::on_shared_etcd(&endpoint, &[]).await;
    plain.http().create(&backups("default"), &backup("before")).await;
    plain.shutdown().await;
    assert!(raw(&mut etcd, &["before"]).await[0].starts_with(b"{"), "stored as JSON");

    // key1 writes; identity still reads what was stored in clear.
    let on = config(dir.path(), "on.yaml", &[aesgcm(&[("key1", &KEY1)]), IDENTITY.into()]);
    let srv = server(&endpoint, &on).await;
    let h = srv.http();
    let before = h.get(&backup_path("default", "before")).await.expect_status(200).json();
    let after = h.create(&backups("default"), &backup("after")).await;
    assert_sealed(&raw(&mut etcd, &["after"]).await, "k8s:enc:aesgcm:v1:key1:");
    assert!(raw(&mut etcd, &["before"]).await[0].starts_with(b"{"), "untouched until written");
    // A PUT that changes nothing writes a stale value again (a new resourceVersion), and only a stale one.
    let put = h.put(&backup_path("default", "after"), &after).await.expect_status(200).json();
    assert_eq!(rv(&put), rv(&after), "already written by key1: no write");
    let dry = h.put(&format!("{}?dryRun=All", backup_path("default", "before")), &before).await.expect_status(200);
    assert_eq!(rv(&dry.json()), rv(&before), "a dry run writes nothing");
    assert!(raw(&mut etcd, &["before"]).await[0].starts_with(b"{"), "still in clear after a dry run");
    let rewritten = h.put(&backup_path("default", "before"), &before).await.expect_status(200).json();
    assert_ne!(rv(&rewritten), rv(&before), "stored in clear: written again");
    assert_sealed(&raw(&mut etcd, &["before"]).await, "k8s:enc:aesgcm:v1:key1:");
    let metrics = h.get("/metrics").await.expect_status(200).text();
    for line in [
        r#"apiserver_storage_transformation_operations_total{transformation_type="to_storage",transformer_prefix="k8s:enc:aesgcm:v1:",status="OK"}"#,
        r#"apiserver_storage_transformation_operations_total{transformation_type="from_storage",transformer_prefix="identity",status="OK"}"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    srv.shutdown().await;

    // Rotation: key2 first, key1 kept to read; kubectl rewrites everything; then key1 goes.
    let rotated = config(dir.path(), "rotated.yaml", &[aesgcm(&[("key2", &KEY2), ("key1", &KEY1)])]);
    let srv = server(&endpoint, &rotated).await;
    assert_eq!(
        str_at(&srv.http().get(&backup_path("default", "before")).await.expect_status(200).json(), "/spec/schedule"),
        "0 2 * * *"
    );
    rewrite_all(&srv).await;
    assert_sealed(&raw(&mut etcd, &["before", "after"]).await, "k8s:enc:aesgcm:v1:key2:");
    srv.shutdown().await;

    let only_key2 = config(dir.path(), "key2.yaml", &[aesgcm(&[("key2", &KEY2)])]);
    let srv = server(&endpoint, &only_key2).await;
    let list = srv.kubectl().ok(&["get", "timeseriesdbbackups", "-o", "name"]).await;
    assert_eq!(
        list.lines().collect::<Vec<_>>(),
        ["timeseriesdbbackup.backup.extend-k8s.io/after", "timeseriesdbbackup.backup.extend-k8s.io/before"]
    );
    srv.shutdown().await;

    // With only the dropped key, the objects do not read, and the answer says why.
    let only_key1 = config(dir.path(), "key1.yaml", &[aesgcm(&[("key1", &KEY1)])]);
    let srv =
        TestServer::on_shared_etcd(&endpoint, &["--encryption-provider-config", only_key1.to_str().unwrap()]).await;
    let answer = srv.http().get(&backup_path("default", "before")).await.expect_status(500).json();
    let message = str_at(&answer, "/message");
    assert!(message.contains("no matching key") && message.contains("key2"), "{answer}");
    assert!(message.contains("/registry/backup.extend-k8s.io/timeseriesdbbackups/default/before"), "{answer}");
    assert!(message.contains("ignoreStoreReadErrorWithClusterBreakingPotential"), "{answer}");
    srv.shutdown().await;
    assert_sealed(&raw(&mut etcd, &["before", "after"]).await, "k8s:enc:aesgcm:v1:key2:");

    // Or the object goes, as upstream removes an object it cannot read: an unsafe delete, without reading it.
    let srv =
        TestServer::on_shared_etcd(&endpoint, &["--encryption-provider-config", only_key1.to_str().unwrap()]).await;
    let unsafe_delete = serde_json::json!({"ignoreStoreReadErrorWithClusterBreakingPotential": true});
    let path = backup_path("default", "before");
    let status = srv.http().request(http::Method::DELETE, &path).json(&unsafe_delete).send().await.expect_status(200);
    let status = status.json();
    assert_eq!((str_at(&status, "/status"), str_at(&status, "/details/name")), ("Success", "before"), "{status}");
    assert!(etcd.get(key("before"), None).await.unwrap().kvs().is_empty(), "gone from etcd");
    assert_sealed(&raw(&mut etcd, &["after"]).await, "k8s:enc:aesgcm:v1:key2:");
    srv.shutdown().await;
}

#[tokio::test]
async fn a_configuration_that_cannot_apply_stops_the_server_with_upstreams_words() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            config(dir.path(), "short.yaml", &["aescbc: {keys: [{name: k, secret: c2hvcnQ=}]}".into()]),
            "secret is not of the expected length, got 5, expected one of [16 24 32]",
        ),
        (
            config(dir.path(), "kms.yaml", &["kms: {name: vault, endpoint: 'unix:///kms.sock'}".into()]),
            "the kms provider needs a KMS plugin",
        ),
        (config(dir.path(), "empty.yaml", &[]), "at least one provider is required"),
    ];
    for (path, expected) in cases {
        let args = [
            "backup-apiserver",
            "--standalone",
            "--in-memory",
            "--secure-port",
            "0",
            "--encryption-provider-config",
            path.to_str().unwrap(),
        ];
        let error = match backup_apiserver::start(Options::parse_from(args)).await {
            Ok(_) => panic!("started with {}", path.display()),
            Err(e) => format!("{e:#}"),
        };
        assert!(error.contains(expected) && error.contains(path.to_str().unwrap()), "{error}");
    }
}

/// The providers kube-apiserver is configured with for Secrets below, as this server builds them.
fn providers(kind: ProviderKind) -> Transformer {
    let cipher = match kind {
        ProviderKind::AesGcm => Cipher::AesGcm(GcmKey::new(&KEY1).unwrap()),
        ProviderKind::AesCbc => Cipher::AesCbc(AesKey::new(&KEY2[..16]).unwrap()),
        _ => Cipher::Secretbox(<[u8; SECRETBOX_KEY]>::try_from(&[0x33; 32][..]).unwrap()),
    };
    let name = match kind {
        ProviderKind::AesGcm => "g",
        ProviderKind::AesCbc => "c",
        _ => "s",
    };
    Transformer::new(vec![Provider::new(kind, vec![NamedKey { name: name.into(), cipher }])]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_read_and_written_as_kube_apiserver_reads_and_writes_them() {
    let config: &'static str = Box::leak(
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n\
             - resources: [secrets]\n  providers:\n  - aesgcm: {{keys: [{{name: g, secret: '{}'}}]}}\n\
             \x20 - aescbc: {{keys: [{{name: c, secret: '{}'}}]}}\n  - secretbox: {{keys: [{{name: s, secret: '{}'}}]}}\n",
            b64(&KEY1),
            b64(&KEY2[..16]),
            b64(&[0x33; 32])
        )
        .into_boxed_str(),
    );
    let cluster =
        KubeCluster::start(ClusterOptions { encryption_config: Some(config), ..ClusterOptions::default() }).await;
    let kubectl = cluster.kubectl();
    kubectl.ok(&["create", "secret", "generic", "s1", "--from-literal=password=hunter2"]).await;
    let mut etcd = etcd_client::Client::connect([cluster.etcd_url()], None).await.unwrap();
    let etcd_key = "/registry/secrets/default/s1";
    let stored = etcd.get(etcd_key, None).await.unwrap().kvs()[0].value().to_vec();
    assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:g:"), "{:?}", String::from_utf8_lossy(&stored[..30]));

    // What kube-apiserver wrote opens here: a Secret in protobuf (`k8s\0`), with its data.
    let read = providers(ProviderKind::AesGcm).from_storage(&stored, etcd_key.as_bytes()).unwrap();
    assert!(read.value.starts_with(b"k8s\0") && read.value.windows(7).any(|w| w == b"hunter2"));

    // What this server's providers seal, kube-apiserver reads: the same Secret with one byte of its data
    // changed (so the answer cannot come from anything but the value put here), under each provider.
    let secret = |value: &[u8], digit: u8| {
        let pos = value.windows(7).position(|w| w == b"hunter2").unwrap();
        let mut changed = value.to_vec();
        changed[pos + 6] = digit;
        changed
    };
    for (kind, digit) in [(ProviderKind::AesCbc, b'3'), (ProviderKind::Secretbox, b'4'), (ProviderKind::AesGcm, b'5')] {
        let password = format!("hunter{}", digit as char);
        let sealed = providers(kind).to_storage(&secret(&read.value, digit), etcd_key.as_bytes()).unwrap();
        assert!(sealed.starts_with(kind.prefix().as_bytes()));
        etcd.put(etcd_key, sealed, None).await.unwrap();
        let data = kubectl.ok(&["get", "secret", "s1", "-o", "jsonpath={.data.password}"]).await;
        assert_eq!(data.trim(), b64(password.as_bytes()), "{kind:?}");
    }
}

/// Poll (bounded) until `check` holds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "not within 30 s: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_automatic_reload_keys_rotate_without_a_restart() {
    let etcd_server = EtcdServer::start().await;
    let endpoint = etcd_server.endpoint();
    let mut etcd = etcd_client::Client::connect([endpoint.clone()], None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "encryption.yaml", &[aesgcm(&[("key1", &KEY1)])]);
    let flags =
        ["--encryption-provider-config", path.to_str().unwrap(), "--encryption-provider-config-automatic-reload"];
    let srv = TestServer::on_shared_etcd(&endpoint, &flags).await;
    let h = srv.http();
    h.create(&backups("default"), &backup("a")).await;
    assert_sealed(&raw(&mut etcd, &["a"]).await, "k8s:enc:aesgcm:v1:key1:");

    // The file changes as a mounted Secret's does: replaced whole.
    let next = config(dir.path(), "next.yaml", &[aesgcm(&[("key2", &KEY2), ("key1", &KEY1)])]);
    std::fs::rename(&next, &path).unwrap();
    let mut n = 0;
    eventually("objects created after the change are written by key2", async || {
        n += 1;
        let name = format!("b{n}");
        h.create(&backups("default"), &backup(&name)).await;
        raw(&mut etcd, &[&name]).await[0].starts_with(b"k8s:enc:aesgcm:v1:key2:")
    })
    .await;
    assert_eq!(
        srv.metric("apiserver_encryption_config_controller_automatic_reloads_total{status=\"success\"}").await,
        1.0
    );
    rewrite_all(&srv).await;
    let names: Vec<String> = std::iter::once("a".to_string()).chain((1..=n).map(|i| format!("b{i}"))).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_sealed(&raw(&mut etcd, &names).await, "k8s:enc:aesgcm:v1:key2:");

    // A file that does not load leaves the configuration in force.
    std::fs::write(&path, "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources: []\n")
        .unwrap();
    eventually("the failed reload is counted", async || {
        srv.metric("apiserver_encryption_config_controller_automatic_reloads_total{status=\"failure\"}").await == 1.0
    })
    .await;
    h.create(&backups("default"), &backup("c")).await;
    assert_sealed(&raw(&mut etcd, &["c"]).await, "k8s:enc:aesgcm:v1:key2:");
    assert_eq!(str_at(&h.get(&backup_path("default", "a")).await.expect_status(200).json(), "/metadata/name"), "a");
    srv.shutdown().await;

    let args = ["backup-apiserver", "--standalone", "--encryption-provider-config-automatic-reload"];
    let e = Options::try_parse_from(args).unwrap_err().to_string();
    assert!(e.contains("--encryption-provider-config <"), "{e}");
}
