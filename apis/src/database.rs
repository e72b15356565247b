//! The database a backup reads from and a restore writes to: its type, URL, (InfluxDB) database name, TLS settings
//! and credentials (from Secrets and ConfigMaps of the object's own namespace), with the schema and rules both kinds
//! share.
//!
//! filters → endpoints → registry store → **strategy (this file: endpoint schema and rules, used by `backup.rs`
//! and `restore.rs`)** → storage → etcd.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::field::{ErrorList, FieldError};
use crate::json::at;
use crate::objectmeta::is_dns1123_subdomain;
use crate::schema::{SchemaExt, boolean, enum_of, obj, string};

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
    /// How to verify an `https://` database's certificate; system roots and the URL's host when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// The credentials to send; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
}

impl DatabaseEndpoint {
    /// An endpoint without TLS settings or credentials.
    pub fn new(r#type: DatabaseType, url: impl Into<String>, database: Option<String>) -> Self {
        Self { r#type, url: url.into(), database, tls: None, auth: None }
    }
}

/// TLS towards an `https://` database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsConfig {
    /// PEM CA bundle the database's certificate must chain to, instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<ValueSource>,
    /// The name the certificate must carry, instead of the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Accept any certificate (no verification at all): for tests only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// A value read from a key of a Secret or of a ConfigMap in the object's own namespace: exactly one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValueSource {
    /// A key of a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<KeyRef>,
    /// A key of a ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<KeyRef>,
}

/// A key of a Secret or ConfigMap in the object's namespace (there is no namespace field: other namespaces cannot be
/// named).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    /// The Secret's or ConfigMap's name.
    pub name: String,
    /// The key in its data.
    pub key: String,
}

/// Credentials for a database: exactly one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Auth {
    /// HTTP basic authentication (Prometheus' web config, VictoriaMetrics' `-httpAuth.*`, proxies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<UserPassword>,
    /// `Authorization: Bearer <token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<BearerToken>,
    /// An InfluxDB 1.x user and password (`auth-enabled = true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub influxdb: Option<UserPassword>,
}

/// A user name and password, each from a key of a Secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserPassword {
    /// The Secret key holding the user name.
    pub username: KeyRef,
    /// The Secret key holding the password.
    pub password: KeyRef,
}

/// A bearer token from a key of a Secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BearerToken {
    /// The Secret key holding the token.
    pub token: KeyRef,
}

fn key_ref_schema(description: &str, of: &str) -> Value {
    obj(
        description,
        [
            ("name", string(&format!("Name of the {of} in this object's namespace."))),
            ("key", string(&format!("The key in the {of}'s data."))),
        ],
        &["name", "key"],
    )
}

fn user_password_schema(description: &str) -> Value {
    obj(
        description,
        [
            ("username", key_ref_schema("The Secret key holding the user name.", "Secret")),
            ("password", key_ref_schema("The Secret key holding the password.", "Secret")),
        ],
        &["username", "password"],
    )
}

