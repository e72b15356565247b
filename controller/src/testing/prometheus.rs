//! Prometheus 2.42 for tests: started on a free loopback port with a temporary directory, the remote-write receiver
//! and a 30-day out-of-order window (so it takes any order, as a restore target must); loaded through remote write;
//! read back with remote read's plain SAMPLES response (not the streamed chunks the backup reads) for comparison.
//!
//! Tests → harness → **Prometheus (this file)**.

use bytes::Bytes;
use http::{Method, header};
use prost::Message;

use super::dataset::FloatSeries;
use super::tls::{TestCerts, basic};
use super::{Process, free_port, http, require};
use crate::engine::remote::{Label, LabelMatcher, Query, ReadRequest, RemoteWriter, TimeSeries};
use crate::http::{Http, url};

pub struct Prometheus {
    pub url: String,
    pub process: Process,
    /// The harness' own client (with the instance's CA and credentials, if any).
    pub http: Http,
    _dir: tempfile::TempDir,
}

/// How to run an instance.
pub struct Options<'a> {
    /// `storage.tsdb.out_of_order_time_window` in the config file; none when `None`.
    pub out_of_order_window: Option<&'a str>,
    /// `--storage.tsdb.retention.time`.
    pub retention: &'a str,
    /// `--web.config.file` with `tls_server_config` for this certificate.
    pub tls: Option<&'a TestCerts>,
    /// `--web.config.file` with `basic_auth_users` (the password bcrypt-hashed at test time).
    pub basic_auth: Option<(&'a str, &'a str)>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options { out_of_order_window: Some("30d"), retention: "10y", tls: None, basic_auth: None }
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct ReadResponse {
    #[prost(message, repeated, tag = "1")]
    results: Vec<QueryResult>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct QueryResult {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<TimeSeries>,
}

impl Prometheus {
    pub async fn start() -> Prometheus {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options<'_>) -> Prometheus {
        let binary = require("prometheus", "prometheus");
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        let config_text = match options.out_of_order_window {
            Some(window) => format!("storage:\n  tsdb:\n    out_of_order_time_window: {window}\n"),
            None => "global:\n  scrape_interval: 1m\n".to_string(),
        };
        std::fs::write(&config, config_text).expect("writing the config");
        let port = free_port();
        let mut args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--web.enable-remote-write-receiver".into(),
            format!("--storage.tsdb.retention.time={}", options.retention),
            "--log.level=warn".into(),
        ];
        let mut web = String::new();
        if let Some(certs) = options.tls {
            web.push_str(&format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
                certs.cert_file.display(),
                certs.key_file.display()
            ));
        }
        if let Some((user, password)) = options.basic_auth {
            let hash = bcrypt::hash(password, 4).expect("bcrypt");
            web.push_str(&format!("basic_auth_users:\n  {user}: {hash}\n"));
        }
        if !web.is_empty() {
            let web_config = dir.path().join("web.yml");
            std::fs::write(&web_config, web).expect("writing the web config");
            args.push(format!("--web.config.file={}", web_config.display()));
        }
        let authorization = options.basic_auth.map(|(u, p)| basic(u, p));
        let (scheme, http) = match options.tls {
            Some(certs) => ("https", certs.client(authorization.as_deref())),
            None => match &authorization {
                Some(value) => ("http", http().with_authorization(value.parse().expect("header"))),
                None => ("http", http()),
            },
        };
        let mut process = Process::spawn(&binary, &args, dir.path().join("log"));
        let url = format!("{scheme}://127.0.0.1:{port}");
        process.wait_ready(&http, &format!("{url}/-/ready"), "prometheus").await;
        Prometheus { url, process, http, _dir: dir }
    }

    pub async fn load(&self, data: &[FloatSeries]) {
        let http = &self.http;
        let mut writer = RemoteWriter::new(http, &self.url);
        for s in data {
            writer.add(&s.labels, &s.timestamps, &s.values).await.expect("remote write to Prometheus");
        }
        writer.flush().await.expect("remote write to Prometheus");
    }

    /// Every sample as (labels, timestamp, value bits), sorted, read with one SAMPLES remote read per metric name.
    pub async fn export(&self, names: &[&str]) -> Vec<(Vec<(String, String)>, i64, u64)> {
        let http = &self.http;
        let mut out = Vec::new();
        for name in names {
            let request = ReadRequest {
                queries: vec![Query {
                    start_timestamp_ms: 0,
                    end_timestamp_ms: i64::MAX,
                    matchers: vec![LabelMatcher { r#type: 0, name: "__name__".into(), value: name.to_string() }],
                }],
                accepted_response_types: vec![0],
            };
            let body = snap::raw::Encoder::new().compress_vec(&request.encode_to_vec()).expect("snappy");
            let answer = http
                .send(
                    Method::POST,
                    &url(&self.url, "/api/v1/read", &[]),
                    &[(header::CONTENT_TYPE, "application/x-protobuf"), (header::CONTENT_ENCODING, "snappy")],
                    Bytes::from(body),
                )
                .await
                .expect("remote read")
                .bytes(1 << 30)
                .await
                .expect("remote read body");
            let raw = snap::raw::Decoder::new().decompress_vec(&answer).expect("snappy answer");
            let response = ReadResponse::decode(raw.as_slice()).expect("ReadResponse");
            for series in response.results.into_iter().flat_map(|r| r.timeseries) {
                let labels: Vec<(String, String)> =
                    series.labels.iter().map(|Label { name, value }| (name.clone(), value.clone())).collect();
                for s in series.samples {
                    out.push((labels.clone(), s.timestamp, s.value.to_bits()));
                }
            }
        }
        out.sort();
        out
    }
}
