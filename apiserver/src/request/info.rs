//! What a request asks for, read from its method, path and query (k8s.io/apiserver `RequestInfo`): the attributes
//! authorization decides on and the endpoints route by. Parsed once, by [`crate::filters::request_info`].

use axum::http::Method;

/// The Kubernetes verb of a request. Resource requests get `get`…`deletecollection`; non-resource requests the
/// lower-cased HTTP method (`get`, `post`, `put`, `patch`, `delete`, `head`, `options`), as upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
    /// Non-resource POST.
    Post,
    /// Non-resource PUT.
    Put,
    Head,
    Options,
    /// Authorization only: deleting an object that cannot be read (KEP-3926), asked for beside `delete`.
    UnsafeDeleteIgnoreReadErrors,
    /// Authorization only: acting as another user, group, uid or extra (the impersonation filter).
    Impersonate,
}

impl Verb {
    /// The verb as authorization (SubjectAccessReview) and error messages spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::DeleteCollection => "deletecollection",
            Self::Post => "post",
            Self::Put => "put",
            Self::Head => "head",
            Self::Options => "options",
            Self::UnsafeDeleteIgnoreReadErrors => "unsafe-delete-ignore-read-errors",
            Self::Impersonate => "impersonate",
        }
    }

    /// Whether the verb may change stored state (for the mutating in-flight limit).
    pub fn is_mutating(self) -> bool {
        !matches!(self, Self::Get | Self::List | Self::Watch | Self::Head | Self::Options)
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which part of an object a resource request addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subresource {
    /// The object itself (no subresource in the path).
    Main,
    /// `/status`.
    Status,
    /// Anything else (authorized as named, then 404: no other subresource is served).
    Other(Box<str>),
}

impl Subresource {
    fn parse(segments: &[&str]) -> Self {
        match segments {
            [] => Self::Main,
            ["status"] => Self::Status,
            other => Self::Other(other.join("/").into()),
        }
    }

    /// The name as in the path and in authorization attributes ("" for the object itself).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Main => "",
            Self::Status => "status",
            Self::Other(s) => s,
        }
    }
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    pub is_resource_request: bool,
    /// The raw path (for non-resource authorization).
    pub path: String,
    pub verb: Verb,
    pub api_group: String,
    pub api_version: String,
    pub namespace: String,
    pub resource: String,
    pub subresource: Subresource,
    pub name: String,
}

impl RequestInfo {
    /// A non-resource request: `verb` on `path`.
    pub fn non_resource(verb: Verb, path: &str) -> Self {
        Self {
            is_resource_request: false,
            path: path.to_string(),
            verb,
            api_group: String::new(),
            api_version: String::new(),
            namespace: String::new(),
            resource: String::new(),
            subresource: Subresource::Main,
            name: String::new(),
        }
    }

    /// Parse `method path`. `watch_param` is whether `watch=1|true` is in the query; `field_selector_name` the
    /// name a `fieldSelector=metadata.name=…` pins. None for an HTTP method no Kubernetes verb maps to.
    pub fn parse(method: &Method, path: &str, watch_param: bool, field_selector_name: Option<&str>) -> Option<Self> {
        let mut info = Self::non_resource(non_resource_verb(method)?, path);
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        if parts.len() < 3 || parts[0] != "apis" {
            return Some(info);
        }
        info.api_group = parts[1].to_string();
        info.api_version = parts[2].to_string();
        let mut rest = &parts[3..];
        if rest.is_empty() {
            return Some(info);
        }
        let mut watch_path = false;
        if rest[0] == "watch" {
            watch_path = true;
            rest = &rest[1..];
        }
        if rest.len() >= 2 && rest[0] == "namespaces" {
            info.namespace = rest[1].to_string();
            if rest.len() == 2 {
                // `/namespaces/{ns}` itself is the core namespace resource: not served here.
                info.resource = "namespaces".to_string();
                info.name = rest[1].to_string();
                info.is_resource_request = true;
                info.verb = resource_verb(method, true, watch_path || watch_param, info.verb);
                return Some(info);
            }
            rest = &rest[2..];
        }
        if rest.is_empty() {
            return Some(info);
        }
        info.is_resource_request = true;
        info.resource = rest[0].to_string();
        if rest.len() >= 2 {
            info.name = rest[1].to_string();
        }
        info.subresource = Subresource::parse(rest.get(2..).unwrap_or_default());
        info.verb = resource_verb(method, !info.name.is_empty(), watch_path || watch_param, info.verb);
        // A list narrowed to one name by `fieldSelector=metadata.name=x` is authorized as a request for that name.
        if info.name.is_empty()
            && matches!(info.verb, Verb::List | Verb::Watch)
            && let Some(n) = field_selector_name
        {
            info.name = n.to_string();
        }
        Some(info)
    }
}

