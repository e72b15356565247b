//! InfluxDB 1.x: back up measurement by measurement with `/query` (`SELECT * FROM "m" GROUP BY *`, chunked,
//! `epoch=ns`; field types from `SHOW FIELD KEYS`, since JSON cannot tell float `3` from integer `3`), restore with
//! `/write` (line protocol, `precision=ns`) into the database, created if missing.
//!
//! API → controller → engine → **InfluxDB (this file)** → database.
//!
//! Each InfluxDB series (measurement and tag set) of each retention policy is one series of the backup, its
//! measurement in `__name__`, its retention policy in `__retention_policy__` unless it is the database's default;
//! its fields are the columns and its points the rows. A restore writes series without that label into the target
//! database's default retention policy and the others into theirs, creating a missing one with an infinite
//! duration (so that no restored point is dropped at once; shorten it afterwards if needed).

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, bail, ensure};
use backup_apis::backup::BackupSource;
use backup_apis::database::DatabaseEndpoint;
use bytes::Bytes;
use http::Method;
use serde::Deserialize;
use serde_json::Value;

use backup_apis::duration::parse_duration;

use super::lineproto::{series_key, write_point};
use super::target::{Preflight, check_retention, time_of};
use crate::format::{
    BackupReader, BackupWriter, Column, FieldType, FieldValue, Labels, NAME_LABEL, Precision, RETENTION_POLICY_LABEL,
    Record, Row,
};
use crate::http::{Http, Lines, url};
use crate::restore::Summary;
use crate::restore::tally::{Tallies, series_id};

