//! ObjectMeta rules every kind shares, as k8s.io/apimachinery's `api/validation/objectmeta.go` and
//! `util/validation/validation.go` (v1.20) state them, on the JSON `metadata` object.
//!
//! filters → endpoints → registry store → **strategy (this file: metadata rules, called by the registry store before the
//! kind's own rules)** → storage → etcd.
//!
//! Messages are upstream's, word for word. Map keys are checked in sorted order (upstream's order is random).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::field::{ErrorList, FieldError};

/// Upstream's `FieldImmutableErrorMsg`.
pub const FIELD_IMMUTABLE: &str = "field is immutable";
/// Upstream's `TotalAnnotationSizeLimitB`: 256 KiB for all annotation keys and values together.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// The ObjectMeta fields a stored object may carry (everything else under `metadata` is unknown).
pub const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// Upstream's `RegexError`: `msg (e.g. 'a',  or 'b', regex used for validation is 'fmt')` (two spaces before `or`:
/// each example is followed by `, ` and the next preceded by ` or `).
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!("{msg} (e.g. {}regex used for validation is '{fmt}')", examples.join(" or "))
}

fn is_label_shaped(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => edge(f) && edge(l) && b.iter().all(inner),
        _ => false,
    }
}

fn is_qualified_shaped(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() && b.iter().all(inner),
        _ => false,
    }
}

/// The time now as Kubernetes writes metadata timestamps (`creationTimestamp`, `deletionTimestamp`,
/// managedFields' `time`): RFC 3339 in UTC, second precision, `Z`.
pub fn timestamp_now() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second()).unwrap_or(now).to_string()
}

/// Upstream's `IsDNS1123Label`: empty when `v` is a valid DNS-1123 label (namespace names).
pub fn is_dns1123_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !is_label_shaped(v) {
        errs.push(regex_error(DNS1123_LABEL_MSG, DNS1123_LABEL_FMT, &["my-name", "123-abc"]));
    }
    errs
}

/// Upstream's `IsDNS1123Subdomain`: empty when `v` is a valid DNS-1123 subdomain (object names).
pub fn is_dns1123_subdomain(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !v.split('.').all(is_label_shaped) {
        errs.push(regex_error(DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errs
}

/// Upstream's `IsQualifiedName`: `[prefix/]name` (label keys, annotation keys, finalizers).
pub fn is_qualified_name(v: &str) -> Vec<String> {
    let regex_msg = || regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"]);
    let mut errs = Vec::new();
    let parts: Vec<&str> = v.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(is_dns1123_subdomain(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_msg()
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !is_qualified_shaped(name) {
        errs.push(format!("name part {}", regex_msg()));
    }
    errs
}

/// Upstream's `IsValidLabelValue`.
pub fn is_valid_label_value(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !v.is_empty() && !is_qualified_shaped(v) {
        errs.push(regex_error(LABEL_VALUE_MSG, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

/// Upstream's `NameIsDNSSubdomain`: the name rule of CRD-like kinds; `prefix` checks a `generateName`.
pub fn name_is_dns_subdomain(name: &str, prefix: bool) -> Vec<String> {
    is_dns1123_subdomain(&if prefix { mask_trailing_dash(name) } else { name.to_string() })
}

/// Upstream's `maskTrailingDash` (quirk included: it drops the last two bytes before appending `a`). A non-ASCII
/// name is left alone: it is invalid either way.
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.is_ascii() && name.ends_with('-') {
        format!("{}a", &name[..name.len() - 2])
    } else {
        name.to_string()
    }
}

/// Reads typed fields of a JSON object, reporting wrong types instead of ignoring them.
struct Reader<'a> {
    obj: &'a Map<String, Value>,
    errs: ErrorList,
}

impl<'a> Reader<'a> {
    fn field(&mut self, key: &str, want: &str, ok: fn(&Value) -> bool) -> Option<&'a Value> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(v) if ok(v) => Some(v),
            Some(v) => {
                self.errs.push(FieldError::type_invalid(
                    format!("metadata.{key}"),
                    v.clone(),
                    format!("must be {want}"),
                ));
                None
            }
        }
    }

    fn str(&mut self, key: &str) -> &'a str {
        self.field(key, "a string", Value::is_string).and_then(Value::as_str).unwrap_or("")
    }

    fn int(&mut self, key: &str) -> Option<i64> {
        self.field(key, "an integer", Value::is_i64).and_then(Value::as_i64)
    }

    fn string_map(&mut self, key: &str) -> Vec<(&'a str, &'a str)> {
        let is_map = |v: &Value| v.as_object().is_some_and(|m| m.values().all(Value::is_string));
        let map = self.field(key, "an object of strings", is_map).and_then(Value::as_object);
        map.into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str().unwrap_or(""))).collect()
    }

    fn string_list(&mut self, key: &str) -> Vec<&'a str> {
        let is_list = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
        let list = self.field(key, "an array of strings", is_list).and_then(Value::as_array);
        list.into_iter().flatten().filter_map(Value::as_str).collect()
    }

    fn object_list(&mut self, key: &str) -> Vec<&'a Map<String, Value>> {
        let is_list = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(Value::is_object));
        let list = self.field(key, "an array of objects", is_list).and_then(Value::as_array);
        list.into_iter().flatten().filter_map(Value::as_object).collect()
    }
}

