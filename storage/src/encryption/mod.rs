//! Encryption at rest (upstream's `--encryption-provider-config`): a [`Storage`] over a backend that seals every
//! value of a configured resource on its way in and opens it on its way out, so that the backend (etcd, its
//! snapshots and backups, the embedded store's file) never holds those objects in clear.
//!
//! registry store → watch cache → **encryption** → (instrumented) backend.
//!
//! Values are written as k8s.io/apiserver writes them: `k8s:enc:<provider>:v1:<key name>:` and the provider's
//! ciphertext, with the full etcd key (the backend's prefix and the key) as the context AES-GCM authenticates, so
//! that a value cannot be moved to another key. Resources without an entry pass through unchanged. The watch cache
//! sits above, so it holds (and serves) values in clear, as upstream's does.

mod ciphers;
mod transformer;

use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use futures::StreamExt;

pub use ciphers::{AesKey, Cipher, CipherError, GcmKey, SECRETBOX_KEY};
pub use transformer::{Counts, NamedKey, Provider, ProviderKind, Read, TransformError, Transformer};

use crate::{
    Deleted, Event, EventType, KeyValue, ListOptions, ListResult, ProgressWatch, Result, Revision, Storage,
    StorageError, WatchItem, WatchStream,
};

/// The providers of one resource, for the keys under `/<group>/<resource>/`.
pub struct ResourceTransformer {
    /// `/<group>/<resource>/`.
    pub prefix: String,
    pub transformer: Arc<Transformer>,
}

/// A backend whose values of the configured resources are encrypted.
pub struct EncryptedStorage {
    inner: Arc<dyn Storage>,
    /// Shared with the watches, which open each event with the configuration current when it arrives.
    current: Arc<CurrentCodec>,
}

/// The configuration in force; [`EncryptedStorage::reload`] replaces it while requests and watches go on.
struct CurrentCodec(RwLock<Arc<Codec>>);

impl CurrentCodec {
    fn get(&self) -> Arc<Codec> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// What seals and opens the values of each configured resource.
struct Codec {
    /// The backend's own prefix (`--etcd-prefix`), which the authenticated context starts with.
    context_prefix: String,
    resources: Vec<ResourceTransformer>,
}

impl EncryptedStorage {
    /// Encrypt `resources` in `inner`, whose keys are stored under `context_prefix` (`/registry`).
    pub fn new(inner: Arc<dyn Storage>, context_prefix: &str, resources: Vec<ResourceTransformer>) -> Self {
        let context_prefix = context_prefix.trim_end_matches('/').to_string();
        let codec = Arc::new(Codec { context_prefix, resources });
        Self { inner, current: Arc::new(CurrentCodec(RwLock::new(codec))) }
    }

    /// From now on, encrypt and decrypt with `resources` (upstream's automatic reload of the configuration). A
    /// request already past its encryption step finishes with the configuration it began with.
    pub fn reload(&self, resources: Vec<ResourceTransformer>) {
        let mut current = self.current.0.write().unwrap_or_else(PoisonError::into_inner);
        let context_prefix = current.context_prefix.clone();
        *current = Arc::new(Codec { context_prefix, resources });
    }

    fn codec(&self) -> Arc<Codec> {
        self.current.get()
    }

    fn open_watch(&self, watch: ProgressWatch) -> ProgressWatch {
        let current = self.current.clone();
        let items = watch.items.map(move |item| match item {
            Ok(WatchItem::Event(event)) => current.get().open_event(event).map(WatchItem::Event),
            other => other,
        });
        ProgressWatch { items: Box::pin(items), mode: watch.mode }
    }

    /// The written key-value with the value as the caller gave it (not as stored).
    fn written(kv: KeyValue, value: Bytes) -> KeyValue {
        KeyValue { value, ..kv }
    }
}

impl Codec {
    fn transformer(&self, key: &str) -> Option<&Transformer> {
        self.resources.iter().find(|r| key.starts_with(&r.prefix)).map(|r| &*r.transformer)
    }

    /// The full etcd key: what AES-GCM authenticates.
    fn context(&self, key: &str) -> Vec<u8> {
        [self.context_prefix.as_bytes(), key.as_bytes()].concat()
    }

    fn seal(&self, key: &str, value: Bytes) -> Result<Bytes> {
        let Some(transformer) = self.transformer(key) else { return Ok(value) };
        // Refused by its own size, before the ciphertext's few bytes more could make the backend name another.
        crate::check_value_size(&value)?;
        transformer
            .to_storage(&value, &self.context(key))
            .map(Bytes::from)
            .map_err(|e| StorageError::Internal(format!("encrypting the value of {}{key}: {e}", self.context_prefix)))
    }

