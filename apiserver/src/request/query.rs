//! The query string of a request, decoded once by [`crate::filters::request_info`] and kept in the request's
//! extensions; the typed [`super::options`] of each verb are read from it.

use crate::error::{ApiError, ApiResult};

/// The decoded query string; repeated keys are kept in order.
#[derive(Debug, Clone, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        Self(form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect())
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A boolean flag: `1`/`true` (as `?watch=1`).
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("1" | "true" | "True"))
    }

    /// A non-negative integer parameter.
    pub fn int(&self, name: &str) -> ApiResult<Option<i64>> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("invalid value {v:?} for parameter {name}"))),
        }
    }

    /// The name a `fieldSelector=metadata.name=<name>` pins, if any (authorization narrows lists by it).
    pub fn field_selector_name(&self) -> Option<&str> {
        self.get("fieldSelector")?.split(',').find_map(|t| t.trim().strip_prefix("metadata.name="))
    }
}
