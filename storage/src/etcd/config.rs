//! The etcd connection settings, named after kube-apiserver's `--etcd-*` flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_client::{Certificate, Identity, TlsOptions};

use crate::{Result, StorageError};

/// How to reach etcd and lay keys out in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `--etcd-servers`: `http://host:port` or, with TLS, `https://host:port` endpoints.
    pub servers: Vec<String>,
    /// `--etcd-cafile`: PEM CA bundle that signed etcd's serving certificate (needed for `https://` servers).
    pub cafile: Option<PathBuf>,
    /// `--etcd-certfile`: PEM client certificate, with `keyfile`.
    pub certfile: Option<PathBuf>,
    /// `--etcd-keyfile`: PEM private key of `certfile`.
    pub keyfile: Option<PathBuf>,
    /// `--etcd-prefix`: prepended to every key (default `/registry`).
    pub prefix: String,
    /// `--etcd-compaction-interval`: how often history is compacted (default 5 min); zero disables it.
    pub compaction_interval: Duration,
    /// How long to wait for a connection (kube-apiserver's dial timeout is 20 s).
    pub dial_timeout: Duration,
    /// The deadline of each unary request; watches are not bounded by it.
    pub request_timeout: Duration,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            servers: vec!["http://127.0.0.1:2379".to_string()],
            cafile: None,
            certfile: None,
            keyfile: None,
            prefix: "/registry".to_string(),
            compaction_interval: Duration::from_secs(300),
            dial_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl EtcdConfig {
    /// The defaults with these servers.
    pub fn new(servers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self { servers: servers.into_iter().map(Into::into).collect(), ..Self::default() }
    }

    /// The prefix as stored: without trailing `/`, since every key starts with one.
    pub(super) fn prefix_bytes(&self) -> Vec<u8> {
        self.prefix.trim_end_matches('/').as_bytes().to_vec()
    }

    /// The TLS settings for `https://` servers: the CA and the client certificate, when given.
    pub(super) fn tls(&self) -> Result<Option<TlsOptions>> {
        let identity = match (&self.certfile, &self.keyfile) {
            (Some(cert), Some(key)) => Some(Identity::from_pem(read(cert)?, read(key)?)),
            (None, None) => None,
            _ => return Err(config_error("--etcd-certfile and --etcd-keyfile must be given together".into())),
        };
        if self.cafile.is_none() && identity.is_none() {
            return Ok(None);
        }
        let mut tls = TlsOptions::new();
        if let Some(ca) = &self.cafile {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let Some(identity) = identity {
            tls = tls.identity(identity);
        }
        Ok(Some(tls))
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| config_error(format!("cannot read {}: {e}", path.display())))
}

pub(super) fn config_error(message: String) -> StorageError {
    StorageError::Internal(format!("etcd configuration: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_mirror_kube_apiserver() {
        let config = EtcdConfig::new(["http://127.0.0.1:1"]);
        assert_eq!(config.prefix_bytes(), b"/registry");
        assert_eq!(config.compaction_interval, Duration::from_secs(300));
        let trailing = EtcdConfig { prefix: "/registry/".into(), ..config.clone() };
        assert_eq!(trailing.prefix_bytes(), b"/registry");
        let half = EtcdConfig { certfile: Some("/nonexistent".into()), ..config };
        assert!(half.tls().is_err());
    }
}
