//! The request-info filter (k8s.io/apiserver `WithRequestInfo`): parse the method, path and query once into a
//! [`RequestInfo`] and a [`Query`], both kept in the request's extensions for every later filter and endpoint.
//! A method no Kubernetes verb maps to is 405 here.
//!
//! TLS → **request info** → metrics → authentication → authorization → endpoints.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};

use super::Next;
use crate::error::ApiError;
use crate::request::info::RequestInfo;
use crate::request::query::Query;

pub async fn parse(mut req: Request, next: impl Next) -> Response {
    let query = Query::parse(req.uri().query());
    let Some(info) =
        RequestInfo::parse(req.method(), req.uri().path(), query.flag("watch"), query.field_selector_name())
    else {
        return ApiError::method_not_allowed(req.method().as_str(), "path").into_response();
    };
    req.extensions_mut().insert(Arc::new(info));
    req.extensions_mut().insert(Arc::new(query));
    next(req).await
}
