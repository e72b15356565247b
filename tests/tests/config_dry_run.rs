//! `config/` applied for real: every overlay, rendered with `kubectl kustomize`, passes `kubectl apply
//! --dry-run=server` against a real kube-apiserver v1.20.2, so the server validates the RBAC, APIService,
//! StatefulSet, Deployments, Services and NetworkPolicies (kubectl also checks every field against the server's
//! OpenAPI), not only the renderer. apiserver/tests/deploy_config.rs checks how the pieces are wired to each other.
//!
//! The certificates the overlays read from `generated/` are made here (what hack/gen-certs.sh writes), in a copy
//! of `config/`, so the working tree is left alone.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::path::{Path, PathBuf};

use backup_e2e::aggregated::{APISERVICE, NAMESPACE, config_dir, list};
use backup_e2e::cluster::KubeCluster;
use backup_e2e::kubectl::Kubectl;
use backup_e2e::pki::{Ca, base64};
use serde_json::Value;

/// Every overlay a user may apply (config/default is overlays/etcd-tls).
const OVERLAYS: [&str; 5] =
    ["default", "overlays/etcd-tls", "overlays/cert-manager", "overlays/single", "overlays/plaintext-etcd"];

/// Documents the test cluster cannot take, with why. They are left out of the dry run rather than changed: the
/// manifests target Kubernetes >= 1.25, and v1.20 is the newest kube-apiserver buildable here.
fn not_servable_by_v1_20(doc: &Value) -> Option<&'static str> {
    match doc["apiVersion"].as_str() {
        // PodDisruptionBudget is policy/v1 from Kubernetes 1.21 (1.20 serves only policy/v1beta1).
        Some("policy/v1") => Some("policy/v1 is served from Kubernetes 1.21"),
        // cert-manager's CRDs are not installed in the test cluster.
        Some("cert-manager.io/v1") => Some("cert-manager is not installed"),
        _ => None,
    }
}

