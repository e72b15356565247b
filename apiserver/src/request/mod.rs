//! What a request asks for, read once near the top of the flow: its [`info::RequestInfo`] (verb, resource,
//! namespace, name, subresource) and [`query::Query`] (parsed by the request-info filter), the typed [`options`]
//! of each verb, the representation it accepts ([`negotiation`]) and its [`body`]. Nothing here knows a kind.
//!
//! TLS → **request** → filters → endpoints → registry → strategy → storage.

pub mod body;
pub mod info;
pub mod negotiation;
pub mod options;
pub mod query;
