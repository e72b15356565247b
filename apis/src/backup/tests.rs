use jiff::Timestamp;

use super::*;
use crate::database::DatabaseType;
use crate::testutil::{admit, undocumented};

fn minimal() -> Value {
    json!({
        "apiVersion": "backup.extend-k8s.io/v1",
        "kind": "TimeseriesDBBackup",
        "metadata": {"name": "nightly", "namespace": "monitoring"},
        "spec": {"database": {"type": "Prometheus", "url": "http://prometheus.monitoring:9090"}},
    })
}

/// A stored object with every field set.
fn full() -> Value {
    let record = |id: &str, samples: u64| {
        json!({
            "id": id, "startTime": "2026-07-01T03:00:00Z", "completionTime": "2026-07-01T03:02:00Z",
            "series": 120, "samples": samples, "bytes": 5_242_880, "destination": "offsite",
            "location": format!("monitoring/nightly/nightly.6f1c0a52-7d0e-4d8f-9a51-1f2e3d4c5b6a.{id}.tsdb"),
            "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        })
    };
    json!({
        "apiVersion": "backup.extend-k8s.io/v1",
        "kind": "TimeseriesDBBackup",
        "metadata": {
            "name": "nightly", "namespace": "monitoring", "uid": "6f1c0a52-7d0e-4d8f-9a51-1f2e3d4c5b6a",
            "resourceVersion": "42", "generation": 3, "creationTimestamp": "2026-06-28T00:00:00Z",
            "labels": {"app": "prometheus"}, "annotations": {"example.com/owner": "sre"},
            "finalizers": ["backup.extend-k8s.io/cleanup"],
        },
        "spec": {
            "database": {"type": "InfluxDB", "url": "https://influx.monitoring:8086", "database": "telegraf", "selector": "{job=\"node\"}"},
            "destination": {"location": "offsite", "path": "nightly"},
            "schedule": "0 3 * * *",
            "timeZone": "Europe/Berlin",
            "retention": {"keepLast": 5},
            "suspend": true,
            "timeout": "1h30m",
            "verify": true,
        },
        "status": {
            "phase": "Succeeded",
            "observedGeneration": 3,
            "conditions": [{"type": "Ready", "status": "True", "reason": "BackupSucceeded", "message": "backup 20260701-030000 done", "lastTransitionTime": "2026-07-01T03:02:00Z"}],
            "lastBackup": record("20260701-030000", 86400),
            "backups": [record("20260701-030000", 86400), record("20260630-030000", 86000)],
            "nextScheduleTime": "2026-07-02T03:00:00Z",
            "message": "kept 2 backups",
            "consecutiveFailures": 0,
            "nextRetryTime": "2026-07-01T03:05:00Z",
        },
    })
}

#[test]
fn defaults_fill_retention_suspend_and_destination() {
    let mut o = minimal();
    let (pruned, errs) = admit(&BackupKind, &mut o);
    assert!(pruned.is_empty() && errs.is_empty(), "{pruned:?} {errs:?}");
    assert_eq!(o["spec"]["retention"], json!({"keepLast": 7}));
    assert_eq!(o["spec"]["suspend"], json!(false));
    assert_eq!(o["spec"]["verify"], json!(false));
    assert_eq!(o["spec"]["destination"], json!({"location": "default", "path": "nightly"}));
    assert!(o["spec"].get("schedule").is_none());

    // Without a name yet (generateName), the path is left to the typed fallback.
    let mut o = minimal();
    o["metadata"] = json!({"generateName": "nightly-", "namespace": "monitoring"});
    admit(&BackupKind, &mut o);
    assert!(o["spec"].get("destination").is_none());
    // A given path and location are kept.
    let mut o = minimal();
    o["spec"]["destination"] = json!({"path": "elsewhere", "location": "offsite"});
    admit(&BackupKind, &mut o);
    assert_eq!(o["spec"]["destination"], json!({"path": "elsewhere", "location": "offsite"}));
    // A location must be a DNS label.
    let mut o = minimal();
    o["spec"]["destination"] = json!({"location": "Off_Site"});
    let (_, errs) = admit(&BackupKind, &mut o);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("spec.destination.location: Invalid value: \"Off_Site\""), "{errs:?}");
}

#[test]
fn pruning_reports_unknown_fields() {
    let mut o = minimal();
    o["spec"]["foo"] = json!(1);
    o["spec"]["database"]["bar"] = json!("x");
    o["status"] = json!({"backups": [{"id": "a", "extra": true}]});
    let (mut pruned, errs) = admit(&BackupKind, &mut o);
    pruned.sort();
    assert_eq!(pruned, ["spec.database.bar", "spec.foo", "status.backups[0].extra"]);
    assert!(errs.is_empty(), "{errs:?}");
}

#[test]
fn schema_errors() {
    let mut o = minimal();
    o["spec"]["retention"] = json!({"keepLast": "string"});
    o["spec"]["database"]["type"] = json!("Mongo");
    o["spec"]["suspend"] = json!("no");
    let (_, mut errs) = admit(&BackupKind, &mut o);
    errs.sort();
    assert_eq!(
        errs,
        [
            "spec.database.type: Unsupported value: \"Mongo\": supported values: \"Prometheus\", \"VictoriaMetrics\", \"InfluxDB\"",
            "spec.retention.keepLast: Invalid value: \"string\": spec.retention.keepLast in body must be of type integer: \"string\"",
            "spec.suspend: Invalid value: \"string\": spec.suspend in body must be of type boolean: \"string\"",
        ]
    );

    let mut o = minimal();
    o["spec"]["retention"] = json!({"keepLast": 0});
    o["spec"]["database"] = json!({"url": "http://p:9090"});
    let (_, mut errs) = admit(&BackupKind, &mut o);
    errs.sort();
    assert_eq!(
        errs,
        [
            "spec.database.type: Required value",
            "spec.retention.keepLast: Invalid value: 0: spec.retention.keepLast in body should be greater than or equal to 1",
        ]
    );

    let mut o = minimal();
    o["status"] = json!({"phase": "Done", "conditions": [{"type": "Ready", "status": "True"}, {"type": "Ready", "status": "False"}]});
    let (_, mut errs) = admit(&BackupKind, &mut o);
    errs.sort();
    assert_eq!(
        errs,
        [
            "status.conditions[1]: Duplicate value: {\"type\":\"Ready\"}",
            "status.phase: Unsupported value: \"Done\": supported values: \"Pending\", \"Running\", \"Succeeded\", \"Failed\"",
        ]
    );
}

#[test]
fn rules_beyond_the_schema() {
    let mut o = minimal();
    o["spec"]["database"] = json!({"type": "InfluxDB", "url": "ftp://x"});
    o["spec"]["schedule"] = json!("0 3 * *");
    o["spec"]["destination"] = json!({"path": "/var/backups/../etc"});
    let (_, errs) = admit(&BackupKind, &mut o);
    assert_eq!(errs.len(), 5, "{errs:?}");
    assert_eq!(errs[0], "spec.database.url: Invalid value: \"ftp://x\": must be an http or https URL");
    assert_eq!(errs[1], "spec.database.database: Required value: required when type is InfluxDB");
    assert!(
        errs[2].starts_with(
            "spec.schedule: Invalid value: \"0 3 * *\": must be a cron expression such as \"0 3 * * *\" (minute hour \
             day-of-month month day-of-week, optionally preceded by seconds) or @hourly, @daily, @weekly, @monthly or \
             @yearly: Invalid pattern: "
        ),
        "{}",
        errs[2]
    );
    assert_eq!(errs[3], "spec.destination.path: Invalid value: \"/var/backups/../etc\": must be a relative path");
    assert_eq!(errs[4], "spec.destination.path: Invalid value: \"/var/backups/../etc\": must not contain '..'");

    let mut o = minimal();
    o["spec"]["destination"] = json!({"path": ""});
    o["spec"]["schedule"] = json!("61 * * * *");
    let (_, errs) = admit(&BackupKind, &mut o);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].starts_with("spec.schedule: Invalid value: \"61 * * * *\": must be a cron expression"));
    assert_eq!(errs[1], "spec.destination.path: Invalid value: \"\": must not be empty");
}

