//! Ten behaviours where the server once differed from upstream (issue 18), each asserted as k8s.io/apiserver
//! v1.20 and a CRD behave: status code, reason, the message kubectl shows, and what is stored. The differential
//! suite (`differential.rs`) compares the same cases with a real CRD; these pin them down without a cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::Duration;

use backup_e2e::{TestServer, backup, backup_path, backups, str_at};
use http::Method;
use serde_json::{Value, json};

const B1: &str = "\
apiVersion: backup.extend-k8s.io/v1
kind: TimeseriesDBBackup
metadata:
  name: b1
  labels: {app: metrics, tier: gold}
spec:
  database: {type: Prometheus, url: \"http://127.0.0.1:9090\"}
  schedule: \"0 2 * * *\"
  retention: {keepLast: 7}
";

/// 1. A server dry run of a create fails as the create would: 409 AlreadyExists for a taken name.
#[tokio::test]
async fn create_dry_run_of_an_existing_name_is_already_exists() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let created = h.create(&backups("default"), &backup("b1")).await;

    let status =
        h.post(&format!("{}?dryRun=All", backups("default")), &backup("b1")).await.expect_failure(409, "AlreadyExists");
    assert_eq!(str_at(&status, "/message"), "timeseriesdbbackups.backup.extend-k8s.io \"b1\" already exists");
    assert_eq!(
        status["details"],
        json!({"name": "b1", "group": "backup.extend-k8s.io", "kind": "timeseriesdbbackups"})
    );
    assert_eq!(h.get(&backup_path("default", "b1")).await.expect_status(200).json(), created, "nothing changed");

    let k = srv.kubectl();
    let out = k.run_with(&["create", "--dry-run=server", "-f", "-"], B1, &[]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        out.stderr.trim(),
        "Error from server (AlreadyExists): error when creating \"STDIN\": timeseriesdbbackups.backup.extend-k8s.io \
         \"b1\" already exists"
    );
    // A free name: 201 with the object as it would be, and nothing stored.
    let would = h.post(&format!("{}?dryRun=All", backups("default")), &backup("b2")).await.expect_status(201).json();
    assert_eq!(would["metadata"]["name"], "b2");
    h.get(&backup_path("default", "b2")).await.expect_failure(404, "NotFound");

    // A name held by an object being deleted says so (registry.Store.Create), dry run or not.
    let mut held = backup("held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    h.create(&backups("default"), &held).await;
    h.delete(&backup_path("default", "held")).await.expect_status(200);
    for query in ["", "?dryRun=All"] {
        let status = h
            .post(&format!("{}{query}", backups("default")), &backup("held"))
            .await
            .expect_failure(409, "AlreadyExists");
        assert_eq!(
            str_at(&status, "/message"),
            "object is being deleted: timeseriesdbbackups.backup.extend-k8s.io \"held\" already exists"
        );
    }
}

/// 2. A JSON patch sees `metadata.resourceVersion` (the optimistic-concurrency `test`), a patch setting another
/// one is a 409, and kubectl's client-side → server-side apply migration works.
#[tokio::test]
async fn patches_see_the_resource_version() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let path = backup_path("default", "b1");
    let created = h.create(&backups("default"), &backup("b1")).await;
    let rv = str_at(&created, "/metadata/resourceVersion").to_string();

    let guarded = |rv: &str, schedule: &str| {
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "replace", "path": "/spec/schedule", "value": schedule},
        ])
    };
    let patched = h.json_patch(&path, &guarded(&rv, "0 3 * * *")).await.expect_status(200).json();
    assert_eq!(patched["spec"]["schedule"], "0 3 * * *");
    assert_ne!(patched["metadata"]["resourceVersion"], rv.as_str());
    // The same guard again: the object moved on, the test fails (422 Invalid), nothing changes.
    let status = h.json_patch(&path, &guarded(&rv, "0 4 * * *")).await.expect_failure(422, "Invalid");
    // Upstream's answer word for word (NewGenericServerResponse: no cause, empty details).
    assert_eq!(str_at(&status, "/message"), "the server rejected our request due to an error in our request");
    assert_eq!(status["details"], json!({}), "{status}");
    assert_eq!(h.get(&path).await.json()["spec"]["schedule"], "0 3 * * *", "nothing changed");
    // A patch that sets another resourceVersion is a precondition: 409 Conflict.
    let stale = json!({"metadata": {"resourceVersion": rv}, "spec": {"schedule": "0 5 * * *"}});
    let status = h.merge_patch(&path, &stale).await.expect_failure(409, "Conflict");
    assert_eq!(
        str_at(&status, "/message"),
        "Operation cannot be fulfilled on timeseriesdbbackups.backup.extend-k8s.io \"b1\": the object has been \
         modified; please apply your changes to the latest version and try again"
    );
    // One that removes it is an update without one, which these kinds (as CRDs) refuse.
    let remove = json!([{"op": "remove", "path": "/metadata/resourceVersion"}, {"op": "replace", "path": "/spec/schedule", "value": "0 6 * * *"}]);
    let status = h.json_patch(&path, &remove).await.expect_failure(422, "Invalid");
    assert_eq!(
        str_at(&status, "/message"),
        "timeseriesdbbackups.backup.extend-k8s.io \"b1\" is invalid: metadata.resourceVersion: Invalid value: 0x0: \
         must be specified for an update"
    );

    // kubectl's migration of client-side apply to server-side apply (a JSON patch testing the resourceVersion):
    // no warning, and a field removed from the manifest goes.
    let k = srv.kubectl();
    let manifest = B1.replace("name: b1", "name: migrated");
    k.ok_stdin(&["apply", "-f", "-"], &manifest).await;
    let out = k.run_with(&["apply", "--server-side", "-f", "-"], &manifest.replace(", tier: gold", ""), &[]).await;
    assert!(out.success, "{out:?}");
    assert_eq!(out.stdout.trim(), "timeseriesdbbackup.backup.extend-k8s.io/migrated serverside-applied");
    assert_eq!(out.stderr, "", "no managed-fields migration warning");
    let obj: Value =
        serde_json::from_str(&k.ok(&["get", "tsdbb", "migrated", "-o", "json", "--show-managed-fields"]).await)
            .unwrap();
    assert_eq!(obj["metadata"]["labels"], json!({"app": "metrics"}), "the removed label went: {obj}");
    // Both appliers own something and carry a time (their order is by time, then name).
    let entries = obj["metadata"]["managedFields"].as_array().unwrap();
    let mut managers: Vec<(&str, &str)> =
        entries.iter().map(|m| (m["manager"].as_str().unwrap(), m["operation"].as_str().unwrap())).collect();
    managers.sort();
    assert_eq!(managers, [("kubectl", "Apply"), ("kubectl-last-applied", "Apply")], "migrated: {obj}");
    assert!(entries.iter().all(|m| m["time"].is_string()), "{obj}");
}

