//! Databases behind TLS and authentication, with the CA bundle and credentials read from Secrets and ConfigMaps of
//! the object's namespace (here through `--secrets-dir`, as with the standalone server): backup and restore round
//! trips for VictoriaMetrics (`-tls`, `-httpAuth.*`), Prometheus (`--web.config.file`: TLS and basic auth) and
//! InfluxDB (`https-enabled`, `auth-enabled`); the certificate checked against the URL's host or `serverName`;
//! wrong credentials failing without the credentials showing in status.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::Duration;

use backup_apis::database::{
    Auth, BearerToken, DatabaseEndpoint, DatabaseType, KeyRef, TlsConfig, UserPassword, ValueSource,
};
use backup_apis::status::Phase;
use backup_controller::testing::dataset::{float_series, influx_lines};
use backup_controller::testing::fake::{Behaviour, FakeDatabase};
use backup_controller::testing::influx::{self, Influx};
use backup_controller::testing::prometheus::{self, Prometheus};
use backup_controller::testing::stack::{Stack, backup_spec, restore_spec};
use backup_controller::testing::tls::TestCerts;
use backup_controller::testing::victoria::{self, Victoria};

const TIMEOUT: Duration = Duration::from_secs(120);

fn key(name: &str, key: &str) -> KeyRef {
    KeyRef { name: name.into(), key: key.into() }
}

