//! backup-controller: takes and restores lossless backups of time-series databases for the `backup.extend-k8s.io`
//! API.
//!
//! The flow, top to bottom: the API server (TimeseriesDBBackup / TimeseriesDBRestore objects, watched with
//! kube-runtime) → [`controller`] (reconcilers, jobs and their limits, schedule, retention, status; [`secrets`] for
//! credentials) → [`format`] (the backup file) and [`destination`] (where files live); [`restore`] (restores that
//! check what landed) → [`engine`] (one per database, over [`http`]) → the database. [`sanitize`] makes database
//! bytes safe for status and logs.

pub mod allocator;
pub mod client;
pub mod controller;
pub mod destination;
pub mod engine;
pub mod format;
pub mod http;
pub mod plugin;
pub mod progress;
pub mod restore;
pub mod sanitize;
pub mod secrets;

#[cfg(feature = "testing")]
pub mod testing;
