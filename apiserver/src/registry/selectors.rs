//! Label and field selectors (`labelSelector=`, `fieldSelector=`) on lists and watches, as apimachinery parses
//! and matches them; a [`Filter`] holds both for one request. Admission webhooks' `namespaceSelector` and
//! `objectSelector` are structured label selectors, converted to the same [`LabelSelector`].
//!
//! endpoints → registry store (list, watch, deletecollection) → **selectors** → strategy (field values).

use backup_apis::objectmeta;
use backup_storage::cacher::CachedObject;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as StructuredSelector;

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
    /// Parse as apimachinery's `labels.Parse` (its lexer and parser, and its messages): 400 with upstream's text.
    pub fn parse(s: &str) -> ApiResult<Self> {
        let tokens = lex(s);
        Parser { tokens: &tokens, at: 0 }.selector().map(Self).map_err(ApiError::bad_request)
    }

    /// A structured `metav1.LabelSelector` (`matchLabels`, `matchExpressions`), as `LabelSelectorAsSelector`
    /// converts it: each requirement checked as `NewRequirement` checks it; empty matches everything.
    pub fn from_structured(selector: &StructuredSelector) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            validate_key(key)?;
            validate_value(key, value)?;
            reqs.push((key.clone(), LabelOp::Equals(value.clone())));
        }
        for expr in selector.match_expressions.iter().flatten() {
            validate_key(&expr.key)?;
            let values: Vec<String> = expr.values.clone().unwrap_or_default();
            let op = match expr.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err("for 'in', 'notin' operators, values set can't be empty".into());
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err("values set must be empty for exists and does not exist".into());
                }
                "In" => LabelOp::In(values.clone()),
                "NotIn" => LabelOp::NotIn(values.clone()),
                "Exists" => LabelOp::Exists,
                "DoesNotExist" => LabelOp::DoesNotExist,
                other => return Err(format!("{other:?} is not a valid pod selector operator")),
            };
            for v in &values {
                validate_value(&expr.key, v)?;
            }
            reqs.push((expr.key.clone(), op));
        }
        reqs.sort_by(|a, b| a.0.cmp(&b.0));
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

/// The tokens of upstream's selector lexer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Error,
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// The whole input as tokens with their literals, ending with [`Token::End`] (upstream's `Lexer` and `scan`).
fn lex(s: &str) -> Vec<(Token, String)> {
    let b = s.as_bytes();
    let mut at = 0;
    let mut out = Vec::new();
    loop {
        while at < b.len() && is_space(b[at]) {
            at += 1;
        }
        let start = at;
        if at == b.len() {
            out.push((Token::End, String::new()));
            return out;
        }
        if is_special(b[at]) {
            // The longest run of special symbols that is still an operator.
            let mut last = None;
            while at < b.len() && is_special(b[at]) {
                match keyword(&s[start..=at]) {
                    Some(t) => last = Some((t, at + 1)),
                    None if last.is_some() => break,
                    None => {}
                }
                at += 1;
            }
            match last {
                Some((t, end)) => {
                    at = end;
                    out.push((t, s[start..end].to_string()));
                }
                None => out.push((Token::Error, format!("error expected: keyword found '{}'", &s[start..at]))),
            }
        } else {
            while at < b.len() && !is_special(b[at]) && !is_space(b[at]) {
                at += 1;
            }
            let word = &s[start..at];
            out.push((keyword(word).unwrap_or(Token::Identifier), word.to_string()));
        }
    }
}

