//! Errors of the REST machinery, answered as Kubernetes `Status` objects (`apimachinery/pkg/api/errors`).
//!
//! Every layer of the flow (authn → authz → REST → strategy → storage) returns an [`ApiError`]; the HTTP layer
//! renders it as `{"kind":"Status","apiVersion":"v1","status":"Failure",...}` with the matching code.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use backup_apis::{ErrorList, ResourceInfo};
use backup_storage::StorageError;
use serde_json::{Map, Value, json};

/// `reason` of a failure `Status` (`metav1.StatusReason`): what kind of failure, for clients to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusReason {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    NotAcceptable,
    AlreadyExists,
    Conflict,
    Gone,
    Expired,
    RequestEntityTooLarge,
    UnsupportedMediaType,
    Invalid,
    TooManyRequests,
    InternalError,
    ServiceUnavailable,
    ServerTimeout,
    Timeout,
}

impl StatusReason {
    /// The reason as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "BadRequest",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::NotFound => "NotFound",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::NotAcceptable => "NotAcceptable",
            Self::AlreadyExists => "AlreadyExists",
            Self::Conflict => "Conflict",
            Self::Gone => "Gone",
            Self::Expired => "Expired",
            Self::RequestEntityTooLarge => "RequestEntityTooLarge",
            Self::UnsupportedMediaType => "UnsupportedMediaType",
            Self::Invalid => "Invalid",
            Self::TooManyRequests => "TooManyRequests",
            Self::InternalError => "InternalError",
            Self::ServiceUnavailable => "ServiceUnavailable",
            Self::ServerTimeout => "ServerTimeout",
            Self::Timeout => "Timeout",
        }
    }
}

impl StatusReason {
    /// The reason named `s`, if it is one of these.
    pub fn parse(s: &str) -> Option<Self> {
        const ALL: [StatusReason; 18] = [
            StatusReason::BadRequest,
            StatusReason::Unauthorized,
            StatusReason::Forbidden,
            StatusReason::NotFound,
            StatusReason::MethodNotAllowed,
            StatusReason::NotAcceptable,
            StatusReason::AlreadyExists,
            StatusReason::Conflict,
            StatusReason::Gone,
            StatusReason::Expired,
            StatusReason::RequestEntityTooLarge,
            StatusReason::UnsupportedMediaType,
            StatusReason::Invalid,
            StatusReason::TooManyRequests,
            StatusReason::InternalError,
            StatusReason::ServiceUnavailable,
            StatusReason::ServerTimeout,
            StatusReason::Timeout,
        ];
        ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for StatusReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed request: the code, reason and message of a `Status`, plus optional details.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: StatusReason,
    pub message: String,
    /// `details` of the Status, when there are any.
    pub details: Option<Value>,
    /// `Retry-After` seconds for 429/5xx answers that clients should retry.
    pub retry_after: Option<u64>,
    /// `metadata.continue` of the Status (an expired continue token's replacement).
    pub continue_token: Option<String>,
    /// The `reason` as someone else wrote it, when it is none of [`StatusReason`] (an admission webhook's own, or
    /// none at all: `""` leaves `reason` out); `reason` then only classifies the error.
    pub foreign_reason: Option<Box<str>>,
}

impl ApiError {
    /// A failure with `code` and `reason`; most callers use the named constructors below.
    pub fn new(code: u16, reason: StatusReason, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
            continue_token: None,
            foreign_reason: None,
        }
    }

