//! Command-line flags, named like k8s.io/apiserver's so operators recognise them.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;

/// backup-apiserver: the `backup.extend-k8s.io` aggregated API server.
#[derive(Debug, Clone, Parser)]
#[command(name = "backup-apiserver", version = crate::version::VERSION_LINE)]
pub struct Options {
    /// Run without a cluster: serve on 127.0.0.1 with the embedded store (or etcd, with --etcd-servers), an
    /// admin token, and a kubeconfig written for kubectl.
    #[arg(long)]
    pub standalone: bool,

    /// Directory of the embedded store (one redb file). Standalone default: ./standalone-data. Outside
    /// standalone mode, setting it without --etcd-servers selects the embedded store.
    #[arg(long, env = "BACKUP_APISERVER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Keep the embedded store in memory only (tests; data is lost at exit).
    #[arg(long)]
    pub in_memory: bool,

    /// Where standalone mode writes its kubeconfig.
    #[arg(long, default_value = "standalone.kubeconfig")]
    pub write_kubeconfig: PathBuf,

    /// The HTTPS port (default 443; 8443 in standalone mode). 0 picks a free port.
    #[arg(long)]
    pub secure_port: Option<u16>,

    /// The address to listen on (default 0.0.0.0; 127.0.0.1 in standalone mode).
    #[arg(long)]
    pub bind_address: Option<IpAddr>,

    /// Serving certificate (PEM); without it a self-signed one is generated at start.
    #[arg(long, requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// Serving key (PEM).
    #[arg(long, requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,

    /// Without --tls-cert-file: the directory of the self-signed serving certificate (`apiserver.crt`,
    /// `apiserver.key`), read when there and written when not, so that a restart serves the same certificate.
    /// Without it the certificate is made in memory at each start.
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,

    /// Listen with SO_REUSEPORT, so that another process may bind the same address and port.
    #[arg(long)]
    pub permit_port_sharing: bool,

    /// Origins browsers may call from (comma-separated regular expressions, e.g. `//localhost(:|$)`): their
    /// requests get CORS headers, and their preflight OPTIONS a 204 before authentication. None: CORS off.
    #[arg(long, value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,

    /// The chance (0 to 0.02) that an HTTP/2 request asks its client to reconnect (a GOAWAY once its streams
    /// finish), so that clients behind one load-balanced address spread over the replicas. 0 (the default): never.
    #[arg(long, default_value_t = 0.0)]
    pub goaway_chance: f64,

    /// HTTP/2 streams a client may open at once on one connection (0: the default, 250).
    #[arg(long, default_value_t = 0)]
    pub http2_max_streams_per_connection: u32,

    /// A certificate and key for clients that ask for a given name (SNI): `cert,key` serves the names in the
    /// certificate (its DNS names, and its common name when that is one); `cert,key:*.foo.com,foo.com` serves those
    /// names. Repeat the flag for more; for a name claimed twice the earlier flag wins, an exact name wins over a
    /// wildcard, names given here win over names read from certificates. Other clients get --tls-cert-file's.
    /// Reloaded when the files change.
    #[arg(long, value_parser = crate::tls::settings::parse_named_cert_key)]
    pub tls_sni_cert_key: Vec<crate::tls::settings::NamedCertKey>,

    /// Minimum TLS version: VersionTLS12 (the default) or VersionTLS13. VersionTLS10 and VersionTLS11 are
    /// accepted, as upstream takes them, and TLS 1.2 stays the minimum (they are not implemented).
    #[arg(long, value_parser = crate::tls::settings::parse_tls_version)]
    pub tls_min_version: Option<crate::tls::settings::TlsVersion>,

    /// TLS 1.2 cipher suites, by Go's names (comma-separated; default: every one implemented, all of them AEADs
    /// with ECDHE). TLS 1.3's suites are not configurable, as in Go. Names Go knows and this server does not
    /// implement (CBC, RC4, 3DES, RSA key exchange) are accepted and not offered; an unknown name is an error.
    #[arg(long, value_delimiter = ',', value_parser = crate::tls::settings::parse_cipher_suite)]
    pub tls_cipher_suites: Vec<crate::tls::settings::CipherSuiteName>,

