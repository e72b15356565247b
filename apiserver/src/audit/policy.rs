//! The audit policy (`--audit-policy-file`, `audit.k8s.io/v1` `Policy`): rules tried in order, the first that
//! matches a request decides its level (None, Metadata, Request, RequestResponse) and the stages left out; no
//! matching rule means None. Matching is upstream's (`apiserver/pkg/audit/policy/checker.go`): users, user groups,
//! verbs, then either resources (group, resource or `resource/subresource` with `*` wildcards, names) and namespaces
//! for resource requests, or non-resource URLs (a trailing `*` is a prefix) for the others. `omitManagedFields`
//! (the policy's, or a rule's own) leaves `metadata.managedFields` out of the objects recorded.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use crate::auth::authn::UserInfo;
use crate::request::info::RequestInfo;

/// How much of a request is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Metadata => "Metadata",
            Self::Request => "Request",
            Self::RequestResponse => "RequestResponse",
        }
    }
}

/// When an event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Stage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestReceived => "RequestReceived",
            Self::ResponseStarted => "ResponseStarted",
            Self::ResponseComplete => "ResponseComplete",
            Self::Panic => "Panic",
        }
    }
}

/// A policy file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Stages no rule records.
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
    /// Leave `metadata.managedFields` out of recorded request and response objects (a rule may say otherwise).
    #[serde(default)]
    pub omit_managed_fields: bool,
}

/// One rule; empty lists match everything.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub level: Level,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub user_groups: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub resources: Vec<GroupResources>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
    /// This rule's choice on managedFields; unset: the policy's.
    #[serde(default)]
    pub omit_managed_fields: Option<bool>,
}

/// Resources of one group (`""` is the core group).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupResources {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
}

/// What the policy says of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub level: Level,
    pub omit_stages: Vec<Stage>,
    /// Leave `metadata.managedFields` out of the recorded objects.
    pub omit_managed_fields: bool,
}

impl Decision {
    /// Whether `stage` is recorded.
    pub fn records(&self, stage: Stage) -> bool {
        self.level != Level::None && !self.omit_stages.contains(&stage)
    }
}

impl Policy {
    /// Read and check a policy file (YAML or JSON).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let policy: Policy =
            serde_saphyr::from_str(&text).with_context(|| format!("parsing the audit policy {}", path.display()))?;
        if !matches!(policy.api_version.as_str(), "audit.k8s.io/v1" | "audit.k8s.io/v1beta1") || policy.kind != "Policy"
        {
            anyhow::bail!(
                "{}: not an audit policy (apiVersion audit.k8s.io/v1, kind Policy; found {:?} {:?})",
                path.display(),
                policy.api_version,
                policy.kind
            );
        }
        Ok(policy)
    }

    /// The level and omitted stages for `info` by `user` (None for a request that failed authentication).
    pub fn decide(&self, info: &RequestInfo, user: Option<&UserInfo>) -> Decision {
        for rule in &self.rules {
            if rule.matches(info, user) {
                let mut omit_stages = self.omit_stages.clone();
                omit_stages.extend(rule.omit_stages.iter().copied());
                let omit_managed_fields = rule.omit_managed_fields.unwrap_or(self.omit_managed_fields);
                return Decision { level: rule.level, omit_stages, omit_managed_fields };
            }
        }
        Decision { level: Level::None, omit_stages: Vec::new(), omit_managed_fields: false }
    }

    /// Whether some rule records request bodies (so the audit filter must keep them).
    pub fn may_record_bodies(&self) -> bool {
        self.rules.iter().any(|r| r.level >= Level::Request)
    }
}

