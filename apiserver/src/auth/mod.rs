//! Authentication and authorization: the authenticators and authorizers the filters ask, and [`setup`], which
//! builds them from the flags.
//!
//! request info → **authentication → authorization** (filters, asking these) → endpoints. Authenticators form a
//! chain (first success wins); authorizers form a union. A request no authenticator recognises is
//! `system:anonymous`, which passes only on the always-allow paths (health endpoints, for kubelet probes).

pub mod authn;
pub mod authz;
pub mod cert_sources;
pub mod delegation;
pub mod setup;
pub mod static_token;
pub mod token_file;
pub mod webhook;
pub mod x509;

pub use authn::{Authenticator, UserInfo};
pub use authz::{Authorizer, Decision};
