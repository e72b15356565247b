use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use backup_apis::{ErrorList, Kind, PrinterColumn, ResourceInfo, SelectableField};
use serde_json::{Value, json};
use sha2::{Digest, Sha512};

use super::OpenApi;
use super::meta::GVK;

const ROOT: &str = "/apis/backup.extend-k8s.io/v1";
const WIDGET: &str = "io.extend-k8s.backup.v1.Widget";

struct Fake(ResourceInfo);

impl Kind for Fake {
    fn resource(&self) -> &ResourceInfo {
        &self.0
    }

    fn schema(&self) -> Value {
        json!({
            "type": "object",
            "description": "A widget.",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
                "spec": {
                    "type": "object",
                    "properties": {
                        "size": {"type": "integer", "format": "int64", "default": 3, "minimum": 1},
                        "colors": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                        "note": {"type": "string", "nullable": true},
                    },
                    "required": ["size"],
                },
                "status": {
                    "type": "object",
                    "properties": {
                        "phase": {"type": "string", "enum": ["Pending", "Done"]},
                        "at": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Time", "description": "When."},
                    },
                },
            },
            "required": ["spec"],
        })
    }

    fn validate(&self, _obj: &Value) -> ErrorList {
        ErrorList::default()
    }

    fn printer_columns(&self) -> &[PrinterColumn] {
        &[]
    }

    fn selectable_fields(&self) -> &[SelectableField] {
        &[]
    }
}

fn info(kind: &'static str, list_kind: &'static str, plural: &'static str, namespaced: bool) -> ResourceInfo {
    ResourceInfo {
        group: backup_apis::GROUP,
        version: backup_apis::VERSION,
        kind,
        list_kind,
        plural,
        singular: "",
        short_names: &[],
        categories: &[],
        namespaced,
        status_subresource: namespaced,
    }
}

fn fake_kinds() -> Vec<Arc<dyn Kind>> {
    vec![
        Arc::new(Fake(info("Widget", "WidgetList", "widgets", true))),
        Arc::new(Fake(info("Gadget", "GadgetList", "gadgets", false))),
    ]
}

fn body(resp: Response) -> bytes::Bytes {
    futures::executor::block_on(axum::body::to_bytes(resp.into_body(), usize::MAX)).unwrap()
}

fn json_of(resp: Response) -> Value {
    serde_json::from_slice(&body(resp)).unwrap()
}

fn accept(value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
    h
}

fn v2() -> Value {
    json_of(OpenApi::new(&fake_kinds()).serve_v2(&HeaderMap::new()))
}

fn v3() -> Value {
    json_of(OpenApi::new(&fake_kinds()).serve_v3_group_version("apis/backup.extend-k8s.io/v1", None, &HeaderMap::new()))
}

