//! Unit tests of the field manager: field sets and their encoding, managedFields on updates, server-side apply,
//! and strategic merge patch.

mod apply;
mod sets;
mod track;

use backup_apis::schema::Schema;
use backup_apis::{Kind, ResourceInfo};
use serde_json::{Value, json};

/// The TimeseriesDBBackup kind: its schema as the field manager reads it, and its names.
fn backup() -> (Schema, &'static ResourceInfo) {
    let kind = backup_apis::backup::BackupKind;
    (Schema::new(&kind.schema()), &backup_apis::backup::RESOURCE)
}

/// A valid backup object.
fn object(spec: Value) -> Value {
    json!({
        "apiVersion": "backup.extend-k8s.io/v1",
        "kind": "TimeseriesDBBackup",
        "metadata": {"name": "b", "namespace": "ns"},
        "spec": spec,
    })
}

/// The fieldsV1 of `manager`'s entry.
fn fields_of(obj: &Value, manager: &str) -> Option<Value> {
    obj.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager)
        .map(|e| e["fieldsV1"].clone())
}
