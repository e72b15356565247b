//! The registry: one generic [`store::Store`] per served resource, every verb a method, each kind's rules in its
//! [`strategy::Strategy`]; below it the system fields of ObjectMeta ([`meta`]), stored bytes ([`object_bytes`]) and
//! selectors ([`selectors`]).
//!
//! endpoints → **registry** → strategy → field manager → storage.

pub mod meta;
pub mod object_bytes;
pub mod selectors;
pub mod store;
pub mod strategy;

use std::collections::HashMap;
use std::sync::Arc;

use backup_apis::Kind;
use backup_storage::Storage;

use crate::admission::Admission;

use store::Store;

/// Every served resource's store, by plural name.
pub struct Registry {
    stores: HashMap<&'static str, Arc<Store>>,
}

impl Registry {
    /// The stores of `kinds`; `standalone` when no cluster (and so no garbage collector) is behind the server.
    pub fn new(
        kinds: &[Arc<dyn Kind>],
        storage: Arc<dyn Storage>,
        admission: Option<Arc<dyn Admission>>,
        standalone: bool,
    ) -> Self {
        let store = |k: &Arc<dyn Kind>| {
            Store::new(k.clone(), storage.clone(), admission.clone()).finishing_propagation(standalone)
        };
        let stores = kinds.iter().map(|k| (k.resource().plural, Arc::new(store(k)))).collect();
        Self { stores }
    }

    /// The store of `plural`, if it is served.
    pub fn store(&self, plural: &str) -> Option<&Arc<Store>> {
        self.stores.get(plural)
    }
}
