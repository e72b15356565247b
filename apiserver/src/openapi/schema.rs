//! Definitions of the served kinds, and the OpenAPI v3 → v2 schema conversion.
//!
//! A kind's schema (`Kind::schema`) is OpenAPI v3 with `#/components/schemas/` refs. The kind and list
//! definitions are built as apiextensions-apiserver builds a CRD's (`controller/openapi/builder`): `metadata` a ref
//! to ObjectMeta with the standard description, `x-kubernetes-group-version-kind` on both, and the List
//! `{apiVersion, kind, items, metadata}` with `items` required. For v2, refs move to `#/definitions/`, a `$ref`
//! wrapped in a one-element `allOf` is unwrapped, and v3-only constructs are dropped as `ToStructuralOpenAPIV2`
//! drops them (`nullable` fields lose their type and leave `required`; `anyOf`/`oneOf`/`not` go).

use serde_json::{Map, Value, json};

use super::meta::{self, GVK};

const V3_PREFIX: &str = "#/components/schemas/";
const V2_PREFIX: &str = "#/definitions/";
const OBJECT_META_DESCRIPTION: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const LIST_META_DESCRIPTION: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// `{"$ref": "#/components/schemas/<name>"}`.
pub(super) fn v3_ref(name: &str) -> Value {
    json!({ "$ref": format!("{V3_PREFIX}{name}") })
}

/// `{"$ref": "#/definitions/<name>"}`.
pub(super) fn v2_ref(name: &str) -> Value {
    json!({ "$ref": format!("{V2_PREFIX}{name}") })
}

fn gvk_list(group: &str, version: &str, kind: &str) -> Value {
    json!([{ "group": group, "kind": kind, "version": version }])
}

/// A kind's definition (v3 form) from its schema.
pub(super) fn kind_v3(schema: Value, group: &str, version: &str, kind: &str) -> Value {
    let mut def = wrap_refs(schema);
    if let Some(props) = def.get_mut("properties").and_then(Value::as_object_mut) {
        let metadata = json!({ "allOf": [v3_ref(meta::OBJECT_META)], "description": OBJECT_META_DESCRIPTION });
        props.insert("metadata".to_string(), metadata);
    }
    if let Some(obj) = def.as_object_mut() {
        obj.insert(GVK.to_string(), gvk_list(group, version, kind));
    }
    def
}

/// A kind's List definition (v3 form): `object` is the kind's definition name.
pub(super) fn list_v3(group: &str, version: &str, kind: &str, list_kind: &str, plural: &str, object: &str) -> Value {
    let items_doc = format!(
        "List of {plural}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md"
    );
    json!({
        "description": format!("{list_kind} is a list of {kind}"),
        "properties": {
            "apiVersion": { "description": API_VERSION_DESCRIPTION, "type": "string" },
            "items": { "description": items_doc, "items": v3_ref(object), "type": "array" },
            "kind": { "description": KIND_DESCRIPTION, "type": "string" },
            "metadata": { "allOf": [v3_ref(meta::LIST_META)], "description": LIST_META_DESCRIPTION },
        },
        "required": ["items"],
        "type": "object",
        GVK: gvk_list(group, version, list_kind),
    })
}

/// v3 forbids siblings of `$ref`: a `$ref` with any moves into a one-element `allOf`, as kube-openapi emits.
fn wrap_refs(schema: Value) -> Value {
    match schema {
        Value::Object(mut map) => {
            for (key, child) in map.iter_mut() {
                if is_schema_container(key) {
                    *child = map_schemas(std::mem::take(child), key, wrap_refs);
                }
            }
            if map.len() > 1
                && let Some(r) = map.remove("$ref")
            {
                map.insert("allOf".to_string(), json!([{ "$ref": r }]));
            }
            Value::Object(map)
        }
        other => other,
    }
}

/// Keywords whose value holds sub-schemas.
fn is_schema_container(key: &str) -> bool {
    matches!(key, "properties" | "items" | "additionalProperties" | "allOf" | "anyOf" | "oneOf" | "not")
}

/// Applies `f` to the sub-schemas under `key`: a map of them (`properties`), a list (`allOf`…) or one.
fn map_schemas(value: Value, key: &str, f: fn(Value) -> Value) -> Value {
    match (key, value) {
        ("properties", Value::Object(props)) => Value::Object(props.into_iter().map(|(k, v)| (k, f(v))).collect()),
        (_, Value::Array(list)) => Value::Array(list.into_iter().map(f).collect()),
        (_, v @ Value::Object(_)) => f(v),
        (_, other) => other,
    }
}

