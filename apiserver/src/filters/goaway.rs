//! The probabilistic GOAWAY filter (k8s.io/apiserver `WithProbabilisticGoaway`, `--goaway-chance`): each HTTP/2
//! request, with this chance, asks its connection to close once its streams finish, so that a client behind one
//! load-balanced address (the aggregator through a Service) reconnects, perhaps to another replica. Streams in
//! flight, watches included, are not interrupted.
//!
//! **goaway** → compression → audit → … → endpoints.

use axum::extract::Request;
use axum::response::Response;
use rand::Rng;

use super::Next;
use crate::tls::Goaway;

/// The largest `--goaway-chance` upstream allows.
pub const MAX_CHANCE: f64 = 0.02;

pub async fn maybe(chance: f64, req: Request, next: impl Next) -> Response {
    if chance <= 0.0 {
        return next(req).await;
    }
    let goaway = req.extensions().get::<Goaway>().cloned().filter(|_| rand::rng().random::<f64>() < chance);
    let resp = next(req).await;
    if let Some(goaway) = goaway {
        goaway.send();
    }
    resp
}
