//! JSON patch: evanphx/json-patch v4's cases and texts, and issue 12's hostile patches.

use serde_json::{Value, json};

use super::*;
use crate::request::body::{MAX_DOCUMENT_DEPTH, depth_counting};

fn patched(doc: Value, patch: Value) -> ApiResult<Value> {
    let mut doc = doc;
    apply(&mut doc, &parse(patch.to_string().as_bytes())?)?;
    Ok(doc)
}

fn ok(doc: Value, patch: Value) -> Value {
    patched(doc, patch).unwrap()
}

/// The text of the operation that does not apply (logged), after checking the 422 the client gets: upstream's
/// generic message with empty details.
fn fails(doc: Value, patch: Value) -> String {
    let patch = parse(patch.to_string().as_bytes()).unwrap();
    let e = apply(&mut doc.clone(), &patch).unwrap_err();
    assert_eq!(e.code, 422, "{e:?}");
    assert_eq!(e.message, "the server rejected our request due to an error in our request");
    assert_eq!(e.details, Some(json!({})));
    match run(&mut doc.clone(), &patch).unwrap_err() {
        Failure::Apply(text) => text,
        other => panic!("not an operation that does not apply: {other:?}"),
    }
}

#[test]
fn operations_and_failures() {
    let mut doc = json!({"spec": {"a": 1, "b": 2}});
    apply(&mut doc, &parse(br#"[{"op":"replace","path":"/spec/b","value":5}]"#).unwrap()).unwrap();
    assert_eq!(doc["spec"]["b"], 5);
    let bad = parse(br#"[{"op":"remove","path":"/nope"}]"#).unwrap();
    assert_eq!(apply(&mut doc, &bad).unwrap_err().code, 422);
    assert_eq!(parse(b"{").unwrap_err().code, 400);
}

/// evanphx's `Cases` (those on objects).
#[test]
fn upstream_cases() {
    let cases = [
        (
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz", "value": "qux"}]),
            json!({"baz": "qux", "foo": "bar"}),
        ),
        (
            json!({"foo": ["bar", "baz"]}),
            json!([{"op": "add", "path": "/foo/1", "value": "qux"}]),
            json!({"foo": ["bar", "qux", "baz"]}),
        ),
        (
            json!({"foo": ["bar", "baz"]}),
            json!([{"op": "add", "path": "/foo/-1", "value": "qux"}]),
            json!({"foo": ["bar", "baz", "qux"]}),
        ),
        (json!({"baz": "qux", "foo": "bar"}), json!([{"op": "remove", "path": "/baz"}]), json!({"foo": "bar"})),
        (
            json!({"foo": ["bar", "qux", "baz"]}),
            json!([{"op": "remove", "path": "/foo/1"}]),
            json!({"foo": ["bar", "baz"]}),
        ),
        (
            json!({"baz": "qux", "foo": "bar"}),
            json!([{"op": "replace", "path": "/baz", "value": "boo"}]),
            json!({"baz": "boo", "foo": "bar"}),
        ),
        (
            json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
            json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]),
            json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
        ),
        (
            json!({"foo": ["all", "grass", "cows", "eat"]}),
            json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}]),
            json!({"foo": ["all", "cows", "eat", "grass"]}),
        ),
        (
            json!({"foo": ["all", "grass", "cows", "eat"]}),
            json!([{"op": "move", "from": "/foo/1", "path": "/foo/2"}]),
            json!({"foo": ["all", "cows", "grass", "eat"]}),
        ),
        (
            json!({"foo": ["bar"]}),
            json!([{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]),
            json!({"foo": ["bar", ["abc", "def"]]}),
        ),
        (
            json!({"foo": "bar", "qux": {"baz": 1, "bar": null}}),
            json!([{"op": "remove", "path": "/qux/bar"}]),
            json!({"foo": "bar", "qux": {"baz": 1}}),
        ),
        (
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz", "value": null}]),
            json!({"baz": null, "foo": "bar"}),
        ),
        (
            json!({"foo": ["bar"]}),
            json!([{"op": "copy", "path": "/foo/0", "from": "/foo"}]),
            json!({"foo": [["bar"], "bar"]}),
        ),
        (
            json!({"foo": ["bar", "qux", "baz"]}),
            json!([{"op": "remove", "path": "/foo/-2"}]),
            json!({"foo": ["bar", "baz"]}),
        ),
        (json!({"foo": []}), json!([{"op": "add", "path": "/foo/-1", "value": "qux"}]), json!({"foo": ["qux"]})),
        (
            json!({"bar": [{"baz": null}]}),
            json!([{"op": "replace", "path": "/bar/0/baz", "value": 1}]),
            json!({"bar": [{"baz": 1}]}),
        ),
        (json!({"bar": [null]}), json!([{"op": "replace", "path": "/bar/0", "value": 1}]), json!({"bar": [1]})),
        (
            json!({"id": "0", "parentID": "0"}),
            json!([{"op": "test", "path": "", "value": {"id": "0", "parentID": "0"}}, {"op": "replace", "path": "", "value": {"id": "1"}}]),
            json!({"id": "1"}),
        ),
    ];
    for (doc, patch, want) in cases {
        assert_eq!(ok(doc, patch.clone()), want, "{patch}");
    }
}

