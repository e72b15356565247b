//! Server-side apply: merge, prune, conflicts, force, and the kubectl migration.

use serde_json::{Value, json};

use super::{backup, fields_of, object};
use crate::fieldmanager::{ApplyRequest, Manager, apply, take_managed_fields, track};
use crate::request::info::Subresource;

fn applied(live: &Value, config: Value, manager: &str, force: bool) -> Result<Value, crate::error::ApiError> {
    let (schema, info) = backup();
    apply(&schema, info, live.clone(), config, ApplyRequest { manager, force, sub: &Subresource::Main })
}

fn empty() -> Value {
    json!({"apiVersion": "backup.extend-k8s.io/v1", "kind": "TimeseriesDBBackup"})
}

fn db() -> Value {
    json!({"type": "Prometheus", "url": "http://p"})
}

#[test]
fn apply_creates_and_records_the_configuration() {
    let out = applied(&empty(), object(json!({"database": db(), "schedule": "@daily"})), "kubectl", false).unwrap();
    assert_eq!(out["spec"]["schedule"], "@daily");
    let entry = &out["metadata"]["managedFields"][0];
    assert_eq!((entry["manager"].as_str(), entry["operation"].as_str()), (Some("kubectl"), Some("Apply")));
    assert_eq!(entry["fieldsV1"], json!({"f:spec": {"f:database": {"f:type": {}, "f:url": {}}, "f:schedule": {}}}));
}

#[test]
fn fields_no_longer_applied_are_removed_unless_owned() {
    let first = applied(&empty(), object(json!({"database": db(), "schedule": "@daily", "suspend": true})), "a", false)
        .unwrap();
    let second = applied(&first, object(json!({"database": db()})), "a", false).unwrap();
    assert!(second["spec"].get("schedule").is_none());
    assert!(second["spec"].get("suspend").is_none());
    // Owned by another applier too: kept.
    let shared = applied(&first, object(json!({"database": db(), "suspend": true})), "b", false).unwrap();
    let third = applied(&shared, object(json!({"database": db()})), "a", false).unwrap();
    assert_eq!(third["spec"]["suspend"], true);
    assert!(third["spec"].get("schedule").is_none());
    assert_eq!(third["metadata"]["name"], "b", "metadata.name survives pruning");
}

#[test]
fn conflicts_with_an_updater_and_force() {
    let (schema, info) = backup();
    let first = applied(&empty(), object(json!({"database": db(), "schedule": "@daily"})), "kubectl", false).unwrap();
    // An update by "editor" takes spec.schedule.
    let Value::Object(mut edited) = first.clone() else { panic!() };
    edited["spec"]["schedule"] = json!("@hourly");
    let requested = take_managed_fields(&mut edited);
    track(&schema, info, &Subresource::Main, Manager::Update("editor"), Some(&first), &mut edited, requested);
    let edited = Value::Object(edited);
    let e = applied(&edited, object(json!({"database": db(), "schedule": "@weekly"})), "kubectl", false).unwrap_err();
    assert_eq!(e.code, 409);
    assert!(e.is_conflict());
    assert_eq!(
        e.message,
        "Apply failed with 1 conflict: conflict with \"editor\" using backup.extend-k8s.io/v1: .spec.schedule"
    );
    assert_eq!(
        e.details.unwrap(),
        json!({"causes": [{"reason": "FieldManagerConflict", "message": "conflict with \"editor\" using backup.extend-k8s.io/v1", "field": ".spec.schedule"}]})
    );
    // Applying the same value is no conflict.
    assert!(applied(&edited, object(json!({"database": db(), "schedule": "@hourly"})), "kubectl", false).is_ok());
    let forced = applied(&edited, object(json!({"database": db(), "schedule": "@weekly"})), "kubectl", true).unwrap();
    assert_eq!(forced["spec"]["schedule"], "@weekly");
    assert!(fields_of(&forced, "editor").is_none(), "the editor lost its only field");
    assert!(fields_of(&forced, "kubectl").unwrap()["f:spec"].get("f:schedule").is_some());
}

