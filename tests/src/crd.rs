//! The kinds of `backup.extend-k8s.io` as CustomResourceDefinitions in a group of their own, generated from our
//! schemas and printer columns and installed into a real kube-apiserver: what the differential tests compare our
//! server with (`tests/tests/differential.rs`, `tests/tests/compression.rs`).

use backup_apis::{CellSource, Kind};
use serde_json::{Value, json};

use crate::kubectl::Kubectl;

/// The CRD's group: not a substring of ours, nor ours of it, so both normalise to `GROUP`.
pub const CRD_GROUP: &str = "backup-crd.extend-k8s.io";
/// The CRD's category (ours is `backups`; the two groups share a cluster).
pub const CRD_CATEGORY: &str = "backupscrd";
/// Appended to the CRD's short names (ours: `tsdbb`, `tsdbr`).
pub const CRD_SHORT_SUFFIX: &str = "c";

/// The CustomResourceDefinition of `kind` in [`CRD_GROUP`]: its schema (ObjectMeta's `$ref` as `type: object`),
/// printer columns, status subresource, names.
pub fn definition(kind: &dyn Kind) -> Value {
    let r = kind.resource();
    let mut schema = kind.schema();
    schema["properties"]["metadata"] = json!({"type": "object"});
    let columns: Vec<Value> = kind
        .printer_columns()
        .iter()
        .filter_map(|c| {
            let pointer = match c.source {
                CellSource::Name => return None,
                CellSource::Pointer(p) | CellSource::Age(p) | CellSource::Bytes(p) => p,
            };
            Some(json!({
                "name": c.name,
                "type": c.column_type.as_str(),
                "jsonPath": pointer.replace('/', "."),
                "description": c.description,
                "priority": c.priority,
            }))
        })
        .collect();
    let mut version = json!({
        "name": r.version, "served": true, "storage": true,
        "schema": {"openAPIV3Schema": schema},
        "additionalPrinterColumns": columns,
    });
    if r.status_subresource {
        version["subresources"] = json!({"status": {}});
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{}.{CRD_GROUP}", r.plural)},
        "spec": {
            "group": CRD_GROUP,
            "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
            "names": {
                "plural": r.plural, "singular": r.singular, "kind": r.kind, "listKind": r.list_kind,
                "shortNames": r.short_names.iter().map(|s| format!("{s}{CRD_SHORT_SUFFIX}")).collect::<Vec<_>>(),
                "categories": [CRD_CATEGORY],
            },
            "versions": [version],
        },
    })
}

/// Applies the CRD of every kind with `admin` and waits (bounded) until each is Established.
pub async fn install(admin: &Kubectl) {
    for kind in backup_apis::kinds() {
        let crd = definition(kind.as_ref());
        admin.ok_stdin(&["apply", "-f", "-"], &crd.to_string()).await;
        let name = format!("crd/{}", crd["metadata"]["name"].as_str().unwrap());
        admin.ok(&["wait", "--for=condition=Established", &name, "--timeout=60s"]).await;
    }
}