fn reader(meta: &Value) -> Result<Reader<'_>, ErrorList> {
    match meta.as_object() {
        Some(obj) => Ok(Reader { obj, errs: ErrorList::default() }),
        None => Err(vec![FieldError::type_invalid("metadata", meta.clone(), "must be an object")].into()),
    }
}

/// The rules for an object being created (upstream's `ValidateObjectMetaAccessor` with `NameIsDNSSubdomain`).
///
/// Call it after the name was generated from `generateName`; `metadata.name` is required only when both are empty.
pub fn validate_object_meta(meta: &Value, namespaced: bool) -> ErrorList {
    let mut r = match reader(meta) {
        Ok(r) => r,
        Err(errs) => return errs,
    };
    let mut errs = ErrorList::default();
    let generate_name = r.str("generateName");
    if !generate_name.is_empty() {
        for msg in name_is_dns_subdomain(generate_name, true) {
            errs.push(FieldError::invalid("metadata.generateName", json!(generate_name), msg));
        }
    }
    let name = r.str("name");
    if name.is_empty() && generate_name.is_empty() {
        errs.push(FieldError::required("metadata.name", "name or generateName is required"));
    } else if !name.is_empty() {
        for msg in name_is_dns_subdomain(name, false) {
            errs.push(FieldError::invalid("metadata.name", json!(name), msg));
        }
    }
    let namespace = r.str("namespace");
    match (namespaced, namespace.is_empty()) {
        (true, true) => errs.push(FieldError::required("metadata.namespace", "")),
        (true, false) => {
            for msg in is_dns1123_label(namespace) {
                errs.push(FieldError::invalid("metadata.namespace", json!(namespace), msg));
            }
        }
        (false, false) => errs.push(FieldError::forbidden("metadata.namespace", "not allowed on this type")),
        (false, true) => {}
    }
    if let Some(g) = r.int("generation").filter(|g| *g < 0) {
        errs.push(FieldError::invalid("metadata.generation", json!(g), "must be greater than or equal to 0"));
    }
    errs.extend(validate_finalizers(&r.string_list("finalizers")));
    errs.extend(validate_common(&mut r));
    errs.extend(r.errs);
    errs
}

/// The rules for an update (upstream's `ValidateObjectMetaAccessorUpdate`), beside the kind's own.
///
/// Upstream's REST layer first copies a missing `uid`, `creationTimestamp`, `deletionTimestamp` and
/// `deletionGracePeriodSeconds` from `old`, resets `generation`, and fills `resourceVersion` for unconditional updates.
pub fn validate_object_meta_update(new: &Value, old: &Value) -> ErrorList {
    let (mut r, mut o) = match (reader(new), reader(old)) {
        (Ok(r), Ok(o)) => (r, o),
        (Err(errs), _) | (_, Err(errs)) => return errs,
    };
    let mut errs = ErrorList::default();
    let new_finalizers = r.string_list("finalizers");
    if o.obj.get("deletionTimestamp").is_some_and(|v| !v.is_null()) {
        let old_finalizers: BTreeSet<&str> = o.string_list("finalizers").into_iter().collect();
        let added: BTreeSet<&str> = new_finalizers.iter().copied().filter(|f| !old_finalizers.contains(f)).collect();
        if !added.is_empty() {
            let list = added.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>().join(", ");
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                format!("no new finalizers can be added if the object is being deleted, found new finalizers []string{{{list}}}"),
            ));
        }
    }
    let rv = r.str("resourceVersion");
    if rv.is_empty() {
        errs.push(FieldError::invalid("metadata.resourceVersion", json!(rv), "must be specified for an update"));
    }
    let (new_gen, old_gen) = (r.int("generation").unwrap_or(0), o.int("generation").unwrap_or(0));
    if new_gen < old_gen {
        errs.push(FieldError::invalid("metadata.generation", json!(new_gen), "must not be decremented"));
    }
    for key in ["name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"] {
        let (n, old) = (r.obj.get(key).unwrap_or(&Value::Null), o.obj.get(key).unwrap_or(&Value::Null));
        if !same_field(key, n, old) {
            errs.push(FieldError::invalid(format!("metadata.{key}"), n.clone(), FIELD_IMMUTABLE));
        }
    }
    errs.extend(validate_finalizers(&new_finalizers));
    errs.extend(validate_common(&mut r));
    errs.extend(r.errs);
    errs
}

