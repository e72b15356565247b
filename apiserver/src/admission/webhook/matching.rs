//! Whether a webhook is called for a request (upstream's `ShouldCallHook` with the `rules`, `namespace` and
//! `object` matchers): one of its rules matches the operation, group, version, resource and subresource, and
//! scope; its `namespaceSelector` matches the labels of the request's namespace (requests without a namespace
//! always match); its `objectSelector` matches the labels of the object or of the old object.
//!
//! `matchPolicy`: upstream's `Equivalent` (the default) also tries each rule against the other versions and group
//! names serving the same objects. This server serves one version of each resource and no other name for it, so
//! there is no equivalent to try: `Equivalent` and `Exact` match the same requests here.
//!
//! Rules are looked at first, then the selectors; as upstream, a selector that cannot be evaluated (a namespace
//! that does not exist, a selector that does not parse) fails the request only when a rule matched.
//!
//! dispatcher → **matching** (→ namespaces) → call.

use k8s_openapi::api::admissionregistration::v1::RuleWithOperations;
use serde_json::{Map, Value};

use super::hook::Hook;
use crate::admission::namespaces::Namespaces;
use crate::admission::{Attributes, Object};
use crate::error::{ApiError, ApiResult, StatusReason};
use crate::registry::selectors::LabelSelector;

/// Whether `hook` is called for this request, on `object` (None on a delete).
pub async fn should_call(
    hook: &Hook,
    attrs: &Attributes<'_>,
    object: Option<&Object>,
    namespaces: &Namespaces,
) -> ApiResult<bool> {
    if !hook.rules.iter().any(|r| rule_matches(r, attrs)) {
        return Ok(false);
    }
    if !namespace_matches(hook, attrs, namespaces).await? {
        return Ok(false);
    }
    let selector = hook.object_selector.as_ref().map_err(ApiError::internal)?;
    Ok(selector.is_empty() || labels_match(selector, object) || labels_match(selector, attrs.old_object))
}

fn labels_match(selector: &LabelSelector, object: Option<&Object>) -> bool {
    object.is_some_and(|o| {
        let labels = o.get("metadata").and_then(|m| m.get("labels")).and_then(Value::as_object);
        selector.matches_with(|key| labels.and_then(|l| l.get(key)).and_then(Value::as_str))
    })
}

/// `namespaceSelector`: requests without a namespace match (this server serves no `namespaces` resource).
async fn namespace_matches(hook: &Hook, attrs: &Attributes<'_>, namespaces: &Namespaces) -> ApiResult<bool> {
    if attrs.namespace.is_empty() {
        return Ok(true);
    }
    let selector = hook.namespace_selector.as_ref().map_err(ApiError::internal)?;
    if selector.is_empty() {
        return Ok(true);
    }
    let Some(ns) = namespaces.get(attrs.namespace).await? else {
        let name = attrs.namespace;
        return Err(ApiError::new(404, StatusReason::NotFound, format!("namespaces \"{name}\" not found"))
            .with_details(serde_json::json!({"name": name, "kind": "namespaces"})));
    };
    let labels: Map<String, Value> =
        ns.metadata.labels.iter().flatten().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    Ok(selector.matches_with(|key| labels.get(key).and_then(Value::as_str)))
}

/// Upstream's `rules.Matcher`.
pub fn rule_matches(rule: &RuleWithOperations, attrs: &Attributes<'_>) -> bool {
    let listed =
        |items: &Option<Vec<String>>, requested: &str| items.iter().flatten().any(|i| i == "*" || i == requested);
    let scope = match rule.scope.as_deref() {
        None | Some("*") => true,
        // No request here is for a namespace object itself.
        Some("Namespaced") => !attrs.namespace.is_empty(),
        Some("Cluster") => attrs.namespace.is_empty(),
        Some(_) => false,
    };
    let resource = rule.resources.iter().flatten().any(|r| {
        let (res, sub) = r.split_once('/').unwrap_or((r, ""));
        (res == "*" || res == attrs.resource.plural) && (sub == "*" || sub == attrs.subresource.as_str())
    });
    scope
        && listed(&rule.operations, attrs.operation.as_str())
        && listed(&rule.api_groups, attrs.resource.group)
        && listed(&rule.api_versions, attrs.resource.version)
        && resource
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::test_support::attrs;
    use crate::admission::{Operation, RequestContext};
    use crate::request::info::Subresource;
    use serde_json::json;

    fn rule(v: Value) -> RuleWithOperations {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn rules_as_upstream_matches_them() {
        let cx = RequestContext::new(Default::default(), None);
        let info = backup_apis::kinds()[0].resource().clone();
        let create = attrs(&info, Operation::Create, &Subresource::Main, "ns", &cx);
        let status = attrs(&info, Operation::Update, &Subresource::Status, "ns", &cx);
        let everything =
            rule(json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"]}));
        assert!(rule_matches(&everything, &create) && rule_matches(&everything, &status));
        let main_only =
            rule(json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}));
        assert!(rule_matches(&main_only, &create) && !rule_matches(&main_only, &status));
        let status_only = rule(json!({"operations": ["UPDATE"], "apiGroups": ["backup.extend-k8s.io"],
            "apiVersions": ["v1"], "resources": ["timeseriesdbbackups/status"]}));
        assert!(!rule_matches(&status_only, &create) && rule_matches(&status_only, &status));
        let other_version = rule(json!({"operations": ["*"], "apiGroups": ["backup.extend-k8s.io"],
            "apiVersions": ["v1beta1"], "resources": ["*"]}));
        assert!(!rule_matches(&other_version, &create), "no equivalent version is served");
        let cluster = rule(json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"],
            "scope": "Cluster"}));
        assert!(!rule_matches(&cluster, &create));
        let all_namespaces = attrs(&info, Operation::Delete, &Subresource::Main, "", &cx);
        assert!(rule_matches(&cluster, &all_namespaces), "a deletecollection across namespaces has none");
        let deletes =
            rule(json!({"operations": ["DELETE"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}));
        assert!(!rule_matches(&deletes, &create) && rule_matches(&deletes, &all_namespaces));
    }
}