/// The properties of an endpoint object, before any a kind adds (a backup adds `selector`).
pub fn endpoint_properties(verb: &str) -> Vec<(&'static str, Value)> {
    let tls = obj(
        "TLS towards an https:// database. Without it, the certificate must chain to the system roots and name the \
         URL's host.",
        [
            (
                "ca",
                obj(
                    "The PEM CA bundle the database's certificate must chain to, from a key of a Secret or a \
                     ConfigMap in this object's namespace (exactly one).",
                    [
                        ("secret", key_ref_schema("A key of a Secret holding the CA bundle.", "Secret")),
                        ("configMap", key_ref_schema("A key of a ConfigMap holding the CA bundle.", "ConfigMap")),
                    ],
                    &[],
                ),
            ),
            (
                "serverName",
                string("The name the database's certificate must carry, when it differs from the URL's host."),
            ),
            (
                "insecureSkipVerify",
                boolean("Accept any certificate, without verification: for tests only, never in production.")
                    .with("default", json!(false)),
            ),
        ],
        &[],
    );
    let auth = obj(
        "Credentials to send, from Secrets in this object's namespace (exactly one of basic, bearer, influxdb). \
         They are never written to status, Events or logs.",
        [
            (
                "basic",
                user_password_schema(
                    "HTTP basic authentication: Prometheus' --web.config.file basic_auth_users, VictoriaMetrics' \
                     -httpAuth.username/-httpAuth.password, or a proxy in front of the database.",
                ),
            ),
            (
                "bearer",
                obj(
                    "An Authorization: Bearer token.",
                    [("token", key_ref_schema("The Secret key holding the token.", "Secret"))],
                    &["token"],
                ),
            ),
            (
                "influxdb",
                user_password_schema(
                    "An InfluxDB 1.x user and password (auth-enabled = true), sent as HTTP basic authentication, \
                     never in the URL. Only for type InfluxDB.",
                ),
            ),
        ],
        &[],
    );
    vec![
        ("type", enum_of("The database's kind: Prometheus, VictoriaMetrics or InfluxDB.", DatabaseType::NAMES)),
        (
            "url",
            string(&format!(
                "Base URL of the HTTP API of the database to {verb}, http or https, e.g. \
                 http://prometheus.monitoring:9090. No credentials in it: use auth."
            )),
        ),
        ("database", string("The InfluxDB database name. Required when type is InfluxDB; ignored otherwise.")),
        ("tls", tls),
        ("auth", auth),
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

/// Whether `url` carries credentials (`user:password@`).
fn has_userinfo(url: &str) -> bool {
    url.parse::<http::Uri>().ok().and_then(|u| u.authority().map(|a| a.as_str().contains('@'))).unwrap_or(false)
}

/// Whether `key` is a valid Secret or ConfigMap data key (upstream's `IsConfigMapKey`).
fn is_config_map_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && !key.starts_with("..")
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn validate_key_ref(r: Option<&Value>, path: &str, errs: &mut ErrorList) {
    let Some(r) = r else { return };
    if let Some(name) = r.get("name").and_then(Value::as_str) {
        for msg in is_dns1123_subdomain(name) {
            errs.push(FieldError::invalid(format!("{path}.name"), json!(name), msg));
        }
    }
    if let Some(key) = r.get("key").and_then(Value::as_str)
        && !is_config_map_key(key)
    {
        errs.push(FieldError::invalid(
            format!("{path}.key"),
            json!(key),
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
        ));
    }
}

/// Which of `keys` are set in `obj`.
fn present<'a>(obj: Option<&Value>, keys: &[&'a str]) -> Vec<&'a str> {
    keys.iter().copied().filter(|k| obj.and_then(|o| o.get(*k)).is_some_and(|v| !v.is_null())).collect()
}

