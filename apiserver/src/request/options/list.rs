//! `ListOptions` of list, watch and deletecollection: selectors, pagination (`limit`, `continue` tokens),
//! `resourceVersion` and `resourceVersionMatch`, watch options; validated as upstream's `ValidateListOptions`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::invalid_options;
use crate::error::{ApiError, ApiResult};
use crate::request::query::Query;

/// `resourceVersionMatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceVersionMatch {
    Unset,
    NotOlderThan,
    Exact,
}

/// A continue token: `{"v":"meta.k8s.io/v1","rv":N,"start":"<key after the prefix>\u0000"}`, base64url.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinueToken {
    /// The revision of the first page; -1 = continue at the latest revision (after an expired token).
    pub rv: i64,
    /// The key (relative to the list prefix) to start at.
    pub start: String,
}

impl ContinueToken {
    pub fn encode(&self) -> String {
        let v = json!({"v": "meta.k8s.io/v1", "rv": self.rv, "start": self.start});
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    pub fn decode(s: &str) -> ApiResult<Self> {
        let bad = || ApiError::bad_request(format!("continue key is not valid: {s:?}"));
        let raw = URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).map_err(|_| bad())?;
        let v: serde_json::Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
        if v["v"] != "meta.k8s.io/v1" {
            return Err(bad());
        }
        let rv = v["rv"].as_i64().ok_or_else(bad)?;
        let start = v["start"].as_str().ok_or_else(bad)?.to_string();
        if start.is_empty() || start.contains("..") || start.starts_with('/') {
            return Err(bad());
        }
        Ok(Self { rv, start })
    }
}

/// The validated options of a list or watch.
#[derive(Debug, Clone)]
pub struct ListOptions {
    pub label_selector: String,
    pub field_selector: String,
    pub limit: Option<usize>,
    pub continue_token: Option<ContinueToken>,
    /// `None` = unset; `Some(0)` = "0" (any).
    pub resource_version: Option<i64>,
    pub rv_match: ResourceVersionMatch,
    pub watch: bool,
    pub allow_bookmarks: bool,
    pub send_initial_events: bool,
    pub timeout_seconds: Option<u64>,
}

impl ListOptions {
    pub fn from_query(p: &Query, watch: bool) -> ApiResult<Self> {
        let resource_version = super::resource_version(p)?;
        let rv_match = match p.get("resourceVersionMatch") {
            None | Some("") => ResourceVersionMatch::Unset,
            Some("NotOlderThan") => ResourceVersionMatch::NotOlderThan,
            Some("Exact") => ResourceVersionMatch::Exact,
            Some(other) => {
                return Err(invalid(&format!(
                    "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
                )));
            }
        };
        let continue_token = p.get("continue").filter(|c| !c.is_empty()).map(ContinueToken::decode).transpose()?;
        let send_initial_events = match p.get("sendInitialEvents") {
            Some("true" | "1") => true,
            None | Some("" | "false" | "0") => false,
            Some(other) => return Err(ApiError::bad_request(format!("invalid sendInitialEvents value {other:?}"))),
        };
        if rv_match != ResourceVersionMatch::Unset && resource_version.is_none() && !send_initial_events {
            return Err(invalid(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        if rv_match != ResourceVersionMatch::Unset && continue_token.is_some() {
            return Err(invalid(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden when continue is provided",
            ));
        }
        if rv_match == ResourceVersionMatch::Exact && resource_version == Some(0) {
            return Err(invalid(
                "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
        if continue_token.is_some() && resource_version.is_some_and(|rv| rv != 0) {
            return Err(ApiError::bad_request("specifying resource version is not allowed when using continue"));
        }
        if watch && send_initial_events && rv_match != ResourceVersionMatch::NotOlderThan {
            return Err(invalid(
                "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if !watch && send_initial_events {
            return Err(invalid("sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list"));
        }
        if watch && rv_match == ResourceVersionMatch::Exact {
            return Err(invalid(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            ));
        }
        let limit = p.int("limit")?.filter(|n| *n > 0).map(|n| n as usize);
        Ok(Self {
            label_selector: p.get("labelSelector").unwrap_or("").to_string(),
            field_selector: p.get("fieldSelector").unwrap_or("").to_string(),
            limit,
            continue_token,
            resource_version,
            rv_match,
            watch,
            allow_bookmarks: p.flag("allowWatchBookmarks"),
            send_initial_events,
            timeout_seconds: p.int("timeoutSeconds")?.map(|n| n as u64),
        })
    }
}

fn invalid(detail: &str) -> ApiError {
    invalid_options("ListOptions", detail, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let t = ContinueToken { rv: 42, start: "ns/name\u{0}".into() };
        assert_eq!(ContinueToken::decode(&t.encode()).unwrap(), t);
        assert_eq!(ContinueToken::decode("!!").unwrap_err().code, 400);
    }

    #[test]
    fn list_option_rules() {
        let lo = |q: &str, w: bool| ListOptions::from_query(&Query::parse(Some(q)), w);
        assert_eq!(lo("resourceVersionMatch=Exact", false).unwrap_err().code, 422);
        assert_eq!(lo("resourceVersion=0&resourceVersionMatch=Exact", false).unwrap_err().code, 422);
        assert_eq!(lo("resourceVersion=x", false).unwrap_err().code, 400);
        assert!(lo("resourceVersion=5&resourceVersionMatch=NotOlderThan&limit=2", false).is_ok());
        assert_eq!(lo("sendInitialEvents=true", true).unwrap_err().code, 422);
        assert!(lo("sendInitialEvents=true&resourceVersionMatch=NotOlderThan", true).is_ok());
        assert!(lo("sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=0", true).is_ok());
    }
}
