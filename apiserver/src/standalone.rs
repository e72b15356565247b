//! Standalone mode: no cluster. An admin token and a kubeconfig that points kubectl at this server.

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::Rng;

use crate::auth::authn::{MASTERS_GROUP, UserInfo};

/// The admin identity of standalone mode.
pub fn admin_user() -> UserInfo {
    UserInfo {
        name: "admin".into(),
        uid: "standalone-admin".into(),
        groups: vec![MASTERS_GROUP.into()],
        ..UserInfo::default()
    }
}

/// A random bearer token (32 bytes, hex).
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

/// A kubeconfig for `server` trusting `ca_pem`, authenticating with `token`.
pub fn kubeconfig(server: &str, ca_pem: &str, token: &str) -> String {
    let ca = STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: backup-apiserver
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: backup-apiserver
  context:
    cluster: backup-apiserver
    user: admin
    namespace: default
current-context: backup-apiserver
"
    )
}

/// Write the kubeconfig with owner-only permissions (it holds a token).
pub fn write_kubeconfig(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes()).with_context(|| format!("writing {}", path.display()))
}
