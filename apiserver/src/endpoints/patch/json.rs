//! JSON patch (`application/json-patch+json`, RFC 6902): a list of operations applied in order, as kube-apiserver
//! applies them with evanphx/json-patch v4 — its pointer and index rules and its error texts — with bounds it lacks.
//!
//! endpoints/patch → **JSON patch** (inside the store's update loop, on a copy of the stored object that is dropped
//! when an operation fails, so nothing needs undoing).
//!
//! Upstream's rules kept: `~1` is `/` and `~0` is `~`; what precedes a path's first `/` is ignored (`a/b` is `/b`);
//! array indices are Go `strconv.Atoi` numbers (`01`, `+1` and negative indices from the end are accepted); `-`
//! appends (add, move and copy only); `add` and `remove` of `""` and `copy`/`move` from `""` fail; `replace` of
//! `""` replaces the document with an object or array; an absent `value` is `null`; `test` of a missing or null
//! value passes for a `null` value; `move` removes before it looks up its destination, so moving into one's own
//! child fails. Deliberate differences, as v5 (and RFC 6902) have them: `replace` of a missing object key and `copy`
//! from one fail instead of adding the key or copying `null`; `replace` of `""` with a scalar fails instead of
//! doing nothing; values compare as JSON values (`"\u0041"` equals `"A"`).
//!
//! Bounds: [`MAX_OPERATIONS`] operations (upstream's, 413); copies add at most [`MAX_COPY_BYTES`] (upstream's
//! `JSONPatchMaxCopyBytes`, 422); no operation nests the document deeper than `body::MAX_DOCUMENT_DEPTH` (422), so
//! nothing a patch builds recurses deeper than that when cloned, compared, written or dropped (the result's fields
//! are then held to `body::MAX_DEPTH`, as every patch's are); inserting into and removing from
//! arrays and measuring moved values together touch at most [`MAX_WORK`] elements (413).

use std::borrow::Cow;
use std::io;

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult, StatusReason};
use crate::request::body::{MAX_DOCUMENT_DEPTH, depth_counting};

/// Upstream's `maxJSONPatchOperations`.
pub const MAX_OPERATIONS: usize = 10_000;

/// Upstream's `JSONPatchMaxCopyBytes` (`AccumulatedCopySizeLimit`): what all `copy` operations of one patch may add,
/// in bytes of the copied values' JSON.
pub const MAX_COPY_BYTES: usize = 3 * 1024 * 1024;

/// Array elements that inserts and removals may shift, plus nodes of moved values measured for depth, in one
/// patch. Upstream has no such bound (and copies the whole array on each insert or removal): 10,000 removals from
/// the front of a 750,000-element array would shift 7.5 billion elements. 64 Mi elements is 2 GiB of memory moved.
pub const MAX_WORK: usize = 1 << 26;

/// A parsed JSON patch.
#[derive(Debug, Clone, PartialEq)]
pub struct Patch {
    operations: Vec<Operation>,
}

/// One operation, with its fields as evanphx's `Operation` reads them.
#[derive(Debug, Clone, PartialEq)]
struct Operation {
    /// `op` when it is a string (upstream's `Kind()` is "unknown" otherwise).
    op: Option<String>,
    path: Field,
    from: Field,
    /// `value`; `null` when absent, as upstream stores and compares it.
    value: Value,
}

/// A string field of an operation.
#[derive(Debug, Clone, PartialEq)]
enum Field {
    /// Absent or `null`.
    Missing,
    /// Not a string: Go's decoding error.
    Invalid(String),
    Text(String),
}

/// Go's name of a JSON value's type, as its decoding errors print it.
fn go_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn decode_error(detail: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("error decoding patch: {detail}"))
}

