//! ObjectMeta system fields the machinery owns (k8s.io/apiserver `rest.BeforeCreate`/`BeforeUpdate`): uid,
//! timestamps, generateName, generation.
//!
//! registry store → **system fields** (before the strategy runs).

use backup_apis::objectmeta::timestamp_now;
use rand::Rng;
use serde_json::{Map, Value};

/// Characters upstream uses for generated name suffixes (`apimachinery/pkg/util/rand`).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Upstream truncates the generateName prefix so the generated name fits 63 characters.
const MAX_GENERATED_PREFIX: usize = 58;

/// `prefix` + 5 random characters, as `names.SimpleNameGenerator`.
pub fn generate_name(prefix: &str) -> String {
    let mut prefix = prefix.to_string();
    if prefix.len() > MAX_GENERATED_PREFIX {
        let mut cut = MAX_GENERATED_PREFIX;
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        prefix.truncate(cut);
    }
    let mut rng = rand::rng();
    let suffix: String = (0..5).map(|_| NAME_ALPHABET[rng.random_range(0..NAME_ALPHABET.len())] as char).collect();
    prefix + &suffix
}

/// A new v4 UUID (`metadata.uid`; also a request's `Audit-ID`), from the thread's CSPRNG: no system call per use.
pub fn new_uuid() -> String {
    uuid::Builder::from_random_bytes(rand::rng().random()).into_uuid().to_string()
}

pub fn str_field<'a>(meta: &'a Map<String, Value>, key: &str) -> &'a str {
    meta.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Set the fields a create owns; returns true when the name was generated.
pub fn prepare_create(meta: &mut Map<String, Value>) -> bool {
    let mut generated = false;
    if str_field(meta, "name").is_empty() {
        let prefix = str_field(meta, "generateName").to_string();
        if !prefix.is_empty() {
            meta.insert("name".into(), Value::String(generate_name(&prefix)));
            generated = true;
        }
    }
    meta.insert("uid".into(), Value::String(new_uuid()));
    meta.insert("creationTimestamp".into(), Value::String(timestamp_now()));
    meta.insert("generation".into(), Value::from(1));
    for k in ["deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "resourceVersion"] {
        meta.remove(k);
    }
    generated
}

/// Carry over the fields an update may not change (or may omit) from the stored object, as `rest.BeforeUpdate`:
/// the generation always; the uid when the update has none; the creationTimestamp and deletionTimestamp whenever
/// the stored object has one (a different value in the update is silently ignored); the deletion grace period when
/// the update omits it. A deletionTimestamp or grace period the stored object lacks is left for validation to refuse.
pub fn prepare_update(meta: &mut Map<String, Value>, old: &Map<String, Value>) {
    let present = |m: &Map<String, Value>, k: &str| m.get(k).is_some_and(|v| !v.is_null() && v.as_str() != Some(""));
    match old.get("generation") {
        Some(v) => meta.insert("generation".into(), v.clone()),
        None => meta.remove("generation"),
    };
    if !present(meta, "uid")
        && let Some(v) = old.get("uid")
    {
        meta.insert("uid".into(), v.clone());
    }
    for k in ["creationTimestamp", "deletionTimestamp"] {
        if present(old, k) {
            meta.insert(k.into(), old[k].clone());
        }
    }
    if present(old, "deletionGracePeriodSeconds") && !present(meta, "deletionGracePeriodSeconds") {
        meta.insert("deletionGracePeriodSeconds".into(), old["deletionGracePeriodSeconds"].clone());
    }
    meta.remove("selfLink");
}

/// What upstream's decoding into the typed `metav1.ObjectMeta` (every field `omitempty`) does to `metadata`:
/// null fields, empty strings, a zero generation, and empty labels, annotations, finalizers and ownerReferences
/// are dropped — removing the last label leaves no `labels: {}` behind. Values of the wrong type stay, for
/// validation to report.
pub fn drop_empty_fields(meta: &mut Map<String, Value>) {
    meta.retain(|k, v| match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Object(m) => !(m.is_empty() && matches!(k.as_str(), "labels" | "annotations")),
        Value::Array(a) => !(a.is_empty() && matches!(k.as_str(), "finalizers" | "ownerReferences")),
        Value::Number(n) => !(k == "generation" && n.as_i64() == Some(0)),
        Value::Bool(_) => true,
    });
}

