//! Admission (k8s.io/apiserver `pkg/admission`): what every write goes through between the endpoint and storage.
//! The registry store calls [`Admission::admit`] — the mutating phase — on the object as the request made it, then
//! runs its strategy (system fields, pruning, defaults, validation) and the field manager, then
//! [`Admission::validate`] — the validating phase — on the object about to be stored. A delete is admitted with
//! the stored object as `oldObject` and no object, as upstream's `AdmissionToValidateObjectDeleteFunc`.
//!
//! The plugins, in kube-apiserver's order: [`namespace_lifecycle`] (`NamespaceLifecycle`), then the [`webhook`]
//! plugins `MutatingAdmissionWebhook` and `ValidatingAdmissionWebhook`, which call the cluster's
//! Mutating/ValidatingWebhookConfigurations. `--disable-admission-plugins` turns any of them off; standalone (no
//! cluster) there is no admission at all.
//!
//! endpoints → registry store → **admit** → strategy → field manager → **validate** → storage.

pub mod namespace_lifecycle;
pub mod namespaces;
pub mod webhook;

use std::sync::{Arc, Mutex};

use backup_apis::ResourceInfo;
use serde_json::{Map, Value, json};

use crate::audit::AuditContext;
use crate::audit::policy::Level;
use crate::auth::authn::UserInfo;
use crate::error::ApiResult;
use crate::health::Diagnosis;
use crate::request::info::Subresource;
use crate::request::options::DeleteOptions;

/// An object as admission sees it (always a JSON object).
pub type Object = Map<String, Value>;

/// At most this many warnings are kept for one response.
const MAX_WARNINGS: usize = 64;

/// What a write does (`admission.Operation`; CONNECT is never served here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    /// As on the wire and in webhook rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }
}

/// The admission plugins, by kube-apiserver's names (`--disable-admission-plugins`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Plugin {
    #[value(name = "NamespaceLifecycle")]
    NamespaceLifecycle,
    #[value(name = "MutatingAdmissionWebhook")]
    MutatingAdmissionWebhook,
    #[value(name = "ValidatingAdmissionWebhook")]
    ValidatingAdmissionWebhook,
}

/// Who makes a request, and where admission leaves what it has to say besides its verdict: the user (the
/// AdmissionReview's `userInfo`), the request's audit context (annotations) and warnings for the client
/// (`Warning` headers, on whatever the response is).
pub struct RequestContext {
    pub user: Arc<UserInfo>,
    audit: Option<Arc<AuditContext>>,
    warnings: Mutex<Vec<String>>,
}

impl RequestContext {
    pub fn new(user: Arc<UserInfo>, audit: Option<Arc<AuditContext>>) -> Self {
        Self { user, audit, warnings: Mutex::new(Vec::new()) }
    }

    /// A warning for the client (the first [`MAX_WARNINGS`] distinct ones are kept).
    pub fn warn(&self, text: String) {
        if let Ok(mut w) = self.warnings.lock()
            && w.len() < MAX_WARNINGS
            && !w.contains(&text)
        {
            w.push(text);
        }
    }

    /// The warnings so far, taken.
    pub fn take_warnings(&self) -> Vec<String> {
        self.warnings.lock().map(|mut w| std::mem::take(&mut *w)).unwrap_or_default()
    }

    /// An audit annotation for events of `level` and above (nothing when the request is not audited).
    pub fn annotate(&self, level: Level, key: String, value: String) {
        if let Some(audit) = &self.audit {
            audit.annotate_at(level, key, value);
        }
    }
}

/// What admission knows of a write besides the object (upstream's `admission.Attributes`).
pub struct Attributes<'a> {
    pub operation: Operation,
    pub resource: &'a ResourceInfo,
    pub subresource: &'a Subresource,
    pub namespace: &'a str,
    /// The object's name ("" for a create by `generateName`, and for every item of a deletecollection, as upstream).
    pub name: &'a str,
    /// The stored object, on an update or delete.
    pub old_object: Option<&'a Object>,
    pub dry_run: bool,
    /// The request's options as their kind (`CreateOptions`, `UpdateOptions`, `DeleteOptions`).
    pub options: Value,
    pub request: &'a RequestContext,
}

/// `CreateOptions` (also for a patch or apply that creates, as upstream's `patchToCreateOptions`).
pub fn create_options(dry_run: bool, field_manager: &str) -> Value {
    write_options("CreateOptions", dry_run, field_manager)
}

/// `UpdateOptions` (also for a patch, as upstream's `patchToUpdateOptions`).
pub fn update_options(dry_run: bool, field_manager: &str) -> Value {
    write_options("UpdateOptions", dry_run, field_manager)
}

fn write_options(kind: &str, dry_run: bool, field_manager: &str) -> Value {
    let mut o = json!({"kind": kind, "apiVersion": "meta.k8s.io/v1"});
    if dry_run {
        o["dryRun"] = json!(["All"]);
    }
    if !field_manager.is_empty() {
        o["fieldManager"] = json!(field_manager);
    }
    o
}

