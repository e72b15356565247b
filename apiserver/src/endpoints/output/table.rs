//! Table and PartialObjectMetadata renderings (`as=Table`, `as=PartialObjectMetadata[List]`), from the kind's
//! printer columns. This is what `kubectl get` prints. Lists are written row by row, so a Table of N objects holds
//! one decoded object at a time, not N.

use backup_apis::Kind;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::table_row::{StoredMetadata, StoredRow};
use crate::error::ApiResult;
use crate::registry::object_bytes::decode;
use crate::registry::store::{ListPage, unreadable};
use crate::request::negotiation::{IncludeObject, MetaVersion};

/// `{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{…}}` of an object (its metadata
/// moved, not copied).
pub fn partial_object_metadata(mut obj: Value, version: MetaVersion) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": version.api_version(),
        "metadata": obj.get_mut("metadata").map(Value::take).unwrap_or_else(|| json!({})),
    })
}

/// A `PartialObjectMetadataList`, written item by item from `objs` (each decoded object is dropped once written).
pub fn partial_object_metadata_list(
    objs: impl Iterator<Item = Value>,
    list_meta: Map<String, Value>,
    version: MetaVersion,
) -> Bytes {
    let mut out = partial_object_metadata_list_head(list_meta, version);
    for (i, obj) in objs.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(&mut out, &partial_object_metadata(obj, version));
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

/// The `PartialObjectMetadataList` of a list page: each item's metadata read from its stored bytes where it can be
/// ([`StoredMetadata`]), else from the decoded object; an object that cannot be decoded is left out with a warning.
pub fn partial_object_metadata_list_of_page(page: ListPage, version: MetaVersion, warnings: &mut Vec<String>) -> Bytes {
    let out = partial_object_metadata_list_head(page.list_meta(), version);
    write_items(
        out,
        page,
        warnings,
        |out, stored, rv| StoredMetadata::read(stored, rv).map(|m| m.write_partial_object_metadata(out, version)),
        |out, obj| write_json(out, &partial_object_metadata(obj, version)),
    )
}

/// Writes the items of `page` after `out`'s head, each from its stored bytes by `quick` where it can (`None` when
/// it cannot, having written nothing), else from the decoded object by `decoded`; an object that cannot be decoded
/// is left out with a warning. Closes the array and the object.
fn write_items(
    mut out: Vec<u8>,
    page: ListPage,
    warnings: &mut Vec<String>,
    quick: impl Fn(&mut Vec<u8>, &[u8], i64) -> Option<()>,
    decoded: impl Fn(&mut Vec<u8>, Value),
) -> Bytes {
    warnings.extend(page.warnings);
    let items = page.items;
    let mut first = true;
    for (i, object) in items.iter().enumerate() {
        super::prefetch_items(&items[i + 1..]);
        let kv = object.kv();
        let before = out.len();
        if !first {
            out.push(b',');
        }
        if quick(&mut out, &kv.value, kv.mod_revision).is_none() {
            match decode(&kv.value, kv.mod_revision) {
                Ok(obj) => decoded(&mut out, obj),
                Err(e) => {
                    out.truncate(before);
                    warnings.push(unreadable(&kv.key, &e.to_string()));
                    continue;
                }
            }
        }
        first = false;
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

/// Whether the Table rows and PartialObjectMetadata read from a stored object's bytes are byte for byte those
/// written from the decoded object (for the fuzzing entry points, which store what hostile requests leave).
pub fn stored_renderings_match_decoded(kind: &dyn Kind, stored: &[u8], rv: i64) -> Result<(), String> {
    let now = jiff::Timestamp::now();
    let decoded = || decode(stored, rv).map_err(|e| format!("read quickly, yet not decodable: {e}"));
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    for version in [MetaVersion::V1, MetaVersion::V1beta1] {
        for include in [IncludeObject::None, IncludeObject::Metadata] {
            if let Some(quick) = StoredRow::read(kind, stored, rv, include, now) {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                quick.write(&mut a, version);
                write_json(&mut b, &row(kind, decoded()?, include, version, now));
                if a != b {
                    return Err(format!("Table row from the bytes {} against decoded {}", text(a), text(b)));
                }
            }
        }
        if let Some(quick) = StoredMetadata::read(stored, rv) {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            quick.write_partial_object_metadata(&mut a, version);
            write_json(&mut b, &partial_object_metadata(decoded()?, version));
            if a != b {
                return Err(format!("metadata from the bytes {} against decoded {}", text(a), text(b)));
            }
        }
    }
    Ok(())
}

/// `{"kind":"PartialObjectMetadataList","apiVersion":…,"metadata":{…},"items":[`
fn partial_object_metadata_list_head(list_meta: Map<String, Value>, version: MetaVersion) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"{\"kind\":\"PartialObjectMetadataList\",\"apiVersion\":");
    write_json(&mut out, &Value::from(version.api_version()));
    out.extend_from_slice(b",\"metadata\":");
    write_json(&mut out, &Value::Object(list_meta));
    out.extend_from_slice(b",\"items\":[");
    out
}

/// One Table row of `obj`.
fn row(kind: &dyn Kind, obj: Value, include: IncludeObject, version: MetaVersion, now: jiff::Timestamp) -> Value {
    let cells: Vec<Value> = kind.printer_columns().iter().map(|c| c.cell(&obj, now)).collect();
    let object = match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => partial_object_metadata(obj, version),
        IncludeObject::Object => obj,
    };
    json!({"cells": cells, "object": object})
}

