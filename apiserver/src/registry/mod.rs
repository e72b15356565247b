//! The registry: one generic [`store::Store`] per served resource, every verb a method, each kind's rules in its
//! [`strategy::Strategy`]; below it the system fields of ObjectMeta ([`meta`]), stored bytes ([`object_bytes`]),
//! selectors ([`selectors`]) and what they read of a stored object ([`attrs`]).
//!
//! endpoints → **registry** → strategy → field manager → storage (reads and watches through the watch cache).

pub mod attrs;
pub mod meta;
pub mod object_bytes;
pub mod selectors;
pub mod store;
pub mod strategy;

use std::collections::HashMap;
use std::sync::Arc;

use backup_apis::Kind;
use backup_storage::Storage;
use backup_storage::cacher::Cacher;

use crate::admission::Admission;

use store::{Reads, Store};

/// Every served resource's store, by plural name.
pub struct Registry {
    stores: HashMap<&'static str, Arc<Store>>,
}

impl Registry {
    /// The stores of `kinds`, writing to `storage` and reading through `cache` (or from `storage` without one);
    /// `standalone` when no cluster (and so no garbage collector) is behind the server; their watches end when
    /// `stopping` turns true.
    pub fn new(
        kinds: &[Arc<dyn Kind>],
        storage: Arc<dyn Storage>,
        cache: Option<Arc<Cacher>>,
        admission: Option<Arc<dyn Admission>>,
        standalone: bool,
        stopping: &tokio::sync::watch::Receiver<bool>,
        tuning: store::Tuning,
    ) -> Self {
        let reads = match cache {
            Some(cacher) => Reads::Cache(cacher),
            None => Reads::Backend { storage: storage.clone(), attrs: attrs::hook() },
        };
        let stores = kinds
            .iter()
            .map(|k| {
                let store = Store::new(k.clone(), storage.clone(), reads.clone(), admission.clone(), stopping.clone())
                    .finishing_propagation(standalone)
                    .tuned(tuning);
                (k.resource().plural, Arc::new(store))
            })
            .collect();
        Self { stores }
    }

    /// The store of `plural`, if it is served.
    pub fn store(&self, plural: &str) -> Option<&Arc<Store>> {
        self.stores.get(plural)
    }
}
