//! The database a backup reads from and a restore writes to: its type, URL and (InfluxDB) database name, with the
//! schema and rules both kinds share.
//!
//! filters → endpoints → registry store → **strategy (this file: endpoint schema and rules, used by `backup.rs`
//! and `restore.rs`)** → storage → etcd.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::field::{ErrorList, FieldError};
use crate::schema::{enum_of, obj, string};

/// The supported time-series databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DatabaseType {
    /// Prometheus (remote read to back up, remote write to restore).
    Prometheus,
    /// VictoriaMetrics (`/api/v1/export` to back up, remote write to restore).
    VictoriaMetrics,
    /// InfluxDB 1.x (chunked queries to back up, line protocol to restore).
    InfluxDB,
}

impl DatabaseType {
    /// Every type, as serialized: the schema's `enum`.
    pub const NAMES: &[&str] = &["Prometheus", "VictoriaMetrics", "InfluxDB"];
}

/// Where a database is: `spec.target` of a restore, and the core of `spec.database` of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseEndpoint {
    /// Which kind of database.
    pub r#type: DatabaseType,
    /// `http://` or `https://` base URL of the database's HTTP API.
    pub url: String,
    /// InfluxDB's database name (required for InfluxDB, ignored otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// The properties of an endpoint object, before any a kind adds (a backup adds `selector`).
pub fn endpoint_properties(verb: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("type", enum_of("The database's kind: Prometheus, VictoriaMetrics or InfluxDB.", DatabaseType::NAMES)),
        (
            "url",
            string(&format!(
                "Base URL of the HTTP API of the database to {verb}, http or https, e.g. http://prometheus.monitoring:9090."
            )),
        ),
        ("database", string("The InfluxDB database name. Required when type is InfluxDB; ignored otherwise.")),
    ]
}

/// The endpoint object's schema: `props` (from [`endpoint_properties`] and more), with `type` and `url` required.
pub fn endpoint_schema(description: &str, props: Vec<(&'static str, Value)>) -> Value {
    obj(description, props, &["type", "url"])
}

/// Whether `url` is an absolute `http`/`https` URL with a host (and, if it has a port, a valid one).
pub fn is_http_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else { return false };
    let http = matches!(uri.scheme_str(), Some("http" | "https"));
    let host = uri.host().is_some_and(|h| !h.is_empty());
    // `http::Uri` accepts any digits as a port; a port must fit in 16 bits.
    let host_port = uri.authority().map_or("", |a| a.as_str().rsplit('@').next().unwrap_or(""));
    let port = host_port.ends_with(']')
        || host_port.rsplit_once(':').is_none_or(|(_, p)| p.is_empty() || p.parse::<u16>().is_ok());
    http && host && port
}

/// The endpoint rules the schema cannot state, for the endpoint at `path` (e.g. `spec.database`); fields that are
/// missing or of the wrong type are left to schema validation.
pub fn validate_endpoint(endpoint: Option<&Value>, path: &str) -> ErrorList {
    let mut errs = ErrorList::default();
    let Some(endpoint) = endpoint else { return errs };
    if let Some(url) = endpoint.get("url").and_then(Value::as_str)
        && !is_http_url(url)
    {
        errs.push(FieldError::invalid(format!("{path}.url"), json!(url), "must be an http or https URL"));
    }
    let database = endpoint.get("database").and_then(Value::as_str).unwrap_or("");
    if endpoint.get("type").and_then(Value::as_str) == Some("InfluxDB") && database.is_empty() {
        errs.push(FieldError::required(format!("{path}.database"), "required when type is InfluxDB"));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for ok in [
            "http://prometheus:9090",
            "https://vm.example.com/select/0/prometheus",
            "http://127.0.0.1:8086",
            "http://[::1]:9090",
        ] {
            assert!(is_http_url(ok), "{ok}");
        }
        for bad in
            ["ftp://x", "prometheus:9090", "/api/v1", "http://", "http://:9090", "http://host:99999", "http://a b", ""]
        {
            assert!(!is_http_url(bad), "{bad}");
        }
    }

    #[test]
    fn endpoint_rules() {
        let e = json!({"type": "InfluxDB", "url": "ftp://x"});
        let errs = validate_endpoint(Some(&e), "spec.target");
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            [
                "spec.target.url: Invalid value: \"ftp://x\": must be an http or https URL",
                "spec.target.database: Required value: required when type is InfluxDB",
            ]
        );
        let e = json!({"type": "InfluxDB", "url": "http://influx:8086", "database": "telegraf"});
        assert!(validate_endpoint(Some(&e), "spec.target").is_empty());
        // Wrong types and missing fields are the schema's to report.
        assert!(validate_endpoint(Some(&json!({"url": 5})), "spec.target").is_empty());
        assert!(validate_endpoint(None, "spec.target").is_empty());
    }
}