/// Parse a JSON patch body: 400 when it is not a list of operations, 413 past [`MAX_OPERATIONS`].
pub fn parse(body: &[u8]) -> ApiResult<Patch> {
    let items = match serde_json::from_slice::<Value>(body).map_err(decode_error)? {
        Value::Null => Vec::new(),
        Value::Array(items) => items,
        other => {
            return Err(decode_error(format!(
                "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
                go_kind(&other)
            )));
        }
    };
    if items.len() > MAX_OPERATIONS {
        return Err(ApiError::new(
            413,
            StatusReason::RequestEntityTooLarge,
            format!(
                "Request entity too large: The allowed maximum operations in a JSON patch is {MAX_OPERATIONS}, got {}",
                items.len()
            ),
        ));
    }
    let mut operations = Vec::with_capacity(items.len());
    for item in items {
        let mut fields = match item {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => {
                return Err(decode_error(format!(
                    "json: cannot unmarshal {} into Go value of type jsonpatch.Operation",
                    go_kind(&other)
                )));
            }
        };
        let field = |fields: &mut Map<String, Value>, name: &str| match fields.remove(name) {
            None | Some(Value::Null) => Field::Missing,
            Some(Value::String(s)) => Field::Text(s),
            Some(other) => {
                Field::Invalid(format!("json: cannot unmarshal {} into Go value of type string", go_kind(&other)))
            }
        };
        let op = match fields.remove("op") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        let (path, from) = (field(&mut fields, "path"), field(&mut fields, "from"));
        let value = fields.remove("value").unwrap_or(Value::Null);
        operations.push(Operation { op, path, from, value });
    }
    Ok(Patch { operations })
}

/// Why an operation failed.
#[derive(Debug)]
enum Failure {
    /// It does not apply: 422 with upstream's generic message (the text, evanphx's, is logged).
    Apply(String),
    /// It would pass a bound ([`MAX_COPY_BYTES`], the depth bound): 422 saying which.
    Limit(String),
    /// It costs more than [`MAX_WORK`]: 413.
    TooCostly,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::Apply(message)
    }
}

type OpResult<T> = Result<T, Failure>;

/// Apply `patch` to `doc`: 422 for an operation that does not apply, exactly as upstream answers it
/// (`NewGenericServerResponse` without a cause: the generic message and empty details; the failed operation is only
/// logged), 422 naming the bound for one that would nest the document too deeply or copy too much, 413 past
/// [`MAX_WORK`]. On failure `doc` is partly patched and must be dropped.
pub fn apply(doc: &mut Value, patch: &Patch) -> ApiResult<()> {
    run(doc, patch).map_err(|f| match f {
        Failure::Apply(message) => {
            tracing::debug!(error = %message, "JSON patch does not apply");
            ApiError::unprocessable("the server rejected our request due to an error in our request")
                .with_details(serde_json::json!({}))
        }
        Failure::Limit(message) => ApiError::unprocessable(format!(
            "the server rejected our request due to an error in our request: {message}"
        )),
        Failure::TooCostly => ApiError::new(
            413,
            StatusReason::RequestEntityTooLarge,
            format!(
                "Request entity too large: the JSON patch would shift or measure more than {MAX_WORK} array elements"
            ),
        ),
    })?;
    if !doc.is_object() {
        return Err(ApiError::unprocessable(
            "the server rejected our request due to an error in our request: the patched object is not a JSON object",
        ));
    }
    super::within_depth(doc)
}

/// Apply each operation of `patch` to `doc` in turn, up to the first that fails.
fn run(doc: &mut Value, patch: &Patch) -> OpResult<()> {
    let mut run = Run { copied: 0, work: 0 };
    for op in &patch.operations {
        run.operation(doc, op)?;
    }
    Ok(())
}

const MISSING: &str = "missing value";

/// The state of one application: what copies added, and the work spent.
struct Run {
    copied: usize,
    work: usize,
}

impl Run {
    fn charge(&mut self, units: usize) -> OpResult<()> {
        self.work = self.work.saturating_add(units);
        if self.work > MAX_WORK { Err(Failure::TooCostly) } else { Ok(()) }
    }

    fn operation(&mut self, doc: &mut Value, op: &Operation) -> OpResult<()> {
        match op.op.as_deref() {
            Some("add") => self.add(doc, op),
            Some("remove") => self.remove(doc, op),
            Some("replace") => self.replace(doc, op),
            Some("move") => self.move_(doc, op),
            Some("test") => test(doc, op),
            Some("copy") => self.copy(doc, op),
            Some(other) => Err(format!("Unexpected kind: {other}").into()),
            None => Err("Unexpected kind: unknown".to_string().into()),
        }
    }

    /// Check that a value nesting `height` levels fits in a container at `level`.
    fn fits(level: usize, height: usize, path: &str) -> OpResult<()> {
        if level + height > MAX_DOCUMENT_DEPTH {
            return Err(Failure::Limit(format!(
                "the patched object would nest deeper than {MAX_DOCUMENT_DEPTH} levels at {path:?}"
            )));
        }
        Ok(())
    }

