//! HTTP plumbing shared by every endpoint: content negotiation and warning headers.

pub mod json_body;
pub mod negotiation;
pub mod warning;
