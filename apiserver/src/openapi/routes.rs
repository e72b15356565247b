//! The served paths and operations of the group version, independent of the OpenAPI version that renders them
//! (`v2.rs`, `v3.rs`). Mirrors the routes kube-apiserver's installer registers for a resource (installer.go):
//! collection, item, `status`, the all-namespaces list and the deprecated `watch/` paths.

use backup_apis::ResourceInfo;

use super::meta;
use super::naming::{article, definition_name, operation_id, tag};
use super::params::{self, Param};

/// Media types of object responses.
pub(super) const OBJECT_TYPES: &[&str] = &["application/json", "application/yaml"];
/// Media types of list and watch responses.
pub(super) const STREAM_TYPES: &[&str] = &["application/json", "application/yaml", "application/json;stream=watch"];
/// Patch bodies (`Content-Type` of PATCH).
pub(super) const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];
/// Bodies of everything but PATCH.
pub(super) const ANY_TYPE: &[&str] = &["*/*"];

/// A group, version and kind (`x-kubernetes-group-version-kind` of an operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Gvk {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
}

/// A request body: the definition it is and whether it is required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Body {
    pub definition: String,
    pub required: bool,
}

/// A response: code, description, and the definition returned (none for 401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reply {
    pub code: u16,
    pub description: &'static str,
    pub definition: String,
}

/// One operation of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Operation {
    /// `get`, `post`, `put`, `patch`, `delete`.
    pub method: &'static str,
    pub id: String,
    pub description: String,
    /// `backupExtendK8sIo_v1`.
    pub tag: String,
    /// `x-kubernetes-action`; absent for getAPIResources, as upstream.
    pub action: Option<&'static str>,
    pub gvk: Option<Gvk>,
    /// Operation-level parameters, in name order.
    pub params: Vec<Param>,
    pub body: Option<Body>,
    pub consumes: &'static [&'static str],
    pub produces: &'static [&'static str],
    /// Responses besides 401.
    pub replies: Vec<Reply>,
}

/// A path with its path-level parameters and operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PathItem {
    pub path: String,
    pub params: Vec<Param>,
    pub ops: Vec<Operation>,
}

/// `/apis/<group>/<version>`.
pub(super) fn root(group: &str, version: &str) -> String {
    format!("/apis/{group}/{version}")
}

/// `GET /apis/<group>/<version>/`: the APIResourceList.
pub(super) fn api_resources(group: &str, version: &str) -> PathItem {
    let op = Operation {
        method: "get",
        id: operation_id("get", group, version, "APIResources"),
        description: "get available resources".to_string(),
        tag: tag(group, version),
        action: None,
        gvk: None,
        params: Vec::new(),
        body: None,
        consumes: OBJECT_TYPES,
        produces: OBJECT_TYPES,
        replies: vec![ok(meta::API_RESOURCE_LIST)],
    };
    PathItem { path: format!("{}/", root(group, version)), params: Vec::new(), ops: vec![op] }
}

/// Every path of one resource.
pub(super) fn resource_paths(info: &ResourceInfo) -> Vec<PathItem> {
    let r = Resource::new(info);
    let root = root(info.group, info.version);
    let plural = info.plural;
    let (scope, collection) = if info.namespaced {
        ("Namespaced", format!("{root}/namespaces/{{namespace}}/{plural}"))
    } else {
        ("", format!("{root}/{plural}"))
    };
    let item = format!("{collection}/{{name}}");
    let watch_collection = collection.replacen(&root, &format!("{root}/watch"), 1);
    let scope_params = || if info.namespaced { vec![params::namespace()] } else { Vec::new() };
    let item_params = || [scope_params(), vec![params::name(info.kind)]].concat();

    let mut paths = vec![
        r.path(&collection, scope_params(), vec![r.delete_collection(scope), r.list(scope, ""), r.create(scope)]),
        r.path(
            &item,
            item_params(),
            vec![r.delete(scope), r.read(scope, ""), r.patch(scope, ""), r.replace(scope, "")],
        ),
    ];
    if info.status_subresource {
        let ops = vec![r.read(scope, "Status"), r.patch(scope, "Status"), r.replace(scope, "Status")];
        paths.push(r.path(&format!("{item}/status"), item_params(), ops));
    }
    let list_params = || [params::list(), scope_params()].concat();
    paths.push(r.path(&watch_collection, list_params(), vec![r.watch_list(scope, "")]));
    let ops = vec![r.watch(scope)];
    paths.push(r.path(
        &format!("{watch_collection}/{{name}}"),
        [list_params(), vec![params::name(info.kind)]].concat(),
        ops,
    ));
    if info.namespaced {
        let all = format!("{root}/{plural}");
        paths.push(r.path(&all, params::list(), vec![r.list("", "ForAllNamespaces")]));
        let ops = vec![r.watch_list("", "ForAllNamespaces")];
        paths.push(r.path(&format!("{root}/watch/{plural}"), params::list(), ops));
    }
    paths
}

fn ok(definition: &str) -> Reply {
    Reply { code: 200, description: "OK", definition: definition.to_string() }
}

/// Builds the operations of one resource.
struct Resource<'a> {
    info: &'a ResourceInfo,
    object: String,
    list: String,
}

impl<'a> Resource<'a> {
    fn new(info: &'a ResourceInfo) -> Self {
        Self {
            info,
            object: definition_name(info.group, info.version, info.kind),
            list: definition_name(info.group, info.version, info.list_kind),
        }
    }

