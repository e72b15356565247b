//! kube-rs against the server: aggregated discovery, the dynamic API, kube-runtime's watcher (list then watch, and
//! streaming lists), and the typed `TimeseriesDBBackup` API including `patch_status`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::Duration;

use backup_apis::backup::{BackupSource, Retention, TimeseriesDBBackup, TimeseriesDBBackupSpec};
use backup_apis::database::{DatabaseEndpoint, DatabaseType};
use backup_apis::status::Phase;
use backup_e2e::TestServer;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::discovery::Scope;
use kube::core::response::StatusSummary;
use kube::discovery::{ApiResource, Discovery};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;

const STEP: Duration = Duration::from_secs(20);

async fn discover(client: Client) -> Discovery {
    tokio::time::timeout(STEP, Discovery::new(client).run_aggregated())
        .await
        .expect("discovery in time")
        .expect("aggregated discovery")
}

async fn backup_resource(client: Client) -> ApiResource {
    let discovery = discover(client).await;
    let group = discovery.get("backup.extend-k8s.io").expect("the group");
    group.recommended_kind("TimeseriesDBBackup").expect("the kind").0
}

fn typed(name: &str) -> TimeseriesDBBackup {
    TimeseriesDBBackup::new(
        "default",
        name,
        TimeseriesDBBackupSpec {
            database: BackupSource {
                endpoint: DatabaseEndpoint::new(DatabaseType::InfluxDB, "http://influx:8086", Some("telegraf".into())),
                selector: None,
            },
            destination: None,
            schedule: Some("@daily".into()),
            time_zone: None,
            retention: Retention { keep_last: 2 },
            suspend: false,
            verify: false,
            timeout: None,
        },
    )
}

#[tokio::test]
async fn aggregated_discovery_finds_both_kinds() {
    let srv = TestServer::standalone().await;
    let discovery = discover(srv.client()).await;
    assert!(discovery.has_group("backup.extend-k8s.io"));
    let group = discovery.get("backup.extend-k8s.io").expect("the group");
    assert_eq!(group.preferred_version(), Some("v1"));
    let mut kinds: Vec<String> = group.recommended_resources().into_iter().map(|(r, _)| r.kind).collect();
    kinds.sort();
    assert_eq!(kinds, ["TimeseriesDBBackup", "TimeseriesDBRestore"]);
    let (resource, caps) = group.recommended_kind("TimeseriesDBBackup").expect("the kind");
    assert_eq!(resource.plural, "timeseriesdbbackups");
    assert_eq!(resource.api_version, "backup.extend-k8s.io/v1");
    assert_eq!(caps.scope, Scope::Namespaced);
    for verb in ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"] {
        assert!(caps.supports_operation(verb), "{verb}");
    }
    let subresources: Vec<&str> = caps.subresources.iter().map(|(r, _)| r.plural.as_str()).collect();
    assert_eq!(subresources, ["status"]);
}

#[tokio::test]
async fn dynamic_api_crud() {
    let srv = TestServer::standalone().await;
    let ar = backup_resource(srv.client()).await;
    let api: Api<DynamicObject> = Api::namespaced_with(srv.client(), "default", &ar);
    let spec = json!({"database": {"type": "VictoriaMetrics", "url": "http://vm:8428"}});
    let obj = DynamicObject::new("dyn", &ar).data(json!({"spec": spec}));
    let created = api.create(&PostParams::default(), &obj).await.expect("create");
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.data["spec"]["retention"]["keepLast"], 7, "defaulted");
    let err = api.create(&PostParams::default(), &obj).await.expect_err("a second create conflicts");
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"), "{err:?}");

    let got = api.get("dyn").await.expect("get");
    assert_eq!(got.metadata.uid, created.metadata.uid);
    let list = api.list(&ListParams::default()).await.expect("list");
    assert_eq!(list.items.iter().map(|o| o.name_any()).collect::<Vec<_>>(), ["dyn"]);
    let patched = api
        .patch("dyn", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspend": true}})))
        .await
        .expect("merge patch");
    assert_eq!(patched.data["spec"]["suspend"], true);
    assert_eq!(patched.metadata.generation, Some(2));
    let ops: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/schedule", "value": "@hourly"}]))
            .expect("a JSON patch");
    let err =
        api.patch("dyn", &PatchParams::default(), &Patch::<()>::Json(ops)).await.expect_err("no schedule to replace");
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 422), "{err:?}");

    api.delete("dyn", &DeleteParams::default()).await.expect("delete");
    let err = api.get("dyn").await.expect_err("gone");
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound"), "{err:?}");
}