    fn add(&mut self, doc: &mut Value, op: &Operation) -> OpResult<()> {
        let Field::Text(path) = &op.path else {
            return Err(format!("add operation failed to decode path: {MISSING}").into());
        };
        let missing = || format!("add operation does not apply: doc is missing path: \"{path}\": {MISSING}");
        let loc = Location::parse(path).ok_or_else(missing)?;
        let (container, level) = loc.container_mut(doc).ok_or_else(missing)?;
        Self::fits(level, depth_counting(&op.value, MAX_DOCUMENT_DEPTH, &mut 0), path)?;
        let shifted = insert(container, &loc.key, op.value.clone())
            .map_err(|e| format!("error in add for path: '{path}': {e}"))?;
        self.charge(shifted)
    }

    fn remove(&mut self, doc: &mut Value, op: &Operation) -> OpResult<()> {
        let Field::Text(path) = &op.path else {
            return Err(format!("remove operation failed to decode path: {MISSING}").into());
        };
        let missing = || format!("remove operation does not apply: doc is missing path: \"{path}\": {MISSING}");
        let loc = Location::parse(path).ok_or_else(missing)?;
        let (container, _) = loc.container_mut(doc).ok_or_else(missing)?;
        let (_, shifted) = take(container, &loc.key).map_err(|e| format!("error in remove for path: '{path}': {e}"))?;
        self.charge(shifted)
    }

    fn replace(&mut self, doc: &mut Value, op: &Operation) -> OpResult<()> {
        let path = path_field("replace", &op.path)?;
        if path.is_empty() {
            if !(op.value.is_object() || op.value.is_array()) {
                return Err("replace operation value must be object or array".to_string().into());
            }
            Self::fits(0, depth_counting(&op.value, MAX_DOCUMENT_DEPTH, &mut 0), path)?;
            *doc = op.value.clone();
            return Ok(());
        }
        let missing = || format!("replace operation does not apply: doc is missing path: {path}: {MISSING}");
        let loc = Location::parse(path).ok_or_else(missing)?;
        let (container, level) = loc.container_mut(doc).ok_or_else(missing)?;
        let slot = get_mut(container, &loc.key)
            .map_err(|_| format!("replace operation does not apply: doc is missing key: {path}: {MISSING}"))?;
        Self::fits(level, depth_counting(&op.value, MAX_DOCUMENT_DEPTH, &mut 0), path)?;
        *slot = op.value.clone();
        Ok(())
    }

    fn move_(&mut self, doc: &mut Value, op: &Operation) -> OpResult<()> {
        let from = from_field("move", &op.from)?;
        let missing = || format!("move operation does not apply: doc is missing from path: {from}: {MISSING}");
        let source = Location::parse(from).ok_or_else(missing)?;
        let (container, source_level) = source.container_mut(doc).ok_or_else(missing)?;
        let (value, shifted) =
            take(container, &source.key).map_err(|e| format!("error in move for path: '{}': {e}", source.key))?;
        self.charge(shifted)?;
        let path = path_field("move", &op.path)?;
        let missing = || format!("move operation does not apply: doc is missing destination path: {path}: {MISSING}");
        let target = Location::parse(path).ok_or_else(missing)?;
        let (container, level) = target.container_mut(doc).ok_or_else(missing)?;
        if level > source_level {
            let mut nodes = 0;
            let height = depth_counting(&value, MAX_DOCUMENT_DEPTH, &mut nodes);
            self.charge(nodes)?;
            Self::fits(level, height, path)?;
        }
        let shifted =
            insert(container, &target.key, value).map_err(|e| format!("error in move for path: '{path}': {e}"))?;
        self.charge(shifted)
    }

