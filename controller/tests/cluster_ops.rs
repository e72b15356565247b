//! The controller as a cluster component, against a real kube-apiserver v1.20.2 with our server registered behind
//! its aggregator (`backup_e2e::aggregated`), the controller's RBAC from `config/base/controller` and its
//! ServiceAccount's token: two `backup-controller` processes with `--leader-elect`; the leader killed with SIGKILL
//! and the standby taking over the Lease; every schedule tick backed up once across the failover; Events of
//! backups, retention and restores in `kubectl describe` and `kubectl events`; the metrics and probes of the leader
//! and the standby; the Lease released at SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use backup_apis::backup::TimeseriesDBBackup;
use backup_apis::restore::TimeseriesDBRestore;
use backup_apis::status::Phase;
use backup_controller::testing::dataset::float_series;
use backup_controller::testing::victoria::Victoria;
use backup_controller::testing::{free_port, http, wait_for};
use backup_e2e::aggregated::{AggregatedCluster, NAMESPACE, kustomize, list};
use backup_e2e::cluster::kubeconfig_yaml;
use backup_e2e::process::ChildProcess;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;

/// The election's timing in this test (the production defaults are 15 s / 10 s / 2 s).
const LEASE: Duration = Duration::from_secs(4);
const RENEW: Duration = Duration::from_secs(3);
const RETRY: Duration = Duration::from_secs(1);
/// What config/ names the Lease (its Role allows only this name).
const LEASE_NAME: &str = "backup-controller";
const WAIT: Duration = Duration::from_secs(90);

struct Controller {
    process: ChildProcess,
    metrics_url: String,
}

fn start_controller(name: &str, kubeconfig: &Path, backup_dir: &Path, namespace: &str, dir: &Path) -> Controller {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_backup-controller"));
    command
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--backup-dir={}", backup_dir.display()))
        .arg(format!("--namespace={namespace}"))
        .arg(format!("--metrics-bind-address=127.0.0.1:{port}"))
        .arg("--leader-elect")
        .arg(format!("--leader-elect-lease-duration={}s", LEASE.as_secs()))
        .arg(format!("--leader-elect-renew-deadline={}s", RENEW.as_secs()))
        .arg(format!("--leader-elect-retry-period={}s", RETRY.as_secs()))
        .arg(format!("--leader-elect-resource-namespace={NAMESPACE}"))
        .arg("--min-backoff=1")
        .arg("--max-backoff=2")
        .env("RUST_LOG", "info");
    let process = ChildProcess::spawn(name, command, &dir.join(format!("{name}.log")));
    Controller { process, metrics_url: format!("http://127.0.0.1:{port}") }
}