/// Rows per chunk of a chunked answer; each chunk is one JSON line.
const CHUNK_SIZE: &str = "10000";
/// Body chunks read ahead while answers are decoded.
const READ_AHEAD: usize = 16;
/// Line protocol bytes per `/write` request.
const WRITE_BATCH: usize = 1 << 20;

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    results: Vec<StatementResult>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct StatementResult {
    #[serde(default)]
    series: Vec<ResultSeries>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct ResultSeries {
    /// The measurement (absent in answers to SHOW RETENTION POLICIES).
    #[serde(default)]
    name: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    columns: Vec<String>,
    #[serde(default)]
    values: Vec<Vec<Value>>,
}

pub async fn backup(http: &Http, source: &BackupSource, out: &mut BackupWriter) -> anyhow::Result<()> {
    ensure!(source.selector.is_none(), "spec.database.selector is not supported for InfluxDB");
    let base = &source.endpoint.url;
    let db = database(&source.endpoint)?;
    let mut measurements = Vec::new();
    let mut answers = query(http, base, db, "SHOW MEASUREMENTS").await?;
    while let Some(series) = answers.next().await? {
        measurements.extend(series.values.iter().filter_map(|row| row.first()?.as_str().map(str::to_owned)));
    }
    for policy in retention_policies(http, base, db).await? {
        for measurement in &measurements {
            backup_measurement(http, base, db, &policy, measurement, out)
                .await
                .with_context(|| format!("measurement {measurement:?} of retention policy {:?}", policy.name))?;
        }
    }
    Ok(())
}

/// A retention policy of a database.
struct RetentionPolicy {
    name: String,
    default: bool,
    /// As InfluxDB prints it: `168h0m0s`, `0s` for infinite.
    duration: String,
}

async fn retention_policies(http: &Http, base: &str, db: &str) -> anyhow::Result<Vec<RetentionPolicy>> {
    let mut policies = Vec::new();
    let mut answers = query(http, base, db, &format!("SHOW RETENTION POLICIES ON {}", quote_ident(db))).await?;
    while let Some(series) = answers.next().await? {
        let column = |name: &str| series.columns.iter().position(|c| c == name);
        let (name, default) = column("name").zip(column("default")).context("unexpected SHOW RETENTION POLICIES")?;
        let duration = column("duration");
        for row in &series.values {
            let name = row.get(name).and_then(Value::as_str).context("retention policy without a name")?;
            let default = row.get(default).and_then(Value::as_bool).unwrap_or(false);
            let duration = duration.and_then(|d| row.get(d)?.as_str()).unwrap_or("0s").to_owned();
            policies.push(RetentionPolicy { name: name.to_owned(), default, duration });
        }
    }
    Ok(policies)
}

async fn backup_measurement(
    http: &Http,
    base: &str,
    db: &str,
    policy: &RetentionPolicy,
    measurement: &str,
    out: &mut BackupWriter,
) -> anyhow::Result<()> {
    let from = format!("{}.{}", quote_ident(&policy.name), quote_ident(measurement));
    let mut types = HashMap::new();
    let mut answers = query(http, base, db, &format!("SHOW FIELD KEYS FROM {from}")).await?;
    while let Some(series) = answers.next().await? {
        for row in &series.values {
            if let [Value::String(key), Value::String(kind)] = row.as_slice() {
                types.entry(key.clone()).or_insert(field_type(kind)?);
            }
        }
    }
    let mut answers = query(http, base, db, &format!("SELECT * FROM {from} GROUP BY *")).await?;
    let mut current: Option<(Labels, Vec<Column>)> = None;
    while let Some(series) = answers.next().await? {
        ensure!(series.columns.first().map(String::as_str) == Some("time"), "answer without a time column");
        let columns = series.columns[1..]
            .iter()
            .map(|c| {
                Ok(Column { name: c.clone(), field_type: *types.get(c).context(format!("no type for field {c:?}"))? })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut labels = series.tags;
        labels.insert(NAME_LABEL.into(), series.name);
        if !policy.default {
            labels.insert(RETENTION_POLICY_LABEL.into(), policy.name.clone());
        }
        let labels: Labels = labels.into_iter().collect();
        let same_series = current.as_ref().is_some_and(|(l, _)| *l == labels);
        if !same_series || current.as_ref().is_some_and(|(_, c)| *c != columns) {
            out.series(labels.clone()).await?;
            out.columns(columns.clone()).await?;
            current = Some((labels, columns.clone()));
        }
        let rows = series.values.iter().map(|row| to_row(row, &columns)).collect::<anyhow::Result<Vec<_>>>()?;
        out.rows(rows).await?;
    }
    Ok(())
}

pub async fn write(
    http: &Http,
    input: &mut BackupReader,
    target: &DatabaseEndpoint,
    tallies: &mut Tallies,
) -> anyhow::Result<()> {
    let db = database(target)?;
    let base = &target.url;
    statement(http, base, &format!("CREATE DATABASE {}", quote_ident(db))).await?;
    let mut existing: Vec<String> = retention_policies(http, base, db).await?.into_iter().map(|p| p.name).collect();
    // Where the points in `buf` go: the default retention policy (None) or a named one.
    let (mut policy, mut next_policy): (Option<String>, Option<String>) = (None, None);
    let (mut key, mut columns, mut buf) = (String::new(), Vec::new(), String::with_capacity(WRITE_BATCH * 2));
    let mut id = 0;
    while let Some(record) = input.next().await? {
        match record {
            Record::Series(labels) => {
                id = series_id(&labels);
                let label = |name: &str| labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
                let measurement = label(NAME_LABEL).context("corrupt backup: InfluxDB series without a measurement")?;
                next_policy = label(RETENTION_POLICY_LABEL).map(str::to_owned);
                let tags: Labels =
                    labels.iter().filter(|(k, _)| k != NAME_LABEL && k != RETENTION_POLICY_LABEL).cloned().collect();
                key = series_key(measurement, &tags);
            }
            Record::Columns(c) => columns = c,
            Record::Rows(rows) => {
                if next_policy != policy {
                    write_batch(http, &write_url(base, db, policy.as_deref()), &mut buf).await?;
                    if let Some(name) = &next_policy
                        && !existing.contains(name)
                    {
                        let create = format!(
                            "CREATE RETENTION POLICY {} ON {} DURATION INF REPLICATION 1",
                            quote_ident(name),
                            quote_ident(db)
                        );
                        statement(http, base, &create).await?;
                        existing.push(name.clone());
                    }
                    policy = next_policy.clone();
                }
                for row in rows {
                    // A point already there (an earlier attempt's) is skipped; one partly there is written whole:
                    // InfluxDB overwrites a point's fields with the same values.
                    let values = row.values.iter().flatten().count();
                    if tallies.take_skip(id, values) < values {
                        write_point(&mut buf, &key, &columns, &row.values, row.time);
                    }
                }
                if buf.len() >= WRITE_BATCH {
                    write_batch(http, &write_url(base, db, policy.as_deref()), &mut buf).await?;
                }
            }
            Record::Samples { .. } => bail!("corrupt backup: float samples in an InfluxDB backup"),
        }
    }
    write_batch(http, &write_url(base, db, policy.as_deref()), &mut buf).await
}

/// Every retention policy the backup writes into must keep its oldest point: the target database's default one for
/// the default policy's series, a named one if it exists (a missing one is created with an infinite duration).
pub async fn preflight(
    http: &Http,
    target: &DatabaseEndpoint,
    precision: Precision,
    summary: &Summary,
) -> Result<(), Preflight> {
    let db = database(target)?;
    let policies = match retention_policies(http, &target.url, db).await {
        Ok(policies) => policies,
        // A database to be created gets an infinite default policy.
        Err(e) if is_missing(&e) => return Ok(()),
        Err(e) => return Err(e.context("reading the target's retention policies").into()),
    };
    for (name, (oldest, _)) in &summary.policies {
        let policy = match name {
            None => policies.iter().find(|p| p.default),
            Some(name) => policies.iter().find(|p| &p.name == name),
        };
        let Some(policy) = policy else { continue };
        let kept = parse_duration(&policy.duration)
            .map_err(|e| anyhow::anyhow!("the target's retention policy duration {:?} {e}", policy.duration))?;
        let setting = format!("retention policy {:?} of database {db:?}: DURATION {}", policy.name, policy.duration);
        check_retention((!kept.is_zero()).then_some(kept), &setting, time_of(*oldest, precision))?;
    }
    Ok(())
}

/// Calls `count(labels, times)` for every series of the backup's measurements in the target, between `min` and
/// `max` (nanoseconds), with a time per field value.
pub async fn read_back(
    http: &Http,
    target: &DatabaseEndpoint,
    summary: &Summary,
    min: i64,
    max: i64,
    count: &mut (dyn FnMut(&Labels, &[i64]) + Send),
) -> anyhow::Result<()> {
    let db = database(target)?;
    let mut times = Vec::new();
    for (policy, (_, measurements)) in &summary.policies {
        for measurement in measurements {
            let from = match policy {
                Some(rp) => format!("{}.{}", quote_ident(rp), quote_ident(measurement)),
                None => quote_ident(measurement),
            };
            let q = format!("SELECT * FROM {from} WHERE time >= {min} AND time <= {max} GROUP BY *");
            let mut answers = query(http, &target.url, db, &q).await?;
            loop {
                let series = match answers.next().await {
                    Ok(Some(series)) => series,
                    Ok(None) => break,
                    // Nothing restored yet: the database (or the policy) is created by the first write.
                    Err(e) if is_missing(&e) => return Ok(()),
                    Err(e) => return Err(e),
                };
                let mut labels = series.tags;
                labels.insert(NAME_LABEL.into(), series.name);
                if let Some(rp) = policy {
                    labels.insert(RETENTION_POLICY_LABEL.into(), rp.to_string());
                }
                let labels: Labels = labels.into_iter().collect();
                times.clear();
                for row in &series.values {
                    let time = row.first().and_then(Value::as_i64).context("row without an integer time")?;
                    times.extend(row.iter().skip(1).filter(|v| !v.is_null()).map(|_| time));
                }
                count(&labels, &times);
            }
        }
    }
    Ok(())
}

/// Whether InfluxDB answered that the database or retention policy does not exist.
fn is_missing(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("database not found") || text.contains("retention policy not found")
}

fn write_url(base: &str, db: &str, policy: Option<&str>) -> String {
    match policy {
        Some(rp) => url(base, "/write", &[("db", db), ("rp", rp), ("precision", "ns")]),
        None => url(base, "/write", &[("db", db), ("precision", "ns")]),
    }
}

/// Runs a statement that changes the server (a POST to `/query`), failing with InfluxDB's error if it has one.
async fn statement(http: &Http, base: &str, q: &str) -> anyhow::Result<()> {
    let body =
        http.send(Method::POST, &url(base, "/query", &[("q", q)]), &[], Bytes::new()).await?.bytes(1 << 20).await?;
    let answer: Answer = serde_json::from_slice(&body).with_context(|| format!("unexpected answer to {q}"))?;
    if let Some(e) = answer.error.or_else(|| answer.results.into_iter().find_map(|r| r.error)) {
        bail!("InfluxDB: {q}: {e}");
    }
    Ok(())
}

/// One `/write` request, retried on its own (5xx, 429, broken connections).
async fn write_batch(http: &Http, write_url: &str, buf: &mut String) -> anyhow::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    let body = Bytes::from(std::mem::take(buf).into_bytes());
    http.write(Method::POST, write_url, &[(http::header::CONTENT_TYPE, "text/plain")], body).await
}

fn database(endpoint: &DatabaseEndpoint) -> anyhow::Result<&str> {
    endpoint.database.as_deref().filter(|d| !d.is_empty()).context("an InfluxDB endpoint needs its database name")
}

/// A chunked query's answer: JSON objects, one per line, each with a few result series.
struct Answers {
    lines: Lines,
    pending: std::vec::IntoIter<ResultSeries>,
}

impl Answers {
    /// The next result series (possibly a further part of the previous one).
    async fn next(&mut self) -> anyhow::Result<Option<ResultSeries>> {
        loop {
            if let Some(series) = self.pending.next() {
                return Ok(Some(series));
            }
            let Some(line) = self.lines.next().await? else { return Ok(None) };
            let answer: Answer = serde_json::from_slice(line).context("unexpected answer from InfluxDB")?;
            if let Some(e) = answer.error {
                bail!("InfluxDB: {e}");
            }
            let mut series = Vec::new();
            for result in answer.results {
                if let Some(e) = result.error {
                    bail!("InfluxDB: {e}");
                }
                series.extend(result.series);
            }
            self.pending = series.into_iter();
        }
    }
}

async fn query(http: &Http, base: &str, db: &str, q: &str) -> anyhow::Result<Answers> {
    let params = [("db", db), ("q", q), ("epoch", "ns"), ("chunked", "true"), ("chunk_size", CHUNK_SIZE)];
    let lines = http.get(&url(base, "/query", &params)).await?.read_ahead(READ_AHEAD).lines(http.piece_limit);
    Ok(Answers { lines, pending: Vec::new().into_iter() })
}

fn to_row(row: &[Value], columns: &[Column]) -> anyhow::Result<Row> {
    let time = row.first().and_then(Value::as_i64).context("row without an integer time")?;
    let values = row[1..].iter().zip(columns).map(|(v, c)| to_value(v, c)).collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Row { time, values })
}

fn to_value(v: &Value, column: &Column) -> anyhow::Result<Option<FieldValue>> {
    if v.is_null() {
        return Ok(None);
    }
    let value = match column.field_type {
        FieldType::Float => v.as_f64().map(FieldValue::Float),
        FieldType::Integer => v.as_i64().map(FieldValue::Integer),
        FieldType::Unsigned => v.as_u64().map(FieldValue::Unsigned),
        FieldType::String => v.as_str().map(|s| FieldValue::String(s.to_owned())),
        FieldType::Boolean => v.as_bool().map(FieldValue::Boolean),
    };
    value.map(Some).with_context(|| format!("value {v} of field {:?} is not {:?}", column.name, column.field_type))
}

fn field_type(name: &str) -> anyhow::Result<FieldType> {
    Ok(match name {
        "float" => FieldType::Float,
        "integer" => FieldType::Integer,
        "unsigned" => FieldType::Unsigned,
        "string" => FieldType::String,
        "boolean" => FieldType::Boolean,
        other => bail!("unknown InfluxDB field type {other:?}"),
    })
}

/// An InfluxQL double-quoted identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}
