//! Strategic merge patch driven by schema markers.

use backup_apis::schema::Schema;
use serde_json::{Value, json};

use super::apply;

fn schema() -> Schema {
    Schema::new(&json!({
        "type": "object",
        "properties": {
            "metadata": {"$ref": backup_apis::schema::OBJECT_META_REF},
            "spec": {
                "type": "object",
                "properties": {
                    "a": {"type": "string"}, "b": {"type": "string"},
                    "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                              "items": {"type": "object", "properties": {"name": {"type": "string"}, "v": {"type": "integer"},
                                                                         "w": {"type": "integer"}}}},
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "args": {"type": "array", "x-kubernetes-list-type": "atomic", "items": {"type": "string"}},
                    "nested": {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}}},
                },
            },
        },
    }))
}

fn patched(doc: Value, patch: Value) -> Value {
    let mut doc = doc;
    apply(&schema(), &mut doc, patch).unwrap();
    doc
}

fn doc() -> Value {
    json!({"spec": {"a": "1", "b": "2", "items": [{"name": "x", "v": 1}, {"name": "y", "v": 2}],
                    "tags": ["t1", "t2"], "args": ["-a", "-b"], "nested": {"x": 1, "y": 2}}})
}

#[test]
fn map_lists_merge_by_key_and_atomic_lists_replace() {
    let out =
        patched(doc(), json!({"spec": {"items": [{"name": "y", "w": 9}, {"name": "z", "v": 3}], "args": ["-c"]}}));
    assert_eq!(
        out["spec"]["items"],
        json!([{"name": "x", "v": 1}, {"name": "y", "v": 2, "w": 9}, {"name": "z", "v": 3}])
    );
    assert_eq!(out["spec"]["args"], json!(["-c"]));
    let out = patched(doc(), json!({"spec": {"tags": ["t3", "t1"]}}));
    // Patch items in patch order; live-only items placed by their live position (upstream's mergeSortedSlice).
    assert_eq!(out["spec"]["tags"], json!(["t3", "t1", "t2"]));
}

#[test]
fn nulls_and_directives() {
    let out = patched(doc(), json!({"spec": {"a": null, "items": [{"name": "x", "$patch": "delete"}]}}));
    assert!(out["spec"].get("a").is_none());
    assert_eq!(out["spec"]["items"], json!([{"name": "y", "v": 2}]));
    let out = patched(doc(), json!({"spec": {"items": [{"name": "q"}, {"$patch": "replace"}]}}));
    assert_eq!(out["spec"]["items"], json!([{"name": "q"}]));
    let out = patched(doc(), json!({"spec": {"nested": {"$patch": "replace", "x": 5}}}));
    assert_eq!(out["spec"]["nested"], json!({"x": 5}));
    let out = patched(doc(), json!({"spec": {"nested": {"$patch": "delete"}}}));
    assert_eq!(out["spec"]["nested"], json!({}));
    let out = patched(doc(), json!({"spec": {"$retainKeys": ["a", "items"], "a": "9"}}));
    assert_eq!(out["spec"], json!({"a": "9", "items": [{"name": "x", "v": 1}, {"name": "y", "v": 2}]}));
    let out = patched(doc(), json!({"spec": {"$deleteFromPrimitiveList/tags": ["t1"]}}));
    assert_eq!(out["spec"]["tags"], json!(["t2"]));
    let out = patched(
        doc(),
        json!({"spec": {"$setElementOrder/items": [{"name": "y"}, {"name": "x"}], "items": [{"name": "x", "v": 5}]}}),
    );
    assert_eq!(out["spec"]["items"], json!([{"name": "y", "v": 2}, {"name": "x", "v": 5}]));
    // A new value has its directives applied, not stored.
    let out = patched(
        json!({"spec": {}}),
        json!({"spec": {"nested": {"x": 1, "y": null}, "items": [{"name": "a"}, {"name": "b", "$patch": "delete"}]}}),
    );
    assert_eq!(out["spec"], json!({"nested": {"x": 1}, "items": [{"name": "a"}]}));
}

/// Upstream's 400s and 422s; what upstream answers with 500 (a missing merge key, an unknown directive) is 422.
#[test]
fn errors_are_4xx() {
    let err = |patch: Value| {
        let mut d = doc();
        apply(&schema(), &mut d, patch).unwrap_err()
    };
    assert_eq!(err(json!({"spec": {"$retainKeys": ["a"], "b": "x"}})).code, 400);
    assert_eq!(err(json!({"spec": {"$retainKeys": "a"}})).code, 400);
    assert_eq!(err(json!({"spec": {"$deleteFromPrimitiveList": ["a"]}})).code, 400);
    assert_eq!(err(json!({"spec": {"tags": [["x"]]}})).code, 422);
    assert_eq!(err(json!({"spec": {"items": [{"v": 1}]}})).code, 422);
    assert_eq!(err(json!({"spec": {"nested": {"$patch": "explode"}}})).code, 422);
    assert_eq!(err(json!([1])).code, 400);
}

/// Items are found by hashing their values (or keys) with the equality of JSON values.
#[test]
fn set_and_key_identity_is_value_equality() {
    let out = patched(json!({"spec": {"tags": [1, 0.0, 2]}}), json!({"spec": {"tags": [1.0, -0.0, 2, 1]}}));
    assert_eq!(out["spec"]["tags"], json!([1.0, 0.0, 2, 1]));
    let out = patched(
        json!({"spec": {"items": [{"name": "x", "v": 1}, {"name": "x", "v": 2}]}}),
        json!({"spec": {"items": [{"name": "x", "w": 3}, {"name": "y"}, {"name": "y", "v": 4}]}}),
    );
    // The first item with the keys takes the merge; a new item is merged into by later ones.
    assert_eq!(
        out["spec"]["items"],
        json!([{"name": "x", "v": 1, "w": 3}, {"name": "x", "v": 2}, {"name": "y", "v": 4}])
    );
}

#[test]
fn results_nesting_too_deep_are_a_422() {
    let mut deep = json!(1);
    for _ in 0..99 {
        deep = json!({"x": deep});
    }
    let mut d = doc();
    let err = apply(&schema(), &mut d, json!({"spec": {"nested": deep}})).unwrap_err();
    assert_eq!(err.code, 422);
}
