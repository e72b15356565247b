//! The typed options of each verb (`metav1.GetOptions`, `ListOptions`, `CreateOptions`, `UpdateOptions`,
//! `PatchOptions`, `DeleteOptions`), validated as upstream validates them. Each endpoint decodes its own options from the
//! [`Query`](super::query::Query) (and, for delete, the body) and hands them to the registry store.

mod delete;
mod get;
mod list;
mod write;

pub use delete::{DeleteOptions, PropagationPolicy};
pub use get::GetOptions;
pub use list::{ContinueToken, ListOptions, ResourceVersionMatch};
pub use write::{CreateOptions, FIELD_MANAGER_MAX_LENGTH, PatchOptions, UpdateOptions, prefix_from_user_agent};

use serde_json::{Value, json};

use super::query::Query;
use crate::error::{ApiError, ApiResult};

/// How unknown and duplicate fields in a body are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

impl FieldValidation {
    /// `fieldValidation`: Strict, Warn (default), Ignore.
    fn from_query(q: &Query) -> ApiResult<Self> {
        match q.get("fieldValidation") {
            None | Some("" | "Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some("Ignore") => Ok(Self::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

/// `dryRun`: absent → false; `All` → true; anything else → 400.
fn dry_run(q: &Query) -> ApiResult<bool> {
    let mut dry = false;
    for v in q.get_all("dryRun") {
        if v != "All" {
            return Err(ApiError::bad_request(format!("Invalid dryRun value: {v:?}: supported values: \"All\"")));
        }
        dry = true;
    }
    Ok(dry)
}

/// Upstream's 422 for invalid options: `<Kind>.meta.k8s.io "" is invalid: <summary>`, one cause per error.
fn invalid_options(kind: &str, summary: &str, causes: Vec<Value>) -> ApiError {
    let mut details = json!({"group": "meta.k8s.io", "kind": kind});
    if !causes.is_empty() {
        details["causes"] = Value::Array(causes);
    }
    ApiError::unprocessable(format!("{kind}.meta.k8s.io \"\" is invalid: {summary}")).with_details(details)
}

/// `resourceVersion`: `None` when unset or empty, else a non-negative revision (400 otherwise).
fn resource_version(p: &Query) -> ApiResult<Option<i64>> {
    p.int("resourceVersion").map_err(|_| {
        let v = p.get("resourceVersion").unwrap_or_default();
        ApiError::bad_request(format!("invalid resource version: {v:?}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_values() {
        assert_eq!(dry_run(&Query::parse(Some("dryRun=Some"))).unwrap_err().code, 400);
        assert!(dry_run(&Query::parse(Some("dryRun=All"))).unwrap());
        assert!(!dry_run(&Query::parse(None)).unwrap());
    }
}
