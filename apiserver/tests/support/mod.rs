//! Shared helpers of the apiserver's integration tests.

pub mod certs;
pub mod fake_kube;
