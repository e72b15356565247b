//! The names and shape of a served resource, as discovery and the registry need them.

/// Static facts about one resource of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// The API group, `backup.extend-k8s.io`.
    pub group: &'static str,
    /// The served version, `v1`.
    pub version: &'static str,
    /// `TimeseriesDBBackup`.
    pub kind: &'static str,
    /// `TimeseriesDBBackupList`.
    pub list_kind: &'static str,
    /// `timeseriesdbbackups`: the URL segment and the storage key segment.
    pub plural: &'static str,
    /// `timeseriesdbbackup`.
    pub singular: &'static str,
    /// Short names kubectl accepts (`tsdbb`).
    pub short_names: &'static [&'static str],
    /// Categories kubectl accepts (`kubectl get backups`).
    pub categories: &'static [&'static str],
    /// Namespaced (true) or cluster-scoped (false).
    pub namespaced: bool,
    /// Whether the kind has a `status` subresource (status is then ignored on the main resource).
    pub status_subresource: bool,
}

impl ResourceInfo {
    /// `group/version`.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// `timeseriesdbbackups.backup.extend-k8s.io`: how errors name the resource.
    pub fn qualified_resource(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }

    /// `TimeseriesDBBackup.backup.extend-k8s.io`: how Invalid errors name the kind.
    pub fn qualified_kind(&self) -> String {
        format!("{}.{}", self.kind, self.group)
    }
}

/// Implements k8s-openapi's `Resource`, `ListableResource` and `Metadata` for a namespaced kind's typed struct (with
/// a `metadata: ObjectMeta` field) from its [`ResourceInfo`] constant, so that kube's `Api<T>` works with it.
macro_rules! impl_namespaced_resource {
    ($ty:ty, $info:expr) => {
        impl k8s_openapi::Resource for $ty {
            const API_VERSION: &'static str = crate::API_VERSION;
            const GROUP: &'static str = $info.group;
            const KIND: &'static str = $info.kind;
            const VERSION: &'static str = $info.version;
            const URL_PATH_SEGMENT: &'static str = $info.plural;
            type Scope = k8s_openapi::NamespaceResourceScope;
        }

        impl k8s_openapi::ListableResource for $ty {
            const LIST_KIND: &'static str = $info.list_kind;
        }

        impl k8s_openapi::Metadata for $ty {
            type Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

            fn metadata(&self) -> &Self::Ty {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut Self::Ty {
                &mut self.metadata
            }
        }
    };
}

pub(crate) use impl_namespaced_resource;
