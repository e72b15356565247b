//! HTTP handlers for resource requests: body and option parsing, verb dispatch, response rendering.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{ApiError, ApiResult};
use crate::http::json_body;
use crate::http::negotiation::{Output, Target, negotiate, prefers_yaml};
use crate::http::warning::warning_header;
use crate::request_info::RequestInfo;
use crate::rest::Registry;
use crate::rest::delete::DeleteOptions;
use crate::rest::fieldmanager::options::{self, Verb};
use crate::rest::fieldmanager::{ApplyRequest, Manager};
use crate::rest::list::{Filter, list};
use crate::rest::params::{ListOptions, Params};
use crate::rest::patch::{PatchBody, server_side_apply};
use crate::rest::store::{ResourceStore, Subresource, WriteOptions, Written};
use crate::rest::table::{IncludeObject, partial_object_metadata, partial_object_metadata_list, table};
use crate::rest::watch::{self, WatchRequest};

/// Request bodies over this size get 413 (upstream's `MaxRequestBodyBytes`, 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Serve one resource request.
pub async fn handle(registry: &Registry, info: &RequestInfo, req: Request<Body>) -> Response {
    let target = if info.verb == "watch" { Target::Watch } else { Target::Object };
    let yaml = prefers_yaml(req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()), target);
    let resp = match dispatch(registry, info, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if yaml { to_yaml(resp).await } else { resp }
}

/// The JSON response re-encoded as YAML (`Accept: application/yaml`).
async fn to_yaml(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let Ok(collected) = body.collect().await else {
        return ApiError::internal("reading the response body").into_response();
    };
    let value: Value = match serde_json::from_slice(&collected.to_bytes()) {
        Ok(v) => v,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    match serde_saphyr::to_string(&value) {
        Ok(text) => {
            parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(text))
        }
        Err(e) => ApiError::internal(e).into_response(),
    }
}

