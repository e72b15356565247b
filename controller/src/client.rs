//! Connecting to the API server: a kubeconfig file when given, otherwise the usual inference (`$KUBECONFIG`,
//! `~/.kube/config`, or the in-cluster service account, which reaches our group through the aggregation layer); a
//! kubeconfig context by name, as `kubectl --context`.
//!
//! **API client (this file)** → controller, and the kubectl plugin.

use std::path::Path;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A client, and the namespace the configuration selects.
pub async fn connect(kubeconfig: Option<&Path>) -> anyhow::Result<(Client, String)> {
    connect_to(kubeconfig, None).await
}

/// A client for `context` of the kubeconfig (its current context when `None`), and the namespace it selects.
pub async fn connect_to(kubeconfig: Option<&Path>, context: Option<&str>) -> anyhow::Result<(Client, String)> {
    let options = KubeConfigOptions { context: context.map(str::to_owned), ..KubeConfigOptions::default() };
    let config = match (kubeconfig, context) {
        (Some(path), _) => {
            let kc = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &options).await?
        }
        (None, Some(_)) => Config::from_kubeconfig(&options).await?,
        (None, None) => Config::infer().await.context("no kubeconfig and not in a cluster")?,
    };
    let namespace = config.default_namespace.clone();
    Ok((Client::try_from(config)?, namespace))
}
