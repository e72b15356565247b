//! Discovery documents (`/apis`, `/apis/<group>`, `/apis/<group>/<version>`, `/api`, `/api/v1`), legacy and
//! aggregated (`apidiscovery.k8s.io/v2`), built once at start from the kinds and served from memory: they keep
//! answering while storage is down, which the aggregator's availability probe relies on.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use backup_apis::{GROUP, Kind, ResourceInfo, VERSION};
use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha512};

use crate::error::ApiError;
use crate::request::negotiation::parse_accept;

/// Content type of aggregated discovery v2.
pub const V2_CONTENT_TYPE: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

const VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

/// The documents, serialized once.
pub struct Discovery {
    group_list: Bytes,
    group: Bytes,
    resource_list: Bytes,
    aggregated: Aggregated,
    /// `/api` in v2: the core group's `v1`, with no resources served here — listed all the same, as in the legacy
    /// documents, because that is where clients learn `v1 List` (client-go's REST mapper adds it for core `v1`).
    core_aggregated: Aggregated,
    api_versions: Bytes,
    core_v1: Bytes,
}

/// `base64(sha256("<group>/<version>/<Kind>")[:8])`, upstream's `storageVersionHash`.
pub fn storage_version_hash(r: &ResourceInfo) -> String {
    let digest = Sha256::digest(format!("{}/{}/{}", r.group, r.version, r.kind).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&digest[..8])
}

fn bytes_of(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

impl Discovery {
    pub fn new(kinds: &[Arc<dyn Kind>]) -> Self {
        let gv = format!("{GROUP}/{VERSION}");
        let version_entry = json!({"groupVersion": gv, "version": VERSION});
        let api_group = json!({
            "kind": "APIGroup", "apiVersion": "v1", "name": GROUP,
            "versions": [version_entry], "preferredVersion": version_entry,
        });
        let mut resources = Vec::new();
        let mut v2_resources = Vec::new();
        for k in kinds {
            let r = k.resource();
            resources.push(json!({
                "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                "verbs": VERBS, "shortNames": r.short_names, "categories": r.categories,
                "storageVersionHash": storage_version_hash(r),
            }));
            let response_kind = json!({"group": r.group, "version": r.version, "kind": r.kind});
            let mut subresources = Vec::new();
            if r.status_subresource {
                resources.push(json!({
                    "name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced,
                    "kind": r.kind, "verbs": STATUS_VERBS,
                }));
                subresources
                    .push(json!({"subresource": "status", "responseKind": response_kind, "verbs": STATUS_VERBS}));
            }
            v2_resources.push(json!({
                "resource": r.plural, "responseKind": response_kind,
                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": r.singular, "verbs": VERBS, "shortNames": r.short_names,
                "categories": r.categories, "subresources": subresources,
            }));
        }
        let resource_list =
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources});
        let aggregated = Aggregated::new(json!([{
            "metadata": {"name": GROUP, "creationTimestamp": null},
            "versions": [{"version": VERSION, "freshness": "Current", "resources": v2_resources}],
        }]));
        Self {
            group_list: bytes_of(&json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group]})),
            group: bytes_of(&api_group),
            resource_list: bytes_of(&resource_list),
            aggregated,
            core_aggregated: Aggregated::new(json!([{
                "metadata": {"creationTimestamp": null},
                "versions": [{"version": "v1", "freshness": "Current"}],
            }])),
            api_versions: bytes_of(&json!({
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
            })),
            core_v1: bytes_of(&json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": []})),
        }
    }

    /// Serve a discovery path, or None when `path` is not one.
    pub fn serve(&self, path: &str, headers: &HeaderMap) -> Option<Response> {
        let path = path.trim_end_matches('/');
        let group_path = format!("/apis/{GROUP}");
        let version_path = format!("/apis/{GROUP}/{VERSION}");
        let body = match path {
            "/apis" => return Some(negotiate(headers, &self.group_list, &self.aggregated)),
            "/api" => return Some(negotiate(headers, &self.api_versions, &self.core_aggregated)),
            "/api/v1" => self.core_v1.clone(),
            p if p == group_path => self.group.clone(),
            p if p == version_path => self.resource_list.clone(),
            _ => return None,
        };
        Some(json(body))
    }
}

/// An `APIGroupDiscoveryList`, serialized, with its ETag.
struct Aggregated {
    body: Bytes,
    etag: HeaderValue,
}

impl Aggregated {
    fn new(items: Value) -> Self {
        let body = bytes_of(&json!({
            "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items,
        }));
        let etag = format!("\"{}\"", hex::encode_upper(Sha512::digest(&body)));
        let etag = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
        Self { body, etag }
    }

    fn serve(&self, headers: &HeaderMap) -> Response {
        let matches = headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == self.etag.as_bytes());
        let mut resp = if matches {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut r = (StatusCode::OK, self.body.clone()).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(V2_CONTENT_TYPE));
            r
        };
        let h = resp.headers_mut();
        h.insert(header::ETAG, self.etag.clone());
        h.insert(header::VARY, HeaderValue::from_static("Accept"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public"));
        resp
    }
}

/// Aggregated v2 when the Accept asks for it (with ETag/304), else the legacy document; 406 when neither fits.
fn negotiate(headers: &HeaderMap, legacy: &Bytes, aggregated: &Aggregated) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.trim().is_empty() {
        return json(legacy.clone());
    }
    for range in parse_accept(accept) {
        if !matches!(range.media_type, "application/json" | "application/*" | "*/*") {
            continue;
        }
        match (range.param("as"), range.param("g"), range.param("v")) {
            (None, _, _) => return json(legacy.clone()),
            (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some("v2")) => {
                return aggregated.serve(headers);
            }
            _ => continue,
        }
    }
    ApiError::not_acceptable(&["application/json", V2_CONTENT_TYPE]).into_response()
}

fn json(body: Bytes) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_version_hash_matches_upstream() {
        let kinds = backup_apis::kinds();
        let backup = kinds.iter().find(|k| k.resource().kind == "TimeseriesDBBackup").map(|k| k.resource().clone());
        assert_eq!(backup.map(|r| storage_version_hash(&r)).as_deref(), Some("KCfWPyXX+gE="));
    }
}