/// evanphx's `BadCases` (those on objects) fail with 422.
#[test]
fn upstream_bad_cases() {
    let cases = [
        (json!({"foo": "bar"}), json!([{"op": "add", "path": "/baz/bat", "value": "qux"}])),
        (json!({"a": {"b": {"d": 1}}}), json!([{"op": "remove", "path": "/a/b/c"}])),
        (json!({"a": {"b": {"d": 1}}}), json!([{"op": "move", "from": "/a/b/c", "path": "/a/b/e"}])),
        (json!({"a": {"b": [1]}}), json!([{"op": "remove", "path": "/a/b/1"}])),
        (json!({"a": {"b": [1]}}), json!([{"op": "move", "from": "/a/b/1", "path": "/a/b/2"}])),
        (json!({"foo": "bar"}), json!([{"op": "add", "pathz": "/baz", "value": "qux"}])),
        (json!({"foo": "bar"}), json!([{"op": "add", "path": "", "value": "qux"}])),
        (json!({"foo": ["bar", "baz"]}), json!([{"op": "replace", "path": "/foo/2", "value": "bum"}])),
        (json!({"foo": ["bar", "baz"]}), json!([{"op": "add", "path": "/foo/-4", "value": "bum"}])),
        (json!({"name": {"foo": "bat", "qux": "bum"}}), json!([{"op": "replace", "path": "/foo/bar", "value": "baz"}])),
        (json!({"foo": ["bar"]}), json!([{"op": "add", "path": "/foo/2", "value": "bum"}])),
        (json!({"foo": []}), json!([{"op": "remove", "path": "/foo/-"}])),
        (json!({"foo": []}), json!([{"op": "remove", "path": "/foo/-1"}])),
        (json!({"foo": ["bar"]}), json!([{"op": "remove", "path": "/foo/-2"}])),
        (json!({}), json!([{"op": null, "path": ""}])),
        (json!({}), json!([{"op": "add", "path": null}])),
        (json!({}), json!([{"op": "copy", "from": null}])),
        (json!({"foo": ["bar"]}), json!([{"op": "copy", "path": "/foo/6666666666", "from": "/"}])),
        (json!({"foo": ["bar"]}), json!([{"op": "copy", "path": "/foo/2", "from": "/foo/0"}])),
        (json!({"foo": ["all", "grass", "cows", "eat"]}), json!([{"op": "move", "from": "/foo/1", "path": "/foo/4"}])),
    ];
    for (doc, patch) in cases {
        fails(doc, patch);
    }
}

