//! YAML renderings (`Accept: application/yaml`): an object converted from its JSON, and a list written item by
//! item — each item decoded, written as a YAML sequence entry and dropped — so a YAML list costs what a JSON one
//! does.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::registry::store::{ListPage, Store};

/// JSON bytes as YAML.
pub fn from_json_bytes(json: &[u8]) -> ApiResult<Bytes> {
    let value: Value = serde_json::from_slice(json).map_err(ApiError::internal)?;
    to_yaml(&value).map(Bytes::from)
}

fn to_yaml(value: &Value) -> ApiResult<String> {
    serde_saphyr::to_string(value).map_err(ApiError::internal)
}

/// `apiVersion`, `items`, `kind`, `metadata` (the order of the JSON rendering's keys), the items one at a time.
pub fn list(store: &Store, page: ListPage, warnings: &mut Vec<String>) -> ApiResult<Bytes> {
    let info = store.info();
    let mut out = String::with_capacity(64 + page.items.iter().map(|o| o.value().len() * 5 / 4).sum::<usize>());
    let field = |out: &mut String, key: &str, value: Value| -> ApiResult<()> {
        let mut m = Map::new();
        m.insert(key.to_string(), value);
        out.push_str(&to_yaml(&Value::Object(m))?);
        Ok(())
    };
    field(&mut out, "apiVersion", Value::String(info.api_version()))?;
    let meta = page.list_meta();
    if page.items.is_empty() {
        out.push_str("items: []\n");
    } else {
        out.push_str("items:\n");
        for obj in page.into_objects(warnings) {
            push_sequence_entry(&mut out, &to_yaml(&obj?)?);
        }
    }
    field(&mut out, "kind", Value::String(info.list_kind.to_string()))?;
    field(&mut out, "metadata", Value::Object(meta))?;
    Ok(Bytes::from(out))
}

/// `entry` (a YAML document) as an item of a block sequence at the left margin: `- ` before its first line, two
/// spaces before the others.
fn push_sequence_entry(out: &mut String, entry: &str) {
    for (i, line) in entry.lines().enumerate() {
        if i == 0 {
            out.push_str("- ");
        } else if !line.is_empty() {
            out.push_str("  ");
        }
        out.push_str(line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sequence_entries_parse_back() {
        let items = [json!({"a": 1, "b": {"c": "x\ny", "d": [1, 2]}}), json!({"e": "multi\nline\n"})];
        let mut out = String::from("items:\n");
        for item in &items {
            push_sequence_entry(&mut out, &to_yaml(item).unwrap());
        }
        let back: Value = serde_saphyr::from_str(&out).unwrap();
        assert_eq!(back, json!({"items": items}));
    }
}
