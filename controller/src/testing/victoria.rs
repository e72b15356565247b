//! VictoriaMetrics 1.79 for tests: started on a free loopback port (or a given one) with a temporary data directory
//! and a 100-year retention, loaded through remote write, exported for comparison.
//!
//! Tests → harness → **VictoriaMetrics (this file)**.

use std::collections::{BTreeMap, BTreeSet};

use super::dataset::FloatSeries;
use super::{Process, free_port, http, require};
use crate::engine::remote::RemoteWriter;
use crate::http::url;

pub struct Victoria {
    pub url: String,
    pub port: u16,
    pub process: Process,
    _dir: tempfile::TempDir,
}

impl Victoria {
    pub async fn start() -> Victoria {
        Self::start_on(free_port()).await
    }

    pub async fn start_on(port: u16) -> Victoria {
        let binary = require("victoria-metrics", "victoria-metrics");
        let dir = tempfile::tempdir().expect("temp dir");
        let args = [
            format!("-httpListenAddr=127.0.0.1:{port}"),
            format!("-storageDataPath={}", dir.path().join("data").display()),
            "-retentionPeriod=100y".into(),
            "-search.disableCache".into(),
            "-loggerLevel=ERROR".into(),
        ];
        let mut process = Process::spawn(&binary, &args, dir.path().join("log"));
        let url = format!("http://127.0.0.1:{port}");
        process.wait_ready(&http(), &format!("{url}/health"), "victoria-metrics").await;
        Victoria { url, port, process, _dir: dir }
    }

    pub async fn load(&self, data: &[FloatSeries]) {
        let http = http();
        let mut writer = RemoteWriter::new(&http, &self.url);
        for s in data {
            writer.add(&s.labels, &s.timestamps, &s.values).await.expect("remote write to VictoriaMetrics");
        }
        writer.flush().await.expect("remote write to VictoriaMetrics");
    }

    /// Every sample as (labels, timestamp, value as exported), sorted: VictoriaMetrics' own view of its data.
    pub async fn export(&self) -> Vec<(String, i64, String)> {
        let http = http();
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