/// The lower-cased method, as upstream's verb of a non-resource request.
fn non_resource_verb(method: &Method) -> Option<Verb> {
    Some(match *method {
        Method::GET => Verb::Get,
        Method::POST => Verb::Post,
        Method::PUT => Verb::Put,
        Method::PATCH => Verb::Patch,
        Method::DELETE => Verb::Delete,
        Method::HEAD => Verb::Head,
        Method::OPTIONS => Verb::Options,
        _ => return None,
    })
}

fn resource_verb(method: &Method, has_name: bool, watch: bool, otherwise: Verb) -> Verb {
    match *method {
        Method::POST => Verb::Create,
        Method::GET | Method::HEAD if watch => Verb::Watch,
        Method::GET | Method::HEAD if has_name => Verb::Get,
        Method::GET | Method::HEAD => Verb::List,
        Method::PUT => Verb::Update,
        Method::PATCH => Verb::Patch,
        Method::DELETE if has_name => Verb::Delete,
        Method::DELETE => Verb::DeleteCollection,
        _ => otherwise,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(m: Method, path: &str, watch: bool) -> RequestInfo {
        RequestInfo::parse(&m, path, watch, None).unwrap()
    }

    #[test]
    fn resource_paths() {
        let i = p(Method::GET, "/apis/backup.extend-k8s.io/v1/namespaces/ns/timeseriesdbbackups/x/status", false);
        assert!(i.is_resource_request);
        assert_eq!(
            (i.verb, i.namespace.as_str(), i.name.as_str(), &i.subresource),
            (Verb::Get, "ns", "x", &Subresource::Status)
        );
        let i = p(Method::GET, "/apis/backup.extend-k8s.io/v1/timeseriesdbbackups", true);
        assert_eq!(i.verb, Verb::Watch);
        let i = p(Method::DELETE, "/apis/backup.extend-k8s.io/v1/namespaces/ns/timeseriesdbbackups", false);
        assert_eq!(i.verb, Verb::DeleteCollection);
        let i = p(Method::GET, "/apis/backup.extend-k8s.io/v1/watch/namespaces/ns/timeseriesdbbackups/x", false);
        assert_eq!((i.verb, i.name.as_str()), (Verb::Watch, "x"));
        let i = RequestInfo::parse(&Method::GET, "/apis/g/v/r", false, Some("n")).unwrap();
        assert_eq!((i.verb, i.name.as_str()), (Verb::List, "n"));
        let i = p(Method::GET, "/apis/g/v/namespaces/ns/r/x/scale/more", false);
        assert_eq!(i.subresource.as_str(), "scale/more");
    }

    #[test]
    fn non_resource_paths() {
        for path in ["/healthz", "/apis", "/apis/backup.extend-k8s.io", "/apis/backup.extend-k8s.io/v1", "/openapi/v2"]
        {
            let i = p(Method::GET, path, false);
            assert!(!i.is_resource_request, "{path}");
            assert_eq!(i.verb, Verb::Get);
        }
        assert_eq!(p(Method::POST, "/healthz", false).verb, Verb::Post);
        assert!(RequestInfo::parse(&Method::TRACE, "/healthz", false, None).is_none());
    }
}
