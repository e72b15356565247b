//! The `backup.extend-k8s.io` API group: its kinds and everything the server needs to know about each, with no I/O.
//!
//! filters → endpoints → registry store → **strategy (this crate: defaults, validation, printer columns, schema)** →
//! storage → etcd.
//!
//! Each kind lives in one file and implements [`Kind`]; [`kinds`] is the registration list. The machinery in
//! `backup-apiserver` knows no kind by name: it asks a `&dyn Kind` for its resource names, schema, defaults,
//! validation and columns.
//!
//! # Typed client
//!
//! [`backup::TimeseriesDBBackup`] and [`restore::TimeseriesDBRestore`] implement k8s-openapi's `Resource`,
//! `ListableResource` and `Metadata`, so kube-rs's `Api<T>` (and kube-runtime's watcher and controller) work with
//! them as with built-in kinds — against a cluster where the APIService is installed, or against the standalone
//! server. Depend on this crate, `kube` and `k8s-openapi` (with one version feature, e.g. `v1_34`, in the binary):
//!
//! ```no_run
//! use backup_apis::backup::{BackupSource, Retention, TimeseriesDBBackup, TimeseriesDBBackupSpec};
//! use backup_apis::database::{DatabaseEndpoint, DatabaseType};
//! use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
//!
//! # async fn demo() -> anyhow::Result<()> {
//! let client = kube::Client::try_default().await?; // $KUBECONFIG, ~/.kube/config or in-cluster
//! let backups: Api<TimeseriesDBBackup> = Api::namespaced(client, "default");
//!
//! let spec = TimeseriesDBBackupSpec {
//!     database: BackupSource {
//!         endpoint: DatabaseEndpoint::new(DatabaseType::Prometheus, "http://prometheus.monitoring:9090", None),
//!         selector: None,
//!     },
//!     destination: None,
//!     schedule: Some("0 2 * * *".into()),
//!     time_zone: None,
//!     retention: Retention { keep_last: 7 },
//!     suspend: false,
//!     timeout: None,
//!     verify: false,
//! };
//! backups.create(&PostParams::default(), &TimeseriesDBBackup::new("default", "nightly", spec)).await?;
//! for b in backups.list(&ListParams::default()).await? {
//!     println!("{:?} {:?}", b.metadata.name, b.status.and_then(|s| s.phase));
//! }
//! // Status is a subresource: the controller writes it with patch_status / replace_status.
//! let status = serde_json::json!({"status": {"phase": "Running"}});
//! backups.patch_status("nightly", &PatchParams::default(), &Patch::Merge(&status)).await?;
//! # Ok(())
//! # }
//! ```
//!
//! `examples/typed_client` is the complete version (create, list, status patch, a kube-runtime watcher, delete):
//! `cargo run -p backup-apis --example typed_client -- [KUBECONFIG] [NAMESPACE]`.

#![deny(missing_docs)]

pub mod columns;
pub mod field;
pub mod json;
pub mod kind;
pub mod objectmeta;
pub mod resource;
pub mod schema;

pub mod database;
pub mod duration;
pub mod schedule;
pub mod status;

pub mod backup;
pub mod restore;

#[cfg(test)]
mod testutil;

use std::sync::Arc;

pub use columns::{CellSource, ColumnType, PrinterColumn};
pub use field::{ErrorList, FieldError, FieldErrorType};
pub use kind::{Kind, SelectableField};
pub use resource::ResourceInfo;

/// The API group.
pub const GROUP: &str = "backup.extend-k8s.io";
/// The served (and storage) version.
pub const VERSION: &str = "v1";
/// `group/version`, as in `apiVersion`.
pub const API_VERSION: &str = "backup.extend-k8s.io/v1";

/// Every kind the group serves: adding a kind is one file and one line here.
pub fn kinds() -> Vec<Arc<dyn Kind>> {
    vec![Arc::new(backup::BackupKind), Arc::new(restore::RestoreKind)]
}