/// An endpoint with a CA bundle from `ca` and the credentials of Secret `creds`.
fn secured(r#type: DatabaseType, url: &str, database: Option<&str>, ca: ValueSource, auth: Auth) -> DatabaseEndpoint {
    DatabaseEndpoint {
        tls: Some(TlsConfig { ca: Some(ca), ..Default::default() }),
        auth: Some(auth),
        ..DatabaseEndpoint::new(r#type, url, database.map(Into::into))
    }
}

fn from_secret(name: &str) -> ValueSource {
    ValueSource { secret: Some(key(name, "ca.crt")), config_map: None }
}

fn basic(secret: &str) -> Auth {
    Auth {
        basic: Some(UserPassword { username: key(secret, "username"), password: key(secret, "password") }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn victoria_metrics_with_tls_and_basic_auth() {
    let mut stack = Stack::start().await;
    let certs = TestCerts::local();
    let options = || victoria::Options { tls: Some(&certs), auth: Some(("backup", "vm-s3cret")), ..Default::default() };
    let (source, target) = (Victoria::start_with(options()).await, Victoria::start_with(options()).await);
    assert!(source.url.starts_with("https://"));
    source.load(&float_series(41, 50, 200, false)).await;
    let want = source.export().await;
    stack.put_secret("vm-ca", "ca.crt", certs.ca_pem.as_bytes());
    // A trailing newline, as `kubectl create secret --from-file` often leaves, is not part of the value.
    stack.put_secret("vm-creds", "username", b"backup\n");
    stack.put_secret("vm-creds", "password", b"vm-s3cret\n");
    stack.start_controller();

    let mut spec = backup_spec(DatabaseType::VictoriaMetrics, &source.url, None);
    spec.database.endpoint =
        secured(DatabaseType::VictoriaMetrics, &source.url, None, from_secret("vm-ca"), basic("vm-creds"));
    stack.create_backup("vm", spec).await;
    let done = stack.wait_backup("vm", Phase::Succeeded, TIMEOUT).await;
    assert_eq!(done.status.unwrap().last_backup.unwrap().samples, Some(want.len() as u64));

    let mut restore = restore_spec("vm", DatabaseType::VictoriaMetrics, &target.url, None);
    restore.target = secured(DatabaseType::VictoriaMetrics, &target.url, None, from_secret("vm-ca"), basic("vm-creds"));
    stack.create_restore("vm-restore", restore).await;
    stack.wait_restore("vm-restore", Phase::Succeeded, TIMEOUT).await;
    victoria::assert_same(&target.export().await, &want);

    // Wrong password: a 401, and the password nowhere in the object.
    stack.put_secret("wrong", "username", b"backup");
    stack.put_secret("wrong", "password", b"not-the-password");
    let mut spec = backup_spec(DatabaseType::VictoriaMetrics, &source.url, None);
    spec.database.endpoint =
        secured(DatabaseType::VictoriaMetrics, &source.url, None, from_secret("vm-ca"), basic("wrong"));
    stack.create_backup("denied", spec).await;
    let failed = stack.wait_backup("denied", Phase::Failed, TIMEOUT).await;
    let text = serde_json::to_string(&failed).unwrap();
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains("not-the-password") && !text.contains("vm-s3cret"), "credentials in the object: {text}");

    // A key that is not there: the message names the Secret and key.
    let mut spec = backup_spec(DatabaseType::VictoriaMetrics, &source.url, None);
    spec.database.endpoint =
        secured(DatabaseType::VictoriaMetrics, &source.url, None, from_secret("vm-ca"), basic("absent"));
    stack.create_backup("unknown-secret", spec).await;
    let failed = stack.wait_backup("unknown-secret", Phase::Failed, TIMEOUT).await;
    let message = failed.status.unwrap().message.unwrap();
    assert!(
        message.contains("spec.database.auth.basic.username") && message.contains("Secret default/absent"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_must_name_the_host_or_the_server_name() {
    let mut stack = Stack::start().await;
    // A certificate for tsdb.test only: not for 127.0.0.1, the URL's host.
    let certs = TestCerts::for_names(&["tsdb.test"]);
    let source = Victoria::start_with(victoria::Options { tls: Some(&certs), ..Default::default() }).await;
    stack.put_secret("ca", "ca.crt", certs.ca_pem.as_bytes());
    stack.start_controller();
    let endpoint = |server_name: Option<&str>| DatabaseEndpoint {
        tls: Some(TlsConfig {
            ca: Some(from_secret("ca")),
            server_name: server_name.map(Into::into),
            ..Default::default()
        }),
        ..DatabaseEndpoint::new(DatabaseType::VictoriaMetrics, &source.url, None)
    };
    let mut spec = backup_spec(DatabaseType::VictoriaMetrics, &source.url, None);
    spec.database.endpoint = endpoint(None);
    stack.create_backup("wrong-name", spec.clone()).await;
    let failed = stack.wait_backup("wrong-name", Phase::Failed, TIMEOUT).await;
    let message = failed.status.unwrap().message.unwrap();
    assert!(message.contains("certificate"), "{message}");
    spec.database.endpoint = endpoint(Some("tsdb.test"));
    stack.create_backup("server-name", spec.clone()).await;
    stack.wait_backup("server-name", Phase::Succeeded, TIMEOUT).await;
    // insecureSkipVerify: no check at all.
    spec.database.endpoint.tls = Some(TlsConfig { insecure_skip_verify: true, ..Default::default() });
    stack.create_backup("unverified", spec).await;
    stack.wait_backup("unverified", Phase::Succeeded, TIMEOUT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_with_a_web_config_and_the_ca_in_a_config_map() {
    let mut stack = Stack::start().await;
    let certs = TestCerts::local();
    let options =
        || prometheus::Options { tls: Some(&certs), basic_auth: Some(("admin", "prom-s3cret")), ..Default::default() };
    let (source, target) = (Prometheus::start_with(options()).await, Prometheus::start_with(options()).await);
    source.load(&float_series(42, 40, 200, true)).await;
    let names = ["http_requests_total", "node_cpu_seconds_total", "weird:metric_name", "temperature_celsius"];
    let want = source.export(&names).await;
    stack.put_config_map("prom-ca", "ca.crt", certs.ca_pem.as_bytes());
    stack.put_secret("prom-creds", "username", b"admin");
    stack.put_secret("prom-creds", "password", b"prom-s3cret");
    stack.start_controller();
    let ca = ValueSource { secret: None, config_map: Some(key("prom-ca", "ca.crt")) };

    let mut spec = backup_spec(DatabaseType::Prometheus, &source.url, None);
    spec.database.endpoint = secured(DatabaseType::Prometheus, &source.url, None, ca.clone(), basic("prom-creds"));
    stack.create_backup("prom", spec).await;
    let done = stack.wait_backup("prom", Phase::Succeeded, TIMEOUT).await;
    assert_eq!(done.status.unwrap().last_backup.unwrap().samples, Some(want.len() as u64));
    let mut restore = restore_spec("prom", DatabaseType::Prometheus, &target.url, None);
    restore.target = secured(DatabaseType::Prometheus, &target.url, None, ca, basic("prom-creds"));
    stack.create_restore("prom-restore", restore).await;
    stack.wait_restore("prom-restore", Phase::Succeeded, TIMEOUT).await;
    assert!(target.export(&names).await == want, "restored samples differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_with_https_and_auth() {
    let mut stack = Stack::start().await;
    let certs = TestCerts::local();
    let options = || influx::Options { tls: Some(&certs), admin: Some(("admin", "influx-s3cret")) };
    let (source, target) = (Influx::start_with(options()).await, Influx::start_with(options()).await);
    let (lines, values) = influx_lines(43, 0, 20, 100);
    source.load("metrics", &lines).await;
    let want = source.dump("metrics").await;
    stack.put_secret("influx-ca", "ca.crt", certs.ca_pem.as_bytes());
    stack.put_secret("influx-creds", "username", b"admin");
    stack.put_secret("influx-creds", "password", b"influx-s3cret");
    stack.start_controller();
    let auth = Auth {
        influxdb: Some(UserPassword {
            username: key("influx-creds", "username"),
            password: key("influx-creds", "password"),
        }),
        ..Default::default()
    };

    let mut spec = backup_spec(DatabaseType::InfluxDB, &source.url, Some("metrics"));
    spec.database.endpoint =
        secured(DatabaseType::InfluxDB, &source.url, Some("metrics"), from_secret("influx-ca"), auth.clone());
    stack.create_backup("influx", spec).await;
    let done = stack.wait_backup("influx", Phase::Succeeded, TIMEOUT).await;
    assert_eq!(done.status.unwrap().last_backup.unwrap().samples, Some(values));
    let mut restore = restore_spec("influx", DatabaseType::InfluxDB, &target.url, Some("copy"));
    restore.target = secured(DatabaseType::InfluxDB, &target.url, Some("copy"), from_secret("influx-ca"), auth);
    stack.create_restore("influx-restore", restore).await;
    stack.wait_restore("influx-restore", Phase::Succeeded, TIMEOUT).await;
    let got = target.dump("copy").await;
    assert_eq!(got.len(), want.len());
    for ((name, want_fields, want_points), (_, got_fields, got_points)) in want.iter().zip(&got) {
        assert_eq!(want_fields, got_fields, "field types of {name}");
        assert!(want_points == got_points, "points of {name} differ");
    }

    // Without credentials, InfluxDB refuses, and says so.
    let mut spec = backup_spec(DatabaseType::InfluxDB, &source.url, Some("metrics"));
    spec.database.endpoint.tls = Some(TlsConfig { ca: Some(from_secret("influx-ca")), ..Default::default() });
    stack.create_backup("anonymous", spec).await;
    let failed = stack.wait_backup("anonymous", Phase::Failed, TIMEOUT).await;
    let message = failed.status.unwrap().message.unwrap();
    assert!(message.contains("401") || message.contains("authorization"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_is_sent_as_authorization() {
    let mut stack = Stack::start().await;
    let db = FakeDatabase::start(Behaviour::Answer { status: 200, content_type: "application/json", body: Vec::new() })
        .await;
    stack.put_secret("token", "token", b"t0ken-value\n");
    stack.start_controller();
    let mut spec = backup_spec(DatabaseType::VictoriaMetrics, &db.url, None);
    spec.database.endpoint.auth =
        Some(Auth { bearer: Some(BearerToken { token: key("token", "token") }), ..Default::default() });
    stack.create_backup("bearer", spec).await;
    let done = stack.wait_backup("bearer", Phase::Succeeded, TIMEOUT).await;
    assert!(
        db.last_request().to_ascii_lowercase().contains("authorization: bearer t0ken-value"),
        "{}",
        db.last_request()
    );
    // Nothing came back: a warning condition says so.
    let empty = done.status.unwrap().conditions.unwrap().into_iter().find(|c| c.r#type == "Empty").expect("Empty");
    assert_eq!(empty.reason.as_deref(), Some("NoSamples"));
}
