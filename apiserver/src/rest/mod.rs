//! The generic REST machinery: routing a resource request to the kind's store, and rendering the result.
//!
//! HTTP → authn → authz → **REST handlers (here)** → generic store → the kind's strategy → storage.

pub mod delete;
pub mod fieldmanager;
pub mod handlers;
pub mod list;
pub mod meta;
pub mod object_bytes;
pub mod params;
pub mod patch;
pub mod selectors;
pub mod store;
pub mod table;
pub mod watch;

use std::collections::HashMap;
use std::sync::Arc;

use backup_apis::Kind;
use backup_storage::Storage;

use crate::admission::Admission;

use store::ResourceStore;

/// Every served resource's store, by plural name.
pub struct Registry {
    stores: HashMap<&'static str, Arc<ResourceStore>>,
}

impl Registry {
    pub fn new(kinds: &[Arc<dyn Kind>], storage: Arc<dyn Storage>, admission: Option<Arc<dyn Admission>>) -> Self {
        let stores = kinds
            .iter()
            .map(|k| (k.resource().plural, Arc::new(ResourceStore::new(k.clone(), storage.clone(), admission.clone()))))
            .collect();
        Self { stores }
    }

    pub fn store(&self, plural: &str) -> Option<&Arc<ResourceStore>> {
        self.stores.get(plural)
    }
}
