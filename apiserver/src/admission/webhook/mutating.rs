//! `MutatingAdmissionWebhook` (upstream's mutating dispatcher): the matching webhooks are called one after the
//! other, each on the object as the previous ones left it; a JSON patch in an answer is applied (with the
//! server's own bounded JSON patch code). When a webhook changed the object, the webhooks with
//! `reinvocationPolicy: IfNeeded` that ran before it are called once more, in a second round, as upstream's
//! reinvocation does.
//!
//! Audit annotations, as upstream: `mutation.webhook.admission.k8s.io/round_<r>_index_<i>` for every call
//! (Metadata level; whether it mutated), `patch.webhook.admission.k8s.io/round_<r>_index_<i>` with the patch of
//! every applied patch (Request level); `<i>` is the webhook's place among all mutating webhooks.
//!
//! admission chain → **mutating webhooks** → strategy.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use super::client::Caller;
use super::hook::Hook;
use super::source::HookSource;
use super::{HookError, decide, invoke, matching};
use crate::admission::namespaces::Namespaces;
use crate::admission::{Admission, Attributes, Object};
use crate::audit::policy::Level;
use crate::endpoints::patch::json;
use crate::error::{ApiError, ApiResult};

const MUTATION_ANNOTATION_PREFIX: &str = "mutation.webhook.admission.k8s.io/";
const PATCH_ANNOTATION_PREFIX: &str = "patch.webhook.admission.k8s.io/";

/// The mutating webhook plugin.
pub struct MutatingWebhooks {
    source: HookSource,
    caller: Arc<Caller>,
    namespaces: Arc<Namespaces>,
}

/// Upstream's `webhookReinvokeContext`.
#[derive(Default)]
struct Reinvocation {
    /// IfNeeded webhooks called since the object last changed.
    previously_invoked: HashSet<String>,
    /// The webhooks the second round calls.
    reinvoke: HashSet<String>,
    /// Whether any webhook changed the object.
    changed: bool,
}

impl Reinvocation {
    fn object_changed(&mut self) {
        self.changed = true;
        self.reinvoke.extend(self.previously_invoked.drain());
    }
}

/// Where a call stands among the calls of one request.
#[derive(Clone, Copy)]
struct Position {
    round: usize,
    index: usize,
}

impl MutatingWebhooks {
    pub fn new(source: HookSource, caller: Arc<Caller>, namespaces: Arc<Namespaces>) -> Self {
        Self { source, caller, namespaces }
    }

    /// Call `hook` and apply its patch to `object`; whether the object changed. The object as it was before the
    /// first change is kept in `original`.
    async fn call(
        &self,
        hook: &Hook,
        attrs: &Attributes<'_>,
        object: Option<&mut Object>,
        original: &mut Option<Object>,
        at: Position,
    ) -> Result<bool, HookError> {
        let answer = invoke(&self.caller, hook, attrs, object.as_deref(), true).await?;
        if answer.patch.is_empty() {
            return Ok(false);
        }
        let internal = |m: String| HookError::Refused(ApiError::internal(m));
        let operations: Value = serde_json::from_slice(&answer.patch).map_err(|e| internal(e.to_string()))?;
        if operations.as_array().is_some_and(Vec::is_empty) {
            return Ok(false);
        }
        let patch = json::parse(&answer.patch).map_err(|e| internal(e.message))?;
        let Some(object) = object else {
            return Err(internal(format!(
                "admission webhook {:?} attempted to modify the object, which is not supported for this operation",
                hook.name
            )));
        };
        if answer.patch_type != "JSONPatch" {
            return Err(HookError::Calling(format!("unsupported patch type {:?}", answer.patch_type)));
        }
        let mut doc = Value::Object(object.clone());
        json::apply(&mut doc, &patch).map_err(|e| internal(e.message))?;
        let Value::Object(patched) = doc else {
            return Err(internal(format!("admission webhook {:?} patched the object into a non-object", hook.name)));
        };
        // Upstream's PatchAuditAnnotation, its fields in its order.
        let annotation = format!(
            "{{\"configuration\":{},\"webhook\":{},\"patch\":{operations},\"patchType\":\"JSONPatch\"}}",
            Value::from(hook.configuration.as_str()),
            Value::from(hook.name.as_str())
        );
        attrs.request.annotate(Level::Request, annotation_key(PATCH_ANNOTATION_PREFIX, at), annotation);
        if patched == *object {
            return Ok(false);
        }
        let before = std::mem::replace(object, patched);
        original.get_or_insert(before);
        Ok(true)
    }
}

fn annotation_key(prefix: &str, at: Position) -> String {
    format!("{prefix}round_{}_index_{}", at.round, at.index)
}

#[async_trait::async_trait]
impl Admission for MutatingWebhooks {
    async fn admit(&self, attrs: &Attributes<'_>, mut object: Option<&mut Object>) -> ApiResult<Option<Object>> {
        let hooks = self.source.hooks(attrs).await?;
        let mut original = None;
        let mut state = Reinvocation::default();
        for round in 0..2 {
            if round == 1 && !state.changed {
                break;
            }
            for (index, hook) in hooks.iter().enumerate() {
                if !matching::should_call(hook, attrs, object.as_deref(), &self.namespaces).await? {
                    continue;
                }
                if round == 1 && !state.reinvoke.contains(&hook.uid) {
                    continue;
                }
                let at = Position { round, index };
                let outcome = self.call(hook, attrs, object.as_deref_mut(), &mut original, at).await;
                let mutated = matches!(outcome, Ok(true));
                // Upstream's MutationAuditAnnotation, its fields in its order.
                let annotation = format!(
                    "{{\"configuration\":{},\"webhook\":{},\"mutated\":{mutated}}}",
                    Value::from(hook.configuration.as_str()),
                    Value::from(hook.name.as_str())
                );
                attrs.request.annotate(Level::Metadata, annotation_key(MUTATION_ANNOTATION_PREFIX, at), annotation);
                if mutated {
                    state.object_changed();
                }
                if hook.reinvoke_if_needed {
                    state.previously_invoked.insert(hook.uid.clone());
                }
                decide(hook, outcome)?;
            }
        }
        Ok(original)
    }
}
