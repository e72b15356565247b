//! Moving from client-side to server-side apply with kubectl (upstream's `lastAppliedManager` and
//! `lastAppliedUpdater`): fields recorded in `kubectl.kubernetes.io/last-applied-configuration` that still hold
//! their applied value do not conflict for manager `kubectl`, and a `kubectl` apply keeps that annotation current.
//!
//! endpoints → registry store → strategy → **field manager (this file: last-applied migration)** → storage.

use backup_apis::schema::Schema;
use serde_json::{Map, Value};

use super::set::Set;
use super::typed;

pub const ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The only manager the migration applies to.
pub const KUBECTL: &str = "kubectl";

fn annotation(metadata: Option<&Value>) -> Option<&str> {
    metadata?.get("annotations")?.get(ANNOTATION)?.as_str().filter(|s| !s.is_empty())
}

/// The fields the last client-side apply set and the live object still holds as applied.
pub fn allowed_conflicts(schema: Option<&Schema>, api_version: &str, live: &Value) -> Option<Set> {
    let last: Value = serde_json::from_str(annotation(live.get("metadata"))?).ok()?;
    if last.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        return None;
    }
    let set = typed::to_field_set(schema, &last).ok()?;
    let c = typed::compare(schema, &last, live, &Set::new());
    Some(set.difference(&c.modified).difference(&c.added).difference(&c.removed))
}

/// Rewrite the annotation from the applied configuration when the object carries one.
pub fn update_annotation(obj: &mut Map<String, Value>, config: &Value) {
    if annotation(obj.get("metadata")).is_none() {
        return;
    }
    let mut config = config.clone();
    if let Some(a) = config.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        a.remove(ANNOTATION);
    }
    // Go's JSON encoder ends the document with a newline.
    let text = format!("{}\n", super::path::go_json(&config));
    if let Some(a) = obj.get_mut("metadata").and_then(|m| m.get_mut("annotations")).and_then(Value::as_object_mut) {
        a.insert(ANNOTATION.into(), Value::String(text));
    }
}
