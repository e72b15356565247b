//! Standalone mode: no cluster. The kubeconfig that points kubectl at this server with the admin token
//! ([`crate::auth::static_token::StaticToken::standalone_admin`]).

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

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