/// 3. An update or patch carrying another creationTimestamp keeps the stored one (rest.BeforeUpdate).
#[tokio::test]
async fn creation_timestamp_changes_are_ignored() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let path = backup_path("default", "b1");
    let created = h.create(&backups("default"), &backup("b1")).await;
    let ts = str_at(&created, "/metadata/creationTimestamp").to_string();

    let mut put = created.clone();
    put["metadata"]["creationTimestamp"] = json!("2001-01-01T00:00:00Z");
    put["spec"]["suspend"] = json!(true);
    let updated = h.put(&path, &put).await.expect_status(200).json();
    assert_eq!(str_at(&updated, "/metadata/creationTimestamp"), ts);
    assert_eq!(updated["spec"]["suspend"], true);
    let patch = json!({"metadata": {"creationTimestamp": "2001-01-01T00:00:00Z"}, "spec": {"suspend": false}});
    let patched = h.merge_patch(&path, &patch).await.expect_status(200).json();
    assert_eq!(str_at(&patched, "/metadata/creationTimestamp"), ts);
    assert_eq!(str_at(&h.get(&path).await.json(), "/metadata/creationTimestamp"), ts);
}

/// 4. `format: date-time` as a CRD checks it (strfmt.IsDateTime): RFC 3339 passes, near misses are 422.
#[tokio::test]
async fn date_times_are_rfc3339() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    h.create(&backups("default"), &backup("b1")).await;
    let status_path = format!("{}/status", backup_path("default", "b1"));
    let with_time = |t: &str| json!({"status": {"lastBackup": {"id": "x", "startTime": t}}});
    for ok in ["2024-01-01T00:00:00Z", "2024-01-01T01:00:00.5+01:00"] {
        let obj = h.merge_patch(&status_path, &with_time(ok)).await.expect_status(200).json();
        assert_eq!(obj["status"]["lastBackup"]["startTime"], ok);
    }
    for bad in [
        "2024-01-01 00:00:00Z",
        "2024-01-01T00:00:00+0100",
        "2024-01-01T00:00Z",
        "2024-01-01T00:00:00Z[UTC]",
        "20240101T000000Z",
    ] {
        let status = h.merge_patch(&status_path, &with_time(bad)).await.expect_failure(422, "Invalid");
        assert_eq!(
            str_at(&status, "/message"),
            format!(
                "TimeseriesDBBackup.backup.extend-k8s.io \"b1\" is invalid: status.lastBackup.startTime: Invalid value: \
                 {bad:?}: status.lastBackup.startTime in body must be of type date-time: {bad:?}"
            )
        );
    }
}

