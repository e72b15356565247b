use serde_json::json;

use super::*;

fn compiled() -> Schema {
    Schema::new(&sample_schema())
}

fn sample_schema() -> Value {
    let item = obj(
        "An item.",
        [("name", string("Its name.")), ("size", int64("Its size.").with("minimum", json!(0)))],
        &["name"],
    );
    let spec = obj(
        "The spec.",
        [
            ("mode", enum_of("The mode.", &["Fast", "Slow"]).with("default", json!("Fast"))),
            (
                "limits",
                obj("Limits.", [("max", int64("Max.").with("default", json!(10)).with("maximum", json!(100)))], &[])
                    .with("default", json!({})),
            ),
            ("items", map_list("Items.", item, &["name"])),
            ("tags", array_of("Tags.", string("A tag.")).with("x-kubernetes-list-type", json!("set"))),
            ("when", date_time("A time.")),
            ("ratio", json!({"type": "number", "description": "A ratio."})),
            ("short", string("Short.").with("maxLength", json!(3))),
            (
                "free",
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true, "description": "Anything."}),
            ),
            ("env", json!({"type": "object", "additionalProperties": string("A value."), "description": "A map."})),
            ("note", string("Nullable.").with("nullable", json!(true))),
            ("enabled", boolean("On?")),
        ],
        &["mode"],
    );
    kind_root("A test kind.", spec, obj("The status.", [("ok", boolean("Ok?"))], &[]))
}

/// Sorted, so that the tests hold whether or not serde_json keeps insertion order.
fn msgs(errs: ErrorList) -> Vec<String> {
    let mut msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
    msgs.sort();
    msgs
}

#[test]
fn prune_reports_unknown_paths() {
    let mut o = json!({
        "apiVersion": "x/v1", "kind": "K", "extra": 1,
        "metadata": {"name": "a", "labels": {"k": "v"}, "bogus": true},
        "spec": {
            "mode": "Fast", "foo": 1,
            "items": [{"name": "a"}, {"name": "b", "bar": {"deep": 1}}],
            "free": {"anything": {"goes": 1}},
            "env": {"A": "1"},
            "limits": {"max": 1, "min": 0},
        },
    });
    let mut pruned = prune(&compiled(), &mut o);
    pruned.sort();
    assert_eq!(pruned, ["extra", "metadata.bogus", "spec.foo", "spec.items[1].bar", "spec.limits.min"]);
    assert_eq!(o["metadata"], json!({"name": "a", "labels": {"k": "v"}}));
    assert_eq!(o["spec"]["items"][1], json!({"name": "b"}));
    assert_eq!(o["spec"]["free"], json!({"anything": {"goes": 1}}), "preserve-unknown-fields keeps everything");
    assert_eq!(o["spec"]["env"], json!({"A": "1"}), "additionalProperties keeps every key");
    assert!(prune(&compiled(), &mut o).is_empty(), "pruning twice finds nothing");
}

#[test]
fn prune_leaves_mistyped_values_to_validation() {
    let mut o = json!({"spec": "oops"});
    assert!(prune(&compiled(), &mut o).is_empty());
    assert_eq!(o, json!({"spec": "oops"}));
}

#[test]
fn defaults_fill_absent_fields_and_nested_object_defaults() {
    let mut o = json!({"spec": {"items": [{"name": "a"}], "note": null, "enabled": null}});
    apply_defaults(&compiled(), &mut o);
    assert_eq!(o["spec"]["mode"], "Fast");
    assert_eq!(o["spec"]["limits"], json!({"max": 10}), "an object default is itself defaulted");
    assert_eq!(o["spec"]["note"], Value::Null, "nullable keeps null");
    assert!(o["spec"].get("enabled").is_none(), "a non-nullable null without default is dropped");
    assert!(o.get("status").is_none(), "absent objects without default stay absent");

    let mut o = json!({"spec": {"mode": "Slow", "limits": {"max": 50}}});
    apply_defaults(&compiled(), &mut o);
    assert_eq!(o["spec"]["mode"], "Slow", "present values are kept");
    assert_eq!(o["spec"]["limits"]["max"], 50);

    let mut o = json!({"spec": {"mode": null}});
    apply_defaults(&compiled(), &mut o);
    assert_eq!(o["spec"]["mode"], "Fast", "a default replaces a non-nullable null");
}

#[test]
fn type_errors() {
    let o = json!({"spec": {"mode": "Fast", "limits": {"max": "string"}, "enabled": "yes", "ratio": 1, "items": {}}});
    assert_eq!(
        msgs(validate(&compiled(), &o)),
        [
            "spec.enabled: Invalid value: \"string\": spec.enabled in body must be of type boolean: \"string\"",
            "spec.items: Invalid value: \"object\": spec.items in body must be of type array: \"object\"",
            "spec.limits.max: Invalid value: \"string\": spec.limits.max in body must be of type integer: \"string\"",
        ]
    );
    let o = json!({"spec": {"mode": "Fast", "limits": {"max": 1.5}, "ratio": "x"}});
    assert_eq!(
        msgs(validate(&compiled(), &o)),
        [
            "spec.limits.max: Invalid value: \"number\": spec.limits.max in body must be of type integer: \"number\"",
            "spec.ratio: Invalid value: \"string\": spec.ratio in body must be of type number: \"string\"",
        ]
    );
    let errs = validate(&compiled(), &json!({"spec": {"mode": "Fast", "enabled": true}, "status": []}));
    assert_eq!(errs.0[0].error_type.reason(), "FieldValueTypeInvalid");
}