/// The endpoint rules the schema cannot state, for the endpoint at `path` (e.g. `spec.database`); fields that are
/// missing or of the wrong type are left to schema validation.
pub fn validate_endpoint(endpoint: Option<&Value>, path: &str) -> ErrorList {
    let mut errs = ErrorList::default();
    let Some(endpoint) = endpoint else { return errs };
    let url = endpoint.get("url").and_then(Value::as_str);
    if let Some(url) = url {
        if !is_http_url(url) {
            errs.push(FieldError::invalid(format!("{path}.url"), json!(url), "must be an http or https URL"));
        } else if has_userinfo(url) {
            errs.push(FieldError::invalid(
                format!("{path}.url"),
                json!("<redacted>"),
                format!("must not contain credentials: put them in a Secret and name it in {path}.auth"),
            ));
        }
    }
    let r#type = endpoint.get("type").and_then(Value::as_str);
    let database = endpoint.get("database").and_then(Value::as_str).unwrap_or("");
    if r#type == Some("InfluxDB") && database.is_empty() {
        errs.push(FieldError::required(format!("{path}.database"), "required when type is InfluxDB"));
    }
    if let Some(tls) = endpoint.get("tls").filter(|t| t.is_object()) {
        if url.is_some_and(|u| u.starts_with("http://")) {
            errs.push(FieldError::forbidden(format!("{path}.tls"), "requires an https:// url"));
        }
        let ca = tls.get("ca").filter(|c| c.is_object());
        if let Some(ca) = ca {
            match present(Some(ca), &["secret", "configMap"]).as_slice() {
                [_] => {}
                _ => errs.push(FieldError::invalid(
                    format!("{path}.tls.ca"),
                    ca.clone(),
                    "must name exactly one of secret or configMap",
                )),
            }
            validate_key_ref(ca.get("secret"), &format!("{path}.tls.ca.secret"), &mut errs);
            validate_key_ref(ca.get("configMap"), &format!("{path}.tls.ca.configMap"), &mut errs);
        }
        if let Some(name) = tls.get("serverName").and_then(Value::as_str)
            && name.parse::<std::net::IpAddr>().is_err()
        {
            for msg in is_dns1123_subdomain(&name.to_ascii_lowercase()) {
                errs.push(FieldError::invalid(format!("{path}.tls.serverName"), json!(name), msg));
            }
        }
        if tls.get("insecureSkipVerify").and_then(Value::as_bool) == Some(true) && ca.is_some() {
            errs.push(FieldError::forbidden(
                format!("{path}.tls.ca"),
                "a CA bundle is never used when insecureSkipVerify is true: set one or the other",
            ));
        }
    }
    if let Some(auth) = endpoint.get("auth").filter(|a| a.is_object()) {
        let kinds = present(Some(auth), &["basic", "bearer", "influxdb"]);
        if kinds.len() != 1 {
            errs.push(FieldError::invalid(
                format!("{path}.auth"),
                json!(kinds),
                "must set exactly one of basic, bearer or influxdb",
            ));
        }
        if kinds.contains(&"influxdb") && r#type.is_some_and(|t| t != "InfluxDB") {
            errs.push(FieldError::forbidden(format!("{path}.auth.influxdb"), "only for type InfluxDB"));
        }
        for kind in ["basic", "influxdb"] {
            for field in ["username", "password"] {
                validate_key_ref(
                    auth.get(kind).and_then(|a| a.get(field)),
                    &format!("{path}.auth.{kind}.{field}"),
                    &mut errs,
                );
            }
        }
        validate_key_ref(at(auth, "/bearer/token"), &format!("{path}.auth.bearer.token"), &mut errs);
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

    fn messages(endpoint: Value) -> Vec<String> {
        validate_endpoint(Some(&endpoint), "spec.target").iter().map(ToString::to_string).collect()
    }

    #[test]
    fn tls_and_auth_rules() {
        let secret = |name: &str, key: &str| json!({"name": name, "key": key});
        let ok = json!({
            "type": "InfluxDB", "url": "https://influx:8086", "database": "db",
            "tls": {"ca": {"configMap": secret("ca", "ca.crt")}, "serverName": "influx.example"},
            "auth": {"influxdb": {"username": secret("creds", "user"), "password": secret("creds", "password")}},
        });
        assert_eq!(messages(ok), Vec::<String>::new());
        let bearer =
            json!({"type": "Prometheus", "url": "http://p:9090", "auth": {"bearer": {"token": secret("t", "token")}}});
        assert_eq!(messages(bearer), Vec::<String>::new());
        let ip = json!({"type": "Prometheus", "url": "https://p:9090", "tls": {"serverName": "10.0.0.1", "insecureSkipVerify": false}});
        assert_eq!(messages(ip), Vec::<String>::new());

        assert_eq!(
            messages(json!({"type": "Prometheus", "url": "http://user:secret@p:9090"})),
            ["spec.target.url: Invalid value: \"<redacted>\": must not contain credentials: put them in a Secret and \
              name it in spec.target.auth"]
        );
        assert_eq!(
            messages(json!({"type": "Prometheus", "url": "http://p:9090", "tls": {"serverName": "p"}})),
            ["spec.target.tls: Forbidden: requires an https:// url"]
        );
        let both = json!({"type": "Prometheus", "url": "https://p", "tls": {
            "ca": {"secret": secret("a", "ca"), "configMap": secret("b", "ca")}, "insecureSkipVerify": true}});
        assert_eq!(
            messages(both),
            [
                "spec.target.tls.ca: Invalid value: {\"configMap\":{\"key\":\"ca\",\"name\":\"b\"},\"secret\":{\"key\":\"ca\",\"name\":\"a\"}}: must name exactly one of secret or configMap",
                "spec.target.tls.ca: Forbidden: a CA bundle is never used when insecureSkipVerify is true: set one or the other",
            ]
        );
        let auth = json!({"type": "Prometheus", "url": "https://p", "auth": {
            "basic": {"username": secret("Bad_Name", "u"), "password": secret("s", "../p")},
            "influxdb": {"username": secret("s", "u"), "password": secret("s", "p")}}});
        assert_eq!(
            messages(auth),
            [
                "spec.target.auth: Invalid value: [\"basic\",\"influxdb\"]: must set exactly one of basic, bearer or influxdb",
                "spec.target.auth.influxdb: Forbidden: only for type InfluxDB",
                "spec.target.auth.basic.username.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                "spec.target.auth.basic.password.key: Invalid value: \"../p\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            ]
        );
        assert_eq!(
            messages(json!({"type": "Prometheus", "url": "https://p", "auth": {}})),
            ["spec.target.auth: Invalid value: []: must set exactly one of basic, bearer or influxdb"]
        );
    }
}