    /// etcd servers to connect to (comma-separated URLs). Without them the embedded store is used.
    #[arg(long, value_delimiter = ',')]
    pub etcd_servers: Vec<String>,

    /// CA bundle to verify etcd's serving certificate.
    #[arg(long)]
    pub etcd_cafile: Option<PathBuf>,

    /// Client certificate for etcd.
    #[arg(long, requires = "etcd_keyfile")]
    pub etcd_certfile: Option<PathBuf>,

    /// Client key for etcd.
    #[arg(long, requires = "etcd_certfile")]
    pub etcd_keyfile: Option<PathBuf>,

    /// The prefix of every key in etcd.
    #[arg(long, default_value = "/registry")]
    pub etcd_prefix: String,

    /// Encrypt objects at rest, in etcd or the embedded store: upstream's EncryptionConfiguration
    /// (`apiserver.config.k8s.io/v1`, YAML or JSON) with the aesgcm, aescbc, secretbox and identity providers,
    /// resources named `timeseriesdbbackups.backup.extend-k8s.io`, `*.backup.extend-k8s.io` or `*.*`. The first
    /// provider's first key writes; the others read. Values are written as kube-apiserver writes them.
    #[arg(long)]
    pub encryption_provider_config: Option<PathBuf>,

    /// Re-read --encryption-provider-config when its contents change (looked at every 5 s; a mounted Secret's
    /// file changes within about a minute of the Secret), so that keys rotate without restarts. A file that does
    /// not load leaves the configuration in force: logged, and counted in
    /// `apiserver_encryption_config_controller_automatic_reloads_total{status="failure"}`.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", requires = "encryption_provider_config")]
    pub encryption_provider_config_automatic_reload: bool,

    /// Serve gets, lists and watches from a watch cache of each resource (one storage watch per resource,
    /// objects in memory); `--watch-cache=false` sends every read to storage and gives each watch its own.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub watch_cache: bool,

    /// How often to compact etcd's history (e.g. 5m, 30s; 0 disables).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub etcd_compaction_interval: std::time::Duration,

    /// How long the storage health check (`/healthz/etcd`, `/readyz/etcd`, `/livez/etcd`) waits for storage.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub etcd_healthcheck_timeout: std::time::Duration,

    /// How often the objects of each resource are counted in storage for `apiserver_storage_objects` (0 disables).
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub etcd_count_metric_poll_period: std::time::Duration,

    /// Static bearer tokens (kube-apiserver's CSV format: token,user,uid,"group1,group2").
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,

    /// Paths anyone may GET without authorization (entries ending in `*` are prefixes).
    #[arg(long, value_delimiter = ',', default_value = "/healthz,/readyz,/livez")]
    pub authorization_always_allow_paths: Vec<String>,

    /// kubeconfig for talking to kube-apiserver (default: the in-cluster service account). Outside standalone mode
    /// the server delegates authentication (TokenReview, front-proxy CA) and authorization (SubjectAccessReview)
    /// to that cluster.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// kubeconfig for TokenReviews and the authentication ConfigMap (default: --kubeconfig).
    #[arg(long)]
    pub authentication_kubeconfig: Option<PathBuf>,

    /// kubeconfig for SubjectAccessReviews (default: --kubeconfig).
    #[arg(long)]
    pub authorization_kubeconfig: Option<PathBuf>,

    /// CA bundle for client certificates (CN = user, O = groups); overrides the ConfigMap's `client-ca-file`.
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,

    /// CA bundle of the front proxy (kube-apiserver's proxy client certificate); overrides the ConfigMap's.
    #[arg(long)]
    pub requestheader_client_ca_file: Option<PathBuf>,

    /// Common names a front-proxy certificate may have (empty: any signed by the front-proxy CA).
    #[arg(long, value_delimiter = ',')]
    pub requestheader_allowed_names: Option<Vec<String>>,

    /// Headers holding the user name (first non-empty wins).
    #[arg(long, value_delimiter = ',')]
    pub requestheader_username_headers: Option<Vec<String>>,