    fn copy(&mut self, doc: &mut Value, op: &Operation) -> OpResult<()> {
        let from = from_field("copy", &op.from)?;
        let missing = || format!("copy operation does not apply: doc is missing from path: {from}: {MISSING}");
        let source = Location::parse(from).ok_or_else(missing)?;
        let (container, _) = source.container(doc).ok_or_else(missing)?;
        let value = get(container, &source.key).map_err(|e| format!("error in copy for from: '{from}': {e}"))?;
        let Field::Text(path) = &op.path else {
            return Err(format!("copy operation failed to decode path: {MISSING}").into());
        };
        let missing = || format!("copy operation does not apply: doc is missing destination path: {path}: {MISSING}");
        let target = Location::parse(path).ok_or_else(missing)?;
        let (_, level) = target.container(doc).ok_or_else(missing)?;
        self.copied = self.copied.saturating_add(json_size(value));
        if self.copied > MAX_COPY_BYTES {
            return Err(Failure::Limit(format!(
                "Unable to complete the copy, the accumulated size increase of copy is {}, exceeding the limit {MAX_COPY_BYTES}",
                self.copied
            )));
        }
        Self::fits(level, depth_counting(value, MAX_DOCUMENT_DEPTH, &mut 0), path)?;
        let value = value.clone();
        let (container, _) = target.container_mut(doc).ok_or_else(missing)?;
        let shifted =
            insert(container, &target.key, value).map_err(|e| format!("error while adding value during copy: {e}"))?;
        self.charge(shifted)
    }
}

fn test(doc: &mut Value, op: &Operation) -> OpResult<()> {
    let path = path_field("test", &op.path)?;
    let failed = || format!("testing value {path} failed: test failed");
    if path.is_empty() {
        return if *doc == op.value { Ok(()) } else { Err(failed().into()) };
    }
    let missing = || format!("test operation does not apply: is missing path: {path}: {MISSING}");
    let loc = Location::parse(path).ok_or_else(missing)?;
    let (container, _) = loc.container(doc).ok_or_else(missing)?;
    let found = match container {
        Value::Object(m) => m.get(loc.key.as_ref()),
        _ => Some(get(container, &loc.key).map_err(|e| format!("error in test for path: '{path}': {e}"))?),
    };
    match found {
        None | Some(Value::Null) if op.value.is_null() => Ok(()),
        Some(v) if !v.is_null() && !op.value.is_null() && *v == op.value => Ok(()),
        _ => Err(failed().into()),
    }
}

/// `path` of a `kind` operation that reports why it could not be decoded (replace, move, test).
fn path_field<'o>(kind: &str, field: &'o Field) -> OpResult<&'o str> {
    match field {
        Field::Text(s) => Ok(s),
        Field::Missing => {
            Err(format!("{kind} operation failed to decode path: operation missing path field: {MISSING}").into())
        }
        Field::Invalid(e) => Err(format!("{kind} operation failed to decode path: {e}").into()),
    }
}

/// `from` of a `kind` operation (move, copy).
fn from_field<'o>(kind: &str, field: &'o Field) -> OpResult<&'o str> {
    match field {
        Field::Text(s) => Ok(s),
        Field::Missing => {
            Err(format!("{kind} operation failed to decode from: operation, missing from field: {MISSING}").into())
        }
        Field::Invalid(e) => Err(format!("{kind} operation failed to decode from: {e}").into()),
    }
}

/// Where a path points: the tokens leading to the container and the key in it (evanphx's `findObject`).
struct Location<'p> {
    /// The container's tokens, `/`-separated and still escaped; `None` for the document itself.
    parents: Option<&'p str>,
    key: Cow<'p, str>,
}

impl<'p> Location<'p> {
    /// `None` for a path without `/` (`""` among them).
    fn parse(path: &'p str) -> Option<Self> {
        let (_, rest) = path.split_once('/')?;
        Some(match rest.rsplit_once('/') {
            Some((parents, key)) => Self { parents: Some(parents), key: unescape(key) },
            None => Self { parents: None, key: unescape(rest) },
        })
    }

    fn tokens(&self) -> impl Iterator<Item = Cow<'p, str>> {
        self.parents.into_iter().flat_map(|p| p.split('/')).map(unescape)
    }

    /// The container and its level (the document is level 1); `None` when a token is missing or leads to a
    /// scalar or null.
    fn container<'d>(&self, doc: &'d Value) -> Option<(&'d Value, usize)> {
        let mut current = doc;
        let mut level = 1;
        for token in self.tokens() {
            current = get(current, &token).ok()?;
            if !(current.is_object() || current.is_array()) {
                return None;
            }
            level += 1;
        }
        Some((current, level))
    }

    fn container_mut<'d>(&self, doc: &'d mut Value) -> Option<(&'d mut Value, usize)> {
        let mut current = doc;
        let mut level = 1;
        for token in self.tokens() {
            current = get_mut(current, &token).ok()?;
            if !(current.is_object() || current.is_array()) {
                return None;
            }
            level += 1;
        }
        Some((current, level))
    }
}

