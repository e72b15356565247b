//! The queue in front of each audit backend: events are handed over without waiting, so a slow backend delays no
//! request; when it is behind by the queue's capacity an event is dropped, counted as an error, and logged (at
//! powers of two).

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use super::event::Event;

pub struct EventQueue {
    tx: mpsc::Sender<Event>,
    /// Events queued (`apiserver_audit_event_total`).
    events: Counter,
    /// Events dropped (`apiserver_audit_error_total{plugin}`).
    errors: Counter,
    /// The backend's name, for the log.
    backend: &'static str,
}

impl EventQueue {
    /// A queue of `capacity` events for `backend`, and its receiving end.
    pub fn new(
        capacity: usize,
        events: Counter,
        errors: Counter,
        backend: &'static str,
    ) -> (Self, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx, events, errors, backend }, rx)
    }

    /// Queue `event`, or drop it when the backend is behind.
    pub fn record(&self, event: Event) {
        match self.tx.try_send(event) {
            Ok(()) => {
                self.events.inc();
            }
            Err(_) => {
                let dropped = self.errors.inc() + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(dropped, backend = self.backend, "an audit backend is behind: events dropped");
                }
            }
        }
    }
}