/// Whether two objects differ outside the parts that do not count for `generation` (metadata, and status when
/// it is a subresource).
pub fn spec_changed(a: &Map<String, Value>, b: &Map<String, Value>, status_subresource: bool) -> bool {
    let ignored = |k: &str| matches!(k, "metadata" | "apiVersion" | "kind") || (status_subresource && k == "status");
    let differs = |x: &Map<String, Value>, y: &Map<String, Value>| {
        x.iter().filter(|(k, _)| !ignored(k)).any(|(k, v)| y.get(k) != Some(v))
    };
    differs(a, b) || differs(b, a)
}

/// The finalizers of an object.
pub fn finalizers(meta: &Map<String, Value>) -> Vec<String> {
    meta.get("finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generated_names() {
        let n = generate_name("backup-");
        assert_eq!(n.len(), 12);
        assert!(n.starts_with("backup-"));
        assert!(n[7..].bytes().all(|b| NAME_ALPHABET.contains(&b)));
        assert_eq!(generate_name(&"a".repeat(70)).len(), 63);
    }

    #[test]
    fn create_sets_system_fields() {
        let mut m = json!({"generateName": "x-", "resourceVersion": "5", "deletionTimestamp": "t"});
        let meta = m.as_object_mut().unwrap();
        assert!(prepare_create(meta));
        assert!(meta["name"].as_str().unwrap().starts_with("x-"));
        assert_eq!(meta["generation"], 1);
        assert!(!meta.contains_key("resourceVersion") && !meta.contains_key("deletionTimestamp"));
        assert_eq!(meta["creationTimestamp"].as_str().unwrap().len(), 20);
    }

    #[test]
    fn empty_metadata_fields_are_dropped() {
        let mut m = json!({"name": "a", "generateName": "", "labels": {}, "annotations": {"k": "v"}, "finalizers": [],
            "ownerReferences": null, "generation": 0, "uid": "u", "namespace": "ns", "clusterName": ""});
        drop_empty_fields(m.as_object_mut().unwrap());
        assert_eq!(m, json!({"name": "a", "annotations": {"k": "v"}, "uid": "u", "namespace": "ns"}));
        let mut wrong = json!({"labels": [], "finalizers": {}, "generation": 2});
        drop_empty_fields(wrong.as_object_mut().unwrap());
        assert_eq!(wrong, json!({"labels": [], "finalizers": {}, "generation": 2}), "left for validation");
    }

    #[test]
    fn update_keeps_what_the_stored_object_decided() {
        let old = json!({"uid": "u1", "creationTimestamp": "2024-01-01T00:00:00Z", "generation": 3,
            "deletionTimestamp": "2024-02-01T00:00:00Z", "deletionGracePeriodSeconds": 0});
        let mut new = json!({"creationTimestamp": "1999-01-01T00:00:00Z", "generation": 1,
            "deletionTimestamp": "1999-01-01T00:00:00Z", "selfLink": "/x"});
        prepare_update(new.as_object_mut().unwrap(), old.as_object().unwrap());
        assert_eq!(
            new,
            json!({"uid": "u1", "creationTimestamp": "2024-01-01T00:00:00Z", "generation": 3,
            "deletionTimestamp": "2024-02-01T00:00:00Z", "deletionGracePeriodSeconds": 0})
        );

        // What the stored object lacks stays as the update has it, for validation to judge.
        let old = json!({"uid": "u1", "creationTimestamp": "2024-01-01T00:00:00Z", "generation": 1});
        let mut new = json!({"uid": "u2", "deletionTimestamp": "1999-01-01T00:00:00Z"});
        prepare_update(new.as_object_mut().unwrap(), old.as_object().unwrap());
        assert_eq!(new["uid"], "u2");
        assert_eq!(new["deletionTimestamp"], "1999-01-01T00:00:00Z");
        assert_eq!(new["creationTimestamp"], "2024-01-01T00:00:00Z");
    }
}
