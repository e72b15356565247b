use serde_json::json;

use super::*;

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn msgs(errs: ErrorList) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

#[test]
fn dns1123() {
    for ok in ["a", "my-name", "123-abc", "a".repeat(63).as_str()] {
        assert!(is_dns1123_label(ok).is_empty(), "{ok}");
    }
    assert_eq!(
        is_dns1123_label("My_Name"),
        [
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        ]
    );
    assert_eq!(is_dns1123_label(&"a".repeat(64)), ["must be no more than 63 characters"]);
    assert!(!is_dns1123_label("a.b").is_empty());
    for ok in ["example.com", "a", "a-1.b-2.c", "0"] {
        assert!(is_dns1123_subdomain(ok).is_empty(), "{ok}");
    }
    for bad in ["", "-a", "a-", "a..b", ".a", "a.", "A", "a_b"] {
        assert_eq!(is_dns1123_subdomain(bad), [SUBDOMAIN_MSG], "{bad}");
    }
    let long = format!("{}.{}", "a".repeat(200), "b".repeat(60));
    assert_eq!(is_dns1123_subdomain(&long), ["must be no more than 253 characters"]);
}

#[test]
fn qualified_names_and_label_values() {
    for ok in ["app", "MyName", "my.name", "123-abc", "example.com/MyName", "a_b"] {
        assert!(is_qualified_name(ok).is_empty(), "{ok}");
    }
    let name_regex = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string();
    assert_eq!(is_qualified_name("-app"), [name_regex.as_str()]);
    assert_eq!(is_qualified_name(""), ["name part must be non-empty".to_string(), name_regex.clone()]);
    assert_eq!(is_qualified_name("/app"), ["prefix part must be non-empty"]);
    assert_eq!(is_qualified_name("Example.com/app"), [format!("prefix part {SUBDOMAIN_MSG}")]);
    assert_eq!(is_qualified_name(&"a".repeat(64)), ["name part must be no more than 63 characters"]);
    assert!(is_qualified_name("a/b/c")[0].starts_with("a qualified name must consist of"));
    assert!(
        is_qualified_name("a/b/c")[0]
            .ends_with("with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')")
    );

    assert!(is_valid_label_value("").is_empty());
    assert!(is_valid_label_value("my_value").is_empty());
    assert_eq!(
        is_valid_label_value("bad value"),
        [
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        ]
    );
    assert_eq!(is_valid_label_value(&"v".repeat(64)), ["must be no more than 63 characters"]);
}

#[test]
fn generate_name_prefix() {
    assert!(name_is_dns_subdomain("backup-", true).is_empty());
    assert!(name_is_dns_subdomain("a-", true).is_empty());
    assert!(!name_is_dns_subdomain("backup-", false).is_empty());
    assert!(!name_is_dns_subdomain("-", true).is_empty());
    assert!(!name_is_dns_subdomain("Backup-", true).is_empty());
    assert!(!name_is_dns_subdomain("é-", true).is_empty(), "no panic on a multi-byte character");
}

#[test]
fn create_rules() {
    let ok = json!({"name": "nightly", "namespace": "monitoring", "labels": {"app": "prom", "example.com/tier": ""}});
    assert!(validate_object_meta(&ok, true).is_empty());
    assert!(validate_object_meta(&json!({"generateName": "nightly-", "namespace": "ns"}), true).is_empty());

    assert_eq!(
        msgs(validate_object_meta(&json!({"namespace": "ns"}), true)),
        ["metadata.name: Required value: name or generateName is required"]
    );
    assert_eq!(
        msgs(validate_object_meta(&json!({"name": "Nightly", "namespace": "ns"}), true)),
        [format!("metadata.name: Invalid value: \"Nightly\": {SUBDOMAIN_MSG}")]
    );
    assert_eq!(
        msgs(validate_object_meta(
            &json!({"generateName": "Nightly-", "name": "nightly-abcde", "namespace": "ns"}),
            true
        )),
        [format!("metadata.generateName: Invalid value: \"Nightly-\": {SUBDOMAIN_MSG}")]
    );
    assert_eq!(msgs(validate_object_meta(&json!({"name": "x"}), true)), ["metadata.namespace: Required value"]);
    let errs = msgs(validate_object_meta(&json!({"name": "x", "namespace": "a.b"}), true));
    assert!(errs[0].starts_with("metadata.namespace: Invalid value: \"a.b\": a lowercase RFC 1123 label"), "{errs:?}");
    assert_eq!(
        msgs(validate_object_meta(&json!({"name": "x", "namespace": "ns"}), false)),
        ["metadata.namespace: Forbidden: not allowed on this type"]
    );
    assert_eq!(
        msgs(validate_object_meta(&json!({"name": "x", "namespace": "ns", "generation": -1}), true)),
        ["metadata.generation: Invalid value: -1: must be greater than or equal to 0"]
    );
}

#[test]
fn labels_annotations_finalizers() {
    let meta = json!({"name": "x", "namespace": "ns", "labels": {"-bad": "ok", "good": "bad value"}});
    let errs = msgs(validate_object_meta(&meta, true));
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].starts_with("metadata.labels: Invalid value: \"-bad\": name part must consist of"));
    assert!(errs[1].starts_with("metadata.labels: Invalid value: \"bad value\": a valid label must be"));

    // Annotation keys are checked lower-cased; their total size is bounded.
    let meta = json!({"name": "x", "namespace": "ns", "annotations": {"Example.com/Note": "v"}});
    assert!(validate_object_meta(&meta, true).is_empty());
    let big = "v".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
    let meta = json!({"name": "x", "namespace": "ns", "annotations": {"a": big}});
    assert_eq!(
        msgs(validate_object_meta(&meta, true)),
        ["metadata.annotations: Too long: must have at most 262144 bytes"]
    );

    let meta = json!({"name": "x", "namespace": "ns", "finalizers": ["example.com/cleanup", "bad finalizer"]});
    let errs = msgs(validate_object_meta(&meta, true));
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("metadata.finalizers: Invalid value: \"bad finalizer\": name part must consist of"));
    let meta = json!({"name": "x", "namespace": "ns", "finalizers": ["orphan", "foregroundDeletion"]});
    assert_eq!(
        msgs(validate_object_meta(&meta, true)),
        [
            "metadata.finalizers: Invalid value: [\"orphan\",\"foregroundDeletion\"]: finalizer orphan and foregroundDeletion cannot be both set"
        ]
    );

    let meta = json!({"name": "x", "namespace": "ns", "labels": "app"});
    assert_eq!(
        msgs(validate_object_meta(&meta, true)),
        ["metadata.labels: Invalid value: \"app\": must be an object of strings"]
    );
}