async fn dispatch(registry: &Registry, info: &RequestInfo, req: Request<Body>) -> ApiResult<Response> {
    if info.api_group != backup_apis::GROUP || info.api_version != backup_apis::VERSION {
        return Err(ApiError::path_not_found());
    }
    let store = registry.store(&info.resource).ok_or_else(ApiError::path_not_found)?.clone();
    let r = store.info();
    let ns_ok = if r.namespaced {
        !info.namespace.is_empty() || matches!(info.verb.as_str(), "list" | "watch")
    } else {
        info.namespace.is_empty()
    };
    if !ns_ok {
        return Err(ApiError::path_not_found());
    }
    let sub = match info.subresource.as_str() {
        "" => Subresource::Main,
        "status" if r.status_subresource => Subresource::Status,
        _ => return Err(ApiError::path_not_found()),
    };
    for segment in [&info.name, &info.namespace] {
        if segment.contains('%') || segment == "." || segment == ".." {
            return Err(ApiError::bad_request(format!(
                "Name parameter invalid: {segment:?}: may not be '.' or '..' or contain '%'"
            )));
        }
    }
    // Collections take POST, items take PUT and PATCH: anything else on them is 405, as upstream's routes.
    let item_verb = matches!(info.verb.as_str(), "update" | "patch");
    if (info.verb == "create" && !info.name.is_empty()) || (item_verb && info.name.is_empty()) {
        return Err(ApiError::method_not_allowed(&info.verb, r.kind));
    }
    let params = Params::parse(req.uri().query());
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_string);
    let accept = accept.as_deref();
    let ns = info.namespace.as_str();
    let name = info.name.as_str();
    match (info.verb.as_str(), sub) {
        ("get", _) => {
            let output = negotiate(accept, Target::Object)?;
            let body = store.get(ns, name).await?;
            render_object(&store, body, output, &params, StatusCode::OK, &[])
        }
        ("list", Subresource::Main) => {
            let output = negotiate(accept, Target::List)?;
            let opts = ListOptions::from_params(&params, false)?;
            let filter = Filter::new(&store, &opts)?;
            let page = list(&store, (!ns.is_empty()).then_some(ns), &opts, &filter).await?;
            let body = match output {
                Output::Json => page.to_list_json(&store),
                Output::Table(v) => {
                    let include = IncludeObject::parse(params.get("includeObject"))?;
                    let meta = page.list_meta();
                    table(store.kind.as_ref(), page.into_objects(), meta, include, v, true)?
                }
                Output::PartialObjectMetadataList(v) => {
                    let meta = page.list_meta();
                    partial_object_metadata_list(page.into_objects(), meta, v)?
                }
                Output::PartialObjectMetadata(_) => return Err(ApiError::not_acceptable(&["application/json"])),
            };
            Ok(json_response(StatusCode::OK, body, &[]))
        }
        ("watch", Subresource::Main) => {
            let output = negotiate(accept, Target::Watch)?;
            let mut opts = ListOptions::from_params(&params, true)?;
            if !info.name.is_empty() {
                opts.field_selector = name_selector(&opts.field_selector, name)?;
            }
            let filter = Filter::new(&store, &opts)?;
            let include = IncludeObject::parse(params.get("includeObject"))?;
            let namespace = (!ns.is_empty()).then(|| ns.to_string());
            let rx = watch::start(WatchRequest { store, namespace, opts, filter, output, include }).await?;
            let body =
                Body::from_stream(futures::StreamExt::map(ReceiverStream::new(rx), Ok::<_, std::convert::Infallible>));
            let mut resp = Response::new(body);
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(resp)
        }
        ("create", Subresource::Main) => {
            let fm = options::parse(&params, Verb::Create, &user_agent(req.headers()))?;
            let output = negotiate(accept, Target::Object)?;
            let body = read_json_body(req).await?;
            let write = write_options(&params, Manager::Update(&fm.manager), &body.duplicates)?;
            let w = store.create(ns, body.value, write).await?;
            written(&store, w, output, &params)
        }
        ("update", _) => {
            let fm = options::parse(&params, Verb::Update, &user_agent(req.headers()))?;
            let output = negotiate(accept, Target::Object)?;
            let body = read_json_body(req).await?;
            let write = write_options(&params, Manager::Update(&fm.manager), &body.duplicates)?;
            let w = store.update(ns, name, body.value, sub, write).await?;
            written(&store, w, output, &params)
        }
        ("patch", _) => {
            let output = negotiate(accept, Target::Object)?;
            let content_type = content_type(req.headers());
            let agent = user_agent(req.headers());
            let raw = read_body(req).await?;
            let patch = PatchBody::parse(&content_type, &raw)?;
            let fm = options::parse(&params, Verb::Patch { apply: patch.is_apply() }, &agent)?;
            let w = match &patch {
                PatchBody::Apply { config, duplicates } => {
                    let req = ApplyRequest { manager: &fm.manager, force: fm.force, sub };
                    let write = write_options(&params, Manager::Applied, &[])?;
                    server_side_apply(&store, ns, name, (config, duplicates.as_deref()), req, write).await?
                }
                _ => {
                    let write = write_options(&params, Manager::Update(&fm.manager), &[])?;
                    let schema = store.schema();
                    let apply = |doc: &mut Value| patch.apply(doc, schema);
                    store.patch(ns, name, &apply, sub, write).await?
                }
            };
            written(&store, w, output, &params)
        }
        ("delete", Subresource::Main) => {
            let output = negotiate(accept, Target::Object)?;
            let opts = delete_options(&params, req).await?;
            let body = store.delete(ns, name, &opts).await?;
            render_object(&store, body, output, &params, StatusCode::OK, &[])
        }
        ("deletecollection", Subresource::Main) => {
            let output = negotiate(accept, Target::List)?;
            let list_opts = ListOptions::from_params(&params, false)?;
            let filter = Filter::new(&store, &list_opts)?;
            let opts = delete_options(&params, req).await?;
            delete_collection(&store, ns, &list_opts, &filter, &opts, output).await
        }
        (verb, _) => Err(ApiError::method_not_allowed(verb, r.kind)),
    }
}

/// `metadata.name=<name>` added to a field selector for a watch on a named path; a conflicting one is 400.
fn name_selector(existing: &str, name: &str) -> ApiResult<String> {
    let pinned = format!("metadata.name={name}");
    if existing.is_empty() {
        return Ok(pinned);
    }
    if existing.split(',').any(|t| t.starts_with("metadata.name=") && t != pinned) {
        return Err(ApiError::bad_request("fieldSelector metadata.name doesn't match requested name"));
    }
    Ok(format!("{existing},{pinned}"))
}

async fn delete_collection(
    store: &Arc<ResourceStore>,
    ns: &str,
    list_opts: &ListOptions,
    filter: &Filter,
    opts: &DeleteOptions,
    output: Output,
) -> ApiResult<Response> {
    let page = list(store, (!ns.is_empty()).then_some(ns), list_opts, filter).await?;
    let revision = page.revision;
    let mut deleted = Vec::with_capacity(page.items.len());
    for v in page.into_objects() {
        let v = v?;
        let item_ns = v.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
        let item_name = v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        match store.delete(item_ns, item_name, opts).await {
            Ok(bytes) => deleted.push(serde_json::from_slice::<Value>(&bytes).map_err(ApiError::internal)?),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let info = store.info();
    let mut list_meta = serde_json::Map::new();
    list_meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
    let body = match output {
        Output::PartialObjectMetadataList(v) => {
            partial_object_metadata_list(deleted.into_iter().map(Ok), list_meta, v)?
        }
        _ => json_bytes(&serde_json::json!({
            "apiVersion": info.api_version(), "items": deleted, "kind": info.list_kind, "metadata": list_meta,
        })),
    };
    Ok(json_response(StatusCode::OK, body, &[]))
}

fn write_options<'a>(
    params: &Params,
    manager: Manager<'a>,
    duplicate_fields: &'a [String],
) -> ApiResult<WriteOptions<'a>> {
    Ok(WriteOptions {
        dry_run: params.dry_run()?,
        field_validation: params.field_validation()?,
        manager,
        duplicate_fields,
    })
}

