//! InfluxDB 1.6 for tests: started on free loopback ports with a temporary directory (monitoring, reporting and
//! the extra services off), loaded with line protocol, dumped per measurement for comparison.
//!
//! Tests → harness → **InfluxDB (this file)**.

use bytes::Bytes;
use http::Method;
use serde_json::Value;

use super::tls::{TestCerts, basic};
use super::{Process, free_port, http, require};
use crate::http::{Http, url};

pub struct Influx {
    pub url: String,
    pub process: Process,
    /// The harness' own client (with the instance's CA and admin credentials, if any).
    pub http: Http,
    _dir: tempfile::TempDir,
}

/// How to run an instance.
#[derive(Default)]
pub struct Options<'a> {
    /// `https-enabled` with this certificate.
    pub tls: Option<&'a TestCerts>,
    /// `auth-enabled`, with an admin user of this name and password.
    pub admin: Option<(&'a str, &'a str)>,
}

impl Influx {
    pub async fn start() -> Influx {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options<'_>) -> Influx {
        let binary = require("influxd", "influxdb");
        let dir = tempfile::tempdir().expect("temp dir");
        let (port, rpc) = (free_port(), free_port());
        let d = dir.path().display();
        let (auth, https) = (options.admin.is_some(), options.tls.is_some());
        let (cert, key) = match options.tls {
            Some(certs) => (certs.cert_file.display().to_string(), certs.key_file.display().to_string()),
            None => (String::new(), String::new()),
        };
        let config = format!(
            r#"reporting-enabled = false
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  pprof-enabled = false
  unix-socket-enabled = false
  auth-enabled = {auth}
  https-enabled = {https}
  https-certificate = "{cert}"
  https-private-key = "{key}"
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[ifql]
  enabled = false
[logging]
  level = "warn"
"#
        );
        let config_path = dir.path().join("influxdb.conf");
        std::fs::write(&config_path, config).expect("writing the config");
        let args = ["run".to_string(), "-config".into(), config_path.display().to_string()];
        let mut process = Process::spawn(&binary, &args, dir.path().join("log"));
        let (scheme, unauthenticated) = match options.tls {
            Some(certs) => ("https", certs.client(None)),
            None => ("http", http()),
        };
        let url = format!("{scheme}://127.0.0.1:{port}");
        process.wait_ready(&unauthenticated, &format!("{url}/ping"), "influxd").await;
        let mut influx = Influx { url, process, http: unauthenticated, _dir: dir };
        if let Some((user, password)) = options.admin {
            // With auth enabled and no user yet, InfluxDB takes this one statement without credentials.
            influx.query("", &format!("CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES")).await;
            let authorization = basic(user, password).parse().expect("header");
            influx.http = influx.http.clone().with_authorization(authorization);
        }
        influx
    }

    pub async fn query(&self, db: &str, q: &str) -> Value {
        let body = self
            .http
            .send(Method::POST, &url(&self.url, "/query", &[("db", db), ("q", q), ("epoch", "ns")]), &[], Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("{q}: {e:#}"))
            .bytes(1 << 30)
            .await
            .expect("query answer");
        serde_json::from_slice(&body).expect("JSON answer")
    }

    pub async fn load(&self, db: &str, lines: &[String]) {
        self.query(db, &format!("CREATE DATABASE \"{db}\"")).await;
        self.write(db, None, lines).await;
    }

    /// Writes line protocol into a retention policy (the default one if `None`).
    pub async fn write(&self, db: &str, rp: Option<&str>, lines: &[String]) {
        let mut params = vec![("db", db), ("precision", "ns")];
        params.extend(rp.map(|rp| ("rp", rp)));
        for batch in lines.chunks(5000) {
            let body = Bytes::from(batch.join("\n"));
            self.http
                .send(Method::POST, &url(&self.url, "/write", &params), &[], body)
                .await
                .expect("writing line protocol");
        }
    }

    /// Each measurement's field keys and types and all its points (`SELECT * ... GROUP BY *`), as InfluxDB answers.
    pub async fn dump(&self, db: &str) -> Vec<(String, Value, Value)> {
        self.dump_policy(db, None).await
    }

    /// As [`Influx::dump`], for the measurements of a retention policy (the default one if `None`).
    pub async fn dump_policy(&self, db: &str, rp: Option<&str>) -> Vec<(String, Value, Value)> {
        let measurements = self.query(db, "SHOW MEASUREMENTS").await;
        let names: Vec<String> = measurements
            .pointer("/results/0/series/0/values")
            .and_then(Value::as_array)
            .map(|rows| rows.iter().filter_map(|r| r.get(0)?.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let mut out = Vec::new();
        for name in names {
            let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
            let quoted = match rp {
                Some(rp) => format!("{}.{}", quote(rp), quote(&name)),
                None => quote(&name),
            };
            let fields = self.query(db, &format!("SHOW FIELD KEYS FROM {quoted}")).await;
            let points = self.query(db, &format!("SELECT * FROM {quoted} GROUP BY *")).await;
            out.push((name, fields, points));
        }
        out
    }
}
