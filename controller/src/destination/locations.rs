//! Named locations, defined by the operator (`--locations FILE`, a Secret in a deployment; `--backup-dir DIR` is
//! a shortcut for one local location named `default`): where backups go, and with which encryption key.
//!
//! API → controller → **locations (this file)** → destination (local directory or object store).
//!
//! ```yaml
//! locations:
//! - name: default
//!   local: {path: /backups}
//! - name: offsite
//!   s3: {bucket: tsdb-backups, prefix: cluster-a, endpoint: "https://s3.example.com", region: eu-west-1}
//!   encryption: {keyFile: /etc/backup-keys/offsite.key, previousKeyFiles: []}
//! ```
//!
//! S3 credentials come from the standard `AWS_*` environment variables, or from files named in the location
//! (`accessKeyIdFile`, `secretAccessKeyFile`, `sessionTokenFile`). Requests go through the controller's own HTTP
//! client (hyper over rustls, the system's roots), signed with SigV4 by `object_store`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::client::{HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse};
use object_store::client::{HttpResponseBody, HttpService};
use object_store::{ClientOptions, RetryConfig};
use serde::Deserialize;

use super::Destination;
use super::local::LocalDir;
use super::object::ObjectDir;
use super::uploads::Uploads;
use crate::format::crypt::Keys;
use crate::http::transport::Transport;

/// The name of the location `--backup-dir` defines, and that backups use without `spec.destination.location`.
pub const DEFAULT: &str = backup_apis::backup::DEFAULT_LOCATION;

/// The locations file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationsFile {
    pub locations: Vec<LocationSpec>,
}