    /// Headers holding the groups.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_group_headers: Option<Vec<String>>,

    /// Header prefixes holding extra attributes.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_extra_headers_prefix: Option<Vec<String>>,

    /// Headers holding the user's UID (first non-empty wins; X-Remote-Uid is upstream's suggestion, which
    /// kube-apiserver publishes in the authentication ConfigMap when it sends it). Default: the ConfigMap's, else
    /// none.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_uid_headers: Option<Vec<String>>,

    /// How long TokenReview results are cached (capped by the token's own `exp`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub authentication_token_webhook_cache_ttl: std::time::Duration,

    /// Do not read the `kube-system/extension-apiserver-authentication` ConfigMap: client and front-proxy CAs
    /// come only from --client-ca-file and --requestheader-client-ca-file.
    #[arg(long)]
    pub authentication_skip_lookup: bool,

    /// Accepted for upstream's deployments: a ConfigMap that cannot be read never stops this server (it starts,
    /// and `/readyz` says which permission is missing).
    #[arg(long)]
    pub authentication_tolerate_lookup_failure: bool,

    /// Audiences sent in TokenReviews (none by default: kube-apiserver's own audiences apply).
    #[arg(long, value_delimiter = ',')]
    pub api_audiences: Vec<String>,

    /// How long an allowing SubjectAccessReview is cached.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub authorization_webhook_cache_authorized_ttl: std::time::Duration,

    /// How long a denying SubjectAccessReview is cached.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub authorization_webhook_cache_unauthorized_ttl: std::time::Duration,

    /// How long a request other than a watch may take before it is answered 504 (a smaller `?timeout=` wins;
    /// 0 disables).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: std::time::Duration,

    /// At most this many read-only requests (watches excepted) at once; more get 429 (0: no limit).
    #[arg(long, default_value_t = 400)]
    pub max_requests_inflight: usize,

    /// At most this many mutating requests at once; more get 429 (0: no limit).
    #[arg(long, default_value_t = 200)]
    pub max_mutating_requests_inflight: usize,

    /// Accepted for upstream's deployments: this server limits requests with the max-in-flight limits whatever
    /// its value (API Priority and Fairness is kube-apiserver's; behind the aggregator it has applied it already).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_priority_and_fairness: bool,

    /// Watches without `timeoutSeconds` end after a random time in [this, twice this) seconds, so that clients
    /// reconnect spread out (and to other replicas).
    #[arg(long, default_value_t = 1800)]
    pub min_request_timeout: u64,

    /// Objects a deletecollection deletes at once.
    #[arg(long, default_value_t = 1)]
    pub delete_collection_workers: usize,

    /// After SIGTERM, how long /readyz fails while requests are still served, so load balancers (and the
    /// aggregator's endpoints) stop sending traffic before the server stops listening.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay_duration: std::time::Duration,

    /// The audit policy (`audit.k8s.io/v1` Policy, YAML or JSON): which requests are audited, at which level.
    /// Without it nothing is audited.
    #[arg(long)]
    pub audit_policy_file: Option<PathBuf>,

    /// Where audit events go, one JSON object per line (`-`: standard output). With --audit-policy-file, this or
    /// --audit-webhook-config-file (or both) is needed.
    #[arg(long, requires = "audit_policy_file")]
    pub audit_log_path: Option<PathBuf>,

    /// Remove rotated audit logs older than this many days (0: keep them).
    #[arg(long, default_value_t = 0)]
    pub audit_log_maxage: u64,

    /// Keep at most this many rotated audit logs (0: all).
    #[arg(long, default_value_t = 0)]
    pub audit_log_maxbackup: usize,

    /// Rotate the audit log when it reaches this many megabytes (0: never).
    #[arg(long, default_value_t = 0)]
    pub audit_log_maxsize: u64,

    /// Gzip the audit log's rotated files (`<name>-<time>.<ext>.gz`).
    #[arg(long)]
    pub audit_log_compress: bool,

    /// The audit log's format: `json` (one event per line; the one implemented, and upstream's default).
    #[arg(long, value_enum, default_value_t = AuditLogFormat::Json)]
    pub audit_log_format: AuditLogFormat,

