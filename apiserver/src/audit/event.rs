//! An audit event (`audit.k8s.io/v1` `Event`), as the log writes it: one JSON object per line, with upstream's field
//! names and microsecond timestamps.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::policy::{Level, Stage};
use crate::auth::authn::UserInfo;
use crate::request::info::RequestInfo;

/// An event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub level: &'static str,
    #[serde(rename = "auditID")]
    pub audit_id: String,
    pub stage: &'static str,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    pub verb: &'static str,
    pub user: User,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<User>,
    #[serde(skip_serializing_if = "Vec::is_empty", rename = "sourceIPs")]
    pub source_ips: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_status: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_object: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_object: Option<Value>,
    pub request_received_timestamp: String,
    pub stage_timestamp: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `authentication.k8s.io/v1` `UserInfo`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct User {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl From<&UserInfo> for User {
    fn from(u: &UserInfo) -> Self {
        Self { username: u.name.clone(), uid: u.uid.clone(), groups: u.groups.clone(), extra: u.extra.clone() }
    }
}

/// What a resource request was about.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

impl ObjectRef {
    /// The reference of a resource request (None for others).
    pub fn of(info: &RequestInfo) -> Option<Self> {
        info.is_resource_request.then(|| Self {
            resource: info.resource.clone(),
            namespace: info.namespace.clone(),
            name: info.name.clone(),
            api_group: info.api_group.clone(),
            api_version: info.api_version.clone(),
            subresource: info.subresource.as_str().to_string(),
        })
    }
}

/// `metav1.MicroTime`: RFC 3339 in UTC with microseconds.
pub fn micro_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

/// The event for one stage of a request.
pub struct Stamp<'a> {
    pub level: Level,
    pub stage: Stage,
    pub audit_id: &'a str,
    pub info: &'a RequestInfo,
    pub request_uri: &'a str,
    pub user: Option<&'a UserInfo>,
    pub impersonated_user: Option<&'a UserInfo>,
    pub source_ips: &'a [String],
    pub user_agent: &'a str,
    pub received: jiff::Timestamp,
}

impl Stamp<'_> {
    pub fn event(&self) -> Event {
        Event {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level: self.level.as_str(),
            audit_id: self.audit_id.to_string(),
            stage: self.stage.as_str(),
            request_uri: self.request_uri.to_string(),
            verb: self.info.verb.as_str(),
            user: self.user.map(User::from).unwrap_or_default(),
            impersonated_user: self.impersonated_user.map(User::from),
            source_ips: self.source_ips.to_vec(),
            user_agent: self.user_agent.to_string(),
            object_ref: ObjectRef::of(self.info),
            response_status: None,
            request_object: None,
            response_object: None,
            request_received_timestamp: micro_time(self.received),
            stage_timestamp: micro_time(jiff::Timestamp::now()),
            annotations: BTreeMap::new(),
        }
    }
}

/// An event for tests: a Metadata-level ResponseComplete of `GET /livez`, with the audit ID `id-<n>`.
#[cfg(test)]
pub fn sample(n: usize) -> Event {
    let info = RequestInfo::non_resource(crate::request::info::Verb::Get, "/livez");
    let id = format!("id-{n}");
    let stamp = Stamp {
        level: Level::Metadata,
        stage: Stage::ResponseComplete,
        audit_id: &id,
        info: &info,
        request_uri: "/livez",
        user: None,
        impersonated_user: None,
        source_ips: &[],
        user_agent: "",
        received: jiff::Timestamp::now(),
    };
    stamp.event()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_times() {
        let t: jiff::Timestamp = "2024-05-01T10:20:30.123456789Z".parse().unwrap();
        assert_eq!(micro_time(t), "2024-05-01T10:20:30.123456Z");
    }
}
