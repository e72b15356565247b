//! `ValidatingAdmissionWebhook` (upstream's validating dispatcher): the matching webhooks are called all at once
//! on the object about to be stored; the first of them (in their order) that denies, or fails under
//! `failurePolicy: Fail`, decides the request's error.
//!
//! strategy → field manager → **validating webhooks** → storage.

use std::sync::Arc;

use super::client::Caller;
use super::source::HookSource;
use super::{decide, invoke, matching};
use crate::admission::namespaces::Namespaces;
use crate::admission::{Admission, Attributes, Object};
use crate::error::ApiResult;

/// The validating webhook plugin.
pub struct ValidatingWebhooks {
    source: HookSource,
    caller: Arc<Caller>,
    namespaces: Arc<Namespaces>,
}

impl ValidatingWebhooks {
    pub fn new(source: HookSource, caller: Arc<Caller>, namespaces: Arc<Namespaces>) -> Self {
        Self { source, caller, namespaces }
    }
}

#[async_trait::async_trait]
impl Admission for ValidatingWebhooks {
    async fn validate(&self, attrs: &Attributes<'_>, object: Option<&Object>) -> ApiResult<()> {
        let hooks = self.source.hooks(attrs).await?;
        let mut relevant = Vec::new();
        for hook in hooks.iter() {
            if matching::should_call(hook, attrs, object, &self.namespaces).await? {
                relevant.push(hook);
            }
        }
        let calls = relevant.iter().map(|hook| invoke(&self.caller, hook, attrs, object, false));
        let outcomes = futures::future::join_all(calls).await;
        let mut first_error = None;
        for (hook, outcome) in relevant.iter().zip(outcomes) {
            if let Err(e) = decide(hook, outcome) {
                match first_error {
                    None => first_error = Some(e),
                    Some(_) => tracing::warn!(webhook = hook.name, error = e.message, "also rejected"),
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