    /// The API version of the audit log's events: `audit.k8s.io/v1` (the one implemented).
    #[arg(long, value_enum, default_value_t = AuditVersion::V1)]
    pub audit_log_version: AuditVersion,

    /// A kubeconfig naming the audit webhook (its server URL, CA and credentials): audit events are POSTed to it
    /// in batches as `audit.k8s.io/v1` EventLists. Needs --audit-policy-file.
    #[arg(long, requires = "audit_policy_file")]
    pub audit_webhook_config_file: Option<PathBuf>,

    /// How events reach the webhook: `batch` (the default, upstream's too) is the mode implemented; upstream's
    /// `blocking` and `blocking-strict`, which hold every request until the webhook answers, are not.
    #[arg(long, value_enum, default_value_t = AuditWebhookMode::Batch)]
    pub audit_webhook_mode: AuditWebhookMode,

    /// Audit events waiting for the webhook before new ones are dropped.
    #[arg(long, default_value_t = 10_000)]
    pub audit_webhook_batch_buffer_size: usize,

    /// At most this many events in one request to the webhook.
    #[arg(long, default_value_t = 400)]
    pub audit_webhook_batch_max_size: usize,

    /// The longest a batch waits to fill before it is sent.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub audit_webhook_batch_max_wait: std::time::Duration,

    /// Limit the batches sent per second.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub audit_webhook_batch_throttle_enable: bool,

    /// Batches per second, when throttled.
    #[arg(long, default_value_t = 10.0)]
    pub audit_webhook_batch_throttle_qps: f64,

    /// Batches sent at once before the rate applies, when throttled.
    #[arg(long, default_value_t = 15)]
    pub audit_webhook_batch_throttle_burst: u32,

    /// The wait before a failed batch is sent again (growing ×1.5, five tries in all).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub audit_webhook_initial_backoff: std::time::Duration,

    /// The API version of the events sent: `audit.k8s.io/v1` (the one implemented).
    #[arg(long, value_enum, default_value_t = AuditVersion::V1)]
    pub audit_webhook_version: AuditVersion,

    /// Admission plugins to turn off, by kube-apiserver's names (comma-separated): NamespaceLifecycle,
    /// MutatingAdmissionWebhook, ValidatingAdmissionWebhook. Standalone there is no admission at all.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub disable_admission_plugins: Vec<crate::admission::Plugin>,

    /// Admission plugins to turn on (comma-separated); all three are on by default, so this only checks the
    /// names, as upstream does, and that none is also turned off.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub enable_admission_plugins: Vec<crate::admission::Plugin>,

    /// Log verbosity, klog's levels: 0–2 info, 3–4 debug (a line per request), 5 and more trace. `RUST_LOG`,
    /// when set, wins; `PUT /debug/flags/v` changes it at run time.
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u32,

    /// Serve upstream's debug endpoints: here `/debug/flags/v` (there is no Go profiler to serve).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub profiling: bool,

    /// Accepted for upstream's deployments; there is no lock profiling in this server.
    #[arg(long)]
    pub contention_profiling: bool,

    /// Log lines as `text` (no colours unless stderr is a terminal) or `json` (one object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Feature gates, as kube-apiserver takes them (`Name=true|false`, comma-separated). The one there is:
    /// APIResponseCompression (default true), gzip-encoded API answers over 128 KiB for clients that ask (the
    /// OpenAPI document is compressed either way, as upstream's).
    #[arg(long, value_delimiter = ',', value_parser = parse_feature_gate)]
    pub feature_gates: Vec<FeatureGate>,
}

/// One `--feature-gates` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureGate {
    /// `APIResponseCompression=<bool>`.
    ApiResponseCompression(bool),
}

/// `Name=<bool>` with Go's `strconv.ParseBool` spellings; an unknown name is an error, as upstream's.
pub fn parse_feature_gate(s: &str) -> Result<FeatureGate, String> {
    let (name, value) = s.split_once('=').ok_or_else(|| format!("missing bool value for {}", s.trim()))?;
    let (name, value) = (name.trim(), value.trim());
    let on = match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
        "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
        _ => return Err(format!("invalid value of {name}={value}: not a bool")),
    };
    match name {
        "APIResponseCompression" => Ok(FeatureGate::ApiResponseCompression(on)),
        _ => Err(format!("unrecognized feature gate: {name}")),
    }
}

