//! The OpenAPI 3.0 document of the group version (`GET /openapi/v3/apis/<group>/<version>`) and the discovery
//! index (`GET /openapi/v3`). The aggregator merges the index's `paths` into the cluster's `/openapi/v3` and proxies
//! `?hash=` requests for our group version to us; kubectl (`explain`, `QueryParamVerifierV3` for `--dry-run=server`
//! and `fieldValidation`) reads the document.
//!
//! Operations take kube-apiserver's v3 shape: `requestBody` and response `content` per media type, parameters with
//! `schema: {type, uniqueItems: true}`.

use serde_json::{Map, Value, json};

use super::meta::GVK;
use super::model::{Model, security_scheme};
use super::params::{In, Param};
use super::routes::{Operation, PathItem};
use super::schema::v3_ref;

/// The group-version document.
pub(super) fn document(model: &Model) -> Value {
    let paths: Map<String, Value> = model.paths.iter().map(|p| (p.path.clone(), path_item(p))).collect();
    json!({
        "openapi": "3.0.0",
        "info": model.info(),
        "paths": paths,
        "components": {
            "schemas": model.definitions_v3(),
            "securitySchemes": { "BearerToken": security_scheme() },
        },
    })
}

/// `/openapi/v3`: the only entry is our group version, so the aggregator's union of all APIServices' indexes never
/// shadows kube-apiserver's own entries.
pub(super) fn index(gv_path: &str, hash: &str) -> Value {
    json!({ "paths": { gv_path: { "serverRelativeURL": server_relative_url(gv_path, hash) } } })
}

/// `/openapi/v3/apis/<group>/<version>?hash=<HASH>`.
pub(super) fn server_relative_url(gv_path: &str, hash: &str) -> String {
    format!("/openapi/v3/{gv_path}?hash={hash}")
}

fn path_item(item: &PathItem) -> Value {
    let mut out: Map<String, Value> = item.ops.iter().map(|op| (op.method.to_string(), operation(op))).collect();
    if !item.params.is_empty() {
        out.insert("parameters".to_string(), item.params.iter().map(param).collect());
    }
    Value::Object(out)
}

fn param(p: &Param) -> Value {
    let mut v = json!({
        "description": p.description,
        "in": match p.location { In::Query => "query", In::Path => "path" },
        "name": p.name,
        "schema": { "type": p.ty, "uniqueItems": true },
    });
    if p.location == In::Path {
        v["required"] = json!(true);
    }
    v
}

/// `{"<media type>": {"schema": {"$ref": …}}}` for each media type.
fn content(types: &[&str], definition: &str) -> Value {
    Value::Object(types.iter().map(|t| (t.to_string(), json!({ "schema": v3_ref(definition) }))).collect())
}

fn operation(op: &Operation) -> Value {
    let mut responses: Map<String, Value> = op
        .replies
        .iter()
        .map(|r| {
            (
                r.code.to_string(),
                json!({ "content": content(op.produces, &r.definition), "description": r.description }),
            )
        })
        .collect();
    responses.insert("401".to_string(), json!({ "description": "Unauthorized" }));

    let mut out = json!({
        "description": op.description,
        "operationId": op.id,
        "responses": responses,
        "tags": [op.tag],
    });
    if !op.params.is_empty() {
        out["parameters"] = op.params.iter().map(param).collect();
    }
    if let Some(body) = &op.body {
        let mut b = json!({ "content": content(op.consumes, &body.definition) });
        if body.required {
            b["required"] = json!(true);
        }
        out["requestBody"] = b;
    }
    if let Some(action) = op.action {
        out["x-kubernetes-action"] = json!(action);
    }
    if let Some(gvk) = op.gvk {
        out[GVK] = json!({ "group": gvk.group, "kind": gvk.kind, "version": gvk.version });
    }
    out
}