    /// The same failure with `details`.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 404 NotFound: the object (or path) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.reason == StatusReason::NotFound
    }

    /// 409 AlreadyExists: a create found the name taken.
    pub fn is_already_exists(&self) -> bool {
        self.reason == StatusReason::AlreadyExists
    }

    /// 409 Conflict: the object changed since it was read (or an apply conflicts with other managers).
    pub fn is_conflict(&self) -> bool {
        self.reason == StatusReason::Conflict
    }

    /// 422 Invalid with `message` (no causes): a request that is well-formed but cannot be applied.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, StatusReason::Invalid, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, StatusReason::BadRequest, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, StatusReason::Unauthorized, "Unauthorized")
    }

    /// 403 with upstream's `forbidden` wording; `details` names the resource when there is one.
    pub fn forbidden(qualified_resource: &str, name: &str, message: impl Into<String>) -> Self {
        let msg = message.into();
        let full = if qualified_resource.is_empty() {
            format!("forbidden: {msg}")
        } else if name.is_empty() {
            format!("{qualified_resource} is forbidden: {msg}")
        } else {
            format!("{qualified_resource} \"{name}\" is forbidden: {msg}")
        };
        let (resource, group) = split_qualified(qualified_resource);
        Self::new(403, StatusReason::Forbidden, full).with_details(details(name, group, resource))
    }

    pub fn not_found(info: &ResourceInfo, name: &str) -> Self {
        Self::new(404, StatusReason::NotFound, format!("{} \"{name}\" not found", info.qualified_resource()))
            .with_details(details(name, info.group, info.plural))
    }

    /// A plain 404 for a path that serves nothing.
    pub fn path_not_found() -> Self {
        Self::new(404, StatusReason::NotFound, "the server could not find the requested resource")
            .with_details(json!({"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]}))
    }

    pub fn method_not_allowed(action: &str, kind: &str) -> Self {
        Self::new(
            405,
            StatusReason::MethodNotAllowed,
            format!("{action} is not supported on resources of kind \"{kind}\""),
        )
    }

    pub fn not_acceptable(accepted: &[&str]) -> Self {
        Self::new(
            406,
            StatusReason::NotAcceptable,
            format!("only the following media types are accepted: {}", accepted.join(", ")),
        )
    }

    pub fn already_exists(info: &ResourceInfo, name: &str) -> Self {
        Self::new(409, StatusReason::AlreadyExists, format!("{} \"{name}\" already exists", info.qualified_resource()))
            .with_details(details(name, info.group, info.plural))
    }

    pub fn conflict(info: &ResourceInfo, name: &str, why: &str) -> Self {
        Self::new(
            409,
            StatusReason::Conflict,
            format!("Operation cannot be fulfilled on {} \"{name}\": {why}", info.qualified_resource()),
        )
        .with_details(details(name, info.group, info.plural))
    }

    /// The Conflict of an update with a stale resourceVersion.
    pub fn stale(info: &ResourceInfo, name: &str) -> Self {
        Self::conflict(
            info,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn gone_expired(message: impl Into<String>) -> Self {
        Self::new(410, StatusReason::Expired, message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(413, StatusReason::RequestEntityTooLarge, format!("Request entity too large: limit is {limit}"))
    }

    pub fn unsupported_media_type(content_type: &str, supported: &[&str]) -> Self {
        Self::new(
            415,
            StatusReason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                supported.join(", ")
            ),
        )
        .with_details(json!({"causes": [{"reason": "UnexpectedServerResponse", "message": content_type}]}))
    }

    /// 422 Invalid with one cause per field error.
    pub fn invalid(info: &ResourceInfo, name: &str, errors: &ErrorList) -> Self {
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.error_type.reason(), "message": e.message(), "field": e.field}))
            .collect();
        Self::new(
            422,
            StatusReason::Invalid,
            format!("{} \"{name}\" is invalid: {}", info.qualified_kind(), errors.summary()),
        )
        .with_details(json!({"name": name, "group": info.group, "kind": info.kind, "causes": causes}))
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        let message = message.to_string();
        Self::new(500, StatusReason::InternalError, format!("Internal error occurred: {message}"))
            .with_details(json!({"causes": [{"message": message}]}))
    }

    /// 500 ServerTimeout: a generated name collided; clients retry.
    pub fn server_timeout(info: &ResourceInfo, operation: &str, retry_after: u64) -> Self {
        let mut e = Self::new(
            500,
            StatusReason::ServerTimeout,
            format!(
                "The {operation} operation against {} could not be completed at this time, please try again.",
                info.qualified_resource()
            ),
        )
        .with_details(
            json!({"name": operation, "group": info.group, "kind": info.plural, "retryAfterSeconds": retry_after}),
        );
        e.retry_after = Some(retry_after);
        e
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(503, StatusReason::ServiceUnavailable, message);
        e.retry_after = Some(1);
        e
    }

    /// 504: a resourceVersion newer than the store's.
    pub fn too_large_resource_version(requested: i64, current: i64) -> Self {
        let mut e = Self::new(
            504,
            StatusReason::Timeout,
            format!("Too large resource version: {requested}, current: {current}"),
        )
        .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}));
        e.retry_after = Some(1);
        e
    }

    /// Map a storage error for an operation on `name` of `info`.
    pub fn from_storage(err: StorageError, info: &ResourceInfo, name: &str) -> Self {
        match err {
            StorageError::NotFound { .. } => Self::not_found(info, name),
            StorageError::AlreadyExists { .. } => Self::already_exists(info, name),
            StorageError::Conflict { .. } => Self::stale(info, name),
            StorageError::Compacted { requested, compacted } => {
                Self::gone_expired(format!("too old resource version: {requested} ({compacted})"))
            }
            StorageError::FutureRevision { requested, current } => Self::too_large_resource_version(requested, current),
            StorageError::InvalidKey { reason, .. } => Self::bad_request(format!("invalid object key: {reason}")),
            StorageError::ValueTooLarge { limit, .. } => Self::too_large(limit),
            StorageError::Unavailable(m) => {
                tracing::warn!(error = %m, "storage unavailable");
                Self::service_unavailable("the storage backend is unavailable, please try again")
            }
            StorageError::Unreadable { message, .. } => {
                tracing::error!(error = %message, "unreadable stored value");
                Self::internal(message)
            }
            StorageError::Internal(m) => {
                tracing::error!(error = %m, "storage error");
                Self::internal("storage error")
            }
        }
    }

    /// The `Status` object.
    pub fn status(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), "Status".into());
        m.insert("apiVersion".into(), "v1".into());
        m.insert(
            "metadata".into(),
            match &self.continue_token {
                Some(c) => json!({ "continue": c }),
                None => json!({}),
            },
        );
        m.insert("status".into(), "Failure".into());
        m.insert("message".into(), self.message.clone().into());
        match self.foreign_reason.as_deref() {
            Some("") => {}
            Some(r) => {
                m.insert("reason".into(), r.into());
            }
            None => {
                m.insert("reason".into(), self.reason.as_str().into());
            }
        }
        if let Some(d) = &self.details {
            m.insert("details".into(), d.clone());
        }
        m.insert("code".into(), self.code.into());
        Value::Object(m)
    }
}

fn split_qualified(q: &str) -> (&str, &str) {
    q.split_once('.').unwrap_or((q, ""))
}

fn details(name: &str, group: &str, kind: &str) -> Value {
    let mut m = Map::new();
    if !name.is_empty() {
        m.insert("name".into(), name.into());
    }
    if !group.is_empty() {
        m.insert("group".into(), group.into());
    }
    if !kind.is_empty() {
        m.insert("kind".into(), kind.into());
    }
    Value::Object(m)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.status()).unwrap_or_default();
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (code, body).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

impl From<StorageError> for ApiError {
    /// For storage errors outside a named object's context.
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Compacted { requested, compacted } => {
                Self::gone_expired(format!("too old resource version: {requested} ({compacted})"))
            }
            StorageError::FutureRevision { requested, current } => Self::too_large_resource_version(requested, current),
            StorageError::Unavailable(m) => {
                tracing::warn!(error = %m, "storage unavailable");
                Self::service_unavailable("the storage backend is unavailable, please try again")
            }
            StorageError::Unreadable { message, .. } => {
                tracing::error!(error = %message, "unreadable stored value");
                Self::internal(message)
            }
            other => {
                tracing::error!(error = %other, "storage error");
                Self::internal("storage error")
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
