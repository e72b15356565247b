//! Known datasets: many labelled series with irregular timestamps and the float values that break naive formats
//! (NaN, ±Inf, -0, subnormals, extremes, Prometheus staleness markers); and InfluxDB points with every field type,
//! sparse fields and names that need escaping.
//!
//! Tests → harness → **datasets (this file)**.

use crate::engine::STALE_NAN;
use crate::format::Labels;

/// A deterministic generator (splitmix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One float series.
pub struct FloatSeries {
    pub labels: Labels,
    pub timestamps: Vec<i64>,
    pub values: Vec<f64>,
}

/// Label values that need escaping in one format or another.
const AWKWARD: &[&str] = &["a \"quoted\" \\ path, with=signs", "ünïcødé ✓", "x{y}z", "tab\there", "line\nbreak"];

/// The name, job and instance labels of the `i`-th series of a dataset.
fn target_labels(name: &str, i: usize) -> Labels {
    vec![
        ("__name__".into(), name.into()),
        ("job".into(), format!("job-{}", i % 7)),
        ("instance".into(), format!("10.0.{}.{}:9100", i / 256, i % 256)),
    ]
}

/// `series` series of `per_series` samples ending in the recent past, timestamps in milliseconds. Plain NaN is left out
/// when `plain_nan` is false (VictoriaMetrics keeps no NaN but the staleness marker).
pub fn float_series(seed: u64, series: usize, per_series: usize, plain_nan: bool) -> Vec<FloatSeries> {
    let mut rng = Rng::new(seed);
    let now = jiff::Timestamp::now().as_millisecond();
    let names = ["http_requests_total", "node_cpu_seconds_total", "weird:metric_name", "temperature_celsius"];
    (0..series)
        .map(|i| {
            let mut labels = target_labels(names[i % names.len()], i);
            if i % 5 == 0 {
                labels.push(("path".into(), AWKWARD[i / 5 % AWKWARD.len()].into()));
            }
            labels.sort();
            // Steps average 20 s: the last sample is at least a minute old (fresher ones are not exported yet).
            let mut t = now - per_series as i64 * 40_000 - 60_000 - rng.below(60_000) as i64;
            let mut timestamps = Vec::with_capacity(per_series);
            let mut values = Vec::with_capacity(per_series);
            for j in 0..per_series {
                timestamps.push(t);
                t += 1 + rng.below(40_000) as i64;
                values.push(value(&mut rng, j, plain_nan));
            }
            FloatSeries { labels, timestamps, values }
        })
        .collect()
}

/// `series` series of `per_series` samples as a Prometheus scrape leaves them (for benchmarks): one sample every 15 s
/// with a few milliseconds of jitter; a third counters (growing integers), a third gauges with two decimals, a third
/// ratios at full precision.
pub fn scraped_series(seed: u64, series: usize, per_series: usize) -> Vec<FloatSeries> {
    let mut rng = Rng::new(seed);
    let now = jiff::Timestamp::now().as_millisecond();
    let names = ["http_requests_total", "node_memory_free_ratio", "temperature_celsius"];
    (0..series)
        .map(|i| {
            let mut labels = target_labels(names[i % names.len()], i);
            labels.sort();
            let mut t = now - per_series as i64 * 15_000 - 60_000;
            let mut counter = rng.below(1 << 20) as f64;
            let mut timestamps = Vec::with_capacity(per_series);
            let mut values = Vec::with_capacity(per_series);
            for _ in 0..per_series {
                timestamps.push(t + rng.below(20) as i64);
                t += 15_000;
                values.push(match i % 3 {
                    0 => {
                        counter += rng.below(1000) as f64;
                        counter
                    }
                    1 => rng.unit(),
                    _ => (rng.below(10_000) as f64 - 2_000.0) / 100.0,
                });
            }
            FloatSeries { labels, timestamps, values }
        })
        .collect()
}

fn value(rng: &mut Rng, j: usize, plain_nan: bool) -> f64 {
    const EDGES: &[f64] = &[
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        5e-324,
        2.2250738585072014e-308,
        1e-300,
        1e300,
        f64::MAX,
        f64::MIN,
        STALE_NAN,
        0.1,
    ];
    match rng.below(20) {
        0 if plain_nan => f64::NAN,
        1 => EDGES[j % EDGES.len()],
        2 | 3 => (rng.below(1 << 40)) as f64,
        _ => {
            let sign = if rng.below(2) == 0 { 1.0 } else { -1.0 };
            sign * rng.unit() * 10f64.powi(rng.below(18) as i32 - 6)
        }
    }
}

/// InfluxDB line protocol for series `first..first + series`, `points` points each (nanosecond timestamps ending in
/// the recent past), and the number of field values written.
pub fn influx_lines(seed: u64, first: usize, series: usize, points: usize) -> (Vec<String>, u64) {
    let mut rng = Rng::new(seed);
    let now = jiff::Timestamp::now().as_nanosecond() as i64;
    let measurements = ["cpu", "disk io", "weird,name", "mem=used"];
    let strings = ["", "say \"hi\"", "C:\\path\\", "ünïcødé ✓", "a, b=c d"];
    let mut lines = Vec::new();
    let mut values = 0u64;
    for i in first..first + series {
        let m = measurements[i % measurements.len()].replace(',', "\\,").replace(' ', "\\ ");
        let region = ["eu west", "us,east", "ap=south", "plain"][i % 4]
            .replace(',', "\\,")
            .replace('=', "\\=")
            .replace(' ', "\\ ");
        let key = format!("{m},host=h{i},region={region}");
        let mut t = now - points as i64 * 30_000_000_000 - rng.below(1_000_000_000) as i64;
        for j in 0..points {
            let mut fields = Vec::new();
            if rng.below(4) != 0 {
                let f = match rng.below(12) {
                    0 => "-0".to_string(),
                    1 => "5e-324".into(),
                    2 => "1.7976931348623157e308".into(),
                    3 => "1e-300".into(),
                    _ => format!("{:e}", (rng.unit() - 0.5) * 10f64.powi(rng.below(20) as i32 - 8)),
                };
                fields.push(format!("usage={f}"));
            }
            if rng.below(3) != 0 {
                let n = match rng.below(10) {
                    0 => i64::MIN,
                    1 => i64::MAX,
                    2 => 9_007_199_254_740_993,
                    _ => rng.below(1 << 50) as i64 - (1 << 49),
                };
                fields.push(format!("count={n}i"));
            }
            if rng.below(3) == 0 {
                let s = strings[j % strings.len()].replace('\\', "\\\\").replace('"', "\\\"");
                fields.push(format!("status=\"{s}\""));
            }
            if rng.below(3) == 0 || fields.is_empty() {
                fields.push(format!("ok={}", rng.below(2) == 0));
            }
            values += fields.len() as u64;
            lines.push(format!("{key} {} {t}", fields.join(",")));
            t += 1 + rng.below(30_000_000_000) as i64;
        }
    }
    (lines, values)
}