#[test]
fn enum_required_bounds_format() {
    let o = json!({"spec": {"mode": "Medium", "items": [{"size": -1}], "limits": {"max": 101}, "when": "yesterday", "short": "abcd"}});
    assert_eq!(
        msgs(validate(&compiled(), &o)),
        [
            "spec.items[0].name: Required value",
            "spec.items[0].size: Invalid value: -1: spec.items[0].size in body should be greater than or equal to 0",
            "spec.limits.max: Invalid value: 101: spec.limits.max in body should be less than or equal to 100",
            "spec.mode: Unsupported value: \"Medium\": supported values: \"Fast\", \"Slow\"",
            "spec.short: Too long: may not be longer than 3",
            "spec.when: Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\"",
        ]
    );
    assert_eq!(msgs(validate(&compiled(), &json!({}))), ["spec: Required value"]);
    let ok = json!({"spec": {"mode": "Slow", "when": "2026-07-01T12:00:00Z", "note": null, "short": "abc"}});
    assert!(validate(&compiled(), &ok).is_empty());
}

#[test]
fn list_types() {
    let o = json!({"spec": {"mode": "Fast", "items": [{"name": "a"}, {"name": "b"}, {"name": "a", "size": 2}], "tags": ["x", "y", "x"]}});
    assert_eq!(
        msgs(validate(&compiled(), &o)),
        ["spec.items[2]: Duplicate value: {\"name\":\"a\"}", "spec.tags[2]: Duplicate value: \"x\""]
    );
}

#[test]
fn metadata_ref_is_skipped_by_validation_and_defaulting() {
    let mut o = json!({"metadata": {"name": 5}, "spec": {"mode": "Fast"}});
    apply_defaults(&compiled(), &mut o);
    assert_eq!(o["metadata"], json!({"name": 5}));
    assert!(validate(&compiled(), &o).is_empty());
}

#[test]
fn builders_make_structural_schemas() {
    let s = sample_schema();
    assert_eq!(s["properties"]["metadata"], json!({"$ref": OBJECT_META_REF}));
    assert_eq!(s["required"], json!(["spec"]));
    let items = &s["properties"]["spec"]["properties"]["items"];
    assert_eq!(items["x-kubernetes-list-type"], "map");
    assert_eq!(items["x-kubernetes-list-map-keys"], json!(["name"]));
    assert_eq!(s["properties"]["spec"]["properties"]["limits"]["properties"]["max"]["format"], "int64");
    assert!(s["properties"]["apiVersion"]["description"].as_str().is_some_and(|d| d.starts_with("APIVersion defines")));
    assert!(s["properties"]["status"].get("required").is_none(), "no empty required lists");
}

#[test]
fn date_time_is_checked_as_crds_check_it() {
    // Accepted by kube-openapi's strfmt.IsDateTime (v1.20), quirks included.
    for ok in [
        "2024-01-01T00:00:00Z",
        "2024-01-01T23:59:59+01:00",
        "2024-01-01T00:00:00.123456789Z",
        "2024-01-01t00:00:00z",
        "2024-02-29T00:00:00-23:59",
        "2024-01-01T00:00:00,5Z",
        "2024-01-01T00:00:00Zthen-anything",
        "2000-02-29T12:00:00Z",
    ] {
        assert!(is_date_time(ok), "{ok} is a date-time upstream");
    }
    for bad in [
        "2024-01-01 00:00:00Z",
        "2024-01-01T00:00:00+0100",
        "2024-01-01T00:00Z",
        "2024-01-01T00:00:00Z[UTC]",
        "20240101T000000Z",
        "2024-01-01T00:00:00",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:60:00Z",
        "2024-01-01T00:00:60Z",
        "2023-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-1-01T00:00:00Z",
        "2024-01-00T00:00:00Z",
        "2024-01-01T00:00:00.Z",
        "2024-01-01T00:00:00\n5Z",
        "+2024-01-01T00:00:00Z",
        "",
        "T",
    ] {
        assert!(!is_date_time(bad), "{bad:?} is not a date-time upstream");
    }
    let o = json!({"spec": {"mode": "Fast", "when": "2024-01-01 00:00:00Z"}});
    assert_eq!(
        msgs(validate(&compiled(), &o)),
        [
            "spec.when: Invalid value: \"2024-01-01 00:00:00Z\": spec.when in body must be of type date-time: \"2024-01-01 00:00:00Z\""
        ]
    );
}

#[test]
fn whole_floats_are_integers_as_crds_store_them() {
    let mut o = json!({"spec": {"mode": "Fast", "limits": {"max": 5.0}, "ratio": 2.0, "items": [{"name": "a", "size": 1e3}],
        "free": {"x": -0.0, "y": 0.5, "big": 1e300}}});
    normalize_numbers(&mut o);
    assert_eq!(o["spec"]["limits"]["max"], json!(5));
    assert!(o["spec"]["limits"]["max"].is_i64());
    assert!(o["spec"]["ratio"].is_i64(), "whole numbers of `number` fields too (Go writes 2.0 as 2)");
    assert!(o["spec"]["items"][0]["size"].is_i64());
    assert_eq!(o["spec"]["free"]["x"], json!(0));
    assert_eq!(o["spec"]["free"]["y"], json!(0.5));
    assert!(o["spec"]["free"]["big"].is_f64(), "beyond 2^53 a float stays a float");
    assert!(validate(&compiled(), &o).is_empty(), "{:?}", msgs(validate(&compiled(), &o)));

    let mut o =
        json!({"spec": {"mode": "Fast", "limits": {"max": 5.5}, "items": [{"name": "a", "size": 9007199254740992.0}]}});
    normalize_numbers(&mut o);
    assert_eq!(
        msgs(validate(&compiled(), &o)),
        [
            "spec.items[0].size: Invalid value: \"number\": spec.items[0].size in body must be of type integer: \"number\"",
            "spec.limits.max: Invalid value: \"number\": spec.limits.max in body must be of type integer: \"number\"",
        ]
    );
}