/// (path suffix, method) → (operationId, x-kubernetes-action).
const NAMESPACED_OPS: &[(&str, &str, &str, &str)] = &[
    ("/namespaces/{namespace}/widgets", "get", "listBackupExtendK8sIoV1NamespacedWidget", "list"),
    ("/namespaces/{namespace}/widgets", "post", "createBackupExtendK8sIoV1NamespacedWidget", "post"),
    (
        "/namespaces/{namespace}/widgets",
        "delete",
        "deleteBackupExtendK8sIoV1CollectionNamespacedWidget",
        "deletecollection",
    ),
    ("/namespaces/{namespace}/widgets/{name}", "get", "readBackupExtendK8sIoV1NamespacedWidget", "get"),
    ("/namespaces/{namespace}/widgets/{name}", "put", "replaceBackupExtendK8sIoV1NamespacedWidget", "put"),
    ("/namespaces/{namespace}/widgets/{name}", "patch", "patchBackupExtendK8sIoV1NamespacedWidget", "patch"),
    ("/namespaces/{namespace}/widgets/{name}", "delete", "deleteBackupExtendK8sIoV1NamespacedWidget", "delete"),
    ("/namespaces/{namespace}/widgets/{name}/status", "get", "readBackupExtendK8sIoV1NamespacedWidgetStatus", "get"),
    ("/namespaces/{namespace}/widgets/{name}/status", "put", "replaceBackupExtendK8sIoV1NamespacedWidgetStatus", "put"),
    (
        "/namespaces/{namespace}/widgets/{name}/status",
        "patch",
        "patchBackupExtendK8sIoV1NamespacedWidgetStatus",
        "patch",
    ),
    ("/widgets", "get", "listBackupExtendK8sIoV1WidgetForAllNamespaces", "list"),
    ("/watch/namespaces/{namespace}/widgets", "get", "watchBackupExtendK8sIoV1NamespacedWidgetList", "watchlist"),
    ("/watch/namespaces/{namespace}/widgets/{name}", "get", "watchBackupExtendK8sIoV1NamespacedWidget", "watch"),
    ("/watch/widgets", "get", "watchBackupExtendK8sIoV1WidgetListForAllNamespaces", "watchlist"),
    ("/gadgets", "get", "listBackupExtendK8sIoV1Gadget", "list"),
    ("/gadgets", "post", "createBackupExtendK8sIoV1Gadget", "post"),
    ("/gadgets", "delete", "deleteBackupExtendK8sIoV1CollectionGadget", "deletecollection"),
    ("/gadgets/{name}", "get", "readBackupExtendK8sIoV1Gadget", "get"),
    ("/gadgets/{name}", "delete", "deleteBackupExtendK8sIoV1Gadget", "delete"),
    ("/watch/gadgets", "get", "watchBackupExtendK8sIoV1GadgetList", "watchlist"),
    ("/watch/gadgets/{name}", "get", "watchBackupExtendK8sIoV1Gadget", "watch"),
];

#[test]
fn operation_ids_actions_tags_and_gvks() {
    for doc in [v2(), v3()] {
        let paths = doc["paths"].as_object().unwrap();
        // 2 kinds: widgets 7 paths (collection, item, status, 2 watch, all-ns list, all-ns watch), gadgets 4, plus `/`.
        assert_eq!(paths.len(), 7 + 4 + 1, "{:?}", paths.keys().collect::<Vec<_>>());
        for (suffix, method, id, action) in NAMESPACED_OPS {
            let op = &doc["paths"][format!("{ROOT}{suffix}")][method];
            assert_eq!(op["operationId"], *id, "{suffix} {method}");
            assert_eq!(op["x-kubernetes-action"], *action, "{suffix} {method}");
            assert_eq!(op["tags"], json!(["backupExtendK8sIo_v1"]));
            let kind = if suffix.contains("gadgets") { "Gadget" } else { "Widget" };
            assert_eq!(op[GVK], json!({"group": "backup.extend-k8s.io", "kind": kind, "version": "v1"}));
        }
        let resources = &doc["paths"][format!("{ROOT}/")]["get"];
        assert_eq!(resources["operationId"], "getBackupExtendK8sIoV1APIResources");
        assert!(resources.get("x-kubernetes-action").is_none());
        assert!(doc["paths"].get(format!("{ROOT}/namespaces/{{namespace}}/gadgets")).is_none());
        assert!(doc["paths"].get(format!("{ROOT}/gadgets/{{name}}/status")).is_none());
    }
}