/// One location of the file: a name, one store, optional encryption.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocationSpec {
    pub name: String,
    #[serde(default)]
    pub local: Option<LocalSpec>,
    #[serde(default)]
    pub s3: Option<S3Spec>,
    #[serde(default)]
    pub encryption: Option<EncryptionSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalSpec {
    pub path: PathBuf,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Spec {
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    /// `https://…`, or `http://…` (allowed because given explicitly); AWS's regional endpoint when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// Virtual-hosted-style requests (`bucket.host`); path style (`host/bucket`) by default, which every
    /// S3-compatible server takes.
    #[serde(default)]
    pub virtual_hosted_style: bool,
    #[serde(default)]
    pub access_key_id_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    #[serde(default)]
    pub session_token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncryptionSpec {
    /// 32 bytes (`head -c 32 /dev/urandom > key`): new backups are encrypted with it.
    pub key_file: PathBuf,
    /// Keys of earlier backups, still read.
    #[serde(default)]
    pub previous_key_files: Vec<PathBuf>,
}

/// A location ready for use.
#[derive(Clone)]
pub struct Location {
    pub name: String,
    pub store: Arc<dyn Destination>,
    /// Keys when backups are encrypted here.
    pub keys: Option<Arc<Keys>>,
}

/// The operator's locations, by name.
#[derive(Clone, Default)]
pub struct Locations {
    by_name: BTreeMap<String, Location>,
}

impl Locations {
    /// One local location, `default`, in `dir` (what `--backup-dir` means).
    pub fn local(dir: impl Into<PathBuf>) -> Self {
        Self::default().with_default_local(dir)
    }

    /// Adds a local location `default` in `dir` unless one is defined (what `--backup-dir` does beside
    /// `--locations`).
    pub fn with_default_local(self, dir: impl Into<PathBuf>) -> Self {
        match self.by_name.contains_key(DEFAULT) {
            true => self,
            false => self.with(Location { name: DEFAULT.into(), store: Arc::new(LocalDir::new(dir)), keys: None }),
        }
    }

    /// Adds (or replaces) a location.
    pub fn with(mut self, location: Location) -> Self {
        self.by_name.insert(location.name.clone(), location);
        self
    }

    /// Reads a locations file; `transport` carries the object stores' requests.
    pub fn load(file: &Path, transport: Arc<dyn Transport>, timeout: Duration) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let parsed: LocationsFile =
            serde_saphyr::from_str(&text).with_context(|| format!("{}: not a locations file", file.display()))?;
        Self::from_file(parsed, transport, timeout).with_context(|| format!("{}", file.display()))
    }

    pub fn from_file(file: LocationsFile, transport: Arc<dyn Transport>, timeout: Duration) -> anyhow::Result<Self> {
        let mut out = Self::default();
        for spec in file.locations {
            let name = spec.name.clone();
            let problems = backup_apis::objectmeta::is_dns1123_label(&name);
            if !problems.is_empty() {
                bail!("location name {name:?}: {}", problems.join("; "));
            }
            if out.by_name.contains_key(&name) {
                bail!("location {name:?} is defined twice");
            }
            let store: Arc<dyn Destination> = match (&spec.local, &spec.s3) {
                (Some(local), None) => Arc::new(LocalDir::new(&local.path)),
                (None, Some(s3)) => {
                    Arc::new(s3_store(s3, transport.clone(), timeout).with_context(|| format!("location {name:?}"))?)
                }
                _ => bail!("location {name:?} must have exactly one of local and s3"),
            };
            let keys = match &spec.encryption {
                Some(e) => Some(Arc::new(
                    Keys::load(&e.key_file, &e.previous_key_files).with_context(|| format!("location {name:?}"))?,
                )),
                None => None,
            };
            out = out.with(Location { name, store, keys });
        }
        Ok(out)
    }

    /// The location `name`, or a message naming the ones there are.
    pub fn get(&self, name: &str) -> Result<&Location, String> {
        self.by_name.get(name).ok_or_else(|| {
            let names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
            format!(
                "the controller has no location {name:?} (spec.destination.location); it has {}",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            )
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

/// An S3 (or S3-compatible) bucket as a [`Destination`].
pub fn s3_store(spec: &S3Spec, transport: Arc<dyn Transport>, timeout: Duration) -> anyhow::Result<ObjectDir> {
    let read = |file: &Option<PathBuf>| -> anyhow::Result<Option<String>> {
        match file {
            Some(f) => Ok(Some(
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?.trim().to_string(),
            )),
            None => Ok(None),
        }
    };
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&spec.bucket)
        .with_virtual_hosted_style_request(spec.virtual_hosted_style)
        .with_http_connector(HyperConnector { transport: transport.clone(), timeout })
        .with_retry(RetryConfig { max_retries: 5, ..RetryConfig::default() })
        .with_client_options(ClientOptions::new().with_timeout(timeout));
    if let Some(endpoint) = &spec.endpoint {
        if !endpoint.starts_with("https://") && !endpoint.starts_with("http://") {
            bail!("s3.endpoint {endpoint:?} must start with https:// or http://");
        }
        builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(region) = &spec.region {
        builder = builder.with_region(region);
    }
    if let Some(key) = read(&spec.access_key_id_file)? {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = read(&spec.secret_access_key_file)? {
        builder = builder.with_secret_access_key(secret);
    }
    if let Some(token) = read(&spec.session_token_file)? {
        builder = builder.with_token(token);
    }
    // The bucket's URL as the store computes it (without an endpoint: AWS's regional one).
    let config = |key| builder.get_config_value(&key).filter(|v| !v.is_empty());
    let region = config(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
    let endpoint = config(AmazonS3ConfigKey::Endpoint);
    // The payload is signed only where the connection is not TLS, as the AWS SDKs (botocore, aws-sdk-go-v2) do:
    // TLS already protects it, and SigV4's payload hash would be a second SHA-256 of every byte here (the backup
    // file's own is the first) and a third on the server, which checks it.
    let unsigned_payload = !signs_payload(endpoint.as_deref());
    let bucket_url = match (endpoint, spec.virtual_hosted_style) {
        (Some(endpoint), true) => endpoint,
        (Some(endpoint), false) => format!("{}/{}", endpoint.trim_end_matches('/'), spec.bucket),
        (None, true) => format!("https://{}.s3.{region}.amazonaws.com", spec.bucket),
        (None, false) => format!("https://s3.{region}.amazonaws.com/{}", spec.bucket),
    };
    builder = builder.with_unsigned_payload(unsigned_payload);
    let store = builder.build().context("configuring S3")?;
    let uploads = Uploads::new(transport, timeout, store.credentials().clone(), bucket_url, region);
    Ok(ObjectDir::new(Arc::new(store), &spec.prefix).with_uploads(uploads))
}

/// Whether uploads to `endpoint` (AWS's, over HTTPS, when `None`) carry SigV4's payload hash: only over plain HTTP.
fn signs_payload(endpoint: Option<&str>) -> bool {
    endpoint.and_then(|e| e.get(..7)).is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
}

/// `object_store`'s HTTP requests over our [`Transport`] (one hyper, one rustls in the binary).
#[derive(Clone)]
struct HyperConnector {
    transport: Arc<dyn Transport>,
    /// For the response head.
    timeout: Duration,
}

impl std::fmt::Debug for HyperConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HyperConnector").field("timeout", &self.timeout).finish()
    }
}

impl HttpConnector for HyperConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(self.clone()))
    }
}

#[async_trait]
impl HttpService for HyperConnector {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = req.into_parts();
        let body: Bytes = body.collect().await.map_err(|e| HttpError::new(HttpErrorKind::Request, e))?.to_bytes();
        let req = http::Request::from_parts(parts, Full::new(body));
        let response = match tokio::time::timeout(self.timeout, self.transport.send(req)).await {
            Err(elapsed) => return Err(HttpError::new(HttpErrorKind::Timeout, elapsed)),
            Ok(Err(e)) => return Err(HttpError::new(HttpErrorKind::Request, AnyError(e))),
            Ok(Ok(response)) => response,
        };
        let (parts, body) = response.into_parts();
        let body = body.map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e));
        Ok(http::Response::from_parts(parts, HttpResponseBody::new(body)))
    }
}