/// A copy of config/ without any `generated/`, with freshly generated certificates where hack/gen-certs.sh writes
/// them.
fn config_with_certificates(dir: &Path) -> PathBuf {
    let config = dir.join("config");
    copy_dir(&config_dir(), &config);
    let write = |path: &str, text: &str| {
        let path = config.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    let serving_ca = Ca::new("backup-apiserver-ca");
    let svc = format!("backup-apiserver.{NAMESPACE}");
    let serving = serving_ca.server(&[&format!("{svc}.svc"), &format!("{svc}.svc.cluster.local"), &svc]);
    let dir = "components/generated-certs/generated";
    write(&format!("{dir}/ca.crt"), &serving_ca.cert_pem);
    write(&format!("{dir}/tls.crt"), &serving.cert_pem);
    write(&format!("{dir}/tls.key"), &serving.key_pem);
    let patch = format!(
        "apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata:\n  name: {APISERVICE}\nspec:\n  caBundle: {}\n",
        base64(&serving_ca.cert_pem)
    );
    write(&format!("{dir}/apiservice-cabundle.yaml"), &patch);

    let etcd_ca = Ca::new("backup-etcd-ca");
    let members: Vec<String> = (0..3).map(|i| format!("backup-etcd-{i}.backup-etcd.{NAMESPACE}.svc")).collect();
    let names: Vec<&str> = members.iter().map(String::as_str).collect();
    let dir = "overlays/etcd-tls/generated";
    write(&format!("{dir}/etcd-ca.crt"), &etcd_ca.cert_pem);
    for (file, cert) in [
        ("etcd-server", etcd_ca.server(&names)),
        ("etcd-peer", etcd_ca.server(&names)),
        ("etcd-client", etcd_ca.client("backup-apiserver", &[])),
    ] {
        write(&format!("{dir}/{file}.crt"), &cert.cert_pem);
        write(&format!("{dir}/{file}.key"), &cert.key_pem);
    }
    config
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "generated" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `kubectl kustomize dir`, parsed.
async fn render(k: &Kubectl, dir: &Path) -> Vec<Value> {
    let yaml = k.ok(&["kustomize", &dir.display().to_string()]).await;
    serde_saphyr::from_multiple::<Value>(&yaml).unwrap().into_iter().filter(|d| !d.is_null()).collect()
}

/// `kind/name` as kubectl prints it: the kind in lower case, with its group.
fn printed_name(doc: &Value) -> String {
    let kind = doc["kind"].as_str().unwrap().to_lowercase();
    let group = doc["apiVersion"].as_str().unwrap().split_once('/').map(|(g, _)| g).unwrap_or("");
    let resource = if group.is_empty() { kind } else { format!("{kind}.{group}") };
    format!("{resource}/{}", doc["metadata"]["name"].as_str().unwrap())
}

/// The shared cluster with the namespace the overlays deploy to (a server dry run of a namespaced object needs its
/// namespace to exist, and the Namespace itself is only dry-run).
async fn cluster() -> &'static KubeCluster {
    static NAMESPACE_CREATED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let cluster = KubeCluster::shared().await;
    NAMESPACE_CREATED
        .get_or_init(|| async {
            cluster.kubectl().ok(&["create", "namespace", NAMESPACE]).await;
        })
        .await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_overlay_passes_a_server_side_dry_run() {
    let cluster = cluster().await;
    let k = cluster.kubectl();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_certificates(dir.path());
    for overlay in OVERLAYS {
        let docs = render(&k, &config.join(overlay)).await;
        let (applied, left_out): (Vec<Value>, Vec<Value>) =
            docs.into_iter().partition(|d| not_servable_by_v1_20(d).is_none());
        let out = k.run_with(&["apply", "--dry-run=server", "-f", "-"], &list(applied.clone()), &[]).await;
        assert!(out.success, "{overlay}: kube-apiserver rejected the dry run:\n{}\n{}", out.stderr, out.stdout);
        for doc in &applied {
            let name = printed_name(doc);
            assert!(
                out.stdout.lines().any(|l| l.starts_with(&format!("{name} ")) && l.ends_with("(server dry run)")),
                "{overlay}: {name} not in the dry run's output:\n{}",
                out.stdout
            );
        }
        // What was left out is only what 1.20 cannot serve: PodDisruptionBudgets and cert-manager's kinds.
        for doc in &left_out {
            assert!(["PodDisruptionBudget", "Certificate", "Issuer"].contains(&doc["kind"].as_str().unwrap()), "{doc}");
        }
        let kinds: Vec<&str> = applied.iter().filter_map(|d| d["kind"].as_str()).collect();
        for kind in
            ["APIService", "Deployment", "Service", "ClusterRole", "ClusterRoleBinding", "RoleBinding", "NetworkPolicy"]
        {
            assert!(kinds.contains(&kind), "{overlay}: no {kind} was validated");
        }
        let etcd = kinds.contains(&"StatefulSet");
        assert_eq!(etcd, overlay != "overlays/single", "{overlay}: the bundled etcd");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_rejects_what_the_server_would_reject() {
    // A control: the same render with one defect each, which only the server (or its OpenAPI) knows about.
    let cluster = cluster().await;
    let k = cluster.kubectl();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_certificates(dir.path());
    let docs: Vec<Value> = render(&k, &config.join("default")).await;
    let find = |kind: &str| docs.iter().position(|d| d["kind"] == kind).unwrap();

    // A Deployment whose selector does not select its pods.
    let mut deployment = docs[find("Deployment")].clone();
    deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "something-else".into();
    let out = k.run_with(&["apply", "--dry-run=server", "-f", "-"], &deployment.to_string(), &[]).await;
    assert!(!out.success, "{}", out.stdout);
    assert!(out.stderr.contains("`selector` does not match template `labels`"), "{}", out.stderr);

    // A NetworkPolicy port the server cannot parse.
    let mut policy = docs[find("NetworkPolicy")].clone();
    policy["spec"]["ingress"][0]["ports"][0]["port"] = "not a port name!".into();
    let out = k.run_with(&["apply", "--dry-run=server", "-f", "-"], &policy.to_string(), &[]).await;
    assert!(!out.success, "{}", out.stdout);
    assert!(out.stderr.contains("Invalid value"), "{}", out.stderr);

    // A misspelled field (caught by kubectl's validation against the server's OpenAPI).
    let mut apiservice = docs[find("APIService")].clone();
    apiservice["spec"]["groupPriorityMinimun"] = 2000.into();
    let out = k.run_with(&["apply", "--dry-run=server", "-f", "-"], &apiservice.to_string(), &[]).await;
    assert!(!out.success, "{}", out.stdout);
    assert!(out.stderr.contains("groupPriorityMinimun"), "{}", out.stderr);
}

/// The arguments config/ gives the server, in every overlay, are flags it takes and accepts together (kube-apiserver
/// checks the Deployment, not what the binary will make of its arguments).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_arguments_are_its_flags() {
    use clap::Parser;
    let cluster = cluster().await;
    let k = cluster.kubectl();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_certificates(dir.path());
    for overlay in OVERLAYS {
        let docs = render(&k, &config.join(overlay)).await;
        let containers: Vec<&Value> = docs
            .iter()
            .filter(|d| d["kind"] == "Deployment")
            .flat_map(|d| d["spec"]["template"]["spec"]["containers"].as_array().unwrap())
            .filter(|c| c["command"][0] == "/usr/local/bin/backup-apiserver")
            .collect();
        assert_eq!(containers.len(), 1, "{overlay}: one apiserver container");
        let args: Vec<&str> = containers[0]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        let options = backup_apiserver::options::Options::try_parse_from([&["backup-apiserver"], &args[..]].concat())
            .unwrap_or_else(|e| panic!("{overlay}: {args:?}: {e}"));
        options.validate().unwrap_or_else(|e| panic!("{overlay}: {args:?}: {e}"));
        let storage = args.iter().any(|a| a.starts_with("--etcd-servers=") || a.starts_with("--data-dir="));
        assert!(storage, "{overlay}: a store: {args:?}");
    }
}