#[test]
fn several_conflicts_are_listed_by_manager() {
    let first =
        applied(&empty(), object(json!({"database": db(), "schedule": "@daily", "suspend": false})), "a", false)
            .unwrap();
    let e = applied(
        &first,
        object(json!({"database": {"type": "InfluxDB", "url": "http://i"}, "schedule": "x"})),
        "b",
        false,
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        "Apply failed with 3 conflicts: conflicts with \"a\":\n- .spec.schedule\n- .spec.database.type\n- .spec.database.url"
    );
}

#[test]
fn map_lists_merge_by_key_on_status() {
    let (schema, info) = backup();
    let live = object(json!({"database": db()}));
    let status = |conds: Value| {
        json!({"apiVersion": "backup.extend-k8s.io/v1", "kind": "TimeseriesDBBackup", "metadata": {"name": "b"},
               "status": {"conditions": conds}})
    };
    let req = |m| ApplyRequest { manager: m, force: false, sub: &Subresource::Status };
    let a = apply(&schema, info, live, status(json!([{"type": "Ready", "status": "True"}])), req("ctl")).unwrap();
    let b = apply(&schema, info, a, status(json!([{"type": "Synced", "status": "True"}])), req("other")).unwrap();
    assert_eq!(b["status"]["conditions"].as_array().unwrap().len(), 2);
    let entry =
        b["metadata"]["managedFields"].as_array().unwrap().iter().find(|e| e["manager"] == "ctl").unwrap().clone();
    assert_eq!(entry["subresource"], "status");
    // The other applier cannot change Ready without force.
    let e = apply(&schema, info, b.clone(), status(json!([{"type": "Ready", "status": "False"}])), req("other"))
        .unwrap_err();
    assert_eq!(
        e.message,
        "Apply failed with 1 conflict: conflict with \"ctl\": .status.conditions[type=\"Ready\"].status"
    );
}

#[test]
fn bad_configurations() {
    let e = applied(&empty(), json!({"apiVersion": "v1", "kind": "ConfigMap"}), "m", false).unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (400, "invalid object type: /v1, Kind=ConfigMap"));
    let mut with_mf = object(json!({"database": db()}));
    with_mf["metadata"]["managedFields"] = json!([]);
    assert_eq!(applied(&empty(), with_mf, "m", false).unwrap_err().message, "metadata.managedFields must be nil");
    let e = applied(&empty(), object(json!({"database": db(), "bogus": 1})), "m", false).unwrap_err();
    assert_eq!(e.code, 400);
    assert_eq!(
        e.message,
        "failed to create typed patch object (ns/b; backup.extend-k8s.io/v1, Kind=TimeseriesDBBackup): .spec.bogus: field not declared in schema"
    );
}

#[test]
fn kubectl_takes_over_from_client_side_apply() {
    let (schema, info) = backup();
    let config = object(json!({"database": db(), "schedule": "@daily"}));
    let Value::Object(mut live) = config.clone() else { panic!() };
    live["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/last-applied-configuration": config.to_string()});
    let requested = take_managed_fields(&mut live);
    track(&schema, info, &Subresource::Main, Manager::Update("kubectl-client-side-apply"), None, &mut live, requested);
    let live = Value::Object(live);
    let changed = object(json!({"database": db(), "schedule": "@hourly"}));
    let out = applied(&live, changed.clone(), "kubectl", false).unwrap();
    assert_eq!(out["spec"]["schedule"], "@hourly");
    let annotation =
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].as_str().unwrap();
    assert_eq!(serde_json::from_str::<Value>(annotation).unwrap(), changed);
    // Another manager gets no such pass.
    assert_eq!(applied(&live, changed, "helm", false).unwrap_err().code, 409);
}
