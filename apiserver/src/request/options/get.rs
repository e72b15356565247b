//! `GetOptions` of a get: `resourceVersion` ("" the latest, "0" any, "N" not older than N).

use crate::error::ApiResult;
use crate::request::query::Query;

/// The validated options of a get.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// `None` = unset (the latest, a consistent read); `Some(0)` = "0" (any); `Some(n)`: not older than n.
    pub resource_version: Option<i64>,
}

impl GetOptions {
    pub fn from_query(p: &Query) -> ApiResult<Self> {
        let resource_version = super::resource_version(p)?;
        Ok(Self { resource_version })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_versions() {
        let get = |q: &str| GetOptions::from_query(&Query::parse(Some(q)));
        assert_eq!(get("").unwrap().resource_version, None);
        assert_eq!(get("resourceVersion=0").unwrap().resource_version, Some(0));
        assert_eq!(get("resourceVersion=12").unwrap().resource_version, Some(12));
        assert_eq!(get("resourceVersion=x").unwrap_err().code, 400);
        assert_eq!(get("resourceVersion=-1").unwrap_err().code, 400);
    }
}
