//! backup-controller: takes and restores lossless backups of time-series databases for the `backup.extend-k8s.io`
//! API.
//!
//! The flow, top to bottom: the API server (TimeseriesDBBackup / TimeseriesDBRestore objects, watched with
//! kube-runtime) → [`controller`] (reconcilers: schedule, retention, status) → [`format`] (the backup file) and
//! [`destination`] (where files live) → [`engine`] (one per database, over [`http`]) → the database.

pub mod allocator;
pub mod client;
pub mod controller;
pub mod destination;
pub mod engine;
pub mod format;
pub mod http;
pub mod plugin;

#[cfg(feature = "testing")]
pub mod testing;