/// Equality as upstream's semantic DeepEqual sees it: "" and absent strings agree, and times compare as instants.
fn same_field(key: &str, new: &Value, old: &Value) -> bool {
    let empty = |v: &Value| v.is_null() || v.as_str() == Some("");
    if empty(new) && empty(old) {
        return true;
    }
    if key.ends_with("Timestamp") {
        let parse = |v: &Value| v.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok());
        if let (Some(a), Some(b)) = (parse(new), parse(old)) {
            return a == b;
        }
    }
    new == old
}

/// Labels, annotations, owner references and managed fields: checked on create and update alike.
fn validate_common(r: &mut Reader<'_>) -> ErrorList {
    let mut errs = ErrorList::default();
    for (k, v) in r.string_map("labels") {
        for msg in is_qualified_name(k) {
            errs.push(FieldError::invalid("metadata.labels", json!(k), msg));
        }
        for msg in is_valid_label_value(v) {
            errs.push(FieldError::invalid("metadata.labels", json!(v), msg));
        }
    }
    let mut total = 0;
    for (k, v) in r.string_map("annotations") {
        for msg in is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid("metadata.annotations", json!(k), msg));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long("metadata.annotations", TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs.extend(validate_owner_references(&r.object_list("ownerReferences")));
    for (i, entry) in r.object_list("managedFields").iter().enumerate() {
        let operation = entry.get("operation").and_then(Value::as_str).unwrap_or("");
        if !matches!(operation, "Apply" | "Update") {
            let field = format!("metadata.managedFields[{i}].operation");
            errs.push(FieldError::invalid(field, json!(operation), "must be `Apply` or `Update`"));
        }
        let fields_type = entry.get("fieldsType").and_then(Value::as_str).unwrap_or("");
        if !fields_type.is_empty() && fields_type != "FieldsV1" {
            let field = format!("metadata.managedFields[{i}].fieldsType");
            errs.push(FieldError::invalid(field, json!(fields_type), "must be `FieldsV1`"));
        }
    }
    errs
}

fn validate_finalizers(finalizers: &[&str]) -> ErrorList {
    let mut errs = ErrorList::default();
    for f in finalizers {
        for msg in is_qualified_name(f) {
            errs.push(FieldError::invalid("metadata.finalizers", json!(f), msg));
        }
    }
    if finalizers.contains(&"orphan") && finalizers.contains(&"foregroundDeletion") {
        errs.push(FieldError::invalid(
            "metadata.finalizers",
            json!(finalizers),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

/// Upstream's `ValidateOwnerReferences`; like upstream, errors name `metadata.ownerReferences` without an index.
fn validate_owner_references(refs: &[&Map<String, Value>]) -> ErrorList {
    let mut errs = ErrorList::default();
    let path = "metadata.ownerReferences";
    let mut controller: Option<&str> = None;
    for r in refs {
        let get = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
        let (api_version, kind, name, uid) = (get("apiVersion"), get("kind"), get("name"), get("uid"));
        // Upstream's ParseGroupVersion: "v1", "group/v1"; more than one '/' leaves the version empty.
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) if !v.contains('/') => (g, v),
            Some(_) => ("", ""),
            None => ("", api_version),
        };
        let required = [
            ("apiVersion", version, api_version, "version"),
            ("kind", kind, kind, "kind"),
            ("name", name, name, "name"),
            ("uid", uid, uid, "uid"),
        ];
        for (key, value, shown, what) in required {
            if value.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{path}.{key}"),
                    json!(shown),
                    format!("{what} must not be empty"),
                ));
            }
        }
        if group.is_empty() && version == "v1" && kind == "Event" {
            errs.push(FieldError::invalid(
                path,
                Value::Object((*r).clone()),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            match controller {
                Some(first) => errs.push(FieldError::invalid(
                    path,
                    json!(refs),
                    format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {name}"),
                )),
                None => controller = Some(name),
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests;