/// A v3 definition in v2 form. `drop_defaults` as for the generated meta types, whose v2 form has none.
pub(super) fn to_v2(schema: &Value, drop_defaults: bool) -> Value {
    let Value::Object(map) = schema else { return schema.clone() };
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "$ref" => {
                let r = value.as_str().unwrap_or_default();
                let name = r.strip_prefix(V3_PREFIX).unwrap_or(r);
                out.insert(key.clone(), json!(format!("{V2_PREFIX}{name}")));
            }
            "allOf" => {
                // kube-openapi's only use: a single `$ref` with siblings. Anything richer has no v2 form here.
                if let Some([only]) = value.as_array().map(Vec::as_slice)
                    && let Some(Value::String(r)) = to_v2(only, drop_defaults).get("$ref")
                {
                    out.insert("$ref".to_string(), json!(r));
                }
            }
            "anyOf" | "oneOf" | "not" | "nullable" | "discriminator" | "writeOnly" | "deprecated" => {}
            "default" if drop_defaults => {}
            "properties" => {
                let props = value.as_object().into_iter().flatten().map(|(k, v)| (k.clone(), to_v2(v, drop_defaults)));
                out.insert(key.clone(), Value::Object(props.collect()));
            }
            "items" | "additionalProperties" if value.is_object() => {
                out.insert(key.clone(), to_v2(value, drop_defaults));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    v2_structural_fixups(map, &mut out);
    Value::Object(out)
}

/// `ToStructuralOpenAPIV2`: kubectl's v2 validation cannot express nullable or preserved-unknown values.
fn v2_structural_fixups(v3: &Map<String, Value>, out: &mut Map<String, Value>) {
    let flag = |key: &str| v3.get(key).and_then(Value::as_bool).unwrap_or(false);
    if flag("nullable") {
        out.remove("type");
        out.remove("items");
        out.remove("properties");
    }
    if flag("x-kubernetes-preserve-unknown-fields") {
        out.remove("items");
        out.remove("properties");
    }
    if out.get("type").and_then(Value::as_str) == Some("array") && !out.contains_key("items") {
        out.remove("type");
    }
    let props = v3.get("properties");
    let nullable =
        |name: &str| props.and_then(|p| p.get(name)).is_some_and(|s| s.get("nullable") == Some(&Value::Bool(true)));
    if let Some(Value::Array(required)) = out.get_mut("required") {
        required.retain(|r| !r.as_str().is_some_and(nullable));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_wraps_refs_and_v2_unwraps_them() {
        let schema = json!({
            "type": "object",
            "properties": {
                "metadata": { "$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" },
                "spec": {
                    "type": "object",
                    "properties": {
                        "when": { "$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Time", "description": "d" },
                        "maybe": { "type": "string", "nullable": true },
                        "keep": { "type": "integer", "default": 7, "enum": [7, 8] },
                    },
                    "required": ["maybe", "keep"],
                },
            },
        });
        let v3 = kind_v3(schema, "g.example.io", "v1", "K");
        assert_eq!(
            v3["properties"]["spec"]["properties"]["when"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Time"
        );
        assert_eq!(v3["properties"]["metadata"]["description"], OBJECT_META_DESCRIPTION);
        assert_eq!(v3[GVK], json!([{"group": "g.example.io", "kind": "K", "version": "v1"}]));

        let v2 = to_v2(&v3, false);
        let spec = &v2["properties"]["spec"];
        assert_eq!(
            spec["properties"]["when"],
            json!({"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Time", "description": "d"})
        );
        assert_eq!(spec["properties"]["maybe"], json!({}));
        assert_eq!(spec["properties"]["keep"], json!({"type": "integer", "default": 7, "enum": [7, 8]}));
        assert_eq!(spec["required"], json!(["keep"]));
        assert_eq!(
            v2["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert_eq!(v2[GVK], v3[GVK]);
    }

    #[test]
    fn v2_meta_drops_defaults() {
        let v3 = json!({"properties": {"items": {"items": {"allOf": [{"$ref": "#/components/schemas/X"}], "default": {}}, "type": "array"}}});
        assert_eq!(
            to_v2(&v3, true),
            json!({"properties": {"items": {"items": {"$ref": "#/definitions/X"}, "type": "array"}}})
        );
    }
}