    /// A path; `pretty` is added to its parameters, which are then put in name order.
    fn path(&self, path: &str, mut path_params: Vec<Param>, ops: Vec<Operation>) -> PathItem {
        path_params.push(params::pretty());
        PathItem { path: path.to_string(), params: params::sorted(path_params), ops }
    }

    fn op(
        &self,
        method: &'static str,
        verb: &str,
        action: &'static str,
        rest: String,
        description: String,
    ) -> Operation {
        let i = self.info;
        Operation {
            method,
            id: operation_id(verb, i.group, i.version, &rest),
            description,
            tag: tag(i.group, i.version),
            action: Some(action),
            gvk: Some(Gvk { group: i.group, version: i.version, kind: i.kind }),
            params: Vec::new(),
            body: None,
            consumes: ANY_TYPE,
            produces: OBJECT_TYPES,
            replies: Vec::new(),
        }
    }

    fn replies(&self, codes: &[(u16, &'static str)], definition: &str) -> Vec<Reply> {
        codes
            .iter()
            .map(|&(code, description)| Reply { code, description, definition: definition.to_string() })
            .collect()
    }

    /// ` status of` for the status subresource.
    fn of(sub: &str) -> String {
        if sub.is_empty() { String::new() } else { format!(" {} of", sub.to_lowercase()) }
    }

    fn list(&self, scope: &str, suffix: &str) -> Operation {
        let kind = self.info.kind;
        let mut op = self.op(
            "get",
            "list",
            "list",
            format!("{scope}{kind}{suffix}"),
            format!("list or watch objects of kind {kind}"),
        );
        if suffix.is_empty() {
            op.params = params::list();
        }
        op.produces = STREAM_TYPES;
        op.replies = vec![ok(&self.list)];
        op
    }

    fn create(&self, scope: &str) -> Operation {
        let kind = self.info.kind;
        let mut op =
            self.op("post", "create", "post", format!("{scope}{kind}"), format!("create{}{kind}", article(kind)));
        op.params = params::write(false);
        op.body = Some(Body { definition: self.object.clone(), required: true });
        op.replies = self.replies(&[(200, "OK"), (201, "Created"), (202, "Accepted")], &self.object);
        op
    }

    fn delete_collection(&self, scope: &str) -> Operation {
        let kind = self.info.kind;
        let rest = format!("collection{scope}{kind}");
        let mut op = self.op("delete", "delete", "deletecollection", rest, format!("delete collection of {kind}"));
        op.params = params::delete_collection();
        op.body = Some(Body { definition: meta::DELETE_OPTIONS.to_string(), required: false });
        op.replies = vec![ok(meta::STATUS)];
        op
    }

    fn read(&self, scope: &str, sub: &str) -> Operation {
        let kind = self.info.kind;
        let description = format!("read{} the specified {kind}", Self::of(sub));
        let mut op = self.op("get", "read", "get", format!("{scope}{kind}{sub}"), description);
        op.replies = vec![ok(&self.object)];
        op
    }

    fn replace(&self, scope: &str, sub: &str) -> Operation {
        let kind = self.info.kind;
        let description = format!("replace{} the specified {kind}", Self::of(sub));
        let mut op = self.op("put", "replace", "put", format!("{scope}{kind}{sub}"), description);
        op.params = params::write(false);
        op.body = Some(Body { definition: self.object.clone(), required: true });
        op.replies = self.replies(&[(200, "OK"), (201, "Created")], &self.object);
        op
    }

    fn patch(&self, scope: &str, sub: &str) -> Operation {
        let kind = self.info.kind;
        let description = format!("partially update{} the specified {kind}", Self::of(sub));
        let mut op = self.op("patch", "patch", "patch", format!("{scope}{kind}{sub}"), description);
        op.params = params::write(true);
        op.body = Some(Body { definition: meta::PATCH.to_string(), required: true });
        op.consumes = PATCH_TYPES;
        op.replies = self.replies(&[(200, "OK"), (201, "Created")], &self.object);
        op
    }

    fn delete(&self, scope: &str) -> Operation {
        let kind = self.info.kind;
        let mut op =
            self.op("delete", "delete", "delete", format!("{scope}{kind}"), format!("delete{}{kind}", article(kind)));
        op.params = params::delete();
        op.body = Some(Body { definition: meta::DELETE_OPTIONS.to_string(), required: false });
        op.replies = self.replies(&[(200, "OK"), (202, "Accepted")], meta::STATUS);
        op
    }

    fn watch(&self, scope: &str) -> Operation {
        let kind = self.info.kind;
        let description = format!(
            "watch changes to an object of kind {kind}. deprecated: use the 'watch' parameter with a list operation \
             instead, filtered to a single item with the 'fieldSelector' parameter."
        );
        let mut op = self.op("get", "watch", "watch", format!("{scope}{kind}"), description);
        op.produces = STREAM_TYPES;
        op.replies = vec![ok(meta::WATCH_EVENT)];
        op
    }

    fn watch_list(&self, scope: &str, suffix: &str) -> Operation {
        let kind = self.info.kind;
        let description = format!(
            "watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list \
             operation instead."
        );
        let mut op = self.op("get", "watch", "watchlist", format!("{scope}{kind}List{suffix}"), description);
        op.produces = STREAM_TYPES;
        op.replies = vec![ok(meta::WATCH_EVENT)];
        op
    }
}
