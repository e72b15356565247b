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
    meta.insert("uid".into(), Value::String(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), Value::String(timestamp_now()));
    meta.insert("generation".into(), Value::from(1));
    for k in ["deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "resourceVersion"] {
        meta.remove(k);
    }
    generated
}

/// Carry over the fields an update may not change (or may omit) from the stored object.
pub fn prepare_update(meta: &mut Map<String, Value>, old: &Map<String, Value>) {
    for k in ["uid", "creationTimestamp"] {
        if str_field(meta, k).is_empty()
            && let Some(v) = old.get(k)
        {
            meta.insert(k.into(), v.clone());
        }
    }
    for k in ["deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
        match old.get(k) {
            Some(v) => meta.insert(k.into(), v.clone()),
            None => meta.remove(k),
        };
    }
    meta.remove("selfLink");
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
}
