//! `DeleteOptions` of delete and deletecollection: from a JSON body (with or without Content-Type) or, when the
//! body is empty, the query; `preconditions`, `propagationPolicy` (or the older `orphanDependents`), `dryRun`.

use serde::Deserialize;

use super::{dry_run, invalid_options};
use crate::error::{ApiError, ApiResult};
use crate::request::query::Query;

/// What happens to dependents (`propagationPolicy`); in an aggregated server the garbage collector of the cluster
/// acts on the finalizers that Orphan and Foreground set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropagationPolicy {
    Orphan,
    Background,
    Foreground,
}

impl PropagationPolicy {
    fn parse(s: &str) -> ApiResult<Self> {
        match s {
            "Orphan" => Ok(Self::Orphan),
            "Background" => Ok(Self::Background),
            "Foreground" => Ok(Self::Foreground),
            other => Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {other:?}: supported values: \"Background\", \"Foreground\", \"Orphan\""
            ))),
        }
    }

    /// The finalizer a delete with this policy adds, as upstream's `deletionFinalizersForGarbageCollection`.
    pub fn finalizer(self) -> Option<&'static str> {
        match self {
            Self::Orphan => Some("orphan"),
            Self::Foreground => Some("foregroundDeletion"),
            Self::Background => None,
        }
    }
}

/// Validated DeleteOptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    pub dry_run: bool,
    pub propagation_policy: Option<PropagationPolicy>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    /// `ignoreStoreReadErrorWithClusterBreakingPotential` (KEP-3926): delete an object whose stored form cannot be
    /// read, without decoding it (no finalizers, no preconditions); needs the `unsafe-delete-ignore-read-errors`
    /// permission.
    pub ignore_store_read_error: bool,
}

/// The wire form of a DeleteOptions body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    #[serde(default)]
    dry_run: Option<Vec<String>>,
    #[serde(default)]
    propagation_policy: Option<String>,
    #[serde(default)]
    orphan_dependents: Option<bool>,
    #[serde(default)]
    preconditions: Option<Preconditions>,
    #[serde(default)]
    ignore_store_read_error_with_cluster_breaking_potential: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Preconditions {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
}

impl DeleteOptions {
    /// The options from `body` (JSON, possibly empty) and the query; the body wins where both say something.
    pub fn decode(body: &[u8], q: &Query) -> ApiResult<Self> {
        let body: Body = if body.iter().all(u8::is_ascii_whitespace) {
            Body::default()
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding the request body: {e}")))?
        };
        let mut dry_run = dry_run(q)?;
        for v in body.dry_run.iter().flatten() {
            if v != "All" {
                return Err(ApiError::bad_request(format!("Invalid dryRun value: {v:?}: supported values: \"All\"")));
            }
            dry_run = true;
        }
        let policy = body.propagation_policy.as_deref().or_else(|| q.get("propagationPolicy"));
        let propagation_policy = match (policy, body.orphan_dependents) {
            (Some(p), _) => Some(PropagationPolicy::parse(p)?),
            (None, Some(true)) => Some(PropagationPolicy::Orphan),
            (None, _) => None,
        };
        let pre = body.preconditions.unwrap_or_default();
        let ignore_store_read_error = body.ignore_store_read_error_with_cluster_breaking_potential.unwrap_or(false)
            || q.flag("ignoreStoreReadErrorWithClusterBreakingPotential");
        if ignore_store_read_error {
            let others = [
                ("dryRun", dry_run),
                ("preconditions", pre.uid.is_some() || pre.resource_version.is_some()),
                ("propagationPolicy", propagation_policy.is_some()),
            ];
            if let Some((field, _)) = others.iter().find(|(_, set)| *set) {
                let detail = format!(
                    "ignoreStoreReadErrorWithClusterBreakingPotential: Invalid value: true: cannot be set together \
                     with {field}"
                );
                return Err(invalid_options("DeleteOptions", &detail, Vec::new()));
            }
        }
        Ok(Self {
            dry_run,
            propagation_policy,
            precondition_uid: pre.uid,
            precondition_resource_version: pre.resource_version,
            ignore_store_read_error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_query_and_defaults() {
        let q = Query::parse(Some("propagationPolicy=Foreground"));
        let o = DeleteOptions::decode(b"", &q).unwrap();
        assert_eq!(o.propagation_policy, Some(PropagationPolicy::Foreground));
        let body =
            br#"{"kind":"DeleteOptions","propagationPolicy":"Orphan","preconditions":{"uid":"u"},"dryRun":["All"]}"#;
        let o = DeleteOptions::decode(body, &q).unwrap();
        assert_eq!(
            (o.propagation_policy, o.precondition_uid.as_deref(), o.dry_run),
            (Some(PropagationPolicy::Orphan), Some("u"), true)
        );
        let o = DeleteOptions::decode(br#"{"orphanDependents":true}"#, &Query::default()).unwrap();
        assert_eq!(o.propagation_policy, Some(PropagationPolicy::Orphan));
        assert_eq!(DeleteOptions::decode(br#"{"propagationPolicy":"Later"}"#, &q).unwrap_err().code, 400);
        assert_eq!(DeleteOptions::decode(br#"{"dryRun":["Some"]}"#, &q).unwrap_err().code, 400);
        assert_eq!(DeleteOptions::decode(b"{", &q).unwrap_err().code, 400);
        let unsafe_delete = br#"{"ignoreStoreReadErrorWithClusterBreakingPotential":true}"#;
        assert!(DeleteOptions::decode(unsafe_delete, &Query::default()).unwrap().ignore_store_read_error);
        assert_eq!(DeleteOptions::decode(unsafe_delete, &q).unwrap_err().code, 422, "not with a propagation policy");
    }
}
