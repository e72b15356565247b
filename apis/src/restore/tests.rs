use jiff::Timestamp;

use super::*;
use crate::database::DatabaseType;
use crate::testutil::{admit, undocumented};

fn minimal() -> Value {
    json!({
        "apiVersion": "backup.extend-k8s.io/v1",
        "kind": "TimeseriesDBRestore",
        "metadata": {"name": "restore-1", "namespace": "monitoring"},
        "spec": {
            "backupRef": {"name": "nightly"},
            "target": {"type": "VictoriaMetrics", "url": "http://vm.monitoring:8428"},
        },
    })
}

fn full() -> Value {
    json!({
        "apiVersion": "backup.extend-k8s.io/v1",
        "kind": "TimeseriesDBRestore",
        "metadata": {
            "name": "restore-1", "namespace": "monitoring", "uid": "0b7c6d5e-4f3a-4b2c-8d1e-9f8a7b6c5d4e",
            "resourceVersion": "77", "generation": 1, "creationTimestamp": "2026-07-01T08:00:00Z",
        },
        "spec": {
            "backupRef": {"name": "nightly", "id": "20260701-030000"},
            "target": {
                "type": "InfluxDB", "url": "https://influx-restore:8086", "database": "telegraf",
                "tls": {"ca": {"secret": {"name": "influx-ca", "key": "ca.crt"}}, "serverName": "influx", "insecureSkipVerify": false},
                "auth": {"influxdb": {"username": {"name": "influx", "key": "user"}, "password": {"name": "influx", "key": "password"}}},
            },
            "timeout": "2h",
        },
        "status": {
            "phase": "Running",
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "False", "reason": "Restoring", "message": "writing samples", "lastTransitionTime": "2026-07-01T08:00:05Z"}],
            "startTime": "2026-07-01T08:00:05Z",
            "series": 60,
            "samples": 43200,
            "message": "half way",
            "consecutiveFailures": 2,
            "nextRetryTime": "2026-07-01T08:10:00Z",
        },
    })
}

#[test]
fn minimal_object_is_valid_and_gains_no_defaults() {
    let mut o = minimal();
    let (pruned, errs) = admit(&RestoreKind, &mut o);
    assert!(pruned.is_empty() && errs.is_empty(), "{pruned:?} {errs:?}");
    assert_eq!(o, minimal());
}

#[test]
fn errors() {
    let mut o = minimal();
    o["spec"]["backupRef"] = json!({"name": "Nightly", "id": 7});
    o["spec"]["target"] = json!({"type": "InfluxDB", "url": "ftp://x", "extra": 1});
    let (pruned, errs) = admit(&RestoreKind, &mut o);
    assert_eq!(pruned, ["spec.target.extra"]);
    assert_eq!(
        errs,
        [
            "spec.backupRef.id: Invalid value: \"integer\": spec.backupRef.id in body must be of type string: \"integer\"",
            "spec.target.url: Invalid value: \"ftp://x\": must be an http or https URL",
            "spec.target.database: Required value: required when type is InfluxDB",
            "spec.backupRef.name: Invalid value: \"Nightly\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ]
    );

    let mut o = minimal();
    o["spec"] = json!({"target": {"type": "Graphite"}});
    let (_, mut errs) = admit(&RestoreKind, &mut o);
    errs.sort();
    assert_eq!(
        errs,
        [
            "spec.backupRef: Required value",
            "spec.target.type: Unsupported value: \"Graphite\": supported values: \"Prometheus\", \"VictoriaMetrics\", \"InfluxDB\"",
            "spec.target.url: Required value",
        ]
    );
}

#[test]
fn a_backup_found_in_a_location() {
    let mut o = minimal();
    o["spec"]["backupRef"] = json!({"name": "nightly", "location": "offsite", "path": "team/nightly"});
    let (pruned, errs) = admit(&RestoreKind, &mut o);
    assert!(pruned.is_empty() && errs.is_empty(), "{pruned:?} {errs:?}");
    let typed: TimeseriesDBRestore = serde_json::from_value(o).expect("decodes");
    assert_eq!(typed.spec.backup_ref.location.as_deref(), Some("offsite"));

    let mut o = minimal();
    o["spec"]["backupRef"] = json!({"name": "nightly", "location": "Off_site", "path": "../team-b"});
    let (_, errs) = admit(&RestoreKind, &mut o);
    assert!(errs.iter().any(|e| e.starts_with("spec.backupRef.location: Invalid value: \"Off_site\"")), "{errs:?}");
    assert!(
        errs.iter().any(|e| e == "spec.backupRef.path: Invalid value: \"../team-b\": must not contain '..'"),
        "{errs:?}"
    );
    let mut o = minimal();
    o["spec"]["backupRef"] = json!({"name": "nightly", "path": "nightly"});
    let (_, errs) = admit(&RestoreKind, &mut o);
    assert_eq!(errs, ["spec.backupRef.path: Forbidden: may only be set with spec.backupRef.location"]);
}

#[test]
fn full_object_is_valid_and_round_trips() {
    let mut o = full();
    let (pruned, errs) = admit(&RestoreKind, &mut o);
    assert!(pruned.is_empty() && errs.is_empty(), "{pruned:?} {errs:?}");
    let typed: TimeseriesDBRestore = serde_json::from_value(full()).expect("decodes");
    assert_eq!(typed.spec.target.r#type, DatabaseType::InfluxDB);
    assert_eq!(typed.spec.backup_ref.id.as_deref(), Some("20260701-030000"));
    assert_eq!(serde_json::to_value(&typed).expect("encodes"), full());

    let built = TimeseriesDBRestore::new("monitoring", "restore-1", typed.spec.clone());
    let mut expected = full();
    expected["metadata"] = json!({"name": "restore-1", "namespace": "monitoring"});
    expected.as_object_mut().expect("object").remove("status");
    assert_eq!(serde_json::to_value(&built).expect("encodes"), expected);
}

#[test]
fn printer_columns_and_selectable_fields() {
    let now: Timestamp = "2026-07-01T08:01:00Z".parse().expect("time");
    let o = full();
    let cols = RestoreKind.printer_columns();
    let header: Vec<(&str, Value)> = cols.iter().map(|c| (c.name, c.cell(&o, now))).collect();
    assert_eq!(
        header,
        [
            ("Name", json!("restore-1")),
            ("Backup", json!("nightly")),
            ("Target", json!("https://influx-restore:8086")),
            ("Phase", json!("Running")),
            ("Samples", json!(43200)),
            ("Age", json!("60s")),
        ]
    );
    assert!(cols.iter().all(|c| c.priority == 0));
    let fields: Vec<&str> = RestoreKind.selectable_fields().iter().map(|f| f.pointer).collect();
    assert_eq!(fields, ["/spec/target/type", "/status/phase"]);
}

#[test]
fn resource_and_schema() {
    use k8s_openapi::Resource;
    assert_eq!(TimeseriesDBRestore::URL_PATH_SEGMENT, "timeseriesdbrestores");
    assert_eq!(RestoreKind.resource().short_names, ["tsdbr"]);
    assert_eq!(undocumented(&RestoreKind.schema(), ""), Vec::<String>::new());
    let kinds = crate::kinds();
    let plurals: Vec<&str> = kinds.iter().map(|k| k.resource().plural).collect();
    assert_eq!(plurals, ["timeseriesdbbackups", "timeseriesdbrestores"]);
}
