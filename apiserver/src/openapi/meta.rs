//! The `meta/v1` (and `runtime`) definitions the documents reference, exactly as kube-apiserver publishes them.
//!
//! The aggregator merges our `/openapi/v2` into the cluster's and renames any definition whose name exists there
//! with different content (`ObjectMeta_v2`…); kube-openapi's comparison ignores only
//! `x-kubernetes-group-version-kind`. So these are copied verbatim — descriptions included — into
//! `meta_v3.json` (OpenAPI v3 form) from Kubernetes' `api/openapi-spec/v3/apis__apiregistration.k8s.io__v1_openapi.json`
//! at commit 02f19cb0ae1c (its GVK lists include `resource.k8s.io/v1`: 1.34 or later). The v2 form is derived as
//! kube-openapi derives it (a one-`$ref` `allOf` unwrapped, `default`s dropped), which gives the text of
//! `api/openapi-spec/swagger.json`.
//!
//! `DeleteOptions` and `WatchEvent` are registered in every group version of a scheme, so their
//! `x-kubernetes-group-version-kind` lists the core `v1` and our group version, as a generic apiserver's do.

use std::sync::LazyLock;

use serde_json::{Map, Value, json};

const PREFIX: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.";

/// The extension naming the group-version-kinds a definition (or operation) is for.
pub(super) const GVK: &str = "x-kubernetes-group-version-kind";

pub(super) const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
pub(super) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(super) const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
pub(super) const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
pub(super) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub(super) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(super) const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";

/// The upstream definitions, v3 form, keyed by definition name.
static META_V3: LazyLock<Map<String, Value>> =
    LazyLock::new(|| serde_json::from_str(include_str!("meta_v3.json")).unwrap_or_default());

/// The meta definitions in v3 form, with the group-version-kinds of `DeleteOptions` and `WatchEvent` for
/// `group`/`version`.
pub(super) fn definitions_v3(group: &str, version: &str) -> Map<String, Value> {
    let mut defs = META_V3.clone();
    for kind in ["DeleteOptions", "WatchEvent"] {
        if let Some(def) = defs.get_mut(&format!("{PREFIX}{kind}")).and_then(Value::as_object_mut) {
            let gvks = json!([
                {"group": "", "kind": kind, "version": "v1"},
                {"group": group, "kind": kind, "version": version},
            ]);
            def.insert(GVK.to_string(), gvks);
        }
    }
    defs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_definitions_parse_and_match_upstream() {
        let parsed: Map<String, Value> = serde_json::from_str(include_str!("meta_v3.json")).unwrap();
        assert_eq!(parsed.len(), 16);
        let defs = definitions_v3("backup.extend-k8s.io", "v1");
        let om = &defs[OBJECT_META]["properties"];
        for field in [
            "annotations",
            "creationTimestamp",
            "deletionGracePeriodSeconds",
            "deletionTimestamp",
            "finalizers",
            "generateName",
            "generation",
            "labels",
            "managedFields",
            "name",
            "namespace",
            "ownerReferences",
            "resourceVersion",
            "selfLink",
            "uid",
        ] {
            assert!(om.get(field).is_some(), "ObjectMeta.{field}");
        }
        assert_eq!(om.as_object().unwrap().len(), 15);
        assert_eq!(om["ownerReferences"]["x-kubernetes-list-map-keys"], json!(["uid"]));
        assert_eq!(om["finalizers"]["x-kubernetes-list-type"], "set");
        assert_eq!(
            defs[OBJECT_META]["description"],
            "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create."
        );
        assert_eq!(
            defs[STATUS]["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "Status", "version": "v1"}])
        );
        assert_eq!(
            defs[DELETE_OPTIONS]["x-kubernetes-group-version-kind"][1],
            json!({"group": "backup.extend-k8s.io", "kind": "DeleteOptions", "version": "v1"})
        );
        for name in [API_RESOURCE_LIST, LIST_META, PATCH, WATCH_EVENT, "io.k8s.apimachinery.pkg.runtime.RawExtension"] {
            assert!(defs.contains_key(name), "{name}");
        }
    }
}