/// 5. Removing the last label or annotation drops the map (ObjectMeta's `omitempty`).
#[tokio::test]
async fn empty_label_and_annotation_maps_are_dropped() {
    let srv = TestServer::standalone().await;
    let k = srv.kubectl();
    k.ok_stdin(&["create", "-f", "-"], B1).await;
    k.ok(&["annotate", "tsdbb", "b1", "note=x"]).await;
    assert_eq!(
        k.ok(&["label", "tsdbb", "b1", "app-", "tier-"]).await.trim(),
        "timeseriesdbbackup.backup.extend-k8s.io/b1 unlabeled"
    );
    k.ok(&["annotate", "tsdbb", "b1", "note-"]).await;
    let obj: Value = serde_json::from_str(&k.ok(&["get", "tsdbb", "b1", "-o", "json"]).await).unwrap();
    assert_eq!(obj["metadata"].get("labels"), None, "{obj}");
    assert_eq!(obj["metadata"].get("annotations"), None, "{obj}");
    // Sent empty, they are not stored either.
    let h = srv.http();
    let mut empty = backup("b2");
    empty["metadata"]["labels"] = json!({});
    empty["metadata"]["annotations"] = json!({});
    empty["metadata"]["finalizers"] = json!([]);
    let created = h.create(&backups("default"), &empty).await;
    for key in ["labels", "annotations", "finalizers"] {
        assert_eq!(created["metadata"].get(key), None, "{created}");
    }
}

/// 6. DELETE of an object without finalizers answers a Status Success with details; one held by finalizers
/// answers the object.
#[tokio::test]
async fn delete_answers_a_status_unless_finalizers_hold_the_object() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let created = h.create(&backups("default"), &backup("b1")).await;
    let uid = str_at(&created, "/metadata/uid").to_string();
    let expected = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": "b1", "group": "backup.extend-k8s.io", "kind": "timeseriesdbbackups", "uid": uid},
    });
    let path = backup_path("default", "b1");
    let dry = h.delete(&format!("{path}?dryRun=All")).await.expect_status(200);
    assert_eq!(dry.json(), expected, "a dry run answers the same");
    let resp = h.delete(&path).await.expect_status(200);
    assert_eq!(resp.header("content-type"), "application/json");
    assert_eq!(resp.json(), expected);
    let yaml =
        h.request(Method::DELETE, &backup_path("default", "nope")).header("accept", "application/yaml").send().await;
    assert_eq!(yaml.status, 404);

    let mut held = backup("held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    h.create(&backups("default"), &held).await;
    let marked = h.delete(&backup_path("default", "held")).await.expect_status(200).json();
    assert_eq!(marked["kind"], "TimeseriesDBBackup");
    assert!(marked["metadata"]["deletionTimestamp"].is_string(), "{marked}");

    // kube-rs reports the immediate delete as done (`Either::Right`), the held one as in progress.
    use backup_apis::backup::TimeseriesDBBackup;
    let api: kube::Api<TimeseriesDBBackup> = kube::Api::namespaced(srv.client(), "default");
    h.create(&backups("default"), &backup("b3")).await;
    let deleted = api.delete("b3", &Default::default()).await.unwrap();
    assert!(deleted.is_right(), "{deleted:?}");

    // deletecollection answers the list as it was read.
    h.create(&backups("default"), &backup("b4")).await;
    let list =
        h.delete(&format!("{}?fieldSelector=metadata.name%3Db4", backups("default"))).await.expect_status(200).json();
    assert_eq!(list["kind"], "TimeseriesDBBackupList");
    assert_eq!(list["items"][0]["metadata"]["name"], "b4");
    assert!(list["items"][0]["metadata"].get("deletionTimestamp").is_none(), "{list}");
}