/// `DeleteOptions`.
pub fn delete_options(opts: &DeleteOptions) -> Value {
    let mut o = json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"});
    if opts.dry_run {
        o["dryRun"] = json!(["All"]);
    }
    if let Some(p) = opts.propagation_policy {
        o["propagationPolicy"] = json!(format!("{p:?}"));
    }
    let mut pre = Map::new();
    if let Some(uid) = &opts.precondition_uid {
        pre.insert("uid".into(), json!(uid));
    }
    if let Some(rv) = &opts.precondition_resource_version {
        pre.insert("resourceVersion".into(), json!(rv));
    }
    if !pre.is_empty() {
        o["preconditions"] = Value::Object(pre);
    }
    o
}

/// An admission plugin, or the chain of them.
#[async_trait::async_trait]
pub trait Admission: Send + Sync + 'static {
    /// The mutating phase: may change `object` (None on a delete) or refuse the write. Returns the object as it was
    /// before this plugin first changed it, when it did.
    async fn admit(&self, _attrs: &Attributes<'_>, _object: Option<&mut Object>) -> ApiResult<Option<Object>> {
        Ok(None)
    }

    /// The validating phase, on the object about to be stored (None on a delete).
    async fn validate(&self, _attrs: &Attributes<'_>, _object: Option<&Object>) -> ApiResult<()> {
        Ok(())
    }
}

/// Plugins run in order: every one's mutating phase, or every one's validating phase.
pub struct Chain(Vec<Arc<dyn Admission>>);

#[async_trait::async_trait]
impl Admission for Chain {
    async fn admit(&self, attrs: &Attributes<'_>, mut object: Option<&mut Object>) -> ApiResult<Option<Object>> {
        let mut original = None;
        for plugin in &self.0 {
            let before = plugin.admit(attrs, object.as_deref_mut()).await?;
            original = original.or(before);
        }
        Ok(original)
    }

    async fn validate(&self, attrs: &Attributes<'_>, object: Option<&Object>) -> ApiResult<()> {
        for plugin in &self.0 {
            plugin.validate(attrs, object).await?;
        }
        Ok(())
    }
}

/// The admission chain of a server in a cluster, without the `disabled` plugins (None when all are).
pub fn start(client: kube::Client, disabled: &[Plugin], diagnosis: Arc<Diagnosis>) -> Option<Arc<dyn Admission>> {
    let enabled = |p: Plugin| !disabled.contains(&p);
    let webhooks = enabled(Plugin::MutatingAdmissionWebhook) || enabled(Plugin::ValidatingAdmissionWebhook);
    if !enabled(Plugin::NamespaceLifecycle) && !webhooks {
        return None;
    }
    let namespaces = Arc::new(namespaces::Namespaces::start(client.clone(), diagnosis.clone()));
    let mut plugins: Vec<Arc<dyn Admission>> = Vec::new();
    if enabled(Plugin::NamespaceLifecycle) {
        plugins.push(Arc::new(namespace_lifecycle::NamespaceLifecycle { namespaces: namespaces.clone() }));
    }
    if webhooks {
        let caller = Arc::new(webhook::client::Caller::new(client.clone()));
        if enabled(Plugin::MutatingAdmissionWebhook) {
            let source = webhook::source::HookSource::mutating(client.clone(), diagnosis.clone());
            plugins.push(Arc::new(webhook::mutating::MutatingWebhooks::new(
                source,
                caller.clone(),
                namespaces.clone(),
            )));
        }
        if enabled(Plugin::ValidatingAdmissionWebhook) {
            let source = webhook::source::HookSource::validating(client, diagnosis);
            plugins.push(Arc::new(webhook::validating::ValidatingWebhooks::new(source, caller, namespaces)));
        }
    }
    Some(Arc::new(Chain(plugins)))
}

/// Attributes for unit tests.
#[cfg(test)]
pub mod test_support {
    use super::*;

    pub fn attrs<'a>(
        info: &'a ResourceInfo,
        operation: Operation,
        subresource: &'a Subresource,
        namespace: &'a str,
        request: &'a RequestContext,
    ) -> Attributes<'a> {
        Attributes {
            operation,
            resource: info,
            subresource,
            namespace,
            name: "b1",
            old_object: None,
            dry_run: false,
            options: update_options(false, ""),
            request,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::options::PropagationPolicy;

    #[test]
    fn operation_options_as_upstream_sends_them() {
        assert_eq!(
            create_options(true, "kubectl-create"),
            json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "dryRun": ["All"], "fieldManager": "kubectl-create"})
        );
        assert_eq!(update_options(false, ""), json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}));
        let opts = DeleteOptions {
            propagation_policy: Some(PropagationPolicy::Foreground),
            precondition_uid: Some("u".into()),
            ..Default::default()
        };
        assert_eq!(
            delete_options(&opts),
            json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "propagationPolicy": "Foreground",
                   "preconditions": {"uid": "u"}})
        );
    }

    #[test]
    fn warnings_are_kept_once_and_bounded() {
        let cx = RequestContext::new(Arc::new(UserInfo::default()), None);
        cx.warn("a".into());
        cx.warn("a".into());
        for i in 0..100 {
            cx.warn(format!("w{i}"));
        }
        let w = cx.take_warnings();
        assert_eq!((w.len(), w[0].as_str()), (MAX_WARNINGS, "a"));
        assert!(cx.take_warnings().is_empty());
    }
}
