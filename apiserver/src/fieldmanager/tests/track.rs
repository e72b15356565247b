//! managedFields after creates, updates and status writes.

use serde_json::{Value, json};

use super::{backup, fields_of, object};
use crate::fieldmanager::{Manager, take_managed_fields, track};
use crate::request::info::Subresource;

/// What the store does: take the request's managedFields, (normalize), then track.
fn write(live: Option<&Value>, new: Value, manager: &str, sub: Subresource) -> Value {
    let (schema, info) = backup();
    let Value::Object(mut new) = new else { panic!("not an object") };
    let requested = take_managed_fields(&mut new);
    track(&schema, info, &sub, Manager::Update(manager), live, &mut new, requested);
    Value::Object(new)
}

fn spec() -> Value {
    json!({"database": {"type": "Prometheus", "url": "http://p"}, "schedule": "@daily", "retention": {"keepLast": 7}})
}

#[test]
fn create_records_everything_the_creator_set() {
    let created = write(None, object(spec()), "kubectl-create", Subresource::Main);
    let entry = &created["metadata"]["managedFields"][0];
    assert_eq!(entry["manager"], "kubectl-create");
    assert_eq!(entry["operation"], "Update");
    assert_eq!(entry["apiVersion"], "backup.extend-k8s.io/v1");
    assert_eq!(entry["fieldsType"], "FieldsV1");
    assert_eq!(entry["time"].as_str().unwrap().len(), 20);
    assert!(entry.get("subresource").is_none());
    assert_eq!(
        entry["fieldsV1"],
        json!({"f:spec": {".": {}, "f:database": {".": {}, "f:type": {}, "f:url": {}}, "f:schedule": {},
                          "f:retention": {".": {}, "f:keepLast": {}}}})
    );
}

#[test]
fn updates_take_fields_from_other_managers() {
    let created = write(None, object(spec()), "creator", Subresource::Main);
    let mut changed = created.clone();
    changed["spec"]["schedule"] = json!("@hourly");
    changed["metadata"]["labels"] = json!({"app": "x"});
    let updated = write(Some(&created), changed, "editor", Subresource::Main);
    assert_eq!(
        fields_of(&updated, "editor").unwrap(),
        json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:schedule": {}}})
    );
    let creator = fields_of(&updated, "creator").unwrap();
    assert!(creator["f:spec"].get("f:schedule").is_none());
    assert!(creator["f:spec"].get("f:database").is_some());
    // Removing a field takes it from its owner too.
    let mut removed = updated.clone();
    removed["spec"].as_object_mut().unwrap().remove("retention");
    let after = write(Some(&updated), removed, "editor", Subresource::Main);
    assert!(fields_of(&after, "creator").unwrap()["f:spec"].get("f:retention").is_none());
}

#[test]
fn status_writes_carry_the_subresource_and_ignore_request_managed_fields() {
    let created = write(None, object(spec()), "creator", Subresource::Main);
    let mut with_status = created.clone();
    with_status["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
    with_status["metadata"]["managedFields"] = json!([]);
    let written = write(Some(&created), with_status, "controller", Subresource::Status);
    let entries = written["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "a status write cannot reset managedFields");
    let status = entries.iter().find(|e| e["manager"] == "controller").unwrap();
    assert_eq!(status["subresource"], "status");
    assert_eq!(
        status["fieldsV1"],
        json!({"f:status": {".": {}, "f:phase": {}, "f:conditions": {".": {}, "k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}, "f:type": {}}}}})
    );
}

#[test]
fn request_managed_fields_replace_reset_or_fall_back() {
    let created = write(None, object(spec()), "creator", Subresource::Main);
    // Unchanged object, managedFields omitted: kept as they are.
    let mut same = created.clone();
    same["metadata"].as_object_mut().unwrap().remove("managedFields");
    assert_eq!(write(Some(&created), same, "x", Subresource::Main), created);
    // `[{}]` and `[]` reset them.
    for reset in [json!([{}]), json!([])] {
        let mut r = created.clone();
        r["metadata"]["managedFields"] = reset;
        assert!(write(Some(&created), r, "x", Subresource::Main)["metadata"].get("managedFields").is_none());
    }
    // Entries that do not decode fall back to the live ones.
    let mut bad = created.clone();
    bad["metadata"]["managedFields"] =
        json!([{"manager": "m", "operation": "Patch", "apiVersion": "v", "fieldsType": "FieldsV1"}]);
    assert_eq!(
        write(Some(&created), bad, "x", Subresource::Main)["metadata"]["managedFields"],
        created["metadata"]["managedFields"]
    );
    // Valid entries are taken as given.
    let mut given = created.clone();
    given["metadata"]["managedFields"] = json!([{"manager": "m", "operation": "Update", "apiVersion": "backup.extend-k8s.io/v1",
        "time": "2020-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:schedule": {}}}}]);
    let out = write(Some(&created), given, "x", Subresource::Main);
    assert_eq!(out["metadata"]["managedFields"].as_array().unwrap().len(), 1);
    assert_eq!(out["metadata"]["managedFields"][0]["manager"], "m");
}

#[test]
fn no_op_updates_keep_timestamps() {
    let created = write(None, object(spec()), "creator", Subresource::Main);
    let mut old = created.clone();
    old["metadata"]["managedFields"][0]["time"] = json!("2020-01-01T00:00:00Z");
    let mut again = old.clone();
    again["spec"]["schedule"] = json!("@daily");
    assert_eq!(write(Some(&old), again, "creator", Subresource::Main), old);
}

#[test]
fn at_most_ten_update_managers() {
    let mut obj = write(None, object(spec()), "m0", Subresource::Main);
    for i in 1..=11 {
        let mut next = obj.clone();
        let mut labels = obj["metadata"].get("labels").cloned().unwrap_or_else(|| json!({}));
        labels[format!("l{i}")] = json!("v");
        next["metadata"]["labels"] = labels;
        next["metadata"]["managedFields"].as_array_mut().unwrap().iter_mut().enumerate().for_each(|(n, e)| {
            e["time"] = json!(format!("2020-01-01T00:00:{n:02}Z"));
        });
        obj = write(Some(&obj), next, &format!("m{i}"), Subresource::Main);
    }
    let entries = obj["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 10);
    assert!(entries.iter().any(|e| e["manager"] == "ancient-changes"));
    assert!(entries.iter().any(|e| e["manager"] == "m11"));
}