impl Rule {
    fn matches(&self, info: &RequestInfo, user: Option<&UserInfo>) -> bool {
        if !self.users.is_empty() && !user.is_some_and(|u| self.users.contains(&u.name)) {
            return false;
        }
        if !self.user_groups.is_empty()
            && !user.is_some_and(|u| u.groups.iter().any(|g| self.user_groups.iter().any(|x| x == g)))
        {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.iter().any(|v| v == info.verb.as_str()) {
            return false;
        }
        if info.is_resource_request {
            if !self.non_resource_urls.is_empty() && self.resources.is_empty() && self.namespaces.is_empty() {
                return false;
            }
            if !self.namespaces.is_empty() && !self.namespaces.contains(&info.namespace) {
                return false;
            }
            self.resources.is_empty() || self.resources.iter().any(|gr| gr.matches(info))
        } else {
            if !self.resources.is_empty() || !self.namespaces.is_empty() {
                return false;
            }
            self.non_resource_urls.is_empty() || self.non_resource_urls.iter().any(|u| url_matches(u, &info.path))
        }
    }
}

impl GroupResources {
    fn matches(&self, info: &RequestInfo) -> bool {
        if self.group != info.api_group {
            return false;
        }
        let sub = info.subresource.as_str();
        let resource_matches = self.resources.is_empty()
            || self.resources.iter().any(|r| {
                let (res, rsub) = r.split_once('/').unwrap_or((r, ""));
                match (res, rsub) {
                    ("*", "*") => true,
                    (res, "*") => res == info.resource && !sub.is_empty(),
                    ("*", rsub) => rsub == sub,
                    (res, rsub) => res == info.resource && rsub == sub,
                }
            });
        resource_matches && (self.resource_names.is_empty() || self.resource_names.contains(&info.name))
    }
}

fn url_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => path == pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    fn info(method: Method, path: &str) -> RequestInfo {
        RequestInfo::parse(&method, path, false, None).unwrap()
    }

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: ["system:kube-aggregator"]
- level: None
  nonResourceURLs: ["/healthz*", "/readyz", "/livez"]
- level: RequestResponse
  resources:
  - group: backup.extend-k8s.io
    resources: ["timeseriesdbbackups/status"]
- level: Request
  verbs: [create, update, patch, delete]
  namespaces: [prod]
- level: Metadata
"#;

    #[test]
    fn first_matching_rule_decides() {
        let p: Policy = serde_saphyr::from_str(POLICY).unwrap();
        let alice = UserInfo { name: "alice".into(), ..UserInfo::default() };
        let aggregator = UserInfo { name: "system:kube-aggregator".into(), ..UserInfo::default() };
        let gv = "/apis/backup.extend-k8s.io/v1";
        let d = |m: Method, path: &str, u: &UserInfo| p.decide(&info(m, path), Some(u)).level;
        assert_eq!(d(Method::GET, &format!("{gv}/namespaces/a/timeseriesdbbackups"), &aggregator), Level::None);
        assert_eq!(d(Method::GET, "/healthz/etcd", &alice), Level::None);
        assert_eq!(
            d(Method::PUT, &format!("{gv}/namespaces/a/timeseriesdbbackups/x/status"), &alice),
            Level::RequestResponse
        );
        assert_eq!(d(Method::POST, &format!("{gv}/namespaces/prod/timeseriesdbbackups"), &alice), Level::Request);
        assert_eq!(d(Method::GET, &format!("{gv}/namespaces/prod/timeseriesdbbackups"), &alice), Level::Metadata);
        assert_eq!(d(Method::GET, "/metrics", &alice), Level::Metadata);
        let decision = p.decide(&info(Method::GET, "/metrics"), Some(&alice));
        assert!(!decision.records(Stage::RequestReceived) && decision.records(Stage::ResponseComplete));
        assert!(p.may_record_bodies());
        assert_eq!(Policy::default().decide(&info(Method::GET, "/metrics"), None).level, Level::None);
        assert!(!decision.omit_managed_fields, "kept unless the policy says");
    }

    #[test]
    fn a_rule_overrides_the_policys_omit_managed_fields() {
        let p: Policy = serde_saphyr::from_str(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitManagedFields: true\nrules:\n\
             - level: RequestResponse\n  verbs: [patch]\n  omitManagedFields: false\n- level: Request\n",
        )
        .unwrap();
        let path = "/apis/backup.extend-k8s.io/v1/namespaces/a/timeseriesdbbackups/x";
        assert!(!p.decide(&info(Method::PATCH, path), None).omit_managed_fields);
        assert!(p.decide(&info(Method::PUT, path), None).omit_managed_fields);
    }
}
