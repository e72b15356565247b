//! The `backup.extend-k8s.io` API group: its kinds and everything the server needs to know about each, with no I/O.
//!
//! HTTP → authn → authz → generic REST → **strategy (this crate: defaults, validation, printer columns, schema)** →
//! storage → etcd.
//!
//! Each kind lives in one file and implements [`Kind`]; [`kinds`] is the registration list. The machinery in
//! `backup-apiserver` knows no kind by name: it asks a `&dyn Kind` for its resource names, schema, defaults,
//! validation and columns.

pub mod columns;
pub mod field;
pub mod kind;
pub mod objectmeta;
pub mod resource;
pub mod schema;

pub mod database;
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
