//! Body decoding: repeated keys, depth, YAML aliases, and what hostile bodies cost.

use serde_json::{Value, json};
use serde_saphyr::options::DuplicateKeyPolicy;

use super::*;

#[test]
fn finds_repeated_keys_and_keeps_the_last_value() {
    let d = decode(br#"{"metadata":{"name":"a","name":"b"},"spec":{"items":[{"x":1,"x":2}],"n":1.5}}"#).unwrap();
    assert_eq!(d.value, json!({"metadata": {"name": "b"}, "spec": {"items": [{"x": 2}], "n": 1.5}}));
    assert_eq!(d.duplicates, vec!["metadata.name", "spec.items[0].x"]);
    assert!(decode(b"{} x").is_err());
    assert!(decode(br#"{"a":1}"#).unwrap().duplicates.is_empty());
    let d = decode(br#"{"a":[[0,{"k":1,"k":2}],{"k":[{"z":1,"z":1}]}],"a":0}"#).unwrap();
    assert_eq!(d.duplicates, vec!["a[0][1].k", "a[1].k[0].z", "a"]);
}

fn nested(levels: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(levels), "}".repeat(levels))
}

#[test]
fn depth_is_bounded_in_json_and_yaml() {
    assert!(decode_object("", nested(MAX_DEPTH).as_bytes()).is_ok());
    // The fields of an object nest at most MAX_DEPTH levels...
    let err = decode_object("", nested(MAX_DEPTH + 1).as_bytes()).unwrap_err();
    assert_eq!(err.code, 400);
    assert!(err.message.ends_with("the object's fields nest deeper than 100 levels"), "{}", err.message);
    // ... its managedFields a few more, and the document at most MAX_DOCUMENT_DEPTH.
    let managed = format!(r#"{{"metadata":{{"managedFields":[{{"fieldsV1":{}}}]}}}}"#, nested(MAX_DOCUMENT_DEPTH - 4));
    assert!(decode_object("", managed.as_bytes()).is_ok());
    let managed = format!(r#"{{"metadata":{{"managedFields":[{{"fieldsV1":{}}}]}}}}"#, nested(MAX_DOCUMENT_DEPTH - 3));
    let err = decode_object("", managed.as_bytes()).unwrap_err();
    assert!(err.message.contains("nests deeper than 110 levels"), "{}", err.message);
    assert!(decode(nested(MAX_DOCUMENT_DEPTH).as_bytes()).is_ok());
    let err = decode(nested(MAX_DOCUMENT_DEPTH + 1).as_bytes()).unwrap_err().to_string();
    assert!(err.contains("nests deeper than 110 levels"), "{err}");
    // Flow YAML is JSON.
    assert!(decode_yaml(&nested(MAX_YAML_DEPTH), DuplicateKeyPolicy::Error).is_ok());
    assert!(decode_yaml(&nested(MAX_YAML_DEPTH + 1), DuplicateKeyPolicy::Error).is_err());
    let status = decode_object("application/yaml", nested(MAX_YAML_DEPTH + 1).as_bytes()).unwrap_err();
    assert_eq!(status.code, 400);
    // Aliases nest what saphyr's budget did not see.
    let mut yaml = format!("a0: &a0 {}\n", "[".repeat(40) + &"]".repeat(40));
    for i in 1..4 {
        yaml.push_str(&format!("a{i}: &a{i} {}*a{}{}\n", "[".repeat(20), i - 1, "]".repeat(20)));
    }
    // (saphyr's budget counts replayed aliases too; the decoder checks again.)
    let err = decode_yaml(&yaml, DuplicateKeyPolicy::Error).unwrap_err();
    assert!(err.contains("Depth { depth: 65 }") || err.contains("nests deeper than 64 levels"), "{err}");
}

/// The 1 MiB body of issue 12: an unknown key of ~1 MiB holding hundreds of repeated keys formatted the whole path
/// (the long key) for every element.
#[test]
fn repeated_keys_under_a_long_key_cost_a_bounded_report() {
    let long_key = "k".repeat(1 << 20);
    let repeats = "\"x\":1,".repeat(400);
    let body = format!(r#"{{"apiVersion":"v","{long_key}":{{{repeats}"x":2}}}}"#);
    let d = decode(body.as_bytes()).unwrap();
    assert_eq!(d.value[&long_key]["x"], 2);
    // One path (long key + ".x") is reported whole; after it the byte cap stops the report.
    assert_eq!(d.duplicates.len(), 1);
    let reported: usize = d.duplicates.iter().map(String::len).sum();
    assert!(reported <= body.len() + MAX_REPORTED_DUPLICATE_BYTES, "{reported}");

    // Short paths: at most MAX_REPORTED_DUPLICATES of them.
    let body = format!("{{{}\"x\":2}}", "\"x\":1,".repeat(5000));
    let d = decode(body.as_bytes()).unwrap();
    assert_eq!(d.duplicates.len(), MAX_REPORTED_DUPLICATES);
    assert_eq!(d.value, json!({"x": 2}));
}

/// Issue 12's repeated-keys body through the strategy: Strict is a 400 whose message is bounded by the report cap.
#[test]
fn repeated_keys_with_strict_field_validation_are_a_bounded_400() {
    use crate::registry::strategy::{Strategy, Validation};
    use crate::request::options::FieldValidation;

    let strategy = Strategy::new(std::sync::Arc::new(backup_apis::backup::BackupKind));
    let long_key = "k".repeat(1 << 20);
    let body = format!(
        r#"{{"apiVersion":"backup.extend-k8s.io/v1","kind":"TimeseriesDBBackup","metadata":{{"name":"x"}},"spec":{{"schedule":"@daily","database":{{"type":"Prometheus","url":"http://p:9090"}}}},"{long_key}":{{{}"x":2}}}}"#,
        "\"x\":1,".repeat(400)
    );
    let decoded = decode_object("application/json", body.as_bytes()).unwrap();
    let Value::Object(obj) = decoded.value else { panic!("an object") };
    let mut warnings = Vec::new();
    let validation = Validation {
        field_validation: FieldValidation::Strict,
        duplicates: &decoded.duplicates,
        warnings: &mut warnings,
    };
    let err = strategy.prepare_for_create(obj, "default", validation).err().unwrap();
    assert_eq!(err.code, 400);
    // The unknown long key and one reported repeated path, each about 1 MiB: no more.
    assert!(err.message.len() < 3 * (1 << 20), "{}", err.message.len());
}

#[test]
fn billion_laughs_fails_with_400_within_the_budget() {
    let mut yaml = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"].iter().zip(["b", "c", "d", "e", "f", "g", "h", "i"]) {
        let refs = vec![format!("*{prev}"); 9].join(",");
        yaml.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    let status = decode_object("application/yaml", yaml.as_bytes()).unwrap_err();
    assert_eq!(status.code, 400);
    assert!(status.message.contains("expands to more than"), "{}", status.message);
    assert!(status.message.contains(&yaml_budget(yaml.len()).to_string()), "{}", status.message);
    // A few aliases within the budget are fine.
    let v = decode_yaml("a: &x [1, 2]\nb: *x\nc: *x\n", DuplicateKeyPolicy::Error).unwrap();
    assert_eq!(v, json!({"a": [1, 2], "b": [1, 2], "c": [1, 2]}));
}

/// The decoder yields what serde_json's own `Value` does through saphyr.
#[test]
fn yaml_values_are_those_of_serde_json() {
    let docs = [
        "a: 1\nb: -2\nc: 1.5\nd: true\ne: ~\nf: x\ng: '7'\n",
        "a: 99999999999999999999\nb: 0x10\nc: 1e3\nd: !!binary aGVsbG8=\n",
        "1: x\ntrue: y\nnull: z\n",
        "l: [1, [2, {a: b}], {}]\nm: {}\n",
        "a: |\n  text\n  more\nb: >\n  folded\n",
        "",
        "- 1\n- 2\n",
        "a: .inf\n",
    ];
    for doc in docs {
        let ours = decode_yaml(doc, DuplicateKeyPolicy::Error);
        let theirs = serde_saphyr::from_str::<Value>(doc).map_err(|e| e.to_string());
        assert_eq!(ours, theirs, "{doc:?}");
    }
    let lenient = decode_yaml("a: 1\na: 2\n", DuplicateKeyPolicy::LastWins).unwrap();
    assert_eq!(lenient, json!({"a": 2}));
    assert!(decode_yaml("a: 1\na: 2\n", DuplicateKeyPolicy::Error).is_err());
}
