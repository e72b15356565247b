//! `kubectl tsdb` as kubectl runs it, the binary against the API server: `--kubeconfig`, `--context`, `-n`,
//! `status -o json|yaml|wide`, restores with unique generated names (and from a location, for a backup object that
//! is gone), and errors printed as kubectl prints them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::process::Output;

use backup_apis::database::DatabaseType::VictoriaMetrics;
use backup_controller::testing::stack::{Stack, backup_spec};

/// Runs `kubectl-tsdb` with the stack's kubeconfig and `args`.
async fn tsdb(stack: &Stack, args: &[&str]) -> Output {
    let kubeconfig = stack.tmp.path().join("kubeconfig");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-tsdb"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(args)
        .output()
        .await
        .expect("running kubectl-tsdb")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_conventions() {
    let stack = Stack::start().await;
    stack.create_backup("nightly", backup_spec(VictoriaMetrics, "http://127.0.0.1:9", None)).await;

    let table = stdout(&tsdb(&stack, &["status"]).await);
    assert!(table.starts_with("NAME "), "{table}");
    assert!(table.lines().nth(1).unwrap().starts_with("nightly "), "{table}");
    let wide = stdout(&tsdb(&stack, &["status", "-o", "wide"]).await);
    assert!(wide.lines().next().unwrap().contains("URL") && wide.contains("http://127.0.0.1:9"), "{wide}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&tsdb(&stack, &["status", "-o", "json"]).await)).unwrap();
    assert_eq!(json["kind"], "List");
    assert_eq!(json["items"][0]["metadata"]["name"], "nightly");
    assert_eq!(json["items"][0]["kind"], "TimeseriesDBBackup");
    let yaml = stdout(&tsdb(&stack, &["status", "-o", "yaml"]).await);
    assert!(yaml.contains("kind: List") && yaml.contains("name: nightly"), "{yaml}");

    // The kubeconfig's context by name; another namespace is empty.
    let kubeconfig = kube::config::Kubeconfig::read_from(stack.tmp.path().join("kubeconfig")).unwrap();
    let context = kubeconfig.current_context.clone().expect("a current context");
    let table = stdout(&tsdb(&stack, &["--context", &context, "status"]).await);
    assert!(table.contains("nightly"), "{table}");
    let empty = stdout(&tsdb(&stack, &["-n", "elsewhere", "status"]).await);
    assert_eq!(empty.lines().count(), 1, "{empty}");

    // Two restores in the same second get different names.
    let mut names = Vec::new();
    for _ in 0..2 {
        let out = stdout(&tsdb(&stack, &["restore", "nightly", "--to", "http://127.0.0.1:9"]).await);
        let name = out.trim().strip_prefix("timeseriesdbrestore.backup.extend-k8s.io/").unwrap().to_string();
        let name = name.strip_suffix(" created").unwrap().to_string();
        assert!(name.starts_with("nightly-restore-"), "{name}");
        names.push(name);
    }
    assert_ne!(names[0], names[1]);

    // From a location, for a TimeseriesDBBackup that is gone: nothing is read from it, so --type is needed.
    let args = ["restore", "gone", "--to", "http://127.0.0.1:9", "--location", "offsite", "--path", "team/gone"];
    let out = tsdb(&stack, &args).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--type is needed with --location offsite"));
    let out = stdout(&tsdb(&stack, &[&args[..], &["--type", "vm", "--id", "20261201T000000000Z"]].concat()).await);
    let name = out.trim().strip_prefix("timeseriesdbrestore.backup.extend-k8s.io/").unwrap();
    let created = stack.restores().get(name.strip_suffix(" created").unwrap()).await.unwrap();
    let backup_ref = created.spec.backup_ref;
    assert_eq!(
        (
            backup_ref.name.as_str(),
            backup_ref.location.as_deref(),
            backup_ref.path.as_deref(),
            backup_ref.id.as_deref()
        ),
        ("gone", Some("offsite"), Some("team/gone"), Some("20261201T000000000Z"))
    );
    assert_eq!(created.spec.target.r#type, VictoriaMetrics);
    let out = tsdb(&stack, &["restore", "nightly", "--to", "http://127.0.0.1:9", "--path", "p"]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("--location"), "--path only with --location");

    // Errors as kubectl prints them: no Rust debug output, exit status 1.
    let out = tsdb(&stack, &["backup", "now", "missing"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("Error from server (NotFound): ") && err.contains("\"missing\" not found"), "{err}");
    assert!(!err.contains("Api(") && !err.contains("Status {"), "{err}");
    let out = tsdb(&stack, &["--context", "nope", "status"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: ") && err.contains("nope"), "{err}");
    let out = tsdb(&stack, &["status", "-o", "xml"]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("allowed formats are: json, wide, yaml"));
}
