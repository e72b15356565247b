//! Delete and deletecollection in the generic store: preconditions, finalizers (deletionTimestamp instead of
//! removal), propagation policies, dry run.
//!
//! endpoints/delete, endpoints/delete_collection → **store delete** → storage.

use backup_apis::{ErrorList, FieldError, ResourceInfo};
use backup_storage::StorageError;
use bytes::Bytes;
use serde_json::Value;

use super::{Current, MAX_UPDATE_RETRIES, Store, readable};
use crate::error::{ApiError, ApiResult};
use crate::registry::meta;
use crate::registry::object_bytes::{encode_for_storage, with_resource_version};
use crate::registry::strategy::{meta_name, metadata_mut};
use crate::request::options::{DeleteOptions, ListOptions};

/// What a delete did.
#[derive(Debug, Clone)]
pub enum DeleteOutcome {
    /// The object is gone; this is how it was last stored.
    Deleted(Bytes),
    /// Finalizers hold it: it is marked with a deletionTimestamp (this object) and goes with the last finalizer.
    Pending(Bytes),
}

impl DeleteOutcome {
    /// The object, as deleted or as marked.
    pub fn into_object(self) -> Bytes {
        match self {
            Self::Deleted(b) | Self::Pending(b) => b,
        }
    }
}

/// What a deletecollection deleted (or marked), at the revision its list was read.
pub struct DeletedCollection {
    pub items: Vec<Value>,
    pub revision: i64,
    /// Objects left alone because they cannot be decoded.
    pub warnings: Vec<String>,
}

impl Store {
    /// Delete an object: with finalizers it is only marked (deletionTimestamp); otherwise it is removed.
    pub async fn delete(&self, namespace: &str, name: &str, opts: &DeleteOptions) -> ApiResult<DeleteOutcome> {
        let info = self.info();
        if opts.ignore_store_read_error {
            return self.delete_unreadable(namespace, name).await;
        }
        for _ in 0..MAX_UPDATE_RETRIES {
            let mut current = self.current(namespace, name).await?;
            check_preconditions(opts, info, name, &current)?;
            let meta = metadata_mut(&mut current.obj)?;
            let mut finalizers = meta::finalizers(meta);
            let orphan_or_foreground = opts.propagation_policy.and_then(|p| p.finalizer());
            if let Some(f) = orphan_or_foreground
                && !finalizers.iter().any(|x| x == f)
                && !meta.contains_key("deletionTimestamp")
            {
                finalizers.push(f.to_string());
                meta.insert("finalizers".into(), Value::from(finalizers.clone()));
            }
            if finalizers.is_empty() {
                if opts.dry_run {
                    return Ok(DeleteOutcome::Deleted(with_resource_version(
                        &current.kv.value,
                        current.kv.mod_revision,
                    )));
                }
                match self.storage.delete(&self.key(namespace, name), Some(current.kv.mod_revision)).await {
                    Ok(d) => {
                        return Ok(DeleteOutcome::Deleted(with_resource_version(&d.prev.value, d.prev.mod_revision)));
                    }
                    Err(StorageError::Conflict { .. }) => continue,
                    Err(e) => return Err(ApiError::from_storage(e, info, name)),
                }
            }
            if meta.contains_key("deletionTimestamp") {
                // Already being deleted: the finalizers decide when it goes.
                return Ok(DeleteOutcome::Pending(with_resource_version(&current.kv.value, current.kv.mod_revision)));
            }
            meta.insert("deletionTimestamp".into(), Value::String(backup_apis::objectmeta::timestamp_now()));
            meta.insert("deletionGracePeriodSeconds".into(), Value::from(0));
            let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
            if generation > 0 {
                meta.insert("generation".into(), Value::from(generation + 1));
            }
            let bytes = encode_for_storage(&current.obj);
            if opts.dry_run {
                return Ok(DeleteOutcome::Pending(with_resource_version(&bytes, current.kv.mod_revision)));
            }
            match self.storage.update(&self.key(namespace, name), Bytes::from(bytes), current.kv.mod_revision).await {
                Ok(kv) => return Ok(DeleteOutcome::Pending(with_resource_version(&kv.value, kv.mod_revision))),
                Err(StorageError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_storage(e, info, name)),
            }
        }
        Err(ApiError::conflict(info, name, "too many concurrent changes, please try again"))
    }

    /// KEP-3926's unsafe delete: remove an object whose stored bytes cannot be decoded, without decoding them (no
    /// finalizers run, no preconditions). Refused for an object that can be read, as upstream.
    async fn delete_unreadable(&self, namespace: &str, name: &str) -> ApiResult<DeleteOutcome> {
        let kv = self.get_kv(namespace, name).await?;
        if readable(&kv).is_ok() {
            return Err(ApiError::invalid(
                self.info(),
                name,
                &ErrorList::from(vec![FieldError::invalid(
                    "ignoreStoreReadErrorWithClusterBreakingPotential",
                    Value::Bool(true),
                    "is exclusively used to delete corrupt object(s), try again by removing this option",
                )]),
            ));
        }
        tracing::warn!(resource = self.info().plural, namespace, name, "deleting an unreadable object");
        let d = self
            .storage
            .delete(&self.key(namespace, name), Some(kv.mod_revision))
            .await
            .map_err(self.storage_err(name))?;
        Ok(DeleteOutcome::Deleted(with_resource_version(&d.prev.value, d.prev.mod_revision)))
    }

    /// Delete every object of `namespace` (all namespaces when empty) that `list_opts` selects; objects deleted
    /// meanwhile by someone else are skipped.
    pub async fn delete_collection(
        &self,
        namespace: &str,
        list_opts: &ListOptions,
        opts: &DeleteOptions,
    ) -> ApiResult<DeletedCollection> {
        let page = self.list((!namespace.is_empty()).then_some(namespace), list_opts).await?;
        let revision = page.revision;
        let mut items = Vec::with_capacity(page.items.len());
        let mut warnings = Vec::new();
        for obj in page.into_objects(&mut warnings) {
            let Value::Object(obj) = obj? else { continue };
            let item_ns = obj.get("metadata").and_then(|m| m.get("namespace")).and_then(Value::as_str).unwrap_or("");
            match self.delete(item_ns, &meta_name(&obj), opts).await {
                Ok(outcome) => {
                    let bytes = outcome.into_object();
                    items.push(serde_json::from_slice::<Value>(&bytes).map_err(ApiError::internal)?);
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(DeletedCollection { items, revision, warnings })
    }
}

fn check_preconditions(opts: &DeleteOptions, info: &ResourceInfo, name: &str, current: &Current) -> ApiResult<()> {
    let meta = current.obj.get("metadata").and_then(Value::as_object);
    let field = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str).unwrap_or("").to_string();
    if let Some(uid) = &opts.precondition_uid {
        let actual = field("uid");
        if *uid != actual {
            return Err(ApiError::conflict(
                info,
                name,
                &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
            ));
        }
    }
    if let Some(rv) = &opts.precondition_resource_version {
        let actual = current.kv.mod_revision.to_string();
        if *rv != actual {
            return Err(ApiError::conflict(
                info,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
                ),
            ));
        }
    }
    Ok(())
}
