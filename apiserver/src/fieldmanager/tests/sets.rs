//! Field sets, their fieldsV1 encoding, and the typed walks over the backup schema.

use serde_json::json;

use super::backup;
use crate::fieldmanager::path::PathElement;
use crate::fieldmanager::set::Set;
use crate::fieldmanager::typed;

fn f(name: &str) -> PathElement {
    PathElement::Field(name.into())
}

#[test]
fn fields_v1_round_trip() {
    let encoded = json!({
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}, "f:finalizers": {".": {}, "v:\"x\"": {}}},
        "f:spec": {"f:schedule": {}, "f:items": {"i:0": {}}},
        "f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}, "f:type": {}}}},
    });
    let set = Set::from_fields_v1(&encoded).unwrap();
    assert!(set.has(&[f("metadata"), f("labels")]));
    assert!(set.has(&[f("metadata"), f("labels"), f("app")]));
    assert!(!set.has(&[f("spec")]));
    assert!(set.has(&[f("spec"), f("items"), PathElement::Index(0)]));
    let ready = PathElement::key_of(json!({"type": "Ready"}).as_object().unwrap().clone());
    assert!(set.has(&[f("status"), f("conditions"), ready.clone()]));
    assert!(set.has(&[f("status"), f("conditions"), ready, f("type")]));
    assert_eq!(set.to_fields_v1(), encoded);
    // Unknown element kinds are dropped; a key without a colon is an error.
    assert!(Set::from_fields_v1(&json!({"x:y": {}, "f:a": {}})).unwrap().has(&[f("a")]));
    assert!(Set::from_fields_v1(&json!({"nocolon": {}})).is_err());
}

