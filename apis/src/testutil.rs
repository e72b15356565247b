//! The registry's strategy pipeline, for tests: prune, schema defaults, kind defaults, schema and kind validation.

use serde_json::Value;

use crate::Kind;
use crate::schema::{Schema, apply_defaults, prune, validate};

/// Runs the pipeline on `obj`; returns the pruned paths and the errors as upstream prints them.
pub fn admit(kind: &dyn Kind, obj: &mut Value) -> (Vec<String>, Vec<String>) {
    let schema = Schema::new(&kind.schema());
    let pruned = prune(&schema, obj);
    apply_defaults(&schema, obj);
    kind.default(obj);
    let mut errs = validate(&schema, obj);
    errs.extend(kind.validate(obj));
    (pruned, errs.iter().map(ToString::to_string).collect())
}

/// Paths of schema nodes without a `description` (`kubectl explain` shows them), `$ref`s aside.
pub fn undocumented(schema: &Value, path: &str) -> Vec<String> {
    if schema.get("$ref").is_some() {
        return vec![];
    }
    let mut missing = Vec::new();
    if schema.get("description").and_then(Value::as_str).is_none_or(str::is_empty) {
        missing.push(path.to_string());
    }
    for (k, s) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
        missing.extend(undocumented(s, &format!("{path}.{k}")));
    }
    if let Some(items) = schema.get("items") {
        missing.extend(undocumented(items, &format!("{path}[]")));
    }
    missing
}
