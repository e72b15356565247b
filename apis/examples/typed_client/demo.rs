//! The body of the `typed_client` example, kept apart from `main` so that a test can run it against an in-process
//! server (`apiserver/tests/typed_client.rs` includes this file with `#[path]`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use backup_apis::backup::{
    BackupRecord, BackupSource, Retention, TimeseriesDBBackup, TimeseriesDBBackupSpec, TimeseriesDBBackupStatus,
};
use backup_apis::database::{DatabaseEndpoint, DatabaseType};
use backup_apis::restore::TimeseriesDBRestore;
use backup_apis::status::Phase;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Config, ResourceExt};
use serde_json::json;

/// The label the example puts on (and selects) its object.
pub const LABEL: &str = "app.kubernetes.io/created-by";
const LABEL_VALUE: &str = "typed-client-example";
/// How long to wait for each watch event.
const WAIT: Duration = Duration::from_secs(30);

/// What the example did, for the caller (and the test) to check.
#[derive(Debug)]
pub struct Outcome {
    /// `metadata.uid` given by the server on create.
    pub uid: String,
    /// `spec.retention.keepLast` of the created object as the server returned it.
    pub keep_last: i64,
    /// How many backups the label-selected list returned.
    pub listed: usize,
    /// How many restores the namespace holds (the other kind, to show its `Api`).
    pub restores: usize,
    /// `status.phase` as the watcher saw it after the status patch.
    pub watched_phase: Option<Phase>,
    /// The watch events, in order (`InitDone`, `Apply <name> <phase>`, `Delete <name>`, ...).
    pub events: Vec<String>,
}

/// A client from a kubeconfig file, or kube's inference (`$KUBECONFIG`, `~/.kube/config`, in-cluster) without one.
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
        }
        None => Config::infer().await.context("no kubeconfig given and none inferred")?,
    };
    Client::try_from(config).context("building the client")
}

/// Create a TimeseriesDBBackup `name` in `namespace`, list it, watch it while patching its status, delete it.
pub async fn run(client: Client, namespace: &str, name: &str) -> anyhow::Result<Outcome> {
    // Typed handles: the URL, kind and apiVersion come from the types' k8s_openapi::Resource implementations.
    let backups: Api<TimeseriesDBBackup> = Api::namespaced(client.clone(), namespace);
    let restores: Api<TimeseriesDBRestore> = Api::namespaced(client, namespace);

    // A leftover of an interrupted run.
    if backups.get_opt(name).await?.is_some() {
        backups.delete(name, &DeleteParams::default()).await?;
    }

    // Create. The server fills in metadata (uid, resourceVersion, generation, creationTimestamp) and defaults.
    let mut backup = TimeseriesDBBackup::new(
        namespace,
        name,
        TimeseriesDBBackupSpec {
            database: BackupSource {
                endpoint: DatabaseEndpoint::new(DatabaseType::Prometheus, "http://prometheus.monitoring:9090", None),
                selector: Some(r#"{job="node"}"#.into()),
            },
            destination: None,
            schedule: Some("0 2 * * *".into()),
            time_zone: None,
            retention: Retention { keep_last: 3 },
            suspend: false,
            verify: false,
            timeout: None,
        },
    );
    backup.metadata.labels = Some(BTreeMap::from([(LABEL.to_string(), LABEL_VALUE.to_string())]));
    let created = backups.create(&PostParams::default(), &backup).await.context("create")?;
    let uid = created.uid().context("the server returned no uid")?;
    println!("created {namespace}/{name} uid={uid} resourceVersion={}", created.resource_version().unwrap_or_default());

    // List, by label.
    let listed =
        backups.list(&ListParams::default().labels(&format!("{LABEL}={LABEL_VALUE}"))).await.context("list")?;
    ensure!(listed.iter().any(|b| b.name_any() == name), "the list does not contain {name}");
    let restores = restores.list(&ListParams::default()).await.context("list restores")?.items.len();
    println!("listed {} backup(s) labelled {LABEL}={LABEL_VALUE}, {restores} restore(s)", listed.items.len());

    // Watch (kube-runtime's watcher: a list, then a watch from its resourceVersion, re-listing when needed).
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher::watcher(backups.clone(), config).boxed();
    let mut events = Vec::new();
    next_until(&mut stream, &mut events, |e| matches!(e, Event::InitDone)).await?;

    // Patch the status subresource, as the controller does (a merge patch of `status` only).
    let now = Time(jiff::Timestamp::now());
    let status = TimeseriesDBBackupStatus {
        phase: Some(Phase::Succeeded),
        observed_generation: created.metadata.generation,
        last_backup: Some(BackupRecord {
            id: "20260101-020000".into(),
            start_time: Some(now.clone()),
            completion_time: Some(now),
            series: Some(12),
            samples: Some(3456),
            bytes: Some(7890),
            destination: Some(created.destination_location().into()),
            location: Some(created.destination_path()),
            sha256: None,
        }),
        message: Some("patched by the typed-client example".into()),
        ..TimeseriesDBBackupStatus::default()
    };
    let patched = backups
        .patch_status(name, &PatchParams::default(), &Patch::Merge(json!({ "status": status })))
        .await
        .context("patch status")?;
    ensure!(patched.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded), "status not patched");
    println!("patched status: phase=Succeeded");

    let seen = next_until(
        &mut stream,
        &mut events,
        |e| matches!(e, Event::Apply(b) if b.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded)),
    )
    .await?;
    let watched_phase = match seen {
        Event::Apply(b) => b.status.and_then(|s| s.phase),
        _ => None,
    };
    println!("watch saw the status change");

    // Delete, and see it in the watch.
    backups.delete(name, &DeleteParams::default()).await.context("delete")?;
    next_until(&mut stream, &mut events, |e| matches!(e, Event::Delete(b) if b.name_any() == name)).await?;
    println!("deleted {namespace}/{name}; watch events: {events:?}");

    Ok(Outcome {
        uid,
        keep_last: created.spec.retention.keep_last,
        listed: listed.items.len(),
        restores,
        watched_phase,
        events,
    })
}

/// Read watch events (recording them) until one satisfies `want`; each must come within [`WAIT`].
async fn next_until<S>(
    stream: &mut S,
    events: &mut Vec<String>,
    want: impl Fn(&Event<TimeseriesDBBackup>) -> bool,
) -> anyhow::Result<Event<TimeseriesDBBackup>>
where
    S: futures::Stream<Item = Result<Event<TimeseriesDBBackup>, watcher::Error>> + Unpin,
{
    loop {
        let event = match tokio::time::timeout(WAIT, stream.try_next()).await {
            Err(_) => bail!("no watch event within {WAIT:?}; so far: {events:?}"),
            Ok(Err(e)) => return Err(e).context("watch"),
            Ok(Ok(None)) => bail!("the watch ended; so far: {events:?}"),
            Ok(Ok(Some(event))) => event,
        };
        events.push(describe(&event));
        if want(&event) {
            return Ok(event);
        }
    }
}

fn describe(event: &Event<TimeseriesDBBackup>) -> String {
    let phase = |b: &TimeseriesDBBackup| match b.status.as_ref().and_then(|s| s.phase) {
        Some(p) => format!("{p:?}"),
        None => "-".into(),
    };
    match event {
        Event::Init => "Init".into(),
        Event::InitApply(b) => format!("InitApply {} {}", b.name_any(), phase(b)),
        Event::InitDone => "InitDone".into(),
        Event::Apply(b) => format!("Apply {} {}", b.name_any(), phase(b)),
        Event::Delete(b) => format!("Delete {}", b.name_any()),
    }
}