/// 7. Integers sent as whole floats are accepted and stored as integers; fractions are 422.
#[tokio::test]
async fn whole_floats_are_integers() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let mut b = backup("b1");
    b["spec"]["retention"]["keepLast"] = json!(5.0);
    let resp = h.post(&backups("default"), &b).await.expect_status(201);
    assert!(resp.text().contains("\"keepLast\":5}"), "stored as 5: {}", resp.text());
    let got = h.get(&backup_path("default", "b1")).await.expect_status(200);
    assert!(got.text().contains("\"keepLast\":5}"), "{}", got.text());
    let patched =
        h.merge_patch(&backup_path("default", "b1"), &json!({"spec": {"retention": {"keepLast": 3.0}}})).await;
    assert!(patched.expect_status(200).text().contains("\"keepLast\":3}"));

    b["metadata"]["name"] = json!("b2");
    b["spec"]["retention"]["keepLast"] = json!(5.5);
    let status = h.post(&backups("default"), &b).await.expect_failure(422, "Invalid");
    assert_eq!(
        str_at(&status, "/message"),
        "TimeseriesDBBackup.backup.extend-k8s.io \"b2\" is invalid: spec.retention.keepLast: Invalid value: \
         \"number\": spec.retention.keepLast in body must be of type integer: \"number\""
    );
    // YAML too.
    let k = srv.kubectl();
    k.ok_stdin(&["create", "-f", "-"], &B1.replace("name: b1", "name: b3").replace("keepLast: 7", "keepLast: 7.0"))
        .await;
    assert_eq!(k.ok(&["get", "tsdbb", "b3", "-o", "jsonpath={.spec.retention.keepLast}"]).await, "7");
}

/// 8. `/openapi/v2` answers kubectl's protobuf request: `explain --output=plaintext-openapiv2` works and a wrong
/// kind in `create -f` is "no matches for kind".
#[tokio::test]
async fn openapi_v2_in_protobuf_for_kubectl() {
    let srv = TestServer::standalone().await;
    let h = srv.http();
    let pb = h
        .request(Method::GET, "/openapi/v2")
        .header("accept", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
        .send()
        .await
        .expect_status(200);
    assert_eq!(pb.header("content-type"), "application/com.github.proto-openapi.spec.v2.v1.0+protobuf");
    let json = h.request(Method::GET, "/openapi/v2").header("accept", "application/json").send().await;
    assert_eq!(json.expect_status(200).json()["swagger"], "2.0");

    let k = srv.kubectl();
    let out = k.ok(&["explain", "tsdbb.spec.retention", "--output=plaintext-openapiv2"]).await;
    let lines: Vec<&str> = out.lines().take(4).collect();
    assert_eq!(
        lines,
        ["KIND:     TimeseriesDBBackup", "VERSION:  backup.extend-k8s.io/v1", "", "RESOURCE: retention <Object>"]
    );
    assert!(out.contains("keepLast\t<integer>"), "{out}");

    let wrong_kind = B1.replace("kind: TimeseriesDBBackup", "kind: TimeseriesDBBackupX");
    let out = k.run_with(&["create", "-f", "-"], &wrong_kind, &[]).await;
    assert_eq!(
        out.stderr.trim(),
        "error: resource mapping not found for name: \"b1\" namespace: \"\" from \"STDIN\": no matches for kind \
         \"TimeseriesDBBackupX\" in version \"backup.extend-k8s.io/v1\"\nensure CRDs are installed first"
    );
    let wrong_version = B1.replace("backup.extend-k8s.io/v1", "backup.extend-k8s.io/v2");
    let out = k.run_with(&["create", "-f", "-"], &wrong_version, &[]).await;
    assert!(
        out.stderr.contains("no matches for kind \"TimeseriesDBBackup\" in version \"backup.extend-k8s.io/v2\""),
        "{out:?}"
    );
}

/// 9. `kubectl get -o yaml > all.yaml; kubectl apply -f all.yaml` (a `v1 List`) works standalone.
#[tokio::test]
async fn a_list_of_objects_applies() {
    let srv = TestServer::standalone().await;
    let k = srv.kubectl();
    k.ok_stdin(&["create", "-f", "-"], B1).await;
    k.ok_stdin(&["create", "-f", "-"], &B1.replace("name: b1", "name: b2")).await;
    let all = k.ok(&["get", "tsdbb", "-o", "yaml"]).await;
    assert!(all.starts_with("apiVersion: v1\nitems:"), "{all}");
    assert!(all.contains("\nkind: List\n"), "{all}");
    let edited = all.replace("keepLast: 7", "keepLast: 3");
    let out = k.ok_stdin(&["apply", "-f", "-"], &edited).await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "timeseriesdbbackup.backup.extend-k8s.io/b1 configured",
            "timeseriesdbbackup.backup.extend-k8s.io/b2 configured"
        ],
    );
    assert_eq!(k.ok(&["get", "tsdbb", "-o", "jsonpath={.items[*].spec.retention.keepLast}"]).await, "3 3");
}