#[test]
fn path_elements_encode_and_print_as_upstream() {
    let key = PathElement::key_of(json!({"type": "Ready", "a": 1}).as_object().unwrap().clone());
    assert_eq!(key.encode(), r#"k:{"a":1,"type":"Ready"}"#);
    assert_eq!(key.to_string(), r#"[a=1,type="Ready"]"#);
    assert_eq!(PathElement::Value(json!("a<b")).encode(), r#"v:"a\u003cb""#);
    assert_eq!(PathElement::Value(json!("x")).to_string(), r#"[="x"]"#);
    assert_eq!(PathElement::Index(3).encode(), "i:3");
    assert!(f("z") < key && key < PathElement::Value(json!(1)) && PathElement::Value(json!(1)) < PathElement::Index(0));
}

#[test]
fn set_algebra() {
    let mut a = Set::new();
    a.insert(&[f("spec"), f("a")]);
    a.insert(&[f("spec"), f("b")]);
    a.insert(&[f("spec")]);
    let mut b = Set::new();
    b.insert(&[f("spec")]);
    // A plain difference keeps the paths below a removed member; a recursive one does not.
    assert_eq!(a.clone().difference(&b).paths().len(), 2);
    assert!(a.clone().recursive_difference(&b).is_empty());
    assert_eq!(a.intersection(&b).paths(), vec![vec![f("spec")]]);
    assert_eq!(b.union(&a), a);
    let (schema, _) = backup();
    let mut deep = Set::new();
    deep.insert(&[f("spec"), f("retention"), f("keepLast")]);
    deep.insert(&[f("metadata"), f("labels"), f("app")]);
    let named = deep.ensure_named_fields_are_members(Some(&schema));
    assert!(named.has(&[f("spec")]) && named.has(&[f("spec"), f("retention")]) && named.has(&[f("metadata")]));
    assert!(named.has(&[f("metadata"), f("labels")]), "labels is a field of ObjectMeta");
    let mut entry = Set::new();
    entry.insert(&[f("metadata"), f("annotations"), f("a"), f("deeper")]);
    let named = entry.ensure_named_fields_are_members(Some(&schema));
    assert!(!named.has(&[f("metadata"), f("annotations"), f("a")]), "a map entry is not a named field");
}

/// Difference, recursive difference and union as their definitions on lists of paths give them, for pairs of sets
/// of every relative size (each walks the smaller side's elements, so both ways are taken).
#[test]
fn set_algebra_agrees_with_paths() {
    use std::collections::BTreeSet;
    let names = ["a", "b", "c"];
    let mut universe: Vec<Vec<PathElement>> = names.iter().map(|n| vec![f(n)]).collect();
    for depth in 1..3 {
        let longer: Vec<_> = universe.iter().filter(|p| p.len() == depth).cloned().collect();
        for p in longer {
            universe.extend(names.iter().map(|n| [p.clone(), vec![f(n)]].concat()));
        }
    }
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut random_set = |density: u64| {
        let mut set = Set::new();
        for p in &universe {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if state % 100 < density {
                set.insert(p);
            }
        }
        set
    };
    for round in 0..300 {
        let (a, b) = (random_set([5, 30, 70][round % 3]), random_set([5, 30, 70][round / 3 % 3]));
        let (pa, pb): (BTreeSet<_>, BTreeSet<_>) = (a.paths().into_iter().collect(), b.paths().into_iter().collect());
        let difference: BTreeSet<_> = pa.difference(&pb).cloned().collect();
        let under_b = |p: &Vec<PathElement>| (1..=p.len()).any(|n| pb.contains(&p[..n]));
        let recursive: BTreeSet<_> = pa.iter().filter(|p| !under_b(p)).cloned().collect();
        let union: BTreeSet<_> = pa.union(&pb).cloned().collect();
        // Each result holds the expected paths, in the trie those paths build (no empty nodes left behind).
        let built = |paths: &BTreeSet<Vec<PathElement>>| {
            let mut set = Set::new();
            paths.iter().for_each(|p| set.insert(p));
            set
        };
        assert_eq!(a.clone().difference(&b), built(&difference));
        assert_eq!(a.clone().recursive_difference(&b), built(&recursive));
        assert_eq!(a.clone().into_union(b.clone()), built(&union));
        assert_eq!(a.clone().union(&b), a.into_union(b), "both unions build the same trie");
    }
}

#[test]
fn field_sets_follow_the_schema() {
    let (schema, _) = backup();
    let obj = json!({
        "metadata": {"labels": {"app": "x"}, "finalizers": ["a"], "ownerReferences": [{"uid": "u1", "name": "o"}]},
        "spec": {"schedule": "@daily", "database": {"type": "Prometheus", "url": "http://p"}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "backups": [{"id": "1"}]},
    });
    let set = typed::to_field_set(Some(&schema), &obj).unwrap();
    assert_eq!(
        set.to_fields_v1(),
        json!({
            "f:metadata": {
                "f:labels": {"f:app": {}},
                "f:finalizers": {"v:\"a\"": {}},
                "f:ownerReferences": {"k:{\"uid\":\"u1\"}": {".": {}, "f:name": {}, "f:uid": {}}},
            },
            "f:spec": {"f:schedule": {}, "f:database": {"f:type": {}, "f:url": {}}},
            "f:status": {
                "f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}, "f:type": {}}},
                "f:backups": {},
            },
        })
    );
    let errors = typed::to_field_set(
        Some(&schema),
        &json!({"spec": {"nope": 1}, "status": {"conditions": [{"status": "True"}]}}),
    )
    .unwrap_err();
    assert_eq!(
        errors,
        vec![
            ".spec.nope: field not declared in schema".to_string(),
            ".status.conditions: element 0: associative list with keys has an element that omits key field \"type\" (and doesn't have default value)".to_string(),
        ]
    );
}

#[test]
fn comparisons_mark_new_containers() {
    let (schema, _) = backup();
    let old = json!({"spec": {"schedule": "a"}});
    let new = json!({"spec": {"schedule": "b", "retention": {"keepLast": 3}}});
    let c = typed::compare(Some(&schema), &old, &new, &Set::new());
    assert!(c.modified.has(&[f("spec"), f("schedule")]));
    assert!(c.added.has(&[f("spec"), f("retention")]));
    assert!(c.added.has(&[f("spec"), f("retention"), f("keepLast")]));
    let back = typed::compare(Some(&schema), &new, &old, &Set::new());
    assert!(back.removed.has(&[f("spec"), f("retention")]));
}

#[test]
fn comparisons_leave_skipped_paths_out() {
    let (schema, _) = backup();
    let old = json!({"metadata": {"name": "a", "managedFields": [{"manager": "m"}]}, "spec": {"schedule": "a"}});
    let new = json!({"metadata": {"name": "a"}, "spec": {"schedule": "b"}, "status": {"phase": "Running"}});
    let mut skip = Set::new();
    skip.insert(&[f("metadata"), f("managedFields")]);
    skip.insert(&[f("status")]);
    let c = typed::compare(Some(&schema), &old, &new, &skip);
    assert!(c.removed.is_empty(), "{:?}", c.removed.paths());
    assert!(c.added.is_empty(), "{:?}", c.added.paths());
    assert_eq!(c.modified.paths(), vec![vec![f("spec"), f("schedule")]]);
    let unskipped = typed::compare(Some(&schema), &old, &new, &Set::new());
    assert!(unskipped.removed.has(&[f("metadata"), f("managedFields")]));
    assert!(unskipped.added.has(&[f("status")]));
}

#[test]
fn merge_keeps_live_order_and_merges_by_key() {
    let (schema, _) = backup();
    let live = json!({"status": {"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}],
                                 "backups": [{"id": "1"}, {"id": "2"}]}});
    let config = json!({"status": {"conditions": [{"type": "B", "status": "False"}, {"type": "C", "status": "True"}],
                                   "backups": [{"id": "3"}]}});
    let merged = typed::merge(Some(&schema), &live, &config);
    assert_eq!(
        merged["status"]["conditions"],
        json!([{"type": "A", "status": "True"}, {"type": "B", "status": "False"}, {"type": "C", "status": "True"}])
    );
    assert_eq!(merged["status"]["backups"], json!([{"id": "3"}]), "atomic lists are replaced");
}

/// Objects a create may carry, for the typed walks: on the backup schema (a map list in status, a set of
/// finalizers, atomic lists, maps), with empty containers, mistyped values, duplicate and unkeyed list items, and
/// the metadata fields nobody owns.
fn created_objects() -> Vec<serde_json::Value> {
    vec![
        json!({}),
        json!({"apiVersion": "v", "kind": "K", "metadata": {"name": "a", "namespace": "n", "uid": "u"}}),
        super::object(json!({"database": {"type": "Prometheus", "url": "http://p:9090"}, "schedule": "0 2 * * *"})),
        json!({"apiVersion": "backup.extend-k8s.io/v1", "kind": "TimeseriesDBBackup",
            "metadata": {"name": "a", "generateName": "a-", "labels": {"x": "1", "y": ""}, "annotations": {},
                "finalizers": ["f", "f", "g"], "resourceVersion": "5", "creationTimestamp": null,
                "managedFields": [{"manager": "m"}],
                "ownerReferences": [{"uid": "u1", "name": "o"}, {"name": "no-uid"}, {"uid": "u1", "name": "dup"}]},
            "spec": {"database": {"type": "Prometheus", "url": "http://p:9090", "selector": []},
                "retention": {"keepLast": 3}, "destination": {}, "bogus": {"deep": [1, {"a": 2}]}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"status": "False"}, {"type": "Ready"}],
                "backups": [{"id": "1"}], "phase": 7}}),
        json!({"spec": "not an object", "metadata": [], "status": {"conditions": {}}}),
        json!({"metadata": {"name": "only-stripped", "uid": "u"}, "spec": {}}),
    ]
}

/// Fields a walk may be told to skip: none, status and labels, status and managedFields (what a create skips).
fn skip_sets() -> Vec<Set> {
    let set = |paths: &[&[&str]]| {
        let mut s = Set::new();
        for p in paths {
            s.insert(&p.iter().map(|n| f(n)).collect::<Vec<_>>());
        }
        s
    };
    vec![Set::new(), set(&[&["status"], &["metadata", "labels"]]), set(&[&["status"], &["metadata", "managedFields"]])]
}

/// The set a create adds, built in one walk, is the one the comparison with an empty object finds.
#[test]
fn added_to_empty_is_what_compare_adds() {
    let (schema, _) = super::backup();
    for obj in &created_objects() {
        for skip in &skip_sets() {
            let expected = typed::compare(Some(&schema), &json!({}), obj, skip).added;
            assert_eq!(typed::added_to_empty(Some(&schema), obj, skip), expected, "{obj}");
        }
    }
}

/// A create's `fieldsV1`, written in the walk, is the set the updater computes for it (what is added, less what
/// nobody owns) encoded.
#[test]
fn created_fields_v1_is_the_encoded_set() {
    let (schema, _) = super::backup();
    let strip = crate::fieldmanager::managers::strip_set();
    for obj in &created_objects() {
        for skip in &skip_sets() {
            let expected = typed::added_to_empty(Some(&schema), obj, skip).difference(strip).to_fields_v1();
            let written = typed::created_fields_v1(Some(&schema), obj, skip, strip);
            assert_eq!(serde_json::Value::Object(written), expected, "{obj}");
        }
    }
}
