//! Authentication and authorization: the first two steps of the request flow.
//!
//! HTTP → **authn → authz** → REST → strategy → storage. Authenticators form a chain (first success wins);
//! authorizers form a union. A request no authenticator recognises is `system:anonymous`, which passes only on
//! the always-allow paths (health endpoints, for kubelet probes).

pub mod authn;
pub mod authz;
pub mod delegation;
pub mod filter;
pub mod token_file;
pub mod webhook;
pub mod x509;

pub use authn::{Authenticator, UserInfo};
pub use authz::{Authorizer, Decision};