/// `--audit-webhook-mode`: the one implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditWebhookMode {
    Batch,
}

/// `--audit-log-format`: the one implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditLogFormat {
    Json,
}

/// `--audit-log-version`, `--audit-webhook-version`: the one implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditVersion {
    #[value(name = "audit.k8s.io/v1")]
    V1,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Options {
    /// A throw-away server: standalone, in memory, on a free loopback port, writing its kubeconfig to `kubeconfig`
    /// (tests, examples).
    pub fn ephemeral(kubeconfig: &std::path::Path) -> Self {
        let mut args: Vec<std::ffi::OsString> =
            ["backup-apiserver", "--standalone", "--in-memory", "--secure-port", "0", "--write-kubeconfig"]
                .map(Into::into)
                .into();
        args.push(kubeconfig.as_os_str().to_owned());
        Self::parse_from(args)
    }

    /// What clap cannot check alone (upstream's `Validate`): a plugin both turned on and off; and what is
    /// accepted without effect, said in the log.
    pub fn validate(&self) -> anyhow::Result<()> {
        let both: Vec<_> =
            self.enable_admission_plugins.iter().filter(|p| self.disable_admission_plugins.contains(p)).collect();
        if !both.is_empty() {
            anyhow::bail!("{both:?} in enable-admission-plugins and disable-admission-plugins overlapped");
        }
        if !(0.0..=crate::filters::goaway::MAX_CHANCE).contains(&self.goaway_chance) {
            anyhow::bail!("--goaway-chance can not be less than 0 or greater than 0.02");
        }
        if self.contention_profiling {
            tracing::warn!("--contention-profiling: this server has no lock profiling; the flag has no effect");
        }
        Ok(())
    }

    /// The protocol versions and cipher suites to offer.
    pub fn tls_settings(&self) -> crate::tls::TlsSettings {
        crate::tls::TlsSettings { min_version: self.tls_min_version, cipher_suites: self.tls_cipher_suites.clone() }
    }

    /// Whether API answers may be gzip-encoded: `--feature-gates=APIResponseCompression=false` turns it off (the
    /// last setting wins).
    pub fn api_response_compression(&self) -> bool {
        let mut settings = self.feature_gates.iter().rev().map(|gate| match gate {
            FeatureGate::ApiResponseCompression(on) => *on,
        });
        settings.next().unwrap_or(true)
    }
}

/// Parse `90s`, `5m`, `1h`, `1h30m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(n));
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        num.clear();
        total += n * match unit.as_str() {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("invalid duration unit {unit:?} in {s:?}")),
        };
    }
    if !num.is_empty() {
        return Err(format!("missing unit in duration {s:?}"));
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn watch_cache_flag() {
        let parse = |extra: &[&str]| Options::parse_from([&["backup-apiserver"], extra].concat()).watch_cache;
        assert!(parse(&[]));
        assert!(parse(&["--watch-cache"]));
        assert!(!parse(&["--watch-cache=false"]));
        assert!(parse(&["--watch-cache=true"]));
    }

    #[test]
    fn feature_gates() {
        let parse = |extra: &[&str]| Options::try_parse_from([&["backup-apiserver"], extra].concat());
        assert!(parse(&[]).unwrap().api_response_compression());
        assert!(!parse(&["--feature-gates=APIResponseCompression=false"]).unwrap().api_response_compression());
        let last_wins = ["--feature-gates", "APIResponseCompression=false,APIResponseCompression=true"];
        assert!(parse(&last_wins).unwrap().api_response_compression());
        for wrong in ["Foo=true", "APIResponseCompression", "APIResponseCompression=maybe"] {
            let e = parse(&["--feature-gates", wrong]).unwrap_err().to_string();
            assert!(e.contains("unrecognized feature gate: Foo") || e.contains("bool"), "{wrong}: {e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5x").is_err());
    }
}