fn column_definitions(kind: &dyn Kind) -> Value {
    kind.printer_columns()
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.column_type.as_str(),
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect()
}

fn write_json(out: &mut Vec<u8>, v: &Value) {
    // Serializing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// A Table of `objs`, written row by row (each decoded object is dropped once its row is written), with ages as of
/// `now`; `headers` = false omits `columnDefinitions` (later watch events).
pub fn table(
    kind: &dyn Kind,
    objs: impl Iterator<Item = ApiResult<Value>>,
    list_meta: Map<String, Value>,
    (include, version, headers): (IncludeObject, MetaVersion, bool),
    now: jiff::Timestamp,
) -> ApiResult<Bytes> {
    let mut out = table_head(kind, list_meta, version, headers);
    for (i, obj) in objs.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(&mut out, &row(kind, obj?, include, version, now));
    }
    out.extend_from_slice(b"]}");
    Ok(Bytes::from(out))
}

/// The Table of a list page: each row read from the object's stored bytes where it can be ([`StoredRow`]), else
/// from the decoded object; an object that cannot be decoded is left out with a warning.
pub fn table_of_page(
    kind: &dyn Kind,
    page: ListPage,
    (include, version): (IncludeObject, MetaVersion),
    now: jiff::Timestamp,
    warnings: &mut Vec<String>,
) -> Bytes {
    let out = table_head(kind, page.list_meta(), version, true);
    write_items(
        out,
        page,
        warnings,
        |out, stored, rv| StoredRow::read(kind, stored, rv, include, now).map(|r| r.write(out, version)),
        |out, obj| write_json(out, &row(kind, obj, include, version, now)),
    )
}

/// The Table of one stored object (a watch event's), its row read from the stored bytes where it can be; an object
/// that cannot be decoded gives the row of `null`.
pub fn table_of_stored(
    kind: &dyn Kind,
    stored: &[u8],
    rv: i64,
    (include, version, headers): (IncludeObject, MetaVersion, bool),
    now: jiff::Timestamp,
) -> Bytes {
    if let Some(row) = StoredRow::read(kind, stored, rv, include, now) {
        let mut out = table_head(kind, Map::new(), version, headers);
        row.write(&mut out, version);
        out.extend_from_slice(b"]}");
        return Bytes::from(out);
    }
    let obj = decode(stored, rv).unwrap_or(Value::Null);
    table(kind, std::iter::once(Ok(obj)), Map::new(), (include, version, headers), now).unwrap_or_default()
}

/// PartialObjectMetadata of one stored object (a watch event's), read from the stored bytes where it can be; an
/// object that cannot be decoded gives that of `null`.
pub fn partial_object_metadata_of_stored(stored: &[u8], rv: i64, version: MetaVersion) -> Vec<u8> {
    let mut out = Vec::new();
    match StoredMetadata::read(stored, rv) {
        Some(metadata) => metadata.write_partial_object_metadata(&mut out, version),
        None => write_json(&mut out, &partial_object_metadata(decode(stored, rv).unwrap_or(Value::Null), version)),
    }
    out
}

/// `{"kind":"Table","apiVersion":…,"metadata":{…}[,"columnDefinitions":[…]],"rows":[`
fn table_head(kind: &dyn Kind, list_meta: Map<String, Value>, version: MetaVersion, headers: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"{\"kind\":\"Table\",\"apiVersion\":");
    write_json(&mut out, &Value::from(version.api_version()));
    out.extend_from_slice(b",\"metadata\":");
    write_json(&mut out, &Value::Object(list_meta));
    if headers {
        out.extend_from_slice(b",\"columnDefinitions\":");
        write_json(&mut out, &column_definitions(kind));
    }
    out.extend_from_slice(b",\"rows\":[");
    out
}

