//! HTTP plumbing shared by every endpoint: content negotiation and warning headers.

pub mod negotiation;
pub mod warning;
