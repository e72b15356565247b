//! One webhook of a configuration, compiled once when the configuration changes (upstream's `WebhookAccessor`):
//! its rules, parsed selectors, policies and how to reach it. The webhooks of all configurations are flattened in
//! upstream's order: configurations by name, webhooks in their order within one.
//!
//! source (configurations) → **hook** → matching, calling.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as StructuredSelector;

use crate::registry::selectors::LabelSelector;

/// kube-apiserver's default `timeoutSeconds`.
const DEFAULT_TIMEOUT_SECONDS: i32 = 10;
/// And the largest it allows.
const MAX_TIMEOUT_SECONDS: i32 = 30;

/// `failurePolicy`: what a call that fails (not a denial) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// The request fails (the default).
    Fail,
    /// The webhook is skipped.
    Ignore,
}

/// `sideEffects`: may the webhook be called on a dry run?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideEffects {
    None,
    NoneOnDryRun,
    /// `Some`, `Unknown` (admissionregistration v1beta1 configurations), or anything else.
    Some,
}

impl SideEffects {
    fn parse(s: &str) -> Self {
        match s {
            "None" => Self::None,
            "NoneOnDryRun" => Self::NoneOnDryRun,
            _ => Self::Some,
        }
    }

    /// Whether a dry run may call the webhook.
    pub fn dry_run_safe(self) -> bool {
        matches!(self, Self::None | Self::NoneOnDryRun)
    }
}

/// Where the webhook listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `clientConfig.url` as written.
    Url(String),
    /// `clientConfig.service`, port defaulted to 443.
    Service { namespace: String, name: String, path: String, port: u16 },
}

/// A compiled webhook.
#[derive(Debug, Clone)]
pub struct Hook {
    /// `<configuration>/<webhook>/<n>` (the n-th webhook of that name in the configuration), as upstream.
    pub uid: String,
    pub configuration: String,
    pub name: String,
    pub rules: Vec<RuleWithOperations>,
    /// Parsed selectors; a selector that does not parse fails the requests the webhook's rules match.
    pub namespace_selector: Result<LabelSelector, String>,
    pub object_selector: Result<LabelSelector, String>,
    pub failure_policy: FailurePolicy,
    pub side_effects: SideEffects,
    pub timeout: Duration,
    /// `reinvocationPolicy: IfNeeded` (mutating webhooks only).
    pub reinvoke_if_needed: bool,
    pub review_versions: Vec<String>,
    /// None when the configuration names neither a URL nor a service.
    pub endpoint: Option<Endpoint>,
    /// `clientConfig.caBundle` (PEM); empty: the system's roots.
    pub ca_bundle: Vec<u8>,
}

/// The fields both kinds of webhook share.
struct Common<'a> {
    name: &'a str,
    rules: &'a Option<Vec<RuleWithOperations>>,
    namespace_selector: &'a Option<StructuredSelector>,
    object_selector: &'a Option<StructuredSelector>,
    failure_policy: &'a Option<String>,
    side_effects: &'a str,
    timeout_seconds: Option<i32>,
    review_versions: &'a [String],
    client: &'a WebhookClientConfig,
    reinvoke_if_needed: bool,
}

impl<'a> From<&'a MutatingWebhook> for Common<'a> {
    fn from(w: &'a MutatingWebhook) -> Self {
        Self {
            name: &w.name,
            rules: &w.rules,
            namespace_selector: &w.namespace_selector,
            object_selector: &w.object_selector,
            failure_policy: &w.failure_policy,
            side_effects: &w.side_effects,
            timeout_seconds: w.timeout_seconds,
            review_versions: &w.admission_review_versions,
            client: &w.client_config,
            reinvoke_if_needed: w.reinvocation_policy.as_deref() == Some("IfNeeded"),
        }
    }
}

impl<'a> From<&'a ValidatingWebhook> for Common<'a> {
    fn from(w: &'a ValidatingWebhook) -> Self {
        Self {
            name: &w.name,
            rules: &w.rules,
            namespace_selector: &w.namespace_selector,
            object_selector: &w.object_selector,
            failure_policy: &w.failure_policy,
            side_effects: &w.side_effects,
            timeout_seconds: w.timeout_seconds,
            review_versions: &w.admission_review_versions,
            client: &w.client_config,
            reinvoke_if_needed: false,
        }
    }
}