#[cfg(test)]
mod tests {
    use backup_apis::backup::BackupKind;
    use serde_json::json;

    use super::*;
    use crate::registry::object_bytes::encode_for_storage;

    fn stored(obj: Value) -> Vec<u8> {
        encode_for_storage(obj.as_object().unwrap())
    }

    /// The row read from stored bytes is, byte for byte, the row of the decoded object.
    #[test]
    fn rows_read_from_stored_bytes_are_the_decoded_rows() {
        let now = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let full = json!({
            "apiVersion": "backup.extend-k8s.io/v1", "kind": "TimeseriesDBBackup",
            "metadata": {
                "name": "nightly", "namespace": "default", "uid": "u-1", "generation": 3,
                "creationTimestamp": "2023-11-14T20:00:00Z", "finalizers": ["backup.extend-k8s.io/cleanup"],
                "labels": {"app": "metrics", "tier": "ünïcode"},
                "annotations": {"note": "a \"quoted\"\nline\u{1} <&> \u{2028}", "n": "1.5e300"},
                "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}}],
            },
            "spec": {"database": {"type": "Prometheus", "url": "http://prometheus:9090"}, "schedule": "0 2 * * *"},
            "status": {"phase": "Succeeded", "lastBackup": {"completionTime": "2023-11-14T21:00:00Z", "samples": 12345678901u64, "ratio": 0.1}},
        });
        let bare = json!({
            "apiVersion": "backup.extend-k8s.io/v1", "kind": "TimeseriesDBBackup",
            "metadata": {"name": "b", "zzz": "after resourceVersion"}, "spec": {},
        });
        // Written by hand: a member twice (a decoder takes the last).
        let status_twice = br#"{"apiVersion":"v","kind":"K","metadata":{"name":"a"},"status":{"phase":"Running"},"status":{"phase":"Failed"}}"#;
        for stored in [stored(full), stored(bare), status_twice.to_vec()] {
            for include in [IncludeObject::None, IncludeObject::Metadata] {
                for version in [MetaVersion::V1, MetaVersion::V1beta1] {
                    let quick = StoredRow::read(&BackupKind, &stored, 42, include, now).expect("a row from the bytes");
                    let mut from_bytes = Vec::new();
                    quick.write(&mut from_bytes, version);
                    let decoded = decode(&stored, 42).unwrap();
                    let mut from_decoded = Vec::new();
                    write_json(&mut from_decoded, &row(&BackupKind, decoded, include, version, now));
                    assert_eq!(String::from_utf8(from_bytes).unwrap(), String::from_utf8(from_decoded).unwrap());
                }
            }
        }
    }

