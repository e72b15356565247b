//! The Swagger 2.0 document (`GET /openapi/v2`), the form kube-apiserver's aggregator downloads every minute and
//! merges into the cluster's `/openapi/v2` (only our `/apis/` paths and the definitions they reach).
//!
//! Operations take kube-apiserver's v2 shape: `consumes`, `produces`, `schemes: ["https"]`, a `body` parameter
//! first, query parameters inline (upstream deduplicates them into `#/parameters/…`, which is equivalent).

use serde_json::{Map, Value, json};

use super::meta::GVK;
use super::model::{Model, security_scheme};
use super::params::{In, Param};
use super::routes::{Operation, PathItem};
use super::schema::v2_ref;

/// The whole v2 document.
pub(super) fn document(model: &Model) -> Value {
    let paths: Map<String, Value> = model.paths.iter().map(|p| (p.path.clone(), path_item(p))).collect();
    json!({
        "swagger": "2.0",
        "info": model.info(),
        "paths": paths,
        "definitions": model.definitions_v2(),
        "securityDefinitions": { "BearerToken": security_scheme() },
        "security": [{ "BearerToken": [] }],
    })
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
        "type": p.ty,
        "uniqueItems": true,
    });
    if p.location == In::Path {
        v["required"] = json!(true);
    }
    v
}

fn operation(op: &Operation) -> Value {
    let mut params: Vec<Value> = Vec::new();
    if let Some(body) = &op.body {
        let mut b = json!({ "in": "body", "name": "body", "schema": v2_ref(&body.definition) });
        if body.required {
            b["required"] = json!(true);
        }
        params.push(b);
    }
    params.extend(op.params.iter().map(param));

    let mut responses: Map<String, Value> = op
        .replies
        .iter()
        .map(|r| (r.code.to_string(), json!({ "description": r.description, "schema": v2_ref(&r.definition) })))
        .collect();
    responses.insert("401".to_string(), json!({ "description": "Unauthorized" }));

    let mut out = json!({
        "consumes": op.consumes,
        "description": op.description,
        "operationId": op.id,
        "produces": op.produces,
        "responses": responses,
        "schemes": ["https"],
        "tags": [op.tag],
    });
    if !params.is_empty() {
        out["parameters"] = Value::Array(params);
    }
    if let Some(action) = op.action {
        out["x-kubernetes-action"] = json!(action);
    }
    if let Some(gvk) = op.gvk {
        out[GVK] = json!({ "group": gvk.group, "kind": gvk.kind, "version": gvk.version });
    }
    out
}