impl Common<'_> {
    fn compile(&self, uid: String, configuration: &str) -> Hook {
        let selector = |s: &Option<StructuredSelector>| match s {
            Some(s) => LabelSelector::from_structured(s),
            None => Ok(LabelSelector::default()),
        };
        let seconds = self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS).clamp(1, MAX_TIMEOUT_SECONDS);
        Hook {
            uid,
            configuration: configuration.to_string(),
            name: self.name.to_string(),
            rules: self.rules.clone().unwrap_or_default(),
            namespace_selector: selector(self.namespace_selector),
            object_selector: selector(self.object_selector),
            failure_policy: match self.failure_policy.as_deref() {
                Some("Ignore") => FailurePolicy::Ignore,
                _ => FailurePolicy::Fail,
            },
            side_effects: SideEffects::parse(self.side_effects),
            timeout: Duration::from_secs(seconds.unsigned_abs().into()),
            reinvoke_if_needed: self.reinvoke_if_needed,
            review_versions: self.review_versions.to_vec(),
            endpoint: endpoint(self.client),
            ca_bundle: self.client.ca_bundle.as_ref().map(|b| b.0.clone()).unwrap_or_default(),
        }
    }
}

fn endpoint(client: &WebhookClientConfig) -> Option<Endpoint> {
    if let Some(ServiceReference { namespace, name, path, port }) = &client.service {
        let port = port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0).unwrap_or(443);
        let path = path.clone().unwrap_or_default();
        return Some(Endpoint::Service { namespace: namespace.clone(), name: name.clone(), path, port });
    }
    client.url.clone().filter(|u| !u.is_empty()).map(Endpoint::Url)
}

/// Configurations (name, webhooks) flattened: sorted by name, each webhook numbered as upstream numbers `uid`s
/// (repeated names within a configuration count up).
fn flatten(mut configurations: Vec<(&str, Vec<Common<'_>>)>) -> Vec<Hook> {
    configurations.sort_by(|a, b| a.0.cmp(b.0));
    let mut hooks = Vec::new();
    for (configuration, webhooks) in configurations {
        let mut seen = std::collections::HashMap::<&str, usize>::new();
        for w in webhooks {
            let n = seen.entry(w.name).or_default();
            hooks.push(w.compile(format!("{configuration}/{}/{n}", w.name), configuration));
            *n += 1;
        }
    }
    hooks
}

/// The mutating webhooks of `configurations`, in upstream's order.
pub fn mutating(configurations: &[&MutatingWebhookConfiguration]) -> Vec<Hook> {
    flatten(
        configurations
            .iter()
            .map(|c| {
                let name = c.metadata.name.as_deref().unwrap_or("");
                (name, c.webhooks.iter().flatten().map(Common::from).collect())
            })
            .collect(),
    )
}

/// The validating webhooks of `configurations`, in upstream's order.
pub fn validating(configurations: &[&ValidatingWebhookConfiguration]) -> Vec<Hook> {
    flatten(
        configurations
            .iter()
            .map(|c| {
                let name = c.metadata.name.as_deref().unwrap_or("");
                (name, c.webhooks.iter().flatten().map(Common::from).collect())
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn configurations_flatten_in_upstreams_order_with_defaults() {
        let config = |name: &str, hooks: serde_json::Value| -> MutatingWebhookConfiguration {
            serde_json::from_value(json!({"metadata": {"name": name}, "webhooks": hooks})).unwrap()
        };
        let hook = |name: &str| {
            json!({"name": name, "sideEffects": "None", "admissionReviewVersions": ["v1"],
                   "clientConfig": {"service": {"namespace": "ns", "name": "svc"}}})
        };
        let b = config("b", json!([hook("x.example.com"), hook("x.example.com")]));
        let mut a = config("a", json!([hook("y.example.com")]));
        a.webhooks.as_mut().unwrap()[0].reinvocation_policy = Some("IfNeeded".into());
        a.webhooks.as_mut().unwrap()[0].timeout_seconds = Some(90);
        let hooks = mutating(&[&b, &a]);
        let uids: Vec<&str> = hooks.iter().map(|h| h.uid.as_str()).collect();
        assert_eq!(uids, ["a/y.example.com/0", "b/x.example.com/0", "b/x.example.com/1"]);
        assert!(hooks[0].reinvoke_if_needed && !hooks[1].reinvoke_if_needed);
        assert_eq!(hooks[0].timeout, Duration::from_secs(30));
        assert_eq!(hooks[1].timeout, Duration::from_secs(10));
        assert_eq!(hooks[1].failure_policy, FailurePolicy::Fail);
        assert_eq!(
            hooks[1].endpoint,
            Some(Endpoint::Service { namespace: "ns".into(), name: "svc".into(), path: String::new(), port: 443 })
        );
    }
}