/// 10. Standalone, `--cascade=foreground` and `--cascade=orphan` finish: the server removes the finalizer it
/// added, as the garbage collector would, and keeps the others.
#[tokio::test]
async fn cascading_deletes_finish_standalone() {
    let srv = TestServer::standalone().await;
    let k = srv.kubectl();
    let h = srv.http();
    for (name, cascade) in [("fg", "foreground"), ("or", "orphan")] {
        k.ok_stdin(&["create", "-f", "-"], &B1.replace("name: b1", &format!("name: {name}"))).await;
        let mut watch = k.spawn(&["get", "tsdbb", name, "--watch", "--output-watch-events", "--no-headers"]);
        watch.until(&["ADDED", name], Duration::from_secs(30)).await;
        let out = k.ok(&["delete", "tsdbb", name, &format!("--cascade={cascade}"), "--timeout=20s"]).await;
        assert_eq!(out.trim(), format!("timeseriesdbbackup.backup.extend-k8s.io \"{name}\" deleted"));
        h.get(&backup_path("default", name)).await.expect_failure(404, "NotFound");
        // Marked (with the finalizer), then gone: as with kube-controller-manager.
        let seen = watch.until(&["DELETED", name], Duration::from_secs(30)).await;
        let events: Vec<&str> = seen.iter().filter_map(|l| l.split_whitespace().next()).collect();
        assert_eq!(events[events.len() - 2..], ["MODIFIED", "DELETED"], "{seen:?}");
        watch.stop().await;
    }
    // The marked object is what the DELETE answers.
    h.create(&backups("default"), &backup("raw")).await;
    let marked = h.delete(&format!("{}?propagationPolicy=Foreground", backup_path("default", "raw"))).await;
    let marked = marked.expect_status(200).json();
    assert_eq!(marked["metadata"]["finalizers"], json!(["foregroundDeletion"]), "{marked}");
    h.get(&backup_path("default", "raw")).await.expect_failure(404, "NotFound");

    // Other finalizers stay, and hold the object.
    let mut held = backup("held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    h.create(&backups("default"), &held).await;
    let out = k.ok(&["delete", "tsdbb", "held", "--cascade=foreground", "--wait=false"]).await;
    assert_eq!(out.trim(), "timeseriesdbbackup.backup.extend-k8s.io \"held\" deleted");
    let obj = h.get(&backup_path("default", "held")).await.expect_status(200).json();
    assert_eq!(obj["metadata"]["finalizers"], json!(["example.com/hold"]), "{obj}");
    assert!(obj["metadata"]["deletionTimestamp"].is_string());
    h.merge_patch(&backup_path("default", "held"), &json!({"metadata": {"finalizers": null}})).await.expect_status(200);
    h.get(&backup_path("default", "held")).await.expect_failure(404, "NotFound");

    // A dry run leaves everything alone.
    h.create(&backups("default"), &backup("dry")).await;
    let path = format!("{}?propagationPolicy=Orphan&dryRun=All", backup_path("default", "dry"));
    assert_eq!(h.delete(&path).await.expect_status(200).json()["metadata"]["finalizers"], json!(["orphan"]));
    let obj = h.get(&backup_path("default", "dry")).await.expect_status(200).json();
    assert!(obj["metadata"].get("finalizers").is_none() && obj["metadata"].get("deletionTimestamp").is_none());
}
