//! The audit webhook backend (`--audit-webhook-config-file`, a kubeconfig naming the receiver), in upstream's batch
//! mode (`plugin/pkg/audit/buffered`): events are queued without delaying a request (a full queue drops the event,
//! counted as an error); a batch is sent when it holds `--audit-webhook-batch-max-size` events or
//! `--audit-webhook-batch-max-wait` after it began, at most `--audit-webhook-batch-throttle-qps` batches a second
//! (bursts of `-burst`), as an `audit.k8s.io/v1` `EventList` POSTed to the kubeconfig's server URL with its
//! credentials. A batch that fails with a transport error, 429 or 5xx is retried with backoff from
//! `--audit-webhook-initial-backoff` (×1.5, five tries, as upstream); a batch that still fails is dropped and counted.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http_body_util::BodyExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use super::event::Event;
use super::queue::EventQueue;

/// Batches being sent (with their retries) at once; beyond, the queue fills and new events are dropped.
const MAX_SENDING: usize = 8;
/// How long one POST may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries of one batch (upstream's `DefaultRetryBackoff` steps) and the growth of the wait between them.
const TRIES: u32 = 5;
const BACKOFF_FACTOR: f64 = 1.5;

/// The flags of the webhook backend.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub kubeconfig: PathBuf,
    pub buffer_size: usize,
    pub max_batch_size: usize,
    pub max_batch_wait: Duration,
    /// Batches per second and burst; `None`: not throttled.
    pub throttle: Option<(f64, u32)>,
    pub initial_backoff: Duration,
}

/// The queue to the sender task.
pub struct AuditWebhook(EventQueue);

impl AuditWebhook {
    /// Read the kubeconfig (failing at start when it does not load) and start the sender task.
    pub async fn start(config: WebhookConfig, events: Counter, errors: Counter) -> anyhow::Result<Self> {
        let receiver = Receiver::load(&config.kubeconfig).await?;
        let (queue, rx) = EventQueue::new(config.buffer_size, events, errors.clone(), "webhook");
        tokio::spawn(run(config, receiver, rx, errors));
        Ok(Self(queue))
    }

    /// Queue `event`; when [`WebhookConfig::buffer_size`] events wait, it is dropped (and counted as an error).
    pub fn record(&self, event: Event) {
        self.0.record(event);
    }
}

/// Where batches go: a client with the kubeconfig's TLS settings and credentials, for its server's scheme and
/// host, and the server URL's path, which is POSTed to as it is.
struct Receiver {
    client: kube::Client,
    path: String,
    shown: String,
}

impl Receiver {
    async fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let what = || format!("the audit webhook kubeconfig {}", path.display());
        let kubeconfig = Kubeconfig::read_from(path).with_context(what)?;
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.with_context(what)?;
        let url = config.cluster_url.clone();
        let (Some(scheme), Some(authority)) = (url.scheme_str(), url.authority()) else {
            anyhow::bail!("{}: the server URL {url} has no scheme or host", what());
        };
        let base = format!("{scheme}://{authority}");
        config.cluster_url = base.parse().with_context(what)?;
        config.default_retry = false;
        let path_and_query = url.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let client = kube::Client::try_from(config).with_context(what)?;
        Ok(Self { client, shown: format!("{base}{path_and_query}"), path: path_and_query })
    }

    /// POST one batch; `Err` says why, and whether trying again may help.
    async fn send(&self, body: &[u8]) -> Result<(), (String, bool)> {
        let request = http::Request::post(&self.path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(kube::client::Body::from(body.to_vec()))
            .map_err(|e| (e.to_string(), false))?;
        let exchange = async {
            let response = self.client.send(request).await.map_err(|e| (e.to_string(), true))?;
            let status = response.status();
            // Drain the answer (bounded) so the connection is reused.
            let _ = http_body_util::Limited::new(response.into_body(), 64 << 10).collect().await;
            if status.is_success() {
                Ok(())
            } else {
                let transient = status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS;
                Err((format!("the webhook answered {status}"), transient))
            }
        };
        match tokio::time::timeout(SEND_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => Err(("timed out".into(), true)),
        }
    }
}