#[test]
fn upstream_error_texts() {
    let doc = || json!({"spec": {"a": 1, "list": ["x", "y"]}});
    let cases = [
        (
            json!([{"op": "add", "path": "/nope/x", "value": 1}]),
            r#"add operation does not apply: doc is missing path: "/nope/x": missing value"#,
        ),
        (json!([{"op": "add", "value": 1}]), "add operation failed to decode path: missing value"),
        (
            json!([{"op": "remove", "path": "/spec/b"}]),
            "error in remove for path: '/spec/b': Unable to remove nonexistent key: b: missing value",
        ),
        (
            json!([{"op": "remove", "path": "/spec/list/x"}]),
            r#"error in remove for path: '/spec/list/x': strconv.Atoi: parsing "x": invalid syntax"#,
        ),
        (
            json!([{"op": "remove", "path": "/spec/list/5"}]),
            "error in remove for path: '/spec/list/5': Unable to access invalid index: 5: invalid index referenced",
        ),
        (
            json!([{"op": "add", "path": "/spec/list/x", "value": 1}]),
            r#"error in add for path: '/spec/list/x': value was not a proper array index: 'x': strconv.Atoi: parsing "x": invalid syntax"#,
        ),
        (
            json!([{"op": "replace", "path": "/spec/b", "value": 1}]),
            "replace operation does not apply: doc is missing key: /spec/b: missing value",
        ),
        (
            json!([{"op": "replace", "value": 1}]),
            "replace operation failed to decode path: operation missing path field: missing value",
        ),
        (
            json!([{"op": "replace", "path": 5}]),
            "replace operation failed to decode path: json: cannot unmarshal number into Go value of type string",
        ),
        (json!([{"op": "replace", "path": "", "value": 1}]), "replace operation value must be object or array"),
        (
            json!([{"op": "move", "path": "/x"}]),
            "move operation failed to decode from: operation, missing from field: missing value",
        ),
        (
            json!([{"op": "move", "from": "/spec/b", "path": "/x"}]),
            "error in move for path: 'b': Unable to remove nonexistent key: b: missing value",
        ),
        (
            json!([{"op": "move", "from": "/spec", "path": "/spec/x"}]),
            "move operation does not apply: doc is missing destination path: /spec/x: missing value",
        ),
        (
            json!([{"op": "move", "from": "", "path": "/x"}]),
            "move operation does not apply: doc is missing from path: : missing value",
        ),
        (
            json!([{"op": "copy", "from": "", "path": "/x"}]),
            "copy operation does not apply: doc is missing from path: : missing value",
        ),
        (
            json!([{"op": "copy", "from": "/spec/b", "path": "/x"}]),
            "error in copy for from: '/spec/b': unable to get nonexistent key: b: missing value",
        ),
        (json!([{"op": "copy", "from": "/spec"}]), "copy operation failed to decode path: missing value"),
        (
            json!([{"op": "copy", "from": "/spec", "path": "/spec/list/9"}]),
            "error while adding value during copy: Unable to access invalid index: 9: invalid index referenced",
        ),
        (json!([{"op": "test", "path": "/spec/a", "value": 2}]), "testing value /spec/a failed: test failed"),
        (
            json!([{"op": "test", "path": "/nope/a", "value": 2}]),
            "test operation does not apply: is missing path: /nope/a: missing value",
        ),
        (
            json!([{"op": "test", "path": "/spec/list/x", "value": 2}]),
            r#"error in test for path: '/spec/list/x': strconv.Atoi: parsing "x": invalid syntax"#,
        ),
        (json!([{"op": "frob", "path": "/x"}]), "Unexpected kind: frob"),
        (json!([{"op": 7, "path": "/x"}]), "Unexpected kind: unknown"),
        (json!([null]), "Unexpected kind: unknown"),
    ];
    for (patch, want) in cases {
        assert_eq!(fails(doc(), patch.clone()), want, "{patch}");
    }
}

#[test]
fn pointer_and_index_rules() {
    let doc = || json!({"spec": {"a/b": 1, "m~n": 2, "list": ["x", "y", "z"], "": 3}});
    // ~1 is '/', ~0 is '~', and "~01" is "~1" (not "/").
    assert_eq!(ok(doc(), json!([{"op": "remove", "path": "/spec/a~1b"}]))["spec"].get("a/b"), None);
    assert_eq!(ok(doc(), json!([{"op": "remove", "path": "/spec/m~0n"}]))["spec"].get("m~n"), None);
    assert_eq!(ok(doc(), json!([{"op": "add", "path": "/spec/~01", "value": 0}]))["spec"]["~1"], 0);
    // What precedes the first '/' is ignored; "/spec/" names the empty key.
    assert_eq!(ok(doc(), json!([{"op": "replace", "path": "x/spec/a~1b", "value": 9}]))["spec"]["a/b"], 9);
    assert_eq!(ok(doc(), json!([{"op": "remove", "path": "/spec/"}]))["spec"].get(""), None);
    // Go's Atoi: leading zeros and '+' are fine; negative indices count from the end.
    assert_eq!(
        ok(doc(), json!([{"op": "replace", "path": "/spec/list/01", "value": "Y"}]))["spec"]["list"],
        json!(["x", "Y", "z"])
    );
    assert_eq!(
        ok(doc(), json!([{"op": "replace", "path": "/spec/list/+2", "value": "Z"}]))["spec"]["list"],
        json!(["x", "y", "Z"])
    );
    assert_eq!(
        ok(doc(), json!([{"op": "replace", "path": "/spec/list/-1", "value": "Z"}]))["spec"]["list"],
        json!(["x", "y", "Z"])
    );
    assert_eq!(
        ok(doc(), json!([{"op": "add", "path": "/spec/list/-", "value": "w"}]))["spec"]["list"],
        json!(["x", "y", "z", "w"])
    );
    assert_eq!(
        ok(doc(), json!([{"op": "add", "path": "/spec/list/3", "value": "w"}]))["spec"]["list"],
        json!(["x", "y", "z", "w"])
    );
    assert_eq!(
        fails(doc(), json!([{"op": "replace", "path": "/spec/list/99999999999999999999", "value": 0}])),
        "replace operation does not apply: doc is missing key: /spec/list/99999999999999999999: missing value"
    );
    // Moving an element within its own array; copying into one's own child.
    assert_eq!(
        ok(doc(), json!([{"op": "move", "from": "/spec/list/0", "path": "/spec/list/-"}]))["spec"]["list"],
        json!(["y", "z", "x"])
    );
    assert_eq!(
        ok(doc(), json!([{"op": "copy", "from": "/spec/list", "path": "/spec/list/0"}]))["spec"]["list"][0],
        json!(["x", "y", "z"])
    );
}

