//! What a request asks for, read from its method, path and query (k8s.io/apiserver `RequestInfo`): the attributes
//! authorization decides on and the REST layer routes by.

use axum::http::Method;

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    pub is_resource_request: bool,
    /// The raw path (for non-resource authorization).
    pub path: String,
    /// Kube verb: get, list, watch, create, update, patch, delete, deletecollection; for non-resource requests the
    /// lower-cased HTTP method.
    pub verb: String,
    pub api_group: String,
    pub api_version: String,
    pub namespace: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

impl RequestInfo {
    /// Parse `method path?query`. `watch_param` is whether `watch=1|true` is in the query.
    pub fn parse(method: &Method, path: &str, watch_param: bool, field_selector_name: Option<&str>) -> Self {
        let mut info = RequestInfo {
            is_resource_request: false,
            path: path.to_string(),
            verb: method.as_str().to_ascii_lowercase(),
            api_group: String::new(),
            api_version: String::new(),
            namespace: String::new(),
            resource: String::new(),
            subresource: String::new(),
            name: String::new(),
        };
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        if parts.len() < 3 || parts[0] != "apis" {
            return info;
        }
        info.api_group = parts[1].to_string();
        info.api_version = parts[2].to_string();
        let mut rest = &parts[3..];
        if rest.is_empty() {
            return info;
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
                info.verb = resource_verb(method, true, watch_path || watch_param);
                return info;
            }
            rest = &rest[2..];
        }
        if rest.is_empty() {
            return info;
        }
        info.is_resource_request = true;
        info.resource = rest[0].to_string();
        if rest.len() >= 2 {
            info.name = rest[1].to_string();
        }
        if rest.len() >= 3 {
            info.subresource = rest[2..].join("/");
        }
        info.verb = resource_verb(method, !info.name.is_empty(), watch_path || watch_param);
        // A list narrowed to one name by `fieldSelector=metadata.name=x` is authorized as a request for that name.
        if info.name.is_empty()
            && (info.verb == "list" || info.verb == "watch")
            && let Some(n) = field_selector_name
        {
            info.name = n.to_string();
        }
        info
    }
}

fn resource_verb(method: &Method, has_name: bool, watch: bool) -> String {
    let v = match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if has_name => "get",
        Method::GET | Method::HEAD => "list",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if has_name => "delete",
        Method::DELETE => "deletecollection",
        _ => return method.as_str().to_ascii_lowercase(),
    };
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(m: Method, path: &str, watch: bool) -> RequestInfo {
        RequestInfo::parse(&m, path, watch, None)
    }

    #[test]
    fn resource_paths() {
        let i = p(Method::GET, "/apis/backup.extend-k8s.io/v1/namespaces/ns/timeseriesdbbackups/x/status", false);
        assert!(i.is_resource_request);
        assert_eq!(
            (i.verb.as_str(), i.namespace.as_str(), i.name.as_str(), i.subresource.as_str()),
            ("get", "ns", "x", "status")
        );
        let i = p(Method::GET, "/apis/backup.extend-k8s.io/v1/timeseriesdbbackups", true);
        assert_eq!(i.verb, "watch");
        let i = p(Method::DELETE, "/apis/backup.extend-k8s.io/v1/namespaces/ns/timeseriesdbbackups", false);
        assert_eq!(i.verb, "deletecollection");
        let i = p(Method::GET, "/apis/backup.extend-k8s.io/v1/watch/namespaces/ns/timeseriesdbbackups/x", false);
        assert_eq!((i.verb.as_str(), i.name.as_str()), ("watch", "x"));
        let i = RequestInfo::parse(&Method::GET, "/apis/g/v/r", false, Some("n"));
        assert_eq!((i.verb.as_str(), i.name.as_str()), ("list", "n"));
    }

    #[test]
    fn non_resource_paths() {
        for path in ["/healthz", "/apis", "/apis/backup.extend-k8s.io", "/apis/backup.extend-k8s.io/v1", "/openapi/v2"]
        {
            let i = p(Method::GET, path, false);
            assert!(!i.is_resource_request, "{path}");
            assert_eq!(i.verb, "get");
        }
    }
}
