//! Connecting to the API server: a kubeconfig file when given, otherwise the usual inference (`$KUBECONFIG`,
//! `~/.kube/config`, or the in-cluster service account, which reaches our group through the aggregation layer).
//!
//! **API client (this file)** → controller, and the kubectl plugin.

use std::path::Path;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A client, and the namespace the configuration selects.
pub async fn connect(kubeconfig: Option<&Path>) -> anyhow::Result<(Client, String)> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
        }
        None => Config::infer().await.context("no kubeconfig and not in a cluster")?,
    };
    let namespace = config.default_namespace.clone();
    Ok((Client::try_from(config)?, namespace))
}
