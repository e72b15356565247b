//! The OpenAPI documents of `backup.extend-k8s.io/v1`: Swagger 2.0 at `/openapi/v2` (JSON, or protobuf for
//! kubectl), OpenAPI 3.0 at `/openapi/v3/apis/backup.extend-k8s.io/v1`, and the v3 index at `/openapi/v3`.
//!
//! Place in the flow: TLS → filters → **this module** (non-resource paths; never storage). The documents
//! are built once, when the first of them is asked for (not at start: a server nobody asks yet starts sooner and
//! holds less), from the kinds' [`Kind::schema`] and resource names, serialized, hashed and served from memory.
//! kube-apiserver's aggregator fetches `/openapi/v2` and `/openapi/v3` as `system:aggregator` every minute
//! with `If-None-Match`, merges them into the cluster's documents, and proxies `?hash=` requests for our group
//! version here; kubectl (`explain`, server-side dry-run and field-validation checks) and client generators read
//! them through kube-apiserver.
//!
//! Files: `routes` (paths and operations), `params` (their parameters), `naming` (definition names, operation IDs,
//! tags), `schema` (kind/List definitions, v3 → v2), `meta` + `meta_v3.json` (upstream `meta/v1` definitions),
//! `model` (what both documents hold), `v2`/`v3` (rendering), `protobuf` (v2 as gnostic's messages), `serve`
//! (negotiation, ETag, 304, 406).

mod meta;
mod model;
mod naming;
mod params;
mod protobuf;
mod routes;
mod schema;
mod serve;
mod v2;
mod v3;

#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use backup_apis::Kind;
use jiff::{Timestamp, ToSpan, tz::TimeZone};

use crate::filters::compression::Compressible;
use model::Model;
use serve::Served;

/// The served documents, built on first use.
pub struct OpenApi {
    kinds: Vec<Arc<dyn Kind>>,
    documents: OnceLock<Documents>,
}

/// The documents, serialized.
struct Documents {
    v2: Served,
    /// The v2 document in gnostic's protobuf, which kubectl asks for.
    v2_protobuf: Served,
    v3_index: Served,
    v3_group_version: Served,
    /// `apis/backup.extend-k8s.io/v1`.
    gv_path: String,
    /// When the documents were built (`Last-Modified`), whole seconds.
    built: Timestamp,
}

impl Documents {
    /// Builds and serializes the documents of [`backup_apis::GROUP`]/[`backup_apis::VERSION`] for `kinds`.
    fn new(kinds: &[Arc<dyn Kind>]) -> Self {
        let model = Model::new(backup_apis::GROUP, backup_apis::VERSION, kinds);
        let gv_path = model.gv_path();
        let v3_group_version = Served::new(&v3::document(&model));
        let v3_index = Served::new(&v3::index(&gv_path, &v3_group_version.hash));
        let now = Timestamp::now();
        let built = Timestamp::from_second(now.as_second()).unwrap_or(now);
        let v2 = v2::document(&model);
        let v2_protobuf = Served::from_bytes(protobuf::encode(&v2), protobuf::CONTENT_TYPE);
        Self { v2: Served::new(&v2), v2_protobuf, v3_index, v3_group_version, gv_path, built }
    }
}

impl OpenApi {
    /// The documents of [`backup_apis::GROUP`]/[`backup_apis::VERSION`] for `kinds`, built when first asked for.
    pub fn new(kinds: &[Arc<dyn Kind>]) -> Self {
        Self { kinds: kinds.to_vec(), documents: OnceLock::new() }
    }

    fn documents(&self) -> &Documents {
        self.documents.get_or_init(|| Documents::new(&self.kinds))
    }

    /// `GET /openapi/v2`: JSON or protobuf, whichever the Accept header prefers (JSON when both are as good);
    /// gzip-encoded when the client accepts it, and every answer says it varies with `Accept-Encoding`, as
    /// kube-openapi's handler behind its gzip handler does.
    pub fn serve_v2(&self, headers: &HeaderMap) -> Response {
        let offered = ["application/json", protobuf::REQUESTED_TYPE, protobuf::CONTENT_TYPE];
        let docs = self.documents();
        let mut resp = match serve::negotiate(headers, &offered) {
            Some("application/json") => serve::document(&docs.v2, headers, docs.built, HeaderMap::new()),
            Some(_) => serve::document(&docs.v2_protobuf, headers, docs.built, HeaderMap::new()),
            None => serve::not_acceptable(),
        };
        resp.headers_mut().append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        resp.extensions_mut().insert(Compressible::OpenApiV2);
        resp
    }

    /// `GET /openapi/v3`: served whatever the Accept header, as upstream's discovery handler does.
    pub fn serve_v3_index(&self, headers: &HeaderMap) -> Response {
        let docs = self.documents();
        serve::document(&docs.v3_index, headers, docs.built, HeaderMap::new())
    }

    /// `GET /openapi/v3/<path>` (`path` e.g. `apis/backup.extend-k8s.io/v1`), `hash` the `?hash=` parameter.
    /// With the current hash the answer is cacheable forever; with a stale one it is a 301 to the current.
    pub fn serve_v3_group_version(&self, path: &str, hash: Option<&str>, headers: &HeaderMap) -> Response {
        let path = path.trim_start_matches('/');
        let path = path.strip_prefix("openapi/v3/").unwrap_or(path).trim_end_matches('/');
        let docs = self.documents();
        if path != docs.gv_path {
            return serve::not_found();
        }
        if !serve::accepts_json(headers) {
            return serve::not_acceptable();
        }
        let served = &docs.v3_group_version;
        let mut extra = HeaderMap::new();
        match hash.filter(|h| !h.is_empty()) {
            Some(h) if h != served.hash.as_str() => {
                return serve::moved(served, &v3::server_relative_url(&docs.gv_path, &served.hash));
            }
            Some(_) => {
                extra.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, immutable"));
                extra.insert(header::EXPIRES, serve::http_date(one_year_from_now()));
            }
            None => {}
        }
        serve::document(served, headers, docs.built, extra)
    }
}

/// `time.Now().AddDate(1, 0, 0)`.
fn one_year_from_now() -> Timestamp {
    let now = Timestamp::now();
    now.to_zoned(TimeZone::UTC).checked_add(1.year()).map(|z| z.timestamp()).unwrap_or(now)
}
