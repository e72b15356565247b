//! A real S3-compatible server for tests: `s3s-fs` (crates.io; `hack/test.sh` installs [`S3S_FS_VERSION`] into
//! `target/s3s/<version>/`) on a free loopback port with a temporary directory, checking SigV4 signatures with its
//! own access key and secret.
//!
//! Tests → harness → **S3 server (this file)**.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{Process, free_port};
use crate::destination::locations::{EncryptionSpec, LocationSpec, S3Spec};

/// The bucket every test server has.
pub const BUCKET: &str = "tsdb-backups";
pub const ACCESS_KEY: &str = "AKIATESTBACKUPCONTROLLER";
pub const SECRET_KEY: &str = "test-secret-key-for-sigv4-only";
/// The `s3s-fs` release the tests run (as `S3S_FS_VERSION` in `hack/test.sh`).
pub const S3S_FS_VERSION: &str = "0.14.1";

pub struct S3Server {
    pub url: String,
    /// Where the server keeps objects: `<root>/<bucket>/<key>`.
    pub root: PathBuf,
    /// Files holding the credentials (as a location names them).
    pub access_key_file: PathBuf,
    pub secret_key_file: PathBuf,
    _tmp: tempfile::TempDir,
    process: Process,
}

/// Where `hack/test.sh` installs `s3s-fs`, or `S3S_FS` when set.
pub fn s3s_fs() -> PathBuf {
    if let Some(path) = std::env::var_os("S3S_FS") {
        return PathBuf::from(path);
    }
    let root = format!("target/s3s/{S3S_FS_VERSION}");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../{root}/bin/s3s-fs"));
    assert!(
        path.is_file(),
        "{} not found: the S3 tests need s3s-fs; hack/test.sh installs it (cargo install s3s-fs --version \
         {S3S_FS_VERSION} --locked --features binary --root {root}), or set S3S_FS to its path",
        path.display()
    );
    path
}

impl S3Server {
    pub async fn start() -> S3Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().join("data");
        std::fs::create_dir_all(root.join(BUCKET)).expect("creating the bucket");
        let access_key_file = tmp.path().join("access-key");
        let secret_key_file = tmp.path().join("secret-key");
        std::fs::write(&access_key_file, ACCESS_KEY).expect("writing a key file");
        std::fs::write(&secret_key_file, format!("{SECRET_KEY}\n")).expect("writing a key file");
        let port = free_port();
        let args: Vec<String> = [
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            ACCESS_KEY,
            "--secret-key",
            SECRET_KEY,
            &root.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut process = Process::spawn(&s3s_fs(), &args, tmp.path().join("s3s-fs.log"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("s3s-fs exited ({status}):\n{}", process.log_tail());
            }
            assert!(Instant::now() < deadline, "s3s-fs not listening within 30 s:\n{}", process.log_tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        S3Server { url: format!("http://127.0.0.1:{port}"), root, access_key_file, secret_key_file, _tmp: tmp, process }
    }

    /// The server's process id (its CPU time, in the benchmark).
    pub fn pid(&self) -> Option<u32> {
        self.process.child.id()
    }

    /// A location `name` in this server's bucket under `prefix`, credentials from files; encrypted with
    /// `key_file` when given.
    pub fn location(&self, name: &str, prefix: &str, key_file: Option<PathBuf>) -> LocationSpec {
        location(&self.url, &self.access_key_file, &self.secret_key_file, name, prefix, key_file)
    }

    /// The objects in the bucket (keys), as the server stores them; its own bookkeeping files left out.
    pub fn objects(&self) -> Vec<String> {
        let mut out = Vec::new();
        collect(&self.root.join(BUCKET), &self.root.join(BUCKET), &mut out);
        out.sort();
        out
    }
}

/// A location `name` under `prefix` in [`BUCKET`] of the server at `url`, credentials from files.
pub fn location(
    url: &str,
    access_key_file: &std::path::Path,
    secret_key_file: &std::path::Path,
    name: &str,
    prefix: &str,
    key_file: Option<PathBuf>,
) -> LocationSpec {
    LocationSpec {
        name: name.into(),
        local: None,
        s3: Some(S3Spec {
            bucket: BUCKET.into(),
            prefix: prefix.into(),
            endpoint: Some(url.into()),
            region: Some("us-east-1".into()),
            access_key_id_file: Some(access_key_file.into()),
            secret_access_key_file: Some(secret_key_file.into()),
            ..S3Spec::default()
        }),
        encryption: key_file.map(|key_file| EncryptionSpec { key_file, previous_key_files: Vec::new() }),
    }
}

fn collect(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let rel = rel.to_string_lossy().into_owned();
            if !rel.starts_with('.') && !rel.contains("/.") {
                out.push(rel);
            }
        }
    }
}