impl Controller {
    async fn get(&self, path: &str) -> Result<String, String> {
        let body = http().get(&format!("{}{path}", self.metrics_url)).await.map_err(|e| format!("{e:#}"))?;
        let bytes = body.bytes(4 << 20).await.map_err(|e| format!("{e:#}"))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Waits until `/metrics` has `line`.
    async fn wait_metric(&self, line: &str) -> String {
        wait_for(&format!("{line} in {}", self.metrics_url), WAIT, || async {
            let text = self.get("/metrics").await?;
            if text.lines().any(|l| l == line || l.starts_with(&format!("{line} "))) { Ok(text) } else { Err(text) }
        })
        .await
    }

    fn log(&self) -> String {
        self.process.log_tail(40)
    }
}

/// The Lease's holder, if any.
async fn holder(leases: &Api<Lease>) -> Option<String> {
    let lease = leases.get_opt(LEASE_NAME).await.ok()??;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_events_metrics_and_probes() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = AggregatedCluster::shared().await;
    let admin = cluster.cluster.kubectl();
    let ns = cluster.cluster.create_namespace("ops").await;
    let dir = tempfile::tempdir().unwrap();

    // The controller's ServiceAccount and RBAC, as config/ deploys them; its token is its identity.
    let rbac: Vec<_> = kustomize(&admin, "base/controller")
        .await
        .into_iter()
        .filter(|d| {
            ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]
                .contains(&d["kind"].as_str().unwrap_or(""))
        })
        .collect();
    assert!(rbac.iter().any(|d| d["kind"] == "Role"), "config/base/controller has the leader-election Role");
    admin.ok_stdin(&["apply", "-f", "-"], &list(rbac)).await;
    let token = cluster.cluster.service_account_token(NAMESPACE, "backup-controller").await;
    let kubeconfig = dir.path().join("controller.kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_yaml(&cluster.cluster.url, &cluster.cluster.ca_pem, &[("token", token)]))
        .unwrap();

    let source = Victoria::start().await;
    source.load(&float_series(21, 20, 200, false)).await;
    let target = Victoria::start().await;
    let backup_dir = dir.path().join("backups");
    let client = cluster.cluster.client().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let backups: Api<TimeseriesDBBackup> = Api::namespaced(client.clone(), &ns);
    let restores: Api<TimeseriesDBRestore> = Api::namespaced(client.clone(), &ns);

    // A leads; B stands by, ready but not leading.
    let a = start_controller("controller-a", &kubeconfig, &backup_dir, &ns, dir.path());
    a.wait_metric("backup_controller_leader 1").await;
    let a_identity = holder(&leases).await.expect("A holds the Lease");
    assert!(a_identity.ends_with(&format!("_{}", a.process.pid())), "{a_identity}");
    let b = start_controller("controller-b", &kubeconfig, &backup_dir, &ns, dir.path());
    b.wait_metric("backup_controller_leader 0").await;
    assert_eq!(b.get("/readyz").await.as_deref(), Ok("ok"), "a standby is ready");
    assert_eq!(b.get("/healthz").await.as_deref(), Ok("ok"));

    // A backup every 5 seconds.
    let backup = json!({
        "apiVersion": "backup.extend-k8s.io/v1",
        "kind": "TimeseriesDBBackup",
        "metadata": {"name": "ticks", "namespace": ns},
        "spec": {
            "database": {"type": "VictoriaMetrics", "url": source.url},
            "schedule": "*/5 * * * * *",
            "retention": {"keepLast": 100},
        },
    });
    admin.ok_stdin(&["apply", "-f", "-"], &backup.to_string()).await;
    let kept = |min: usize| {
        let backups = backups.clone();
        async move {
            wait_for(&format!("{min} backups of ticks"), WAIT, || async {
                let obj = backups.get("ticks").await.map_err(|e| e.to_string())?;
                let ids: Vec<String> = obj
                    .status
                    .clone()
                    .unwrap_or_default()
                    .backups
                    .unwrap_or_default()
                    .into_iter()
                    .map(|b| b.id)
                    .collect();
                if ids.len() >= min { Ok(obj) } else { Err(format!("{ids:?}")) }
            })
            .await
        }
    };
    let before = kept(2).await;
    let by_a = before.status.unwrap().backups.unwrap().len();
    assert!(!b.get("/metrics").await.unwrap().contains(r#"name="ticks""#), "the standby reports no objects");
    a.wait_metric(&format!(
        r#"backup_controller_backup_schedule_interval_seconds{{namespace="{ns}",name="ticks"}} 5.0"#
    ))
    .await;

    // kill -9 the leader: B takes the Lease once it has not been renewed for the lease duration.
    let last_renew = leases.get(LEASE_NAME).await.unwrap().spec.unwrap().renew_time.unwrap().0;
    let killed = Instant::now();
    drop(a);
    let b_identity = wait_for("B to take over the Lease", WAIT, || async {
        match holder(&leases).await {
            Some(h) if h != a_identity => Ok(h),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let took_over = killed.elapsed();
    assert!(b_identity.ends_with(&format!("_{}", b.process.pid())), "{b_identity}");
    let lease = leases.get(LEASE_NAME).await.unwrap().spec.unwrap();
    let acquired = lease.acquire_time.unwrap().0;
    let gap = Duration::try_from(acquired.duration_since(last_renew)).unwrap_or_default();
    eprintln!("failover: B leads {took_over:?} after the kill, {gap:?} after A's last renewal (lease {LEASE:?})");
    // The standby waits the lease duration from when it saw the last renewal (at most a retry period late), then
    // takes over at its next try.
    assert!(gap >= LEASE - RETRY, "taken over before the lease expired: {gap:?}");
    assert!(gap <= LEASE + RETRY * 3, "taken over {gap:?} after the last renewal; lease {LEASE:?}\n{}", b.log());
    assert!(lease.lease_transitions.unwrap_or(0) >= 1);
    b.wait_metric("backup_controller_leader 1").await;

    // B carries on: more ticks, each backed up once.
    let after = kept(by_a + 2).await;
    let status = after.status.clone().unwrap();
    let records = status.backups.clone().unwrap();
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    let distinct: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "a tick backed up twice: {ids:?}");
    for id in &ids {
        // 20261205T070005000Z: a tick of */5 seconds, to the millisecond.
        let seconds: u32 = id[13..15].parse().unwrap();
        assert!(id.ends_with("000Z") && seconds.is_multiple_of(5), "{id} is not a tick's id");
    }
    let locations: BTreeSet<String> = records.iter().filter_map(|r| r.location.clone()).collect();
    let files: BTreeSet<String> = walk(&backup_dir).into_iter().filter(|f| f.ends_with(".tsdb")).collect();
    assert!(locations.is_subset(&files), "listed backups without files: {locations:?} vs {files:?}");
    // <name>.<uid>.<id>.tsdb
    let per_tick: BTreeSet<&str> = files.iter().filter_map(|f| f.rsplit('.').nth(1)).collect();
    assert_eq!(per_tick.len(), files.len(), "two files of one tick: {files:?}");

    // Events, through the aggregator's kind: started and succeeded backups.
    let describe = admin.ok(&["describe", "tsdbb", "ticks", "-n", &ns]).await;
    for reason in ["BackupStarted", "BackupSucceeded"] {
        assert!(describe.contains(reason), "no {reason} Event in kubectl describe:\n{describe}");
    }
    assert!(describe.contains("backup-controller"), "the reporting controller is named:\n{describe}");
    let events = admin.ok(&["events", "-n", &ns, "--for", "timeseriesdbbackup/ticks"]).await;
    assert!(events.contains("BackupSucceeded"), "kubectl events:\n{events}");

    // Retention: keep 2; the next success deletes the rest, and says so.
    let keep = json!({"spec": {"retention": {"keepLast": 2}}}).to_string();
    admin.ok(&["patch", "tsdbb", "ticks", "-n", &ns, "--type=merge", "-p", &keep]).await;
    wait_for("a BackupsDeleted Event", WAIT, || async {
        let out = admin.ok(&["describe", "tsdbb", "ticks", "-n", &ns]).await;
        if out.contains("BackupsDeleted") && out.contains("retention (keepLast 2) deleted") { Ok(()) } else { Err(out) }
    })
    .await;

    // A restore: started and succeeded Events; the leader's metrics.
    let restore = json!({
        "apiVersion": "backup.extend-k8s.io/v1",
        "kind": "TimeseriesDBRestore",
        "metadata": {"name": "back", "namespace": ns},
        "spec": {"backupRef": {"name": "ticks"}, "target": {"type": "VictoriaMetrics", "url": target.url}},
    });
    admin.ok_stdin(&["apply", "-f", "-"], &restore.to_string()).await;
    wait_for("the restore to succeed", WAIT, || async {
        let obj = restores.get("back").await.map_err(|e| e.to_string())?;
        let status = obj.status.unwrap_or_default();
        if status.phase == Some(Phase::Succeeded) { Ok(()) } else { Err(format!("{status:?}")) }
    })
    .await;
    let describe = admin.ok(&["describe", "tsdbr", "back", "-n", &ns]).await;
    for reason in ["RestoreStarted", "RestoreSucceeded"] {
        assert!(describe.contains(reason), "no {reason} Event:\n{describe}");
    }
    let metrics =
        b.wait_metric(&format!(r#"backup_controller_restore_last_samples{{namespace="{ns}",name="back"}}"#)).await;
    assert!(
        metrics.contains(&format!(
            r#"backup_controller_backup_last_success_timestamp_seconds{{namespace="{ns}",name="ticks"}}"#
        )),
        "{metrics}"
    );

    // A failing backup: a Warning Event, its failures and the engine's HTTP errors counted.
    let down = json!({
        "apiVersion": "backup.extend-k8s.io/v1",
        "kind": "TimeseriesDBBackup",
        "metadata": {"name": "down", "namespace": ns},
        "spec": {"database": {"type": "VictoriaMetrics", "url": format!("http://127.0.0.1:{}", free_port())}},
    });
    admin.ok_stdin(&["apply", "-f", "-"], &down.to_string()).await;
    wait_for("a BackupFailed Event", WAIT, || async {
        let out = admin.ok(&["describe", "tsdbb", "down", "-n", &ns]).await;
        if out.contains("Warning") && out.contains("BackupFailed") { Ok(()) } else { Err(out) }
    })
    .await;
    let metrics = b
        .wait_metric(&format!(r#"backup_controller_backup_consecutive_failures{{namespace="{ns}",name="down"}}"#))
        .await;
    assert!(metrics.contains(r#"backup_controller_engine_http_errors_total{engine="VictoriaMetrics"}"#), "{metrics}");

    // Deleted objects leave the metrics (looked at every 10 s).
    admin.ok(&["delete", "tsdbb", "down", "-n", &ns]).await;
    wait_for("the deleted backup's series to go", WAIT, || async {
        let text = b.get("/metrics").await?;
        if text.contains(r#"name="down""#) { Err("still there".into()) } else { Ok(()) }
    })
    .await;

    // The Lease taken by someone else (who never renews it): B stops leading within the renew deadline and drops
    // the objects' series; once the intruder's lease has expired, B takes it back.
    let mut lease = leases.get(LEASE_NAME).await.unwrap();
    let spec = lease.spec.as_mut().unwrap();
    spec.holder_identity = Some("intruder".into());
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(jiff::Timestamp::now()));
    let stolen = Instant::now();
    leases.replace(LEASE_NAME, &Default::default(), &lease).await.unwrap();
    let standby = b.wait_metric("backup_controller_leader 0").await;
    let stepped_down = stolen.elapsed();
    assert!(!standby.contains(r#"name="ticks""#), "a standby reports no objects:\n{standby}");
    b.wait_metric("backup_controller_leader 1").await;
    eprintln!("lease taken away: B stopped leading after {stepped_down:?}, leads again after {:?}", stolen.elapsed());
    assert!(stepped_down <= RENEW + RETRY * 3, "B kept leading {stepped_down:?} without the lease\n{}", b.log());
    assert_eq!(holder(&leases).await.as_deref(), Some(b_identity.as_str()));

    // SIGTERM: B stops its jobs and releases the Lease.
    let pid = i32::try_from(b.process.pid()).unwrap();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let mut b = b;
    let terminated = Instant::now();
    while b.process.exited().is_none() {
        assert!(terminated.elapsed() < Duration::from_secs(30), "B still running 30 s after SIGTERM:\n{}", b.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("B exited {:?} after SIGTERM", terminated.elapsed());
    assert_eq!(holder(&leases).await, None, "the Lease is released at SIGTERM:\n{}", b.log());
}

/// Every file under `dir`, as paths relative to it.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out
}