    /// A page with an object that cannot be decoded: the others are written (from their bytes, or decoded), valid
    /// JSON with no stray comma, and the client is told which one was left out.
    #[test]
    fn an_undecodable_item_is_left_out_with_a_warning() {
        use std::sync::Arc;

        use backup_storage::KeyValue;
        use backup_storage::cacher::CachedObject;

        let item = |name: &str, value: &[u8]| {
            let kv = KeyValue {
                key: format!("/backups/default/{name}"),
                value: bytes::Bytes::copy_from_slice(value),
                create_revision: 3,
                mod_revision: 4,
            };
            Arc::new(CachedObject::new(kv, None))
        };
        let good = stored(json!({"apiVersion": "v", "kind": "K", "metadata": {"name": "good"}}));
        let spaced = br#"{"kind": "K", "apiVersion": "v", "metadata": {"name": "spaced"}}"#;
        let page = || ListPage {
            items: vec![
                item("bad", b"{\"apiVersion\":"),
                item("good", &good),
                item("broken", b"\xff"),
                item("spaced", spaced),
            ],
            revision: 9,
            continue_token: None,
            remaining: None,
            warnings: Vec::new(),
        };
        let now = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let mut warnings = Vec::new();
        let table = table_of_page(&BackupKind, page(), (IncludeObject::Metadata, MetaVersion::V1), now, &mut warnings);
        let table: Value = serde_json::from_slice(&table).expect("a Table in JSON");
        let names: Vec<&str> = table["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["object"]["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["good", "spaced"]);
        let list = partial_object_metadata_list_of_page(page(), MetaVersion::V1, &mut warnings);
        let list: Value = serde_json::from_slice(&list).expect("a list in JSON");
        let names: Vec<&str> =
            list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["good", "spaced"]);
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(warnings[0].contains("\"/backups/default/bad\" cannot be decoded"), "{warnings:?}");
        assert!(warnings[1].contains("\"/backups/default/broken\" cannot be decoded"), "{warnings:?}");
    }

    /// PartialObjectMetadata read from stored bytes is, byte for byte, that of the decoded object; bytes the quick
    /// read does not take (not this server's writing, no metadata object, malformed) go the decoded way.
    #[test]
    fn metadata_read_from_stored_bytes_is_the_decoded_metadata() {
        let cases: [&[u8]; 10] = [
            r#"{"apiVersion":"g/v1","kind":"K","metadata":{"labels":{"a":"é"},"managedFields":[{"f":{"f:spec":{}}}],"name":"x"},"spec":{"n":1.5}}"#.as_bytes(),
            br#"{"apiVersion":"g/v1","kind":"K","metadata":{"annotations":{"q":"\"\n\u0001"},"uid":"u"}}"#,
            br#"{"apiVersion":"g/v1","kind":"K","metadata":{}}"#,
            br#"{"kind":"K","spec":{"s":"t"},"metadata":{"name":"y"},"apiVersion":"g/v1"}"#,
            br#"{"apiVersion":"g/v1","kind":"K","metadata":null}"#,
            br#"{"apiVersion":"g/v1","kind":"K","metadata":"text"}"#,
            br#"{"apiVersion":"g/v1","kind":"K","metadata":{"name":"first"},"metadata":{"name":"last"}}"#,
            b"{\"apiVersion\":\"g/v1\",\"kind\":\"K\",\"metadata\":{\"name\":\"z\"},\"spec\":\"\xff\"}",
            br#"{"apiVersion":"g/v1","kind":"K","metadata":{"name":"z"},"spec":}"#,
            br#"{"apiVersion":"g/v1","kind":"K","metadata":{"name":"z"}} trailing"#,
        ];
        let mut quick_reads = 0;
        for stored in cases {
            let text = String::from_utf8_lossy(stored);
            let Some(quick) = StoredMetadata::read(stored, 7) else {
                continue;
            };
            quick_reads += 1;
            let mut from_bytes = Vec::new();
            quick.write_partial_object_metadata(&mut from_bytes, MetaVersion::V1);
            let decoded = decode(stored, 7).unwrap_or_else(|e| panic!("{text}: read quickly, yet not decodable: {e}"));
            let from_decoded = serde_json::to_vec(&partial_object_metadata(decoded, MetaVersion::V1)).unwrap();
            assert_eq!(String::from_utf8(from_bytes).unwrap(), String::from_utf8(from_decoded).unwrap(), "{text}");
        }
        assert_eq!(quick_reads, 4, "the canonical cases with a metadata object");
    }

    /// Bytes the quick read does not take go the decoded way.
    #[test]
    fn what_the_quick_read_leaves_to_decoding() {
        let now = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let meta =
            |m: Value| json!({"apiVersion": "backup.extend-k8s.io/v1", "kind": "TimeseriesDBBackup", "metadata": m});
        let plain = stored(meta(json!({"name": "a"})));
        assert!(StoredRow::read(&BackupKind, &plain, 1, IncludeObject::Metadata, now).is_some());
        assert!(StoredRow::read(&BackupKind, &plain, 1, IncludeObject::Object, now).is_none(), "the whole object");
        let escaped_key = stored(meta(json!({"name": "a", "labels": {}, "we\"ird": 1})));
        assert!(StoredRow::read(&BackupKind, &escaped_key, 1, IncludeObject::Metadata, now).is_none());
        let spaced =
            br#"{"apiVersion": "backup.extend-k8s.io/v1", "kind": "TimeseriesDBBackup", "metadata": {"name": "a"}}"#;
        assert!(StoredRow::read(&BackupKind, spaced, 1, IncludeObject::Metadata, now).is_none(), "not canonical");
        let broken =
            br#"{"apiVersion":"backup.extend-k8s.io/v1","kind":"TimeseriesDBBackup","metadata":{"name":"a"},"spec":{"#;
        assert!(StoredRow::read(&BackupKind, broken, 1, IncludeObject::None, now).is_none(), "malformed");
    }
}
