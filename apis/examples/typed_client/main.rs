//! A typed kube-rs client of `backup.extend-k8s.io`: create, list, patch status and watch a TimeseriesDBBackup.
//!
//! ```sh
//! cargo run -p backup-apis --example typed_client -- [KUBECONFIG] [NAMESPACE]
//! ```
//!
//! The kubeconfig is the first argument, else `$KUBECONFIG`, else kube's usual inference (`~/.kube/config`, or the
//! in-cluster service account). Works the same against a cluster where the APIService is installed
//! (`hack/deploy.sh`) and against the standalone server (`backup-apiserver --standalone` writes
//! `standalone.kubeconfig`). The namespace (default `default`) must exist on a cluster.

mod demo;

use std::path::PathBuf;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let kubeconfig = args.next().map(PathBuf::from).or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from));
    let namespace = args.next().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "default".into());

    let client = demo::client(kubeconfig.as_deref()).await?;
    let outcome = demo::run(client, &namespace, "typed-client-example").await?;
    let demo::Outcome { uid, keep_last, listed, restores, watched_phase, events } = outcome;
    println!(
        "done: uid={uid} keepLast={keep_last} listed={listed} restores={restores} watched phase={watched_phase:?}\n\
         events: {events:?}"
    );
    Ok(())
}
