//! HTTP tests of the field manager through a real server: managedFields after each write path, server-side apply
//! (kube-rs `Patch::Apply` and `kubectl apply --server-side`), conflicts and force, dry-run, and strategic merge
//! patch (`kubectl patch --type strategic`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use backup_e2e::{Kubectl, TestServer};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

const NS: &str = "default";

struct Fixture {
    server: TestServer,
}

impl Fixture {
    async fn start() -> Self {
        Self { server: TestServer::standalone().await }
    }

    fn api(&self) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("backup.extend-k8s.io", "v1", "TimeseriesDBBackup");
        let resource = ApiResource::from_gvk_with_plural(&gvk, "timeseriesdbbackups");
        Api::namespaced_with(self.server.client(), NS, &resource)
    }

    /// A raw request: the status code and the JSON body.
    async fn raw(&self, method: &str, path_and_query: &str, content_type: &str, body: &str) -> (u16, Value) {
        let method = http::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let resp = self.server.http().request(method, path_and_query).body(content_type, body).send().await;
        (resp.status, serde_json::from_slice(&resp.body).unwrap_or(Value::Null))
    }

    fn kubectl(&self) -> Kubectl {
        self.server.kubectl()
    }
}

fn backup(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "backup.extend-k8s.io/v1", "kind": "TimeseriesDBBackup",
           "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

fn db() -> Value {
    json!({"type": "Prometheus", "url": "http://prometheus:9090"})
}

fn entries(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/managedFields").and_then(Value::as_array).cloned().unwrap_or_default()
}

fn entry(obj: &Value, manager: &str) -> Value {
    entries(obj)
        .into_iter()
        .find(|e| e["manager"] == manager)
        .unwrap_or_else(|| panic!("no entry for {manager}: {obj}"))
}

fn to_value(o: DynamicObject) -> Value {
    serde_json::to_value(o).expect("serializes")
}

fn collection() -> String {
    format!("/apis/backup.extend-k8s.io/v1/namespaces/{NS}/timeseriesdbbackups")
}

#[tokio::test]
async fn managed_fields_on_every_write_path() {
    let f = Fixture::start().await;
    let api = f.api();
    let obj: DynamicObject =
        serde_json::from_value(backup("w", json!({"database": db(), "schedule": "@daily"}))).unwrap();
    let pp = PostParams { field_manager: Some("creator".into()), ..Default::default() };
    let created = to_value(api.create(&pp, &obj).await.expect("create"));
    let e = entry(&created, "creator");
    assert_eq!(e["operation"], "Update");
    assert_eq!(e["apiVersion"], "backup.extend-k8s.io/v1");
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert!(e["fieldsV1"]["f:spec"]["f:schedule"].is_object());
    assert!(e["fieldsV1"]["f:spec"]["f:retention"]["f:keepLast"].is_object(), "defaults belong to the creator");

    // Merge patch by another manager takes the field.
    let pp = PatchParams { field_manager: Some("patcher".into()), ..Default::default() };
    let patched =
        to_value(api.patch("w", &pp, &Patch::Merge(json!({"spec": {"schedule": "@hourly"}}))).await.expect("patch"));
    assert_eq!(entry(&patched, "patcher")["fieldsV1"], json!({"f:spec": {"f:schedule": {}}}));
    assert!(entry(&patched, "creator")["fieldsV1"]["f:spec"].get("f:schedule").is_none());

    // Status patch: its own entry with the subresource.
    let pp = PatchParams { field_manager: Some("controller".into()), ..Default::default() };
    let status = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
    let with_status = to_value(api.patch_status("w", &pp, &Patch::Merge(status)).await.expect("status"));
    let s = entry(&with_status, "controller");
    assert_eq!(s["subresource"], "status");
    assert!(s["fieldsV1"]["f:status"]["f:conditions"]["k:{\"type\":\"Ready\"}"]["f:status"].is_object());

    // Strategic merge patch of status merges conditions by type.
    let smp = json!({"status": {"conditions": [{"type": "Synced", "status": "False"}]}});
    let merged = to_value(api.patch_status("w", &pp, &Patch::Strategic(smp)).await.expect("strategic"));
    let conds = merged["status"]["conditions"].as_array().unwrap();
    assert_eq!(conds.len(), 2);

    // Update (PUT) with the User-Agent's manager when no fieldManager is given.
    let mut put = merged.clone();
    put["spec"]["suspend"] = json!(true);
    let path = format!("{}/w", collection());
    let (code, replaced) = f.raw("PUT", &path, "application/json", &put.to_string()).await;
    assert_eq!(code, 200, "{replaced}");
    let ua_manager = entries(&replaced).into_iter().find(|e| e["fieldsV1"]["f:spec"].get("f:suspend").is_some());
    assert!(ua_manager.is_some_and(|e| !e["manager"].as_str().unwrap_or("").is_empty()));

    // Apply records an Apply entry; no-op re-apply writes nothing.
    let config = backup("w", json!({"database": db(), "schedule": "@hourly"}));
    let applied =
        to_value(api.patch("w", &PatchParams::apply("applier"), &Patch::Apply(&config)).await.expect("apply"));
    assert_eq!(entry(&applied, "applier")["operation"], "Apply");
    let again =
        to_value(api.patch("w", &PatchParams::apply("applier"), &Patch::Apply(&config)).await.expect("re-apply"));
    assert_eq!(again["metadata"]["resourceVersion"], applied["metadata"]["resourceVersion"]);

    // Clearing managedFields with [{}].
    let pp = PatchParams::default();
    let cleared = to_value(
        api.patch("w", &pp, &Patch::Merge(json!({"metadata": {"managedFields": [{}]}}))).await.expect("clear"),
    );
    assert!(entries(&cleared).is_empty());
    f.server.shutdown().await;
}

#[tokio::test]
async fn kube_rs_apply_conflicts_force_create_and_dry_run() {
    let f = Fixture::start().await;
    let api = f.api();
    // Apply to a missing object creates it: 201.
    let config = backup("a", json!({"database": db(), "schedule": "@daily"}));
    let path = format!("{}/a?fieldManager=first", collection());
    let (code, created) = f.raw("PATCH", &path, "application/apply-patch+yaml", &config.to_string()).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(entry(&created, "first")["operation"], "Apply");
    let (code, again) = f.raw("PATCH", &path, "application/apply-patch+yaml", "apiVersion: backup.extend-k8s.io/v1\nkind: TimeseriesDBBackup\nmetadata:\n  name: a\nspec:\n  database:\n    type: Prometheus\n    url: http://prometheus:9090\n  schedule: '@daily'\n").await;
    assert_eq!(code, 200, "{again}");

    // A second manager changing the schedule conflicts.
    let other = backup("a", json!({"database": db(), "schedule": "@weekly"}));
    let err = api.patch("a", &PatchParams::apply("second"), &Patch::Apply(&other)).await.expect_err("conflict");
    let kube::Error::Api(status) = err else { panic!("not an API error: {err}") };
    assert_eq!(status.code, 409);
    assert_eq!(status.message, "Apply failed with 1 conflict: conflict with \"first\": .spec.schedule");
    let (code, body) = f
        .raw(
            "PATCH",
            &format!("{}/a?fieldManager=second", collection()),
            "application/apply-patch+yaml",
            &json!({"apiVersion": "backup.extend-k8s.io/v1", "kind": "TimeseriesDBBackup", "metadata": {"name": "a"},
                "spec": {"schedule": "@weekly"}})
            .to_string(),
        )
        .await;
    assert_eq!(code, 409);
    assert_eq!(body["message"], "Apply failed with 1 conflict: conflict with \"first\": .spec.schedule");
    assert_eq!(
        body["details"]["causes"][0],
        json!({"reason": "FieldManagerConflict", "message": "conflict with \"first\"", "field": ".spec.schedule"})
    );

    // Forced: ownership moves.
    let forced =
        to_value(api.patch("a", &PatchParams::apply("second").force(), &Patch::Apply(&other)).await.expect("force"));
    assert_eq!(forced["spec"]["schedule"], "@weekly");
    assert!(entry(&forced, "second")["fieldsV1"]["f:spec"]["f:schedule"].is_object());
    assert!(entry(&forced, "first")["fieldsV1"]["f:spec"].get("f:schedule").is_none());

    // Dry-run apply creates nothing.
    let ghost = backup("ghost", json!({"database": db()}));
    let dry =
        to_value(api.patch("ghost", &PatchParams::apply("x").dry_run(), &Patch::Apply(&ghost)).await.expect("dry run"));
    assert_eq!(entry(&dry, "x")["operation"], "Apply");
    assert!(api.get_opt("ghost").await.expect("get").is_none());

    // Option and body errors.
    let body = config.to_string();
    let (code, s) = f.raw("PATCH", &format!("{}/a", collection()), "application/apply-patch+yaml", &body).await;
    assert_eq!(
        (code, s["message"].as_str()),
        (
            422,
            Some("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch")
        )
    );
    let (code, s) =
        f.raw("PATCH", &format!("{}/a?force=true", collection()), "application/merge-patch+json", "{}").await;
    assert_eq!(
        (code, s["message"].as_str()),
        (
            422,
            Some(
                "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
            )
        )
    );
    let (code, s) = f.raw("PATCH", &format!("{}/a", collection()), "application/x-unknown", "{}").await;
    assert_eq!(code, 415);
    assert_eq!(
        s["message"],
        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
    );
    let (code, _) =
        f.raw("PATCH", &format!("{}/a?fieldManager=m", collection()), "application/apply-patch+yaml", "").await;
    assert_eq!(code, 400, "an empty configuration has no kind");
    let (code, _) = f.raw("PATCH", &format!("{}/nothere/status?fieldManager=m", collection()), "application/apply-patch+yaml",
        &json!({"apiVersion": "backup.extend-k8s.io/v1", "kind": "TimeseriesDBBackup", "metadata": {"name": "nothere"}, "status": {"phase": "Running"}}).to_string()).await;
    assert_eq!(code, 404, "apply to a missing object's status does not create it");
    f.server.shutdown().await;
}

#[tokio::test]
async fn kubectl_server_side_apply_diff_and_strategic_patch() {
    let f = Fixture::start().await;
    let manifest = |schedule: &str| {
        format!(
            "apiVersion: backup.extend-k8s.io/v1\nkind: TimeseriesDBBackup\nmetadata:\n  name: k\n  namespace: {NS}\nspec:\n  database:\n    type: Prometheus\n    url: http://prometheus:9090\n  schedule: \"{schedule}\"\n"
        )
    };
    let (first, second) = (manifest("@daily"), manifest("@hourly"));
    let kubectl = f.kubectl();
    for _ in 0..2 {
        let out = kubectl.run_with(&["apply", "--server-side", "-f", "-"], &first, &[]).await;
        assert!(out.success, "{}", out.stderr);
        assert!(out.stdout.contains("serverside-applied"));
    }
    let out = kubectl.run_with(&["apply", "--server-side", "--field-manager=other", "-f", "-"], &second, &[]).await;
    assert!(!out.success);
    let stderr = out.stderr;
    assert!(stderr.contains("conflict with \"kubectl\"") && stderr.contains(".spec.schedule"), "{stderr}");
    let out = kubectl
        .run_with(&["apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", "-"], &second, &[])
        .await;
    assert!(out.success, "{}", out.stderr);

    // A server-side dry run changes nothing.
    let out = kubectl
        .run_with(&["apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-"], &first, &[])
        .await;
    assert!(out.success, "{}", out.stderr);
    let got = kubectl.ok(&["get", "timeseriesdbbackups", "k", "-n", NS, "-o", "json", "--show-managed-fields"]).await;
    let got: Value = serde_json::from_str(&got).expect("json");
    assert_eq!(got["spec"]["schedule"], "@hourly");
    assert_eq!(entry(&got, "other")["operation"], "Apply");

    // kubectl diff: exit 1 with a difference, 0 without.
    let out = kubectl.run_with(&["diff", "--server-side", "--force-conflicts", "-f", "-"], &first, &[]).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stdout.contains("@daily"));
    let out = kubectl.run_with(&["diff", "--server-side", "--field-manager=other", "-f", "-"], &second, &[]).await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);

    // kubectl patch defaults to a strategic merge patch.
    let out = kubectl
        .run_with(&["patch", "timeseriesdbbackups", "k", "-n", NS, "-p", r#"{"spec":{"suspend":true}}"#], "", &[])
        .await;
    assert!(out.success, "{}", out.stderr);
    let out = kubectl
        .run_with(
            &[
                "patch",
                "timeseriesdbbackups",
                "k",
                "-n",
                NS,
                "--type",
                "strategic",
                "--subresource",
                "status",
                "-p",
                r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
            ],
            "",
            &[],
        )
        .await;
    assert!(out.success, "{}", out.stderr);
    let got = kubectl.ok(&["get", "timeseriesdbbackups", "k", "-n", NS, "-o", "json"]).await;
    let got: Value = serde_json::from_str(&got).expect("json");
    assert_eq!(got["spec"]["suspend"], true);
    assert_eq!(got["status"]["conditions"][0]["type"], "Ready");
    f.server.shutdown().await;
}
