//! VictoriaMetrics 1.79 for tests: started on a free loopback port (or a given one) with a temporary data directory
//! and a 100-year retention, loaded through remote write, exported for comparison.
//!
//! Tests → harness → **VictoriaMetrics (this file)**.

use std::collections::{BTreeMap, BTreeSet};

use super::dataset::FloatSeries;
use super::tls::{TestCerts, basic};
use super::{Process, free_port, http, require};
use crate::engine::remote::RemoteWriter;
use crate::http::{Http, url};

pub struct Victoria {
    pub url: String,
    pub port: u16,
    pub process: Process,
    /// The harness' own client (with the instance's CA and credentials, if any).
    pub http: Http,
    _dir: tempfile::TempDir,
}

/// How to run an instance.
pub struct Options<'a> {
    pub port: u16,
    /// `-retentionPeriod`.
    pub retention: &'a str,
    /// `-tls` with this certificate.
    pub tls: Option<&'a TestCerts>,
    /// `-httpAuth.username` and `-httpAuth.password`.
    pub auth: Option<(&'a str, &'a str)>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options { port: 0, retention: "100y", tls: None, auth: None }
    }
}

impl Victoria {
    pub async fn start() -> Victoria {
        Self::start_with(Options::default()).await
    }

    pub async fn start_on(port: u16) -> Victoria {
        Self::start_with(Options { port, ..Options::default() }).await
    }

    pub async fn start_with(options: Options<'_>) -> Victoria {
        let binary = require("victoria-metrics", "victoria-metrics");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = if options.port == 0 { free_port() } else { options.port };
        let mut args = vec![
            format!("-httpListenAddr=127.0.0.1:{port}"),
            format!("-storageDataPath={}", dir.path().join("data").display()),
            format!("-retentionPeriod={}", options.retention),
            "-search.disableCache".into(),
            "-loggerLevel=ERROR".into(),
        ];
        if let Some(certs) = options.tls {
            args.push("-tls".into());
            args.push(format!("-tlsCertFile={}", certs.cert_file.display()));
            args.push(format!("-tlsKeyFile={}", certs.key_file.display()));
        }
        if let Some((user, password)) = options.auth {
            args.push(format!("-httpAuth.username={user}"));
            args.push(format!("-httpAuth.password={password}"));
        }
        let authorization = options.auth.map(|(u, p)| basic(u, p));
        let (scheme, http) = match options.tls {
            Some(certs) => ("https", certs.client(authorization.as_deref())),
            None => match &authorization {
                Some(value) => ("http", http().with_authorization(value.parse().expect("header"))),
                None => ("http", http()),
            },
        };
        let mut process = Process::spawn(&binary, &args, dir.path().join("log"));
        let url = format!("{scheme}://127.0.0.1:{port}");
        process.wait_ready(&http, &format!("{url}/health"), "victoria-metrics").await;
        Victoria { url, port, process, http, _dir: dir }
    }

    pub async fn load(&self, data: &[FloatSeries]) {
        let http = &self.http;
        let mut writer = RemoteWriter::new(http, &self.url);
        for s in data {
            writer.add(&s.labels, &s.timestamps, &s.values).await.expect("remote write to VictoriaMetrics");
        }
        writer.flush().await.expect("remote write to VictoriaMetrics");
        // Visible to exports (and backups) at once.
        http.get(&url(&self.url, "/internal/force_flush", &[])).await.expect("force_flush");
    }

    /// Every sample as (labels, timestamp, value as exported), sorted: VictoriaMetrics' own view of its data.
    pub async fn export(&self) -> Vec<(String, i64, String)> {
        let http = &self.http;
        http.get(&url(&self.url, "/internal/force_flush", &[])).await.expect("force_flush");
        let body = http
            .get(&url(&self.url, "/api/v1/export", &[("match[]", r#"{__name__!=""}"#)]))
            .await
            .expect("export")
            .bytes(1 << 30)
            .await
            .expect("export body");
        let mut out = Vec::new();
        for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line = std::str::from_utf8(line).expect("UTF-8 export");
            // Quote the non-JSON number tokens so serde_json reads the line; values stay as VictoriaMetrics wrote them.
            let (head, tail) = line.split_once(r#","values":["#).expect("values in an export line");
            let tail = tail.replace("NaN", "\"NaN\"").replace("+Inf", "\"+Inf\"").replace("-Inf", "\"-Inf\"");
            #[derive(serde::Deserialize)]
            struct Line {
                metric: BTreeMap<String, String>,
                values: Vec<serde_json::Value>,
                timestamps: Vec<i64>,
            }
            let parsed: Line =
                serde_json::from_str(&format!(r#"{head},"values":[{tail}"#)).expect("an export line as JSON");
            let labels = serde_json::to_string(&parsed.metric).expect("labels");
            for (v, t) in parsed.values.iter().zip(parsed.timestamps) {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out.push((labels.clone(), t, v));
            }
        }
        out.sort();
        out
    }
}

/// Asserts two exports hold the same samples. VictoriaMetrics re-encodes values on ingestion with a decimal
/// exponent per block, so a value its export printed can come back one unit off in the 16th-17th significant digit
/// when a block spans many orders of magnitude; such values are accepted within 1e-14 relative, everything else
/// (labels, timestamps, staleness markers, infinities, the count) must match exactly. Returns how many values were
/// re-rounded.
pub fn assert_same(got: &[(String, i64, String)], want: &[(String, i64, String)]) -> usize {
    let key = |s: &(String, i64, String)| (s.0.clone(), s.1);
    let (got_keys, want_keys): (BTreeSet<_>, BTreeSet<_>) =
        (got.iter().map(key).collect(), want.iter().map(key).collect());
    let missing: Vec<_> = want_keys.difference(&got_keys).take(3).collect();
    let extra: Vec<_> = got_keys.difference(&want_keys).take(3).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, unexpected {extra:?}");
    assert_eq!(got.len(), want.len(), "sample counts");
    let mut rerounded = 0;
    for (g, w) in got.iter().zip(want) {
        assert!(g.0 == w.0 && g.1 == w.1, "series or timestamp differ: got {g:?}, want {w:?}");
        if g.2 == w.2 {
            continue;
        }
        let close = match (g.2.parse::<f64>(), w.2.parse::<f64>()) {
            (Ok(a), Ok(b)) => a.is_finite() && b.is_finite() && (a - b).abs() <= 1e-14 * a.abs().max(b.abs()),
            _ => false,
        };
        assert!(close, "value differs: got {g:?}, want {w:?}");
        rerounded += 1;
    }
    rerounded
}
