//! Prometheus' remote read/write protocol (snappy-compressed protobuf), shared by the Prometheus engine (read and
//! write) and the VictoriaMetrics one (write): the few `prompb` messages, hand-written for prost, and
//! [`RemoteWriter`], which batches series into bounded write requests.
//!
//! API → controller → engine → **remote read/write (this file)** → database.

use bytes::Bytes;
use http::{Method, header};

use crate::format::Labels;
use crate::http::{Http, url};

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadRequest {
    #[prost(message, repeated, tag = "1")]
    pub queries: Vec<Query>,
    /// `ResponseType`: 0 = SAMPLES, 1 = STREAMED_XOR_CHUNKS.
    #[prost(int32, repeated, tag = "2")]
    pub accepted_response_types: Vec<i32>,
}

pub const STREAMED_XOR_CHUNKS: i32 = 1;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Query {
    #[prost(int64, tag = "1")]
    pub start_timestamp_ms: i64,
    #[prost(int64, tag = "2")]
    pub end_timestamp_ms: i64,
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<LabelMatcher>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelMatcher {
    /// 0 = EQ, 1 = NEQ, 2 = RE, 3 = NRE.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkedReadResponse {
    #[prost(message, repeated, tag = "1")]
    pub chunked_series: Vec<ChunkedSeries>,
    #[prost(int64, tag = "2")]
    pub query_index: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkedSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub chunks: Vec<Chunk>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunk {
    #[prost(int64, tag = "1")]
    pub min_time_ms: i64,
    #[prost(int64, tag = "2")]
    pub max_time_ms: i64,
    /// 1 = XOR (floats); 2, 3 = native histograms.
    #[prost(int32, tag = "3")]
    pub r#type: i32,
    #[prost(bytes = "bytes", tag = "4")]
    pub data: Bytes,
}

pub const CHUNK_XOR: i32 = 1;

/// Samples per write request: about 1 MB of protobuf before compression.
const BATCH_SAMPLES: usize = 40_000;

/// Streams series into `POST /api/v1/write` requests of bounded size, each retried on its own (5xx, 429, broken
/// connections; never another 4xx) before the restore gives up.
pub struct RemoteWriter<'a> {
    http: &'a Http,
    endpoint: String,
    pending: WriteRequest,
    pending_samples: usize,
    pub samples: u64,
}

impl<'a> RemoteWriter<'a> {
    pub fn new(http: &'a Http, base_url: &str) -> Self {
        Self {
            http,
            endpoint: url(base_url, "/api/v1/write", &[]),
            pending: WriteRequest::default(),
            pending_samples: 0,
            samples: 0,
        }
    }

    /// Queues samples of one series, sending a request whenever a batch is full.
    pub async fn add(&mut self, labels: &Labels, timestamps: &[i64], values: &[f64]) -> anyhow::Result<()> {
        let mut at = 0;
        while at < timestamps.len() {
            let room = BATCH_SAMPLES - self.pending_samples;
            let end = timestamps.len().min(at + room);
            self.pending.timeseries.push(TimeSeries {
                labels: labels.iter().map(|(name, value)| Label { name: name.clone(), value: value.clone() }).collect(),
                samples: timestamps[at..end]
                    .iter()
                    .zip(&values[at..end])
                    .map(|(&timestamp, &value)| Sample { value, timestamp })
                    .collect(),
            });
            self.pending_samples += end - at;
            at = end;
            if self.pending_samples >= BATCH_SAMPLES {
                self.flush().await?;
            }
        }
        Ok(())
    }

    /// Sends what is queued.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.timeseries.is_empty() {
            return Ok(());
        }
        let body = snap::raw::Encoder::new().compress_vec(&prost::Message::encode_to_vec(&self.pending))?;
        self.http
            .write(
                Method::POST,
                &self.endpoint,
                &[
                    (header::CONTENT_TYPE, "application/x-protobuf"),
                    (header::CONTENT_ENCODING, "snappy"),
                    (header::HeaderName::from_static("x-prometheus-remote-write-version"), "0.1.0"),
                ],
                Bytes::from(body),
            )
            .await?;
        self.samples += self.pending_samples as u64;
        self.pending.timeseries.clear();
        self.pending_samples = 0;
        Ok(())
    }
}
