//! A second S3-compatible server for tests: `moto_server` (Python's moto in server mode, preinstalled beside the
//! Debian packages) on a free loopback port, for what `s3s-fs` does not implement: listing incomplete multipart
//! uploads. Moto does not check signatures; the SigV4 tests use [`super::s3::S3Server`].
//!
//! Tests → harness → **S3 server that lists uploads (this file)**.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::s3::BUCKET;
use super::{Process, free_port};
use crate::destination::locations::LocationSpec;

pub struct Moto {
    pub url: String,
    access_key_file: PathBuf,
    secret_key_file: PathBuf,
    _tmp: tempfile::TempDir,
    _process: Process,
}

impl Moto {
    /// Starts `moto_server` with [`BUCKET`] created.
    pub async fn start() -> Moto {
        let binary = super::on_path("moto_server")
            .unwrap_or_else(|| panic!("`moto_server` not found on PATH: pip install 'moto[server]'"));
        let tmp = tempfile::tempdir().expect("temp dir");
        let (access_key_file, secret_key_file) = (tmp.path().join("access-key"), tmp.path().join("secret-key"));
        std::fs::write(&access_key_file, "testing").expect("writing a key file");
        std::fs::write(&secret_key_file, "testing").expect("writing a key file");
        let port = free_port();
        let args = ["-H".to_string(), "127.0.0.1".to_string(), "-p".to_string(), port.to_string()];
        let mut process = Process::spawn(&binary, &args, tmp.path().join("moto.log"));
        let url = format!("http://127.0.0.1:{port}");
        let http = super::http();
        let deadline = Instant::now() + Duration::from_secs(60);
        // Ready once the bucket is created (moto checks no signature).
        let bucket = format!("{url}/{BUCKET}");
        while http.send(http::Method::PUT, &bucket, &[], Bytes::new()).await.is_err() {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("moto_server exited ({status}):\n{}", process.log_tail());
            }
            assert!(Instant::now() < deadline, "moto_server not ready within 60 s:\n{}", process.log_tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Moto { url, access_key_file, secret_key_file, _tmp: tmp, _process: process }
    }

    /// A location `name` in this server's bucket under `prefix`.
    pub fn location(&self, name: &str, prefix: &str) -> LocationSpec {
        super::s3::location(&self.url, &self.access_key_file, &self.secret_key_file, name, prefix, None)
    }
}