type Applied = BoxStream<'static, Result<TimeseriesDBBackup, watcher::Error>>;

async fn next(applied: &mut Applied) -> TimeseriesDBBackup {
    let next = tokio::time::timeout(STEP, applied.try_next()).await.expect("a watcher event in time");
    next.expect("no watcher error").expect("the stream goes on")
}

/// Run a watcher with `config` and check it sees an object appear and get modified.
async fn watcher_sees_changes(config: watcher::Config) {
    let srv = TestServer::standalone().await;
    let api: Api<TimeseriesDBBackup> = Api::default_namespaced(srv.client());
    api.create(&PostParams::default(), &typed("before")).await.expect("create");
    let mut applied: Applied = watcher(api.clone(), config).default_backoff().applied_objects().boxed();
    assert_eq!(next(&mut applied).await.name_any(), "before", "the initial list");
    api.create(&PostParams::default(), &typed("w")).await.expect("create");
    let seen = next(&mut applied).await;
    assert_eq!((seen.name_any().as_str(), seen.spec.suspend), ("w", false));
    api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspend": true}}))).await.expect("patch");
    let seen = next(&mut applied).await;
    assert_eq!((seen.name_any().as_str(), seen.spec.suspend), ("w", true));
    assert_eq!(seen.metadata.generation, Some(2));
}

#[tokio::test]
async fn runtime_watcher_lists_then_watches() {
    watcher_sees_changes(watcher::Config::default().timeout(10)).await;
}

#[tokio::test]
async fn runtime_watcher_streaming_list() {
    watcher_sees_changes(watcher::Config::default().streaming_lists()).await;
}

#[tokio::test]
async fn typed_api_create_list_patch_status() {
    let srv = TestServer::on_etcd().await;
    let api: Api<TimeseriesDBBackup> = Api::namespaced(srv.client(), "default");
    let created = api.create(&PostParams::default(), &typed("t")).await.expect("create");
    assert_eq!(created.spec.database.endpoint.database.as_deref(), Some("telegraf"));
    assert_eq!(created.destination_path(), "t", "the name by default (the controller puts it under the namespace)");
    assert_eq!(created.status, None);
    let list = api.list(&ListParams::default().labels("missing=label")).await.expect("list");
    assert!(list.items.is_empty());
    let list = api.list(&ListParams::default()).await.expect("list");
    assert_eq!(list.items, std::slice::from_ref(&created));

    let status =
        json!({"status": {"phase": "Succeeded", "observedGeneration": 1, "lastBackup": {"id": "b-1", "samples": 10}}});
    let updated = api.patch_status("t", &PatchParams::default(), &Patch::Merge(status)).await.expect("patch_status");
    let s = updated.status.clone().expect("a status");
    assert_eq!(s.phase, Some(Phase::Succeeded));
    assert_eq!(s.last_backup.and_then(|b| b.samples), Some(10));
    assert_eq!(updated.metadata.generation, Some(1));
    assert_eq!(updated.spec, created.spec);
    let got = api.get_status("t").await.expect("get_status");
    assert_eq!(got, updated);
    let deleted = api.delete("t", &DeleteParams::default()).await.expect("delete");
    assert!(deleted.either(|o| o.name_any() == "t", |s| s.status == Some(StatusSummary::Success)), "deleted");
}