fn param_names(params: &Value) -> Vec<String> {
    params.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn v2_operation_shape() {
    let doc = v2();
    let item = &doc["paths"][format!("{ROOT}/namespaces/{{namespace}}/widgets/{{name}}")];
    assert_eq!(param_names(&item["parameters"]), ["name", "namespace", "pretty"]);
    assert_eq!(item["parameters"][0]["required"], true);
    let patch = &item["patch"];
    assert_eq!(
        patch["consumes"],
        json!([
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml"
        ])
    );
    assert_eq!(param_names(&patch["parameters"]), ["body", "dryRun", "fieldManager", "fieldValidation", "force"]);
    assert_eq!(patch["parameters"][0]["schema"]["$ref"], "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch");
    assert_eq!(
        patch["parameters"][1],
        json!({
            "description": "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed",
            "in": "query", "name": "dryRun", "type": "string", "uniqueItems": true,
        })
    );
    assert_eq!(patch["schemes"], json!(["https"]));
    assert_eq!(patch["produces"], json!(["application/json", "application/yaml"]));
    assert_eq!(patch["responses"]["201"]["schema"]["$ref"], format!("#/definitions/{WIDGET}"));
    assert_eq!(patch["responses"]["401"], json!({"description": "Unauthorized"}));
    let delete = &item["delete"];
    assert!(delete["parameters"][0].get("required").is_none(), "DeleteOptions body is optional");
    assert_eq!(delete["responses"]["202"]["description"], "Accepted");
    let create = &doc["paths"][format!("{ROOT}/namespaces/{{namespace}}/widgets")]["post"];
    assert_eq!(create["consumes"], json!(["*/*"]));
    assert_eq!(create["description"], "create a Widget");
    assert_eq!(param_names(&create["parameters"]), ["body", "dryRun", "fieldManager", "fieldValidation"]);
    let list = &doc["paths"][format!("{ROOT}/namespaces/{{namespace}}/widgets")]["get"];
    assert_eq!(
        param_names(&list["parameters"]),
        [
            "allowWatchBookmarks",
            "continue",
            "fieldSelector",
            "labelSelector",
            "limit",
            "resourceVersion",
            "resourceVersionMatch",
            "sendInitialEvents",
            "timeoutSeconds",
            "watch"
        ]
    );
    assert_eq!(list["responses"]["200"]["schema"]["$ref"], "#/definitions/io.extend-k8s.backup.v1.WidgetList");
    let watch = &doc["paths"][format!("{ROOT}/watch/namespaces/{{namespace}}/widgets/{{name}}")];
    assert!(param_names(&watch["parameters"]).contains(&"labelSelector".to_string()));
    assert!(watch["get"]["produces"].as_array().unwrap().contains(&json!("application/json;stream=watch")));
    assert_eq!(
        watch["get"]["responses"]["200"]["schema"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent"
    );
    assert_eq!(doc["swagger"], "2.0");
}

#[test]
fn v3_operation_shape() {
    let doc = v3();
    assert_eq!(doc["openapi"], "3.0.0");
    let item = &doc["paths"][format!("{ROOT}/namespaces/{{namespace}}/widgets/{{name}}")];
    assert_eq!(item["parameters"][1]["schema"], json!({"type": "string", "uniqueItems": true}));
    let patch = &item["patch"];
    assert_eq!(param_names(&patch["parameters"]), ["dryRun", "fieldManager", "fieldValidation", "force"]);
    assert_eq!(patch["requestBody"]["required"], true);
    assert_eq!(
        patch["requestBody"]["content"]["application/merge-patch+json"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
    );
    assert_eq!(
        patch["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        format!("#/components/schemas/{WIDGET}")
    );
    let create = &doc["paths"][format!("{ROOT}/namespaces/{{namespace}}/widgets")]["post"];
    assert_eq!(create["requestBody"]["content"]["*/*"]["schema"]["$ref"], format!("#/components/schemas/{WIDGET}"));
    let delete = &item["delete"];
    assert!(delete["requestBody"].get("required").is_none());
}

#[test]
fn kind_and_list_definitions_carry_gvk() {
    let (v2, v3) = (v2(), v3());
    for defs in [&v2["definitions"], &v3["components"]["schemas"]] {
        assert_eq!(defs[WIDGET][GVK], json!([{"group": "backup.extend-k8s.io", "kind": "Widget", "version": "v1"}]));
        let list = &defs["io.extend-k8s.backup.v1.WidgetList"];
        assert_eq!(list[GVK], json!([{"group": "backup.extend-k8s.io", "kind": "WidgetList", "version": "v1"}]));
        assert_eq!(list["required"], json!(["items"]));
        assert_eq!(list["description"], "WidgetList is a list of Widget");
        assert!(defs["io.extend-k8s.backup.v1.Gadget"].is_object());
    }
    let w2 = &v2["definitions"][WIDGET];
    assert_eq!(w2["properties"]["metadata"]["$ref"], "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
    assert_eq!(
        w2["properties"]["status"]["properties"]["at"],
        json!({"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Time", "description": "When."})
    );
    assert_eq!(w2["properties"]["spec"]["properties"]["size"]["default"], 3);
    assert_eq!(w2["properties"]["spec"]["properties"]["colors"]["x-kubernetes-list-type"], "set");
    assert_eq!(w2["properties"]["status"]["properties"]["phase"]["enum"], json!(["Pending", "Done"]));
    assert!(w2["properties"]["spec"]["properties"]["note"].get("nullable").is_none());
    assert_eq!(
        v2["definitions"]["io.extend-k8s.backup.v1.WidgetList"]["properties"]["items"]["items"]["$ref"],
        format!("#/definitions/{WIDGET}")
    );
    let w3 = &v3["components"]["schemas"][WIDGET];
    assert_eq!(
        w3["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert_eq!(w3["properties"]["spec"]["properties"]["note"]["nullable"], true);
}

#[test]
fn v2_meta_definitions_have_upstream_v2_form() {
    let doc = v2();
    let om = &doc["definitions"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"];
    assert_eq!(om["creationTimestamp"]["$ref"], "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Time");
    assert!(om["creationTimestamp"].get("allOf").is_none());
    assert_eq!(
        om["managedFields"]["items"],
        json!({"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry"})
    );
    assert_eq!(om["labels"]["additionalProperties"], json!({"type": "string"}));
    assert_eq!(om["finalizers"]["items"], json!({"type": "string"}));
    let status_meta = &doc["definitions"]["io.k8s.apimachinery.pkg.apis.meta.v1.Status"]["properties"]["metadata"];
    assert_eq!(status_meta["$ref"], "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta");
    assert!(status_meta.get("default").is_none());
}

/// Every `$ref` string under `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

fn assert_refs_resolve(doc: &Value, prefix: &str, defs: &Value) {
    let mut all = Vec::new();
    refs(doc, &mut all);
    assert!(all.len() > 50);
    for r in all {
        let name = r.strip_prefix(prefix).unwrap_or_else(|| panic!("{r} is not under {prefix}"));
        assert!(defs.get(name).is_some(), "{r} does not resolve");
    }
}

#[test]
fn v2_refs_resolve() {
    let doc = v2();
    assert_refs_resolve(&doc, "#/definitions/", &doc["definitions"]);
}

#[test]
fn v3_refs_resolve() {
    let doc = v3();
    assert_refs_resolve(&doc, "#/components/schemas/", &doc["components"]["schemas"]);
}

#[test]
fn real_kinds_build_and_refs_resolve() {
    let api = OpenApi::new(&backup_apis::kinds());
    let v2 = json_of(api.serve_v2(&HeaderMap::new()));
    assert_refs_resolve(&v2, "#/definitions/", &v2["definitions"]);
    let v3 = json_of(api.serve_v3_group_version("apis/backup.extend-k8s.io/v1", None, &HeaderMap::new()));
    assert_refs_resolve(&v3, "#/components/schemas/", &v3["components"]["schemas"]);
    let backup = &v2["definitions"]["io.extend-k8s.backup.v1.TimeseriesDBBackup"];
    assert_eq!(backup[GVK][0]["kind"], "TimeseriesDBBackup");
    let path = format!("{ROOT}/namespaces/{{namespace}}/timeseriesdbbackups");
    assert_eq!(v2["paths"][&path]["post"]["operationId"], "createBackupExtendK8sIoV1NamespacedTimeseriesDBBackup");
}

#[test]
fn etag_and_not_modified() {
    let api = OpenApi::new(&fake_kinds());
    let resp = api.serve_v2(&HeaderMap::new());
    assert_eq!(resp.status(), StatusCode::OK);
    let headers = resp.headers().clone();
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(headers[header::VARY], "Accept");
    assert!(headers.contains_key(header::LAST_MODIFIED));
    let bytes = body(resp);
    let etag = format!("\"{}\"", hex::encode_upper(Sha512::digest(&bytes)));
    assert_eq!(headers[header::ETAG], etag.as_str());
    assert_eq!(etag.len(), 128 + 2);

    for inm in [etag.clone(), format!("W/{etag}"), format!("\"other\", {etag}"), "*".to_string()] {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&inm).unwrap());
        let resp = api.serve_v2(&h);
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{inm}");
        assert_eq!(resp.headers()[header::ETAG], etag.as_str());
        assert!(body(resp).is_empty());
    }
    let mut h = HeaderMap::new();
    h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"0BAD\""));
    assert_eq!(api.serve_v2(&h).status(), StatusCode::OK);

    let mut h = HeaderMap::new();
    h.insert(header::IF_MODIFIED_SINCE, headers[header::LAST_MODIFIED].clone());
    assert_eq!(api.serve_v2(&h).status(), StatusCode::NOT_MODIFIED);
    h.insert(header::IF_MODIFIED_SINCE, HeaderValue::from_static("Mon, 01 Jan 2001 00:00:00 GMT"));
    assert_eq!(api.serve_v2(&h).status(), StatusCode::OK);
}

#[test]
fn v3_index_hash_redirect_and_immutable() {
    let api = OpenApi::new(&fake_kinds());
    let index_resp = api.serve_v3_index(&HeaderMap::new());
    assert!(index_resp.headers().contains_key(header::ETAG));
    let index = json_of(index_resp);
    let paths = index["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 1);
    let url = paths["apis/backup.extend-k8s.io/v1"]["serverRelativeURL"].as_str().unwrap();
    let (path, query) = url.split_once('?').unwrap();
    assert_eq!(path, "/openapi/v3/apis/backup.extend-k8s.io/v1");
    let hash = query.strip_prefix("hash=").unwrap();

    let plain = api.serve_v3_group_version("apis/backup.extend-k8s.io/v1", None, &HeaderMap::new());
    assert_eq!(plain.status(), StatusCode::OK);
    assert!(!plain.headers().contains_key(header::CACHE_CONTROL));
    assert_eq!(plain.headers()[header::ETAG], format!("\"{hash}\"").as_str());
    let doc_bytes = body(plain);
    assert_eq!(hex::encode_upper(Sha512::digest(&doc_bytes)), hash);

    let pinned = api.serve_v3_group_version("/apis/backup.extend-k8s.io/v1", Some(hash), &HeaderMap::new());
    assert_eq!(pinned.status(), StatusCode::OK);
    assert_eq!(pinned.headers()[header::CACHE_CONTROL], "public, immutable");
    assert_eq!(pinned.headers()[header::VARY], "Accept");
    let expires = pinned.headers()[header::EXPIRES].to_str().unwrap().to_string();
    let expires = jiff::fmt::rfc2822::DateTimeParser::new().parse_timestamp(&expires).unwrap();
    let days = (expires - jiff::Timestamp::now()).get_seconds() / 86_400;
    assert!((364..=366).contains(&days), "{days}");
    assert_eq!(body(pinned), doc_bytes);

    let stale = api.serve_v3_group_version("apis/backup.extend-k8s.io/v1", Some("ABC"), &HeaderMap::new());
    assert_eq!(stale.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(stale.headers()[header::LOCATION], url);

    let mut h = HeaderMap::new();
    h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&format!("\"{hash}\"")).unwrap());
    let cached = api.serve_v3_group_version("apis/backup.extend-k8s.io/v1", Some(hash), &h);
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(cached.headers()[header::CACHE_CONTROL], "public, immutable");

    let missing = api.serve_v3_group_version("apis/backup.extend-k8s.io/v2", None, &HeaderMap::new());
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let status = json_of(missing);
    assert_eq!(
        (status["kind"].as_str(), status["reason"].as_str(), status["code"].as_u64()),
        (Some("Status"), Some("NotFound"), Some(404))
    );
    let group = api.serve_v3_group_version("apis/backup.extend-k8s.io", None, &HeaderMap::new());
    assert_eq!(group.status(), StatusCode::NOT_FOUND);
}

#[test]
fn not_acceptable_unless_json() {
    let api = OpenApi::new(&fake_kinds());
    let gv = "apis/backup.extend-k8s.io/v1";
    for refused in ["application/com.github.proto-openapi.spec.v3.v1.0+protobuf", "application/json;q=0", "text/html"] {
        for resp in [api.serve_v2(&accept(refused)), api.serve_v3_group_version(gv, None, &accept(refused))] {
            // (v2 also offers protobuf; the message names JSON either way)
            assert_eq!(resp.status(), StatusCode::NOT_ACCEPTABLE, "{refused}");
            let status = json_of(resp);
            assert_eq!(status["kind"], "Status");
            assert_eq!(status["apiVersion"], "v1");
            assert_eq!(status["metadata"], json!({}));
            assert_eq!(status["status"], "Failure");
            assert_eq!(status["reason"], "NotAcceptable");
            assert_eq!(status["code"], 406);
            assert!(status["message"].as_str().unwrap().contains("application/json"));
        }
    }
    for accepted in [
        "application/json",
        "*/*",
        "application/*",
        "",
        "application/com.github.proto-openapi.spec.v2@v1.0+protobuf;q=0.5, application/json",
        "application/json; charset=utf-8",
    ] {
        assert_eq!(api.serve_v2(&accept(accepted)).status(), StatusCode::OK, "{accepted:?}");
        assert_eq!(api.serve_v3_group_version(gv, None, &accept(accepted)).status(), StatusCode::OK, "{accepted:?}");
    }
}

#[test]
fn v2_in_protobuf_when_asked_first() {
    const ASKED: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
    const PB: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
    let api = OpenApi::new(&backup_apis::kinds());
    // kubectl asks for protobuf only; a client preferring it gets it; `*/*` and ties to JSON get JSON.
    for (asked, served) in [
        (ASKED, PB),
        (PB, PB),
        ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf, application/json", PB),
        ("application/json, application/com.github.proto-openapi.spec.v2@v1.0+protobuf", "application/json"),
        ("application/json;q=0.5, application/com.github.proto-openapi.spec.v2@v1.0+protobuf", PB),
        ("*/*", "application/json"),
        ("application/*", "application/json"),
    ] {
        let resp = api.serve_v2(&accept(asked));
        assert_eq!(resp.status(), StatusCode::OK, "{asked}");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], served, "{asked}");
        assert_eq!(resp.headers()[header::VARY], "Accept");
    }
    let resp = api.serve_v2(&accept(ASKED));
    let etag = resp.headers()[header::ETAG].clone();
    let bytes = body(resp);
    assert_eq!(etag, format!("\"{}\"", hex::encode_upper(Sha512::digest(&bytes))).as_str(), "its own ETag");
    // The document's text is in the bytes: paths, definitions, the GVK extension.
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("\n\u{3}2.0"), "field 1 is `swagger`");
    for needle in [
        "io.extend-k8s.backup.v1.TimeseriesDBBackup",
        "x-kubernetes-group-version-kind",
        "/apis/backup.extend-k8s.io/v1/namespaces/{namespace}/timeseriesdbbackups",
    ] {
        assert!(text.contains(needle), "{needle}");
    }
    let mut h = accept(ASKED);
    h.insert(header::IF_NONE_MATCH, etag);
    assert_eq!(api.serve_v2(&h).status(), StatusCode::NOT_MODIFIED);
}