/// RFC 6901: `~1` is `/`, then `~0` is `~` (left to right, as Go's `strings.Replacer` does).
fn unescape(token: &str) -> Cow<'_, str> {
    if !token.contains('~') {
        return Cow::Borrowed(token);
    }
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('~', Some('1')) => {
                out.push('/');
                chars.next();
            }
            ('~', Some('0')) => {
                out.push('~');
                chars.next();
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Go's `strconv.Atoi` on a 64-bit platform, with its error text.
fn atoi(s: &str) -> Result<i64, String> {
    s.parse::<i64>().map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => "value out of range",
            _ => "invalid syntax",
        };
        format!("strconv.Atoi: parsing {s:?}: {why}")
    })
}

fn invalid_index(i: i64) -> String {
    format!("Unable to access invalid index: {i}: invalid index referenced")
}

/// An existing element's index (negative from the end), as `partialArray.get` reads it.
fn existing_index(key: &str, len: usize) -> Result<usize, String> {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    let mut i = atoi(key)?;
    if i < 0 {
        if i < -len {
            return Err(invalid_index(i));
        }
        i += len;
    }
    if i >= len {
        return Err(invalid_index(i));
    }
    usize::try_from(i).map_err(|_| invalid_index(i))
}

/// The value at `key` of an object or array; a missing object key is v5's error.
fn get<'d>(container: &'d Value, key: &str) -> Result<&'d Value, String> {
    match container {
        Value::Object(m) => m.get(key).ok_or_else(|| format!("unable to get nonexistent key: {key}: {MISSING}")),
        Value::Array(a) => Ok(&a[existing_index(key, a.len())?]),
        _ => Err(MISSING.to_string()),
    }
}

fn get_mut<'d>(container: &'d mut Value, key: &str) -> Result<&'d mut Value, String> {
    match container {
        Value::Object(m) => m.get_mut(key).ok_or_else(|| format!("unable to get nonexistent key: {key}: {MISSING}")),
        Value::Array(a) => {
            let i = existing_index(key, a.len())?;
            Ok(&mut a[i])
        }
        _ => Err(MISSING.to_string()),
    }
}

/// `partialDoc.add` / `partialArray.add`: set an object key, or insert into an array (`-` appends, an index up
/// to the length, negative from one past the end). Returns the elements shifted.
fn insert(container: &mut Value, key: &str, value: Value) -> Result<usize, String> {
    match container {
        Value::Object(m) => {
            m.insert(key.to_string(), value);
            Ok(0)
        }
        Value::Array(a) => {
            if key == "-" {
                a.push(value);
                return Ok(0);
            }
            let mut i = atoi(key).map_err(|e| format!("value was not a proper array index: '{key}': {e}"))?;
            let size = i64::try_from(a.len()).unwrap_or(i64::MAX).saturating_add(1);
            if i >= size {
                return Err(invalid_index(i));
            }
            if i < 0 {
                if i < -size {
                    return Err(invalid_index(i));
                }
                i += size;
            }
            let i = usize::try_from(i).map_err(|_| invalid_index(i))?;
            a.insert(i, value);
            Ok(a.len() - 1 - i)
        }
        _ => Err(MISSING.to_string()),
    }
}

/// `partialDoc.remove` / `partialArray.remove`: the value removed, and the elements shifted.
fn take(container: &mut Value, key: &str) -> Result<(Value, usize), String> {
    match container {
        Value::Object(m) => {
            m.remove(key).map(|v| (v, 0)).ok_or_else(|| format!("Unable to remove nonexistent key: {key}: {MISSING}"))
        }
        Value::Array(a) => {
            let len = i64::try_from(a.len()).unwrap_or(i64::MAX);
            let mut i = atoi(key)?;
            if i >= len {
                return Err(invalid_index(i));
            }
            if i < 0 {
                if i < -len {
                    return Err(invalid_index(i));
                }
                i += len;
            }
            let i = usize::try_from(i).map_err(|_| invalid_index(i))?;
            let value = a.remove(i);
            Ok((value, a.len() - i))
        }
        _ => Err(MISSING.to_string()),
    }
}

/// The bytes of `value`'s compact JSON, as upstream measures a copy.
fn json_size(value: &Value) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