/// Upstream's recursive-descent `Parser`; in values, `in` and `notin` are identifiers.
struct Parser<'a> {
    tokens: &'a [(Token, String)],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self, values: bool) -> (Token, &str) {
        let (t, lit) = self.tokens.get(self.at).map_or((Token::End, ""), |(t, l)| (*t, l.as_str()));
        match t {
            Token::In | Token::NotIn if values => (Token::Identifier, lit),
            t => (t, lit),
        }
    }

    fn next(&mut self, values: bool) -> (Token, String) {
        let (t, lit) = self.peek(values);
        let lit = lit.to_string();
        self.at += 1;
        (t, lit)
    }

    fn selector(&mut self) -> Result<Vec<(String, LabelOp)>, String> {
        let mut reqs = Vec::new();
        loop {
            let (t, lit) = self.peek(true);
            match t {
                Token::Identifier | Token::DoesNotExist => {
                    reqs.push(self.requirement().map_err(|e| format!("unable to parse requirement: {e}"))?);
                    match self.next(true) {
                        (Token::End, _) => break,
                        (Token::Comma, _) => {
                            let (t, lit) = self.peek(true);
                            if t != Token::Identifier && t != Token::DoesNotExist {
                                return Err(format!("found '{lit}', expected: identifier after ','"));
                            }
                        }
                        (_, lit) => return Err(format!("found '{lit}', expected: ',' or 'end of string'")),
                    }
                }
                Token::End => break,
                _ => return Err(format!("found '{lit}', expected: !, identifier, or 'end of string'")),
            }
        }
        // Upstream sorts the requirements by key (stable).
        reqs.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(reqs)
    }

    fn requirement(&mut self) -> Result<(String, LabelOp), String> {
        let (mut t, mut key) = self.next(true);
        let not = t == Token::DoesNotExist;
        if not {
            (t, key) = self.next(true);
        }
        if t != Token::Identifier {
            return Err(format!("found '{key}', expected: identifier"));
        }
        validate_key(&key)?;
        // `!key` is complete as it is (what follows, if not a comma, is the selector's error).
        if not {
            return Ok((key, LabelOp::DoesNotExist));
        }
        if matches!(self.peek(true).0, Token::End | Token::Comma) {
            return Ok((key, LabelOp::Exists));
        }
        let (op, lit) = self.next(false);
        let op = match op {
            Token::In | Token::NotIn | Token::Equals | Token::DoubleEquals | Token::NotEquals => op,
            Token::GreaterThan | Token::LessThan => op,
            _ => return Err(format!("found '{lit}', expected: '=', '!=', '==', 'in', notin'")),
        };
        let values = match op {
            Token::In | Token::NotIn => self.set_values()?,
            _ => self.exact_value()?,
        };
        // As `NewRequirement`: the operator's own check, then every value a label value.
        let one = values.first().cloned().unwrap_or_default();
        let number = || one.parse::<i64>().map_err(|_| "for 'Gt', 'Lt' operators, the value must be an integer");
        let op = match op {
            Token::In => LabelOp::In(values.clone()),
            Token::NotIn => LabelOp::NotIn(values.clone()),
            Token::NotEquals => LabelOp::NotEquals(one.clone()),
            Token::GreaterThan => LabelOp::GreaterThan(number()?),
            Token::LessThan => LabelOp::LessThan(number()?),
            _ => LabelOp::Equals(one.clone()),
        };
        for v in &values {
            validate_value(&key, v)?;
        }
        Ok((key, op))
    }

    /// `(a,b,…)`, sorted and deduplicated as upstream's string set; `()` is the empty string.
    fn set_values(&mut self) -> Result<Vec<String>, String> {
        let (t, lit) = self.next(true);
        if t != Token::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (t, lit) = self.peek(true);
        let lit = lit.to_string();
        let mut set = std::collections::BTreeSet::new();
        match t {
            Token::ClosedPar => {
                self.next(true);
                set.insert(String::new());
            }
            Token::Identifier | Token::Comma => {
                self.identifiers(&mut set)?;
                if self.next(true).0 != Token::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
            }
            _ => return Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
        if set.is_empty() {
            return Err("for 'in', 'notin' operators, values set can't be empty".into());
        }
        Ok(set.into_iter().collect())
    }

    fn identifiers(&mut self, set: &mut std::collections::BTreeSet<String>) -> Result<(), String> {
        loop {
            match self.next(true) {
                (Token::Identifier, lit) => {
                    set.insert(lit);
                    match self.peek(true) {
                        (Token::Comma, _) => continue,
                        (Token::ClosedPar, _) => return Ok(()),
                        (_, lit) => return Err(format!("found '{lit}', expected: ',' or ')'")),
                    }
                }
                (Token::Comma, _) => {
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    match self.peek(true).0 {
                        Token::ClosedPar => {
                            set.insert(String::new());
                            return Ok(());
                        }
                        Token::Comma => {
                            self.next(true);
                            set.insert(String::new());
                        }
                        _ => {}
                    }
                }
                (_, lit) => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        if matches!(self.peek(true).0, Token::End | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        match self.next(true) {
            (Token::Identifier, lit) => Ok(vec![lit]),
            (_, lit) => Err(format!("found '{lit}', expected: identifier")),
        }
    }
}

fn validate_key(k: &str) -> Result<(), String> {
    let errs = objectmeta::is_qualified_name(k);
    if errs.is_empty() { Ok(()) } else { Err(format!("invalid label key {k:?}: {}", errs.join("; "))) }
}

fn validate_value(k: &str, v: &str) -> Result<(), String> {
    let errs = objectmeta::is_valid_label_value(v);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("invalid label value: {v:?}: at key: {k:?}: {}", errs.join("; ")))
    }
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
                return Err(ApiError::bad_request(format!("field label not supported: {field}")));
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
        assert!(m("x notin (in, notin)"), "in and notin are values inside a set");
        assert!(m("tier in (,db)"));
        let empty = labels(json!({"app": ""}));
        assert!(LabelSelector::parse("app=").unwrap().matches_with(|k| empty.get(k).and_then(Value::as_str)));
    }

    #[test]
    fn structured_label_selectors() {
        let structured = |v: Value| LabelSelector::from_structured(&serde_json::from_value(v).unwrap());
        let l = labels(json!({"app": "x", "tier": "db"}));
        let s = structured(json!({"matchLabels": {"app": "x"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["db", "cache"]},
                                 {"key": "gone", "operator": "DoesNotExist"}]}))
        .unwrap();
        assert!(s.matches_with(|k| l.get(k).and_then(Value::as_str)));
        assert!(!s.matches_with(|_| None));
        assert!(structured(json!({})).unwrap().is_empty());
        let no = structured(json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["x"]}]}));
        assert!(!no.unwrap().matches_with(|k| l.get(k).and_then(Value::as_str)));
        assert!(structured(json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})).is_err());
        assert!(structured(json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]})).is_err());
        assert!(structured(json!({"matchLabels": {"bad key": "x"}})).is_err());
    }

    /// Upstream's messages (apimachinery `labels.Parse`), which the 400 carries as they are.
    #[test]
    fn label_selector_errors_are_upstreams() {
        let err = |s: &str| LabelSelector::parse(s).unwrap_err().message;
        assert_eq!(err("app===x"), "unable to parse requirement: found '=', expected: identifier");
        assert_eq!(err("a in b"), "unable to parse requirement: found 'b' expected: '('");
        assert_eq!(err("a,"), "found '', expected: identifier after ','");
        assert_eq!(err("a b"), "unable to parse requirement: found 'b', expected: '=', '!=', '==', 'in', notin'");
        assert_eq!(err("=x"), "found '=', expected: !, identifier, or 'end of string'");
        assert_eq!(err("!a=b"), "found '=', expected: ',' or 'end of string'");
        assert_eq!(err("n>x"), "unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer");
        assert_eq!(err("a in ()x"), "found 'x', expected: ',' or 'end of string'");
        assert_eq!(err("a=>"), "unable to parse requirement: found '>', expected: identifier");
        assert!(err("a=b c").starts_with("found 'c', expected: ',' or 'end of string'"));
        assert_eq!(err("a=b!c"), "found '!', expected: ',' or 'end of string'");
        assert_eq!(
            err("a=b@c"),
            "unable to parse requirement: invalid label value: \"b@c\": at key: \"a\": a valid label must be an empty \
             string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric \
             character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is \
             '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        );
        assert!(err("bad key=x").starts_with("unable to parse requirement: found 'key', expected"));
        assert!(
            err("-a=x").starts_with("unable to parse requirement: invalid label key \"-a\": name part must consist")
        );
    }

    #[test]
    fn field_selectors() {
        let known = ["metadata.name", "metadata.namespace", "status.phase"];
        let s = FieldSelector::parse("status.phase=Failed,metadata.name!=a", &known).unwrap();
        assert!(s.matches_with(|f| if f == "status.phase" { "Failed" } else { "b" }));
        assert!(!s.matches_with(|_| "a"));
        let e = FieldSelector::parse("spec.x=1", &known).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(e.message, "field label not supported: spec.x");
        assert_eq!(FieldSelector::parse("metadata.name=n", &known).unwrap().exact_name(), Some("n"));
    }
}