/// An `anyhow::Error` as a `std::error::Error`.
#[derive(Debug)]
struct AnyError(anyhow::Error);

impl std::fmt::Display for AnyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for AnyError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::transport::Connector;

    fn parse(yaml: &str) -> anyhow::Result<Locations> {
        let file: LocationsFile = serde_saphyr::from_str(yaml)?;
        let connector = Connector::new(Duration::from_secs(1))?;
        Locations::from_file(file, connector.default_transport(), Duration::from_secs(1))
    }

    #[test]
    fn payload_signed_only_without_tls() {
        assert!(signs_payload(Some("http://127.0.0.1:9000")));
        assert!(signs_payload(Some("HTTP://127.0.0.1:9000")), "AWS_ENDPOINT may spell the scheme in capitals");
        assert!(!signs_payload(Some("http")));
        assert!(!signs_payload(Some("https://s3.example.com")));
        assert!(!signs_payload(None), "AWS's own endpoint is HTTPS");
    }

    #[test]
    fn locations_file() {
        let locations = parse(
            "locations:\n- name: default\n  local: {path: /tmp/x}\n- name: offsite\n  s3: {bucket: b, prefix: \
             cluster-a, endpoint: 'http://127.0.0.1:9', region: eu-west-1}\n",
        )
        .unwrap();
        assert_eq!(locations.names().collect::<Vec<_>>(), ["default", "offsite"]);
        assert!(locations.get("offsite").unwrap().keys.is_none());
        let err = locations.get("elsewhere").err().unwrap();
        assert!(err.contains("no location \"elsewhere\"") && err.contains("default, offsite"), "{err}");
        for (bad, why) in [
            ("locations:\n- name: a\n", "exactly one of local and s3"),
            ("locations:\n- name: A_b\n  local: {path: /x}\n", "location name \"A_b\""),
            ("locations:\n- name: a\n  local: {path: /x}\n- name: a\n  local: {path: /y}\n", "defined twice"),
            ("locations:\n- name: a\n  s3: {bucket: b, endpoint: 'ftp://x'}\n", "must start with https://"),
            (
                "locations:\n- name: a\n  local: {path: /x}\n  encryption: {keyFile: /nonexistent/key}\n",
                "/nonexistent/key",
            ),
        ] {
            let err = format!("{:#}", parse(bad).err().unwrap());
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(parse("locations:\n- name: a\n  local: {path: /x}\n  colour: red\n").is_err());
    }
}