    /// The value of `key` (stored at `revision`) in clear.
    fn open(&self, key: &str, value: Bytes, revision: Revision) -> Result<Bytes> {
        let Some(transformer) = self.transformer(key) else { return Ok(value) };
        match transformer.from_storage(&value, &self.context(key)) {
            Ok(read) => Ok(Bytes::from(read.value)),
            Err(e) => Err(StorageError::Unreadable {
                key: key.to_string(),
                revision,
                message: format!(
                    "the stored value of {}{key} cannot be read: {e}. Give --encryption-provider-config the key it                      was written with, or delete the object with DeleteOptions \
                     ignoreStoreReadErrorWithClusterBreakingPotential",
                    self.context_prefix
                ),
            }),
        }
    }

    fn open_kv(&self, mut kv: KeyValue) -> Result<KeyValue> {
        kv.value = self.open(&kv.key, kv.value, kv.mod_revision)?;
        Ok(kv)
    }

    fn open_list(&self, mut list: ListResult) -> Result<ListResult> {
        list.items = list.items.into_iter().map(|kv| self.open_kv(kv)).collect::<Result<_>>()?;
        Ok(list)
    }

    fn open_event(&self, mut event: Event) -> Result<Event> {
        if event.event_type == EventType::Put {
            event.kv = self.open_kv(event.kv)?;
        }
        event.prev = event.prev.map(|prev| self.open_kv(prev)).transpose()?;
        Ok(event)
    }

    fn open_error(&self, e: StorageError) -> StorageError {
        match e {
            StorageError::Conflict { key, expected, current } => match self.open_kv(*current) {
                Ok(current) => StorageError::Conflict { key, expected, current: Box::new(current) },
                Err(e) => e,
            },
            e => e,
        }
    }
}

#[async_trait::async_trait]
impl Storage for EncryptedStorage {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner.get(key).await?.map(|kv| self.codec().open_kv(kv)).transpose()
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        self.codec().open_list(self.inner.list(prefix, opts).await?)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let stored = self.codec().seal(key, value.clone())?;
        let kv = self.inner.create(key, stored).await.map_err(|e| self.codec().open_error(e))?;
        Ok(EncryptedStorage::written(kv, value))
    }

    async fn update(&self, key: &str, value: Bytes, expected_revision: Revision) -> Result<KeyValue> {
        let stored = self.codec().seal(key, value.clone())?;
        let kv = self.inner.update(key, stored, expected_revision).await.map_err(|e| self.codec().open_error(e))?;
        Ok(EncryptedStorage::written(kv, value))
    }

    /// A value that does not read is deleted all the same (how an unreadable object is removed): it comes back
    /// empty, never as its ciphertext.
    async fn delete(&self, key: &str, expected_revision: Option<Revision>) -> Result<Deleted> {
        let deleted = self.inner.delete(key, expected_revision).await.map_err(|e| self.codec().open_error(e))?;
        let prev = match self.codec().open_kv(deleted.prev.clone()) {
            Ok(prev) => prev,
            Err(_) => KeyValue { value: Bytes::new(), ..deleted.prev },
        };
        Ok(Deleted { prev, revision: deleted.revision })
    }

    async fn watch(&self, prefix: &str, start_revision: Revision) -> Result<WatchStream> {
        let current = self.current.clone();
        let events = self.inner.watch(prefix, start_revision).await?;
        Ok(Box::pin(events.map(move |event| event.and_then(|e| current.get().open_event(e)))))
    }

    async fn watch_with_progress(&self, prefix: &str, start_revision: Revision) -> Result<ProgressWatch> {
        Ok(self.open_watch(self.inner.watch_with_progress(prefix, start_revision).await?))
    }

    async fn watch_for_cache(&self, prefix: &str, start_revision: Revision) -> Result<ProgressWatch> {
        Ok(self.open_watch(self.inner.watch_for_cache(prefix, start_revision).await?))
    }

    async fn get_not_older_than(&self, key: &str, min_revision: Revision) -> Result<Option<KeyValue>> {
        self.inner.get_not_older_than(key, min_revision).await?.map(|kv| self.codec().open_kv(kv)).transpose()
    }

    async fn list_not_older_than(&self, prefix: &str, opts: ListOptions, min_revision: Revision) -> Result<ListResult> {
        self.codec().open_list(self.inner.list_not_older_than(prefix, opts, min_revision).await?)
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }

    async fn check_revision(&self, revision: Revision) -> Result<()> {
        self.inner.check_revision(revision).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }

    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }

    /// Stale when the stored value at `mod_revision` was written by another provider or key than the one that
    /// writes now (read from the backend, as upstream checks before it skips a write), or has changed since.
    async fn rewrite_needed(&self, key: &str, mod_revision: Revision) -> Result<bool> {
        let codec = self.codec();
        let Some(transformer) = codec.transformer(key) else {
            return self.inner.rewrite_needed(key, mod_revision).await;
        };
        Ok(match self.inner.get(key).await? {
            Some(kv) => kv.mod_revision != mod_revision || transformer.is_stale(&kv.value),
            None => false,
        })
    }
}