#[test]
fn owner_references_and_managed_fields() {
    let owner = json!({"apiVersion": "backup.extend-k8s.io/v1", "kind": "TimeseriesDBBackup", "name": "a", "uid": "u1", "controller": true});
    let meta = json!({"name": "x", "namespace": "ns", "ownerReferences": [owner]});
    assert!(validate_object_meta(&meta, true).is_empty());

    let meta = json!({"name": "x", "namespace": "ns", "ownerReferences": [{"apiVersion": "apps/", "kind": "", "name": "", "uid": ""}]});
    assert_eq!(
        msgs(validate_object_meta(&meta, true)),
        [
            "metadata.ownerReferences.apiVersion: Invalid value: \"apps/\": version must not be empty",
            "metadata.ownerReferences.kind: Invalid value: \"\": kind must not be empty",
            "metadata.ownerReferences.name: Invalid value: \"\": name must not be empty",
            "metadata.ownerReferences.uid: Invalid value: \"\": uid must not be empty",
        ]
    );

    let second = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "b", "uid": "u2", "controller": true});
    let meta = json!({"name": "x", "namespace": "ns", "ownerReferences": [owner, second]});
    let errs = msgs(validate_object_meta(&meta, true));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0]
            .ends_with("Only one reference can have Controller set to true. Found \"true\" in references for a and b")
    );

    let event = json!({"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "u3"});
    let errs = msgs(validate_object_meta(&json!({"name": "x", "namespace": "ns", "ownerReferences": [event]}), true));
    assert!(errs[0].ends_with("/v1, Kind=Event is disallowed from being an owner"), "{errs:?}");

    let meta = json!({"name": "x", "namespace": "ns", "managedFields": [{"manager": "m", "operation": "Patch", "fieldsType": "FieldsV2"}]});
    assert_eq!(
        msgs(validate_object_meta(&meta, true)),
        [
            "metadata.managedFields[0].operation: Invalid value: \"Patch\": must be `Apply` or `Update`",
            "metadata.managedFields[0].fieldsType: Invalid value: \"FieldsV2\": must be `FieldsV1`",
        ]
    );
}

fn stored() -> serde_json::Value {
    json!({
        "name": "x", "namespace": "ns", "uid": "u1", "resourceVersion": "5", "generation": 2,
        "creationTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["example.com/a"],
    })
}

#[test]
fn update_rules() {
    let old = stored();
    assert!(validate_object_meta_update(&old, &old).is_empty());
    // The same instant written differently is no change.
    let mut same = old.clone();
    same["creationTimestamp"] = json!("2026-01-01T00:00:00+00:00");
    assert!(validate_object_meta_update(&same, &old).is_empty());

    let mut new = old.clone();
    new["name"] = json!("y");
    new["namespace"] = json!("other");
    new["uid"] = json!("u2");
    new["creationTimestamp"] = json!("2026-01-02T00:00:00Z");
    new["generation"] = json!(1);
    new["resourceVersion"] = json!("");
    assert_eq!(
        msgs(validate_object_meta_update(&new, &old)),
        [
            "metadata.resourceVersion: Invalid value: \"\": must be specified for an update",
            "metadata.generation: Invalid value: 1: must not be decremented",
            "metadata.name: Invalid value: \"y\": field is immutable",
            "metadata.namespace: Invalid value: \"other\": field is immutable",
            "metadata.uid: Invalid value: \"u2\": field is immutable",
            "metadata.creationTimestamp: Invalid value: \"2026-01-02T00:00:00Z\": field is immutable",
        ]
    );

    let mut new = old.clone();
    new["deletionTimestamp"] = json!("2026-01-03T00:00:00Z");
    new["deletionGracePeriodSeconds"] = json!(0);
    assert_eq!(
        msgs(validate_object_meta_update(&new, &old)),
        [
            "metadata.deletionTimestamp: Invalid value: \"2026-01-03T00:00:00Z\": field is immutable",
            "metadata.deletionGracePeriodSeconds: Invalid value: 0: field is immutable",
        ]
    );
}

#[test]
fn no_new_finalizers_while_deleting() {
    let mut old = stored();
    old["deletionTimestamp"] = json!("2026-01-03T00:00:00Z");
    let mut new = old.clone();
    new["finalizers"] = json!([]);
    assert!(validate_object_meta_update(&new, &old).is_empty(), "removing finalizers is allowed");
    new["finalizers"] = json!(["example.com/a", "example.com/c", "example.com/b"]);
    assert_eq!(
        msgs(validate_object_meta_update(&new, &old)),
        [
            "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"example.com/b\", \"example.com/c\"}"
        ]
    );
    // Without a deletionTimestamp they may be added.
    let old = stored();
    let mut new = old.clone();
    new["finalizers"] = json!(["example.com/a", "example.com/b"]);
    assert!(validate_object_meta_update(&new, &old).is_empty());
}