#[test]
fn values_and_tests() {
    let doc = || json!({"spec": {"a": 1, "n": null, "o": {"x": [1, 2]}}});
    // An absent value is null.
    assert_eq!(ok(doc(), json!([{"op": "add", "path": "/spec/b"}]))["spec"]["b"], Value::Null);
    assert_eq!(ok(doc(), json!([{"op": "replace", "path": "/spec/a"}]))["spec"]["a"], Value::Null);
    // test: a missing or null value matches null (or no value), and nothing else does.
    for path in ["/spec/n", "/spec/missing"] {
        ok(doc(), json!([{"op": "test", "path": path, "value": null}]));
        ok(doc(), json!([{"op": "test", "path": path}]));
        fails(doc(), json!([{"op": "test", "path": path, "value": 0}]));
    }
    fails(doc(), json!([{"op": "test", "path": "/spec/a", "value": null}]));
    fails(doc(), json!([{"op": "test", "path": "/spec/a"}]));
    ok(doc(), json!([{"op": "test", "path": "/spec/o", "value": {"x": [1, 2]}}]));
    fails(doc(), json!([{"op": "test", "path": "/spec/o", "value": {"x": [2, 1]}}]));
    fails(doc(), json!([{"op": "test", "path": "/spec/a", "value": 1.0}]));
    // Parse errors and shapes: 400; null is no operation; unknown fields are ignored.
    assert_eq!(parse(br#"{"op":"add"}"#).unwrap_err().code, 400);
    assert_eq!(parse(br#"[1]"#).unwrap_err().code, 400);
    assert_eq!(ok(doc(), Value::Null), doc());
    assert_eq!(ok(doc(), json!([{"op": "add", "path": "/spec/a", "value": 5, "extra": true}]))["spec"]["a"], 5);
    // The result must stay an object.
    let err = patched(doc(), json!([{"op": "replace", "path": "", "value": [1]}])).unwrap_err();
    assert_eq!(err.code, 422);
    assert!(err.message.ends_with("the patched object is not a JSON object"), "{}", err.message);
}

/// Issue 12: eleven copies of a nested value into itself overflowed a worker's stack. Depth is now bounded before
/// anything is cloned.
#[test]
fn self_nesting_copies_are_a_422_within_the_depth_bound() {
    let mut deep = json!(1);
    for _ in 0..90 {
        deep = json!({"d": deep});
    }
    let mut deepest = String::from("/spec/v");
    for _ in 0..90 {
        deepest.push_str("/d");
    }
    let mut ops = vec![json!({"op": "add", "path": "/spec/v", "value": deep})];
    for i in 0..11 {
        ops.push(json!({"op": "copy", "from": "/spec/v", "path": format!("{}/c{i}", &deepest[..deepest.len() - 2])}));
    }
    let mut doc = json!({"spec": {}});
    let err = apply(&mut doc, &parse(Value::Array(ops).to_string().as_bytes()).unwrap()).unwrap_err();
    assert_eq!(err.code, 422);
    assert!(err.message.contains("would nest deeper than 110 levels"), "{}", err.message);
    let depth = depth_counting(&doc, 200, &mut 0);
    assert!(depth <= MAX_DOCUMENT_DEPTH, "the partial document stays within the bound: {depth}");
}

/// Issue 12: a move into its own parent followed by a failing test panicked in json-patch's undo.
#[test]
fn move_into_parent_then_failing_test_is_a_422() {
    let doc = json!({"spec": {"a": {"b": 1}, "c": 2}});
    let patch = json!([{"op": "move", "from": "/spec/a", "path": "/spec"}, {"op": "test", "path": "/x", "value": 1}]);
    assert_eq!(fails(doc.clone(), patch), "testing value /x failed: test failed");
    let patch =
        json!([{"op": "move", "from": "/spec/a", "path": "/spec"}, {"op": "test", "path": "/spec/b", "value": 2}]);
    assert_eq!(fails(doc.clone(), patch), "testing value /spec/b failed: test failed");
    // Into its own child: the source is gone before the destination is looked up.
    let patch = json!([{"op": "move", "from": "/spec", "path": "/spec/a/x"}]);
    fails(doc.clone(), patch);
    assert_eq!(ok(doc, json!([{"op": "move", "from": "/spec/a", "path": "/spec"}])), json!({"spec": {"b": 1}}));
}

/// Issue 12: twenty copies from "" doubled the document each time (gigabytes). Upstream refuses to copy the whole
/// document; twenty doublings of a subtree stop at the accumulated-copy limit.
#[test]
fn twenty_doubling_copies_are_a_422_within_the_copy_limit() {
    let doc = json!({"spec": {"s": "x".repeat(1000)}});
    let from_root: Vec<Value> = (0..20).map(|i| json!({"op": "copy", "from": "", "path": format!("/c{i}")})).collect();
    assert_eq!(
        fails(doc.clone(), Value::Array(from_root)),
        "copy operation does not apply: doc is missing from path: : missing value"
    );

    let doubling: Vec<Value> =
        (0..20).map(|i| json!({"op": "copy", "from": "/spec", "path": format!("/spec/c{i}")})).collect();
    let mut patched = doc;
    let err = apply(&mut patched, &parse(Value::Array(doubling).to_string().as_bytes()).unwrap()).unwrap_err();
    assert_eq!(err.code, 422);
    assert!(err.message.contains("exceeding the limit 3145728"), "{}", err.message);
    // What was built before the refusal: at most the limit plus the original.
    assert!(json_size(&patched) <= MAX_COPY_BYTES + 2000, "{}", json_size(&patched));
}

#[test]
fn ten_thousand_and_one_operations_are_a_413() {
    let op = json!({"op": "test", "path": "/spec", "value": {}});
    let err = parse(Value::Array(vec![op.clone(); MAX_OPERATIONS + 1]).to_string().as_bytes()).unwrap_err();
    assert_eq!((err.code, err.reason), (413, StatusReason::RequestEntityTooLarge));
    assert_eq!(
        err.message,
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
    );
    let patch = parse(Value::Array(vec![op; MAX_OPERATIONS]).to_string().as_bytes()).unwrap();
    assert_eq!(patch.operations.len(), MAX_OPERATIONS);
}

/// Issue 12: a patch that nests the document deeper than the decoder reads, by adding a deep value deep down.
#[test]
fn deep_nesting_by_patch_is_a_422() {
    let mut deep = json!(1);
    for _ in 0..60 {
        deep = json!([deep]);
    }
    let mut doc = json!({"spec": {}});
    apply(&mut doc, &parse(json!([{"op": "add", "path": "/spec/v", "value": deep}]).to_string().as_bytes()).unwrap())
        .unwrap();
    assert_eq!(depth_counting(&doc, 200, &mut 0), 62);
    let path = format!("/spec/v{}", "/0".repeat(59));
    let err = patched(doc.clone(), json!([{"op": "add", "path": format!("{path}/-"), "value": deep}])).unwrap_err();
    assert_eq!(err.code, 422);
    // A move that nests a deep subtree deeper, too.
    let moved = json!([{"op": "add", "path": "/spec/w", "value": deep}, {"op": "move", "from": "/spec/w", "path": format!("{path}/-")}]);
    assert_eq!(patched(doc.clone(), moved).unwrap_err().code, 422);
    // Within the document's bound, but fields deeper than 100 levels: refused once the patch has applied.
    let mut deeper = json!(1);
    for _ in 0..100 {
        deeper = json!([deeper]);
    }
    let err = patched(doc, json!([{"op": "add", "path": "/spec/w", "value": deeper}])).unwrap_err();
    assert_eq!(err.code, 422);
    assert!(err.message.ends_with("the object's fields nest deeper than 100 levels"), "{}", err.message);
}

#[test]
fn array_work_is_bounded() {
    let doc = json!({"spec": {"list": vec![0; 100_000]}});
    let removals: Vec<Value> = (0..MAX_OPERATIONS).map(|_| json!({"op": "remove", "path": "/spec/list/0"})).collect();
    // 10,000 removals from the front of 100,000 elements shift ~950 million elements: over the budget.
    let err = patched(doc.clone(), Value::Array(removals)).unwrap_err();
    assert_eq!(err.code, 413);
    // From the back they shift nothing.
    let removals: Vec<Value> = (0..MAX_OPERATIONS).map(|_| json!({"op": "remove", "path": "/spec/list/-1"})).collect();
    assert_eq!(ok(doc, Value::Array(removals))["spec"]["list"].as_array().map(Vec::len), Some(90_000));
}