/// Collect batches from `rx` and send each on a task of its own, until the queue's senders are gone.
async fn run(config: WebhookConfig, receiver: Receiver, mut rx: mpsc::Receiver<Event>, errors: Counter) {
    let receiver = Arc::new(receiver);
    let sending = Arc::new(Semaphore::new(MAX_SENDING));
    let mut throttle = config.throttle.map(|(qps, burst)| TokenBucket::new(qps, burst));
    let max_size = config.max_batch_size.max(1);
    loop {
        let (batch, open) = collect(&mut rx, max_size, config.max_batch_wait).await;
        if !batch.is_empty() {
            if let Some(bucket) = throttle.as_mut() {
                bucket.take().await;
            }
            let Ok(permit) = sending.clone().acquire_owned().await else { return };
            let (receiver, errors, backoff) = (receiver.clone(), errors.clone(), config.initial_backoff);
            tokio::spawn(async move {
                send_batch(&receiver, batch, backoff, &errors).await;
                drop(permit);
            });
        }
        if !open {
            return;
        }
    }
}

/// Up to `max` events: those that arrive within `wait` of the call (upstream's batch timer), or fewer once the
/// queue is closed; and whether it is still open.
async fn collect(rx: &mut mpsc::Receiver<Event>, max: usize, wait: Duration) -> (Vec<Event>, bool) {
    let deadline = Instant::now() + wait;
    let mut batch = Vec::new();
    while batch.len() < max {
        tokio::select! {
            event = rx.recv() => match event {
                Some(event) => batch.push(event),
                None => return (batch, false),
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    (batch, true)
}

/// Send `batch` as an EventList, trying again after `backoff` (growing) while the failure may pass.
async fn send_batch(receiver: &Receiver, batch: Vec<Event>, mut backoff: Duration, errors: &Counter) {
    let count = batch.len();
    let list =
        serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": batch});
    let body = match serde_json::to_vec(&list) {
        Ok(body) => body,
        Err(e) => {
            errors.inc_by(count as u64);
            tracing::error!(error = %e, "encoding audit events");
            return;
        }
    };
    for attempt in 1..=TRIES {
        match receiver.send(&body).await {
            Ok(()) => return,
            Err((why, transient)) if transient && attempt < TRIES => {
                tracing::debug!(url = %receiver.shown, %why, attempt, retry_in = ?backoff, "audit webhook failed");
                tokio::time::sleep(backoff).await;
                backoff = backoff.mul_f64(BACKOFF_FACTOR);
            }
            Err((why, _)) => {
                errors.inc_by(count as u64);
                tracing::error!(url = %receiver.shown, %why, events = count, "audit events lost: the webhook failed");
                return;
            }
        }
    }
}

/// At most `qps` takes a second, `burst` at once.
struct TokenBucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self { qps: qps.max(f64::MIN_POSITIVE), burst, tokens: burst, at: Instant::now() }
    }

    async fn take(&mut self) {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.qps).min(self.burst);
        self.at = now;
        if self.tokens < 1.0 {
            let wait = Duration::from_secs_f64(((1.0 - self.tokens) / self.qps).min(3600.0));
            tokio::time::sleep(wait).await;
            self.tokens = 1.0;
            self.at = Instant::now();
        }
        self.tokens -= 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_bursts_then_the_rate() {
        let mut bucket = TokenBucket::new(10.0, 3);
        let start = Instant::now();
        for _ in 0..3 {
            bucket.take().await;
        }
        assert!(start.elapsed() < Duration::from_millis(1), "the burst waits for nothing");
        for _ in 0..10 {
            bucket.take().await;
        }
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(990) && waited < Duration::from_millis(1100), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn batches_end_at_their_size_their_time_or_the_close() {
        let (tx, mut rx) = mpsc::channel(100);
        let event = || crate::audit::event::sample(0);
        for _ in 0..5 {
            tx.send(event()).await.unwrap();
        }
        let (batch, open) = collect(&mut rx, 3, Duration::from_secs(30)).await;
        assert_eq!((batch.len(), open), (3, true));
        let start = Instant::now();
        let (batch, open) = collect(&mut rx, 3, Duration::from_secs(30)).await;
        assert_eq!((batch.len(), open), (2, true));
        assert_eq!(start.elapsed(), Duration::from_secs(30), "a short batch waits for its time");
        drop(tx);
        let (batch, open) = collect(&mut rx, 3, Duration::from_secs(30)).await;
        assert_eq!((batch.len(), open), (0, false));
    }
}
