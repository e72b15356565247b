//! The write options the field manager reads from the query: `fieldManager` (validated as upstream's
//! `ValidateFieldManager`, defaulted from the User-Agent) and, for apply only, `force`.
//!
//! HTTP → authn → authz → **REST handlers (this file: field manager options)** → field manager → strategy → storage.

use backup_apis::{ErrorList, FieldError};
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::rest::params::Params;

/// Upstream's `FieldManagerMaxLength`.
pub const FIELD_MANAGER_MAX_LENGTH: usize = 128;

/// Which options object the errors belong to (`CreateOptions`, `UpdateOptions`, `PatchOptions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Create,
    Update,
    Patch { apply: bool },
}

/// The validated field-manager options of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerOptions {
    /// The `fieldManager` parameter, or the User-Agent's product name.
    pub manager: String,
    pub force: bool,
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

/// Parse and validate `fieldManager` and `force` (422 `PatchOptions.meta.k8s.io "" is invalid: …` as upstream).
pub fn parse(params: &Params, verb: Verb, user_agent: &str) -> ApiResult<ManagerOptions> {
    let field_manager = params.get("fieldManager").unwrap_or("");
    let mut errs = ErrorList::default();
    let force = match params.get("force") {
        None => None,
        Some(v) => Some(
            parse_bool(v)
                .ok_or_else(|| ApiError::bad_request(format!("strconv.ParseBool: parsing {v:?}: invalid syntax")))?,
        ),
    };
    match verb {
        Verb::Patch { apply: false } if force.is_some() => {
            errs.push(FieldError::forbidden("force", "may not be specified for non-apply patch"));
        }
        Verb::Patch { apply: true } if field_manager.is_empty() => {
            errs.push(FieldError::required("fieldManager", "is required for apply patch"));
        }
        _ => {}
    }
    if field_manager.len() > FIELD_MANAGER_MAX_LENGTH {
        errs.push(FieldError::too_long("fieldManager", FIELD_MANAGER_MAX_LENGTH));
    }
    for (i, c) in field_manager.char_indices().filter(|(_, c)| !printable(*c)) {
        let detail = format!("invalid character U+{:04X} (at position {i})", c as u32);
        errs.push(FieldError::invalid("fieldManager", Value::String(field_manager.into()), detail));
    }
    if !errs.is_empty() {
        let kind = match verb {
            Verb::Create => "CreateOptions",
            Verb::Update => "UpdateOptions",
            Verb::Patch { .. } => "PatchOptions",
        };
        let causes: Vec<Value> = errs
            .iter()
            .map(|e| json!({"reason": e.error_type.reason(), "message": e.message(), "field": e.field}))
            .collect();
        return Err(ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{kind}.meta.k8s.io \"\" is invalid: {}", errs.summary()),
            details: Some(json!({"group": "meta.k8s.io", "kind": kind, "causes": causes})),
            retry_after: None,
            continue_token: None,
        });
    }
    let manager = if field_manager.is_empty() { prefix_from_user_agent(user_agent) } else { field_manager.to_string() };
    Ok(ManagerOptions { manager, force: force.unwrap_or(false) })
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}
