//! What both documents describe: the group version's paths and definitions, gathered from the kinds once.

use std::sync::Arc;

use backup_apis::Kind;
use serde_json::{Map, Value, json};

use super::routes::{self, PathItem};
use super::{meta, naming, schema};

/// The paths and the kinds' definitions (v3 form) of one group version.
pub(super) struct Model {
    pub group: &'static str,
    pub version: &'static str,
    pub paths: Vec<PathItem>,
    /// Definition name → v3 definition, for each kind and its List.
    pub kind_definitions: Map<String, Value>,
}

impl Model {
    /// The model of `group`/`version` with the kinds of that group version (others are skipped).
    pub fn new(group: &'static str, version: &'static str, kinds: &[Arc<dyn Kind>]) -> Self {
        let mut paths = vec![routes::api_resources(group, version)];
        let mut kind_definitions = Map::new();
        for kind in kinds {
            let info = kind.resource();
            if info.group != group || info.version != version {
                continue;
            }
            paths.extend(routes::resource_paths(info));
            let object = naming::definition_name(group, version, info.kind);
            let list = naming::definition_name(group, version, info.list_kind);
            let list_def = schema::list_v3(group, version, info.kind, info.list_kind, info.plural, &object);
            kind_definitions.insert(object, schema::kind_v3(kind.schema(), group, version, info.kind));
            kind_definitions.insert(list, list_def);
        }
        Self { group, version, paths, kind_definitions }
    }

    /// `apis/<group>/<version>`: the document's key in the v3 index.
    pub fn gv_path(&self) -> String {
        format!("apis/{}/{}", self.group, self.version)
    }

    pub fn info(&self) -> Value {
        json!({ "title": "backup-apiserver", "version": env!("CARGO_PKG_VERSION") })
    }

    /// `components.schemas` of the v3 document.
    pub fn definitions_v3(&self) -> Map<String, Value> {
        let mut defs = meta::definitions_v3(self.group, self.version);
        defs.extend(self.kind_definitions.clone());
        defs
    }

    /// `definitions` of the v2 document.
    pub fn definitions_v2(&self) -> Map<String, Value> {
        let meta = meta::definitions_v3(self.group, self.version);
        let meta = meta.iter().map(|(k, v)| (k.clone(), schema::to_v2(v, true)));
        let kinds = self.kind_definitions.iter().map(|(k, v)| (k.clone(), schema::to_v2(v, false)));
        meta.chain(kinds).collect()
    }
}

/// The bearer-token scheme a generic apiserver declares (`DefaultOpenAPIConfig`).
pub(super) fn security_scheme() -> Value {
    json!({ "description": "Bearer Token authentication", "in": "header", "name": "authorization", "type": "apiKey" })
}