fn user_agent(headers: &HeaderMap) -> String {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

fn written(store: &ResourceStore, w: Written, output: Output, params: &Params) -> ApiResult<Response> {
    let code = if w.created { StatusCode::CREATED } else { StatusCode::OK };
    render_object(store, w.body, output, params, code, &w.warnings)
}

/// One object in the requested rendering.
fn render_object(
    store: &ResourceStore,
    body: Bytes,
    output: Output,
    params: &Params,
    code: StatusCode,
    warnings: &[String],
) -> ApiResult<Response> {
    let body = match output {
        Output::Json => body,
        other => {
            let obj: Value = serde_json::from_slice(&body).map_err(ApiError::internal)?;
            match other {
                Output::Table(v) => {
                    let include = IncludeObject::parse(params.get("includeObject"))?;
                    let mut meta = serde_json::Map::new();
                    if let Some(rv) = obj.pointer("/metadata/resourceVersion") {
                        meta.insert("resourceVersion".into(), rv.clone());
                    }
                    table(store.kind.as_ref(), std::iter::once(Ok(obj)), meta, include, v, true)?
                }
                Output::PartialObjectMetadata(v) => json_bytes(&partial_object_metadata(&obj, v)),
                _ => return Err(ApiError::not_acceptable(&["application/json"])),
            }
        }
    };
    Ok(json_response(code, body, warnings))
}

fn json_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

fn json_response(code: StatusCode, body: Bytes, warnings: &[String]) -> Response {
    let mut resp = (code, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for w in warnings {
        if let Some(v) = warning_header(w) {
            h.append(header::WARNING, v);
        }
    }
    resp
}

fn content_type(headers: &HeaderMap) -> String {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// The body, at most [`MAX_BODY_BYTES`].
pub async fn read_body(req: Request<Body>) -> ApiResult<Bytes> {
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY_BYTES);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(ApiError::too_large(MAX_BODY_BYTES))
        }
        Err(e) => Err(ApiError::bad_request(format!("error reading the request body: {e}"))),
    }
}

/// A JSON (or YAML) object body, with its repeated keys; the content type must be one of those, or absent.
async fn read_json_body(req: Request<Body>) -> ApiResult<json_body::Decoded> {
    let ct = content_type(req.headers());
    let media = ct.split(';').next().unwrap_or("").trim().to_string();
    let raw = read_body(req).await?;
    let decoded = match media.as_str() {
        "" | "application/json" => json_body::decode(&raw).map_err(|e| decode_error(&e.to_string()))?,
        "application/yaml" => {
            let text = std::str::from_utf8(&raw).map_err(|e| decode_error(&e.to_string()))?;
            let value = serde_saphyr::from_str(text).map_err(|e| decode_error(&e.to_string()))?;
            json_body::Decoded { value, duplicates: Vec::new() }
        }
        other => return Err(ApiError::unsupported_media_type(other, &["application/json", "application/yaml"])),
    };
    if !decoded.value.is_object() {
        return Err(decode_error("the body must be an object"));
    }
    Ok(decoded)
}

fn decode_error(detail: &str) -> ApiError {
    ApiError::bad_request(format!("error decoding the request body: {detail}"))
}

/// DeleteOptions from a JSON body (with or without Content-Type) or, when the body is empty, the query.
async fn delete_options(params: &Params, req: Request<Body>) -> ApiResult<DeleteOptions> {
    let raw = read_body(req).await?;
    let body: Value = if raw.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&raw).map_err(|e| decode_error(&e.to_string()))?
    };
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let mut dry_run = params.dry_run()?;
    if let Some(arr) = body.get("dryRun").and_then(Value::as_array) {
        for v in arr {
            if v.as_str() != Some("All") {
                return Err(ApiError::bad_request(format!("Invalid dryRun value: {v}: supported values: \"All\"")));
            }
            dry_run = true;
        }
    }
    let propagation_policy = text("propagationPolicy").or_else(|| params.get("propagationPolicy").map(str::to_string));
    if let Some(p) = &propagation_policy
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: {p:?}: supported values: \"Background\", \"Foreground\", \"Orphan\""
        )));
    }
    let propagation_policy = match (propagation_policy, body.get("orphanDependents").and_then(Value::as_bool)) {
        (None, Some(true)) => Some("Orphan".to_string()),
        (p, _) => p,
    };
    let pre = body.get("preconditions");
    let pre_text = |k: &str| pre.and_then(|p| p.get(k)).and_then(Value::as_str).map(str::to_string);
    Ok(DeleteOptions {
        dry_run,
        propagation_policy,
        precondition_uid: pre_text("uid"),
        precondition_rv: pre_text("resourceVersion"),
    })
}