#[test]
fn schedules() {
    for ok in ["0 3 * * *", "*/15 * * * *", "0 0 3 * * *", "@daily", "0 3 * * MON-FRI"] {
        assert!(crate::schedule::parse_schedule(ok).is_ok(), "{ok}");
    }
    for bad in ["", "0 3 * *", "61 * * * *", "every day", "0 25 * * *"] {
        assert!(crate::schedule::parse_schedule(bad).is_err(), "{bad}");
    }
}

#[test]
fn full_object_is_valid_and_round_trips() {
    let mut o = full();
    let (pruned, errs) = admit(&BackupKind, &mut o);
    assert!(pruned.is_empty() && errs.is_empty(), "{pruned:?} {errs:?}");
    assert_eq!(o, full(), "defaulting changes nothing in a complete object");

    let typed: TimeseriesDBBackup = serde_json::from_value(full()).expect("decodes");
    assert_eq!(typed.spec.database.endpoint.r#type, DatabaseType::InfluxDB);
    assert_eq!(typed.spec.retention.keep_last, 5);
    assert_eq!(typed.status.as_ref().and_then(|s| s.phase), Some(Phase::Succeeded));
    assert_eq!(serde_json::to_value(&typed).expect("encodes"), full());
}

#[test]
fn typed_defaults_match_the_schema() {
    let typed: TimeseriesDBBackup = serde_json::from_value(minimal()).expect("decodes");
    assert_eq!(typed.spec.retention.keep_last, DEFAULT_KEEP_LAST);
    assert!(!typed.spec.suspend);
    assert_eq!(typed.destination_path(), "nightly");
    assert_eq!(typed.destination_location(), "default");
    let mut defaulted = minimal();
    admit(&BackupKind, &mut defaulted);
    let spec = TimeseriesDBBackupSpec {
        destination: Some(Destination { location: Some("default".into()), path: Some("nightly".to_string()) }),
        ..typed.spec
    };
    let built = TimeseriesDBBackup::new("monitoring", "nightly", spec);
    assert_eq!(serde_json::to_value(&built).expect("encodes"), defaulted);
}

#[test]
fn kube_resource_traits() {
    use k8s_openapi::{ListableResource, Resource};
    assert_eq!(TimeseriesDBBackup::API_VERSION, "backup.extend-k8s.io/v1");
    assert_eq!(TimeseriesDBBackup::KIND, "TimeseriesDBBackup");
    assert_eq!(TimeseriesDBBackup::URL_PATH_SEGMENT, "timeseriesdbbackups");
    assert_eq!(TimeseriesDBBackup::LIST_KIND, "TimeseriesDBBackupList");
    assert_eq!(BackupKind.resource().qualified_resource(), "timeseriesdbbackups.backup.extend-k8s.io");
}

#[test]
fn printer_columns_on_a_sample() {
    let now: Timestamp = "2026-07-01T06:02:00Z".parse().expect("time");
    let o = full();
    let cols = BackupKind.printer_columns();
    let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
    assert_eq!(names, ["Name", "Database", "Phase", "Last Backup", "Samples", "Size", "Age", "URL", "Schedule"]);
    let cells: Vec<Value> = cols.iter().map(|c| c.cell(&o, now)).collect();
    assert_eq!(
        cells,
        [
            json!("nightly"),
            json!("InfluxDB"),
            json!("Succeeded"),
            json!("3h"),
            json!(86400),
            json!("5.0MiB"),
            json!("3d6h"),
            json!("https://influx.monitoring:8086"),
            json!("0 3 * * *"),
        ]
    );
    let wide: Vec<&str> = cols.iter().filter(|c| c.priority == 1).map(|c| c.name).collect();
    assert_eq!(wide, ["URL", "Schedule"]);
    assert_eq!(cols[0].format, "name");
    assert_eq!(cols[3].column_type, ColumnType::Date);
}

#[test]
fn selectable_fields_point_into_the_object() {
    let o = full();
    let fields: Vec<(&str, Option<&Value>)> =
        BackupKind.selectable_fields().iter().map(|f| (f.name, o.pointer(f.pointer))).collect();
    assert_eq!(fields, [("spec.database.type", Some(&json!("InfluxDB"))), ("status.phase", Some(&json!("Succeeded")))]);
}

#[test]
fn schema_is_documented() {
    assert_eq!(undocumented(&BackupKind.schema(), ""), Vec::<String>::new());
    let schema = BackupKind.schema();
    assert_eq!(schema["properties"]["status"]["properties"]["backups"]["x-kubernetes-list-type"], "atomic");
    assert_eq!(schema["properties"]["spec"]["required"], json!(["database"]));
}

#[test]
fn paths_are_normalised_or_refused_with_the_reason() {
    for (given, stored) in [("./x", "x"), ("a//b/", "a/b"), ("./team/./nightly/", "team/nightly"), ("x", "x")] {
        let mut o = minimal();
        o["spec"]["destination"] = json!({"path": given});
        let (_, errs) = admit(&BackupKind, &mut o);
        assert!(errs.is_empty(), "{given}: {errs:?}");
        assert_eq!(o["spec"]["destination"]["path"], stored, "{given}");
    }
    for (given, reason) in [
        ("./", "spec.destination.path: Invalid value: \"\": must not be empty"),
        ("/abs/x", "spec.destination.path: Invalid value: \"/abs/x\": must be a relative path"),
        ("a/../b", "spec.destination.path: Invalid value: \"a/../b\": must not contain '..'"),
        (
            "a\u{1b}b",
            "spec.destination.path: Invalid value: \"a\\u{1b}b\": must not contain control characters or backslashes",
        ),
    ] {
        let mut o = minimal();
        o["spec"]["destination"] = json!({"path": given});
        let (_, errs) = admit(&BackupKind, &mut o);
        assert_eq!(errs, [reason], "{given}");
    }
    let long = format!("a/{}", "x".repeat(256));
    let mut o = minimal();
    o["spec"]["destination"] = json!({"path": long});
    let (_, errs) = admit(&BackupKind, &mut o);
    assert!(errs[0].ends_with("each segment must be at most 255 bytes"), "{errs:?}");
    // A stored object from before normalisation is read normalised.
    let mut typed: TimeseriesDBBackup = serde_json::from_value(minimal()).expect("decodes");
    typed.spec.destination = Some(Destination { location: None, path: Some("./x//y".into()) });
    assert_eq!(typed.destination_path(), "x/y");
}

#[test]
fn schedules_that_never_fire_zones_and_timeouts() {
    let mut o = minimal();
    o["spec"]["schedule"] = json!("0 0 30 2 *");
    o["spec"]["timeout"] = json!("0s");
    let (_, errs) = admit(&BackupKind, &mut o);
    assert_eq!(
        errs,
        [
            "spec.schedule: Invalid value: \"0 0 30 2 *\": never fires: no date matches it (e.g. the 30th of February) or its years are past",
            "spec.timeout: Invalid value: \"0s\": must be positive",
        ]
    );
    let mut o = minimal();
    o["spec"]["schedule"] = json!("CRON_TZ=Asia/Tokyo 0 3 * * *");
    o["spec"]["timeout"] = json!("1 day");
    let (_, errs) = admit(&BackupKind, &mut o);
    assert_eq!(
        errs,
        [
            "spec.schedule: Invalid value: \"CRON_TZ=Asia/Tokyo 0 3 * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            "spec.timeout: Invalid value: \"1 day\": must be a duration such as \"90s\", \"30m\" or \"1h30m\" (units ns, us, ms, s, m, h)",
        ]
    );
    let mut o = minimal();
    o["spec"]["schedule"] = json!("0 3 * * *");
    o["spec"]["timeZone"] = json!("Asia/Tokyo");
    o["spec"]["timeout"] = json!("45m");
    let (_, errs) = admit(&BackupKind, &mut o);
    assert!(errs.is_empty(), "{errs:?}");
    // `kubectl explain tsdbb.spec.timeZone` says what absent means.
    let schema = BackupKind.schema();
    let doc = schema.pointer("/properties/spec/properties/timeZone/description").and_then(Value::as_str).unwrap_or("");
    assert!(doc.contains("Defaults to UTC"), "{doc}");
    let doc = schema.pointer("/properties/spec/properties/schedule/description").and_then(Value::as_str).unwrap_or("");
    assert!(doc.contains("UTC by default"), "{doc}");
}
