//! Field paths: the elements that name a field (`f:`), a map-list item by its keys (`k:`), a set item by its value
//! (`v:`) or a list item by index (`i:`), with structured-merge-diff's total order, their `fieldsV1` key encoding
//! and their human form (`.spec.schedule`, `.status.conditions[type="Ready"]`) used in conflict messages.
//!
//! endpoints → registry store → strategy → **field manager (this file: path elements)** → storage.

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Value};

/// One step into a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathElement {
    Field(String),
    /// Key fields of a map-list item, sorted by name.
    Key(Vec<(String, Value)>),
    Value(Value),
    Index(usize),
}

/// A path from the object's root.
pub type Path = Vec<PathElement>;

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        use PathElement::*;
        let rank = |p: &PathElement| match p {
            Field(_) => 0,
            Key(_) => 1,
            Value(_) => 2,
            Index(_) => 3,
        };
        match (self, other) {
            (Field(a), Field(b)) => a.cmp(b),
            (Key(a), Key(b)) => {
                for ((an, av), (bn, bv)) in a.iter().zip(b) {
                    let c = an.cmp(bn).then_with(|| compare_values(av, bv));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (Value(a), Value(b)) => compare_values(a, b),
            (Index(a), Index(b)) => a.cmp(b),
            _ => rank(self).cmp(&rank(other)),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// structured-merge-diff's `value.Compare`: numbers < strings < booleans < lists < maps < null.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    let rank = |v: &Value| match v {
        Value::Number(_) => 0,
        Value::String(_) => 1,
        Value::Bool(_) => 2,
        Value::Array(_) => 3,
        Value::Object(_) => 4,
        Value::Null => 5,
    };
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i.cmp(&j),
            _ => x.as_f64().unwrap_or(0.0).total_cmp(&y.as_f64().unwrap_or(0.0)),
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let c = compare_values(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            for ((kp, vp), (kq, vq)) in x.iter().zip(y) {
                let c = kp.cmp(kq).then_with(|| compare_values(vp, vq));
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// JSON as Go's `encoding/json` writes it: compact, with `<`, `>`, `&`, U+2028 and U+2029 escaped.
pub fn go_json(v: &Value) -> String {
    let s = v.to_string();
    if !s.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return s;
    }
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

impl PathElement {
    /// The `fieldsV1` key: `f:name`, `k:{"type":"Ready"}`, `v:"x"`, `i:0`.
    pub fn encode(&self) -> String {
        match self {
            // The common case, written without the formatting machinery (a create encodes one per field).
            Self::Field(name) => ["f:", name].concat(),
            Self::Key(fields) => {
                let body: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}:{}", go_json(&Value::String(k.clone())), go_json(v)))
                    .collect();
                format!("k:{{{}}}", body.join(","))
            }
            Self::Value(v) => format!("v:{}", go_json(v)),
            Self::Index(i) => format!("i:{i}"),
        }
    }

    /// Parse a `fieldsV1` key; `Ok(None)` for a key of an unknown kind (upstream drops those).
    pub fn decode(s: &str) -> Result<Option<Self>, String> {
        let Some((kind, rest)) = s.split_once(':').filter(|(k, _)| k.len() == 1) else {
            return Err(format!("missing colon: {s}"));
        };
        let json = |r: &str| serde_json::from_str::<Value>(r).map_err(|e| e.to_string());
        Ok(Some(match kind {
            "f" => Self::Field(rest.to_string()),
            "v" => Self::Value(json(rest)?),
            "k" => match json(rest)? {
                Value::Object(m) => Self::key_of(m),
                _ => return Err(format!("key is not an object: {s}")),
            },
            "i" => Self::Index(rest.parse().map_err(|e: std::num::ParseIntError| e.to_string())?),
            _ => return Ok(None),
        }))
    }

    /// A key element from key fields (sorted by name, as upstream).
    pub fn key_of(fields: Map<String, Value>) -> Self {
        let mut fields: Vec<(String, Value)> = fields.into_iter().collect();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        Self::Key(fields)
    }
}

/// Go's `value.ToString` of a key value: strings quoted (`%q`), others as JSON.
fn show_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(name) => write!(f, ".{name}"),
            Self::Key(fields) => {
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={}", show_value(v))).collect();
                write!(f, "[{}]", parts.join(","))
            }
            Self::Value(v) => write!(f, "[={}]", show_value(v)),
            Self::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path as upstream prints it: `.spec.schedule`.
pub fn show(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}
