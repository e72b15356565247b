//! `CreateOptions`, `UpdateOptions` and `PatchOptions`: `dryRun`, `fieldValidation`, `fieldManager` (validated as
//! upstream's `ValidateFieldManager`, defaulted from the User-Agent) and, for apply only, `force`.

use backup_apis::{ErrorList, FieldError};
use serde_json::{Value, json};

use super::{FieldValidation, dry_run, invalid_options};
use crate::error::{ApiError, ApiResult};
use crate::request::query::Query;

/// Upstream's `FieldManagerMaxLength`.
pub const FIELD_MANAGER_MAX_LENGTH: usize = 128;

/// Options of a create (POST).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    /// The `fieldManager` parameter, or the User-Agent's product name.
    pub field_manager: String,
}

/// Options of an update (PUT): the same as a create's.
pub type UpdateOptions = CreateOptions;

/// Options of a patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    /// Required for apply; for other patches the User-Agent's product name when absent.
    pub field_manager: String,
    /// Apply only: take fields other managers own instead of failing with a conflict.
    pub force: bool,
}

impl CreateOptions {
    /// The options of a create (`CreateOptions`) or, with `kind` `UpdateOptions`, of an update.
    pub fn from_query(q: &Query, user_agent: &str, kind: &'static str) -> ApiResult<Self> {
        let dry_run = dry_run(q)?;
        let field_validation = FieldValidation::from_query(q)?;
        let field_manager = field_manager(q, user_agent, kind, ErrorList::default())?;
        Ok(Self { dry_run, field_validation, field_manager })
    }
}

impl PatchOptions {
    /// The options of a patch; `apply` for server-side apply (which requires `fieldManager` and alone takes
    /// `force`).
    pub fn from_query(q: &Query, user_agent: &str, apply: bool) -> ApiResult<Self> {
        let dry_run = dry_run(q)?;
        let field_validation = FieldValidation::from_query(q)?;
        let force =
            match q.get("force") {
                None => None,
                Some(v) => Some(parse_bool(v).ok_or_else(|| {
                    ApiError::bad_request(format!("strconv.ParseBool: parsing {v:?}: invalid syntax"))
                })?),
            };
        let mut errs = ErrorList::default();
        if !apply && force.is_some() {
            errs.push(FieldError::forbidden("force", "may not be specified for non-apply patch"));
        }
        if apply && q.get("fieldManager").unwrap_or("").is_empty() {
            errs.push(FieldError::required("fieldManager", "is required for apply patch"));
        }
        let field_manager = field_manager(q, user_agent, "PatchOptions", errs)?;
        Ok(Self { dry_run, field_validation, field_manager, force: force.unwrap_or(false) })
    }
}

/// Validate `fieldManager` (adding to `errs`, the verb's own errors) and default it from the User-Agent: 422
/// `<kind>.meta.k8s.io "" is invalid: …` as upstream.
fn field_manager(q: &Query, user_agent: &str, kind: &'static str, mut errs: ErrorList) -> ApiResult<String> {
    let field_manager = q.get("fieldManager").unwrap_or("");
    if field_manager.len() > FIELD_MANAGER_MAX_LENGTH {
        errs.push(FieldError::too_long("fieldManager", FIELD_MANAGER_MAX_LENGTH));
    }
    for (i, c) in field_manager.char_indices().filter(|(_, c)| !printable(*c)) {
        let detail = format!("invalid character U+{:04X} (at position {i})", c as u32);
        errs.push(FieldError::invalid("fieldManager", Value::String(field_manager.into()), detail));
    }
    if !errs.is_empty() {
        let causes: Vec<Value> = errs
            .iter()
            .map(|e| json!({"reason": e.error_type.reason(), "message": e.message(), "field": e.field}))
            .collect();
        return Err(invalid_options(kind, &errs.summary(), causes));
    }
    Ok(if field_manager.is_empty() { prefix_from_user_agent(user_agent) } else { field_manager.to_string() })
}

/// Go's `unicode.IsPrint`, near enough: no control characters, no non-ASCII spaces.
fn printable(c: char) -> bool {
    !c.is_control() && (c == ' ' || !c.is_whitespace())
}

/// The User-Agent up to the first `/`, printable characters only, at most 128 bytes (upstream's
/// `prefixFromUserAgent`).
pub fn prefix_from_user_agent(ua: &str) -> String {
    let mut out = String::new();
    for c in ua.split('/').next().unwrap_or("").chars().filter(|c| printable(*c)) {
        if out.len() + c.len_utf8() > FIELD_MANAGER_MAX_LENGTH {
            break;
        }
        out.push(c);
    }
    out
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query {
        Query::parse(Some(s))
    }

    #[test]
    fn field_manager_options() {
        let e = PatchOptions::from_query(&q(""), "kubectl/v1.32", true).unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
        );
        let e = PatchOptions::from_query(&q("force=true"), "", false).unwrap_err();
        assert_eq!(
            e.message,
            "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
        );
        assert_eq!(e.details.unwrap()["causes"][0]["field"], "force");
        let long = format!("fieldManager={}", "m".repeat(129));
        assert_eq!(CreateOptions::from_query(&q(&long), "", "CreateOptions").unwrap_err().code, 422);
        let e = CreateOptions::from_query(&q("fieldManager=a%07b"), "", "UpdateOptions").unwrap_err();
        assert_eq!((e.code, e.message.starts_with("UpdateOptions.meta.k8s.io")), (422, true));
        assert_eq!(PatchOptions::from_query(&q("force=maybe"), "", true).unwrap_err().code, 400);
        let ok = PatchOptions::from_query(&q("fieldManager=me&force=true"), "", true).unwrap();
        assert_eq!((ok.field_manager.as_str(), ok.force), ("me", true));
        let ok = CreateOptions::from_query(&q(""), "kubectl/v1.32.4 (linux/amd64)", "CreateOptions").unwrap();
        assert_eq!(ok.field_manager, "kubectl");
        assert_eq!(prefix_from_user_agent(&"x".repeat(200)).len(), 128);
    }
}
