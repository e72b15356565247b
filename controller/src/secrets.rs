//! Where the controller reads the CA bundles and credentials named in a database endpoint: Secrets and ConfigMaps of
//! the object's own namespace, through the Kubernetes API ([`KubeSecrets`], in a cluster), or from files laid out as
//! mounted Secrets ([`SecretsDir`], `--secrets-dir`, for the standalone server, which serves only our group).
//!
//! API → controller → **secrets (this file)** → HTTP → database.
//!
//! Values are never logged, nor put in status or errors: errors name the object and key only.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

/// Which kind of object holds a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Secret,
    ConfigMap,
}

impl Holder {
    fn kind(self) -> &'static str {
        match self {
            Holder::Secret => "Secret",
            Holder::ConfigMap => "ConfigMap",
        }
    }
}

/// Longest value read: the size limit of a Secret or ConfigMap.
const MAX_VALUE: u64 = 1 << 20;

/// Reads one key of a Secret or ConfigMap in `namespace`.
#[async_trait]
pub trait SecretSource: Send + Sync {
    async fn get(&self, holder: Holder, namespace: &str, name: &str, key: &str) -> anyhow::Result<Vec<u8>>;
}

/// Secrets and ConfigMaps through the Kubernetes API (the controller's service account needs `get` on them).
pub struct KubeSecrets {
    client: Client,
}

impl KubeSecrets {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl SecretSource for KubeSecrets {
    async fn get(&self, holder: Holder, namespace: &str, name: &str, key: &str) -> anyhow::Result<Vec<u8>> {
        let what = || format!("{} {namespace}/{name}", holder.kind());
        let value = match holder {
            Holder::Secret => {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
                let secret = api.get_opt(name).await.with_context(|| format!("reading {}", what()))?;
                let secret = secret.with_context(|| format!("{} not found", what()))?;
                secret.data.and_then(|mut d| d.remove(key)).map(|b| b.0)
            }
            Holder::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
                let map = api.get_opt(name).await.with_context(|| format!("reading {}", what()))?;
                let map = map.with_context(|| format!("{} not found", what()))?;
                let text = map.data.and_then(|mut d| d.remove(key)).map(String::into_bytes);
                text.or_else(|| map.binary_data.and_then(|mut d| d.remove(key)).map(|b| b.0))
            }
        };
        value.with_context(|| format!("{} has no key {key:?}", what()))
    }
}

/// Files laid out as mounted Secrets and ConfigMaps: `DIR/<namespace>/secrets/<name>/<key>` and
/// `DIR/<namespace>/configmaps/<name>/<key>`.
pub struct SecretsDir {
    root: PathBuf,
}

impl SecretsDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The file of a key; every part must be one plain path component.
    pub fn path(&self, holder: Holder, namespace: &str, name: &str, key: &str) -> anyhow::Result<PathBuf> {
        let dir = match holder {
            Holder::Secret => "secrets",
            Holder::ConfigMap => "configmaps",
        };
        for part in [namespace, name, key] {
            let mut components = Path::new(part).components();
            if !matches!((components.next(), components.next()), (Some(Component::Normal(_)), None)) {
                bail!("{part:?} is not a valid name");
            }
        }
        Ok(self.root.join(namespace).join(dir).join(name).join(key))
    }
}

#[async_trait]
impl SecretSource for SecretsDir {
    async fn get(&self, holder: Holder, namespace: &str, name: &str, key: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.path(holder, namespace, name, key)?;
        let what = || format!("{} {namespace}/{name} key {key:?} ({})", holder.kind(), path.display());
        let len = tokio::fs::metadata(&path).await.with_context(|| format!("reading {}", what()))?.len();
        if len > MAX_VALUE {
            bail!("{} is larger than {MAX_VALUE} bytes", what());
        }
        tokio::fs::read(&path).await.with_context(|| format!("reading {}", what()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_laid_out_as_mounted_secrets() {
        let root = std::env::temp_dir().join(format!("secrets-dir-test-{}", std::process::id()));
        let dir = root.join("team-a/secrets/db");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("password"), b"s3cret").unwrap();
        let source = SecretsDir::new(&root);
        assert_eq!(source.get(Holder::Secret, "team-a", "db", "password").await.unwrap(), b"s3cret");
        let missing = source.get(Holder::Secret, "team-b", "db", "password").await.unwrap_err();
        assert!(format!("{missing:#}").contains("Secret team-b/db key \"password\""), "{missing:#}");
        assert!(source.get(Holder::ConfigMap, "team-a", "db", "password").await.is_err());
        for (ns, name, key) in [("..", "db", "k"), ("team-a", "a/b", "k"), ("team-a", "db", ""), ("/", "db", "k")] {
            assert!(source.path(Holder::Secret, ns, name, key).is_err(), "{ns} {name} {key}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
