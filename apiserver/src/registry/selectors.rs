//! Label and field selectors (`labelSelector=`, `fieldSelector=`) on lists and watches, as apimachinery parses
//! and matches them; a [`Filter`] holds both for one request.
//!
//! endpoints → registry store (list, watch, deletecollection) → **selectors** → strategy (field values).

use backup_storage::cacher::CachedObject;

use crate::error::{ApiError, ApiResult};
use crate::registry::attrs::{self, Selectable};
use crate::registry::strategy::Strategy;

/// The label and field selectors of one list or watch.
pub struct Filter {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    /// Parse both selectors; field selectors may name only the kind's selectable fields (400 otherwise).
    pub fn new(strategy: &Strategy, label_selector: &str, field_selector: &str) -> ApiResult<Self> {
        Ok(Self {
            labels: LabelSelector::parse(label_selector)?,
            fields: FieldSelector::parse(field_selector, strategy.field_names())?,
        })
    }

    /// Whether every object matches (no selector).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// Whether a stored object matches, read from its selectable parts (decoded once per object version and
    /// shared, see [`attrs`]); without selectors nothing is decoded. `Err` says why the stored bytes cannot be
    /// decoded.
    pub fn matches_object(&self, strategy: &Strategy, object: &CachedObject) -> Result<bool, String> {
        if self.is_empty() {
            return Ok(true);
        }
        let selectable = attrs::selectable(strategy, object);
        let selectable = selectable.get().map_err(str::to_string)?;
        Ok(self.matches_selectable(strategy, selectable))
    }

    pub fn matches_selectable(&self, strategy: &Strategy, selectable: &Selectable) -> bool {
        self.labels.matches_with(|key| selectable.label(key))
            && self.fields.matches_with(|field| selectable.field(strategy, field))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelOp {
    Exists,
    DoesNotExist,
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    GreaterThan(i64),
    LessThan(i64),
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<(String, LabelOp)>);

impl LabelSelector {
    pub fn parse(s: &str) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        for term in split_top_level(s) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            reqs.push(
                parse_requirement(term)
                    .map_err(|m| ApiError::bad_request(format!("unable to parse requirement: {m}")))?,
            );
        }
        Ok(Self(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object whose label `key` has the value `label(key)` matches.
    pub fn matches_with<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0.iter().all(|(key, op)| {
            let v = label(key);
            match op {
                LabelOp::Exists => v.is_some(),
                LabelOp::DoesNotExist => v.is_none(),
                LabelOp::Equals(x) => v == Some(x.as_str()),
                LabelOp::NotEquals(x) => v != Some(x.as_str()),
                LabelOp::In(xs) => v.is_some_and(|v| xs.iter().any(|x| x == v)),
                LabelOp::NotIn(xs) => v.is_none_or(|v| !xs.iter().any(|x| x == v)),
                LabelOp::GreaterThan(n) => v.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *n),
                LabelOp::LessThan(n) => v.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *n),
            }
        })
    }
}

/// Split on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_requirement(term: &str) -> Result<(String, LabelOp), String> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok((valid_key(key.trim())?, LabelOp::DoesNotExist));
    }
    for (sym, make) in [("!=", 0), ("==", 1), ("=", 1), (">", 2), ("<", 3)] {
        if let Some((k, v)) = term.split_once(sym) {
            let (k, v) = (valid_key(k.trim())?, v.trim().to_string());
            return Ok(match make {
                0 => (k, LabelOp::NotEquals(v)),
                1 => (k, LabelOp::Equals(v)),
                2 => (k, LabelOp::GreaterThan(v.parse().map_err(|_| format!("{v:?} is not an integer"))?)),
                _ => (k, LabelOp::LessThan(v.parse().map_err(|_| format!("{v:?} is not an integer"))?)),
            });
        }
    }
    let words: Vec<&str> = term.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let rest = words[1].trim();
        let (op, list) = if let Some(l) = rest.strip_prefix("notin") {
            ("notin", l)
        } else if let Some(l) = rest.strip_prefix("in") {
            ("in", l)
        } else {
            return Err(format!("{term:?}: expected one of '=', '==', '!=', 'in', 'notin'"));
        };
        let list = list.trim();
        let inner = list
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .ok_or_else(|| format!("{term:?}: expected a parenthesised list of values"))?;
        let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect();
        let key = valid_key(words[0])?;
        return Ok((key, if op == "in" { LabelOp::In(values) } else { LabelOp::NotIn(values) }));
    }
    Ok((valid_key(term)?, LabelOp::Exists))
}

fn valid_key(k: &str) -> Result<String, String> {
    if k.is_empty() || k.chars().any(|c| c.is_whitespace() || "()!=<>,".contains(c)) {
        return Err(format!("invalid label key {k:?}"));
    }
    Ok(k.to_string())
}

/// A parsed field selector: `a=b,c!=d`; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parse, accepting only the fields in `known` (`metadata.name`, `metadata.namespace` and the kind's own).
    pub fn parse(s: &str, known: &[&str]) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!("invalid selector: '{s}'; can't understand '{term}'")));
            };
            let field = field.trim();
            if !known.contains(&field) {
                let list = known.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ");
                return Err(ApiError::bad_request(format!("\"{field}\" is not a known field selector: only {list}")));
            }
            reqs.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(Self(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The name this selector pins with `metadata.name=x`, if any.
    pub fn exact_name(&self) -> Option<&str> {
        self.0.iter().find(|(f, eq, _)| f == "metadata.name" && *eq).map(|(_, _, v)| v.as_str())
    }

    /// Whether the object matches; `value_of(field)` reads a field's value ("" when absent).
    pub fn matches_with<'a>(&self, value_of: impl Fn(&str) -> &'a str) -> bool {
        self.0.iter().all(|(f, eq, v)| (value_of(f) == v) == *eq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn labels(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn label_selectors() {
        let l = labels(json!({"app": "x", "tier": "db", "n": "5"}));
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches_with(|k| l.get(k).and_then(Value::as_str));
        assert!(m("app=x"));
        assert!(m("app==x,tier!=web"));
        assert!(!m("app=y"));
        assert!(m("tier in (db,cache)"));
        assert!(!m("tier notin (db)"));
        assert!(m("app,!missing"));
        assert!(!m("!app"));
        assert!(m("n>4"));
        assert!(!m("n<4"));
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("").unwrap().matches_with(|_| None));
    }

    #[test]
    fn field_selectors() {
        let known = ["metadata.name", "metadata.namespace", "status.phase"];
        let s = FieldSelector::parse("status.phase=Failed,metadata.name!=a", &known).unwrap();
        assert!(s.matches_with(|f| if f == "status.phase" { "Failed" } else { "b" }));
        assert!(!s.matches_with(|_| "a"));
        let e = FieldSelector::parse("spec.x=1", &known).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e.message.contains("is not a known field selector"));
        assert_eq!(FieldSelector::parse("metadata.name=n", &known).unwrap().exact_name(), Some("n"));
    }
}
