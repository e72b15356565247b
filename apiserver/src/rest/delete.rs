//! Delete in the generic store: preconditions, finalizers (deletionTimestamp instead of removal), propagation
//! policies, dry run.
//!
//! HTTP → authn → authz → REST handlers → **the store's delete** → storage.

use backup_apis::ResourceInfo;
use backup_storage::StorageError;
use bytes::Bytes;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::rest::meta;
use crate::rest::object_bytes::{encode_for_storage, with_resource_version};
use crate::rest::store::{Current, MAX_UPDATE_RETRIES, ResourceStore, metadata_mut};

impl ResourceStore {
    /// Delete an object: with finalizers it is only marked (deletionTimestamp); otherwise it is removed.
    /// Returns the object (marked, or as it was last stored).
    pub async fn delete(&self, namespace: &str, name: &str, opts: &DeleteOptions) -> ApiResult<Bytes> {
        let info = self.info();
        for _ in 0..MAX_UPDATE_RETRIES {
            let mut current = self.current(namespace, name).await?;
            opts.check_preconditions(info, name, &current)?;
            let meta = metadata_mut(&mut current.obj)?;
            let mut finalizers = meta::finalizers(meta);
            let orphan_or_foreground = match opts.propagation_policy.as_deref() {
                Some("Orphan") => Some("orphan"),
                Some("Foreground") => Some("foregroundDeletion"),
                _ => None,
            };
            if let Some(f) = orphan_or_foreground
                && !finalizers.iter().any(|x| x == f)
                && !meta.contains_key("deletionTimestamp")
            {
                finalizers.push(f.to_string());
                meta.insert("finalizers".into(), Value::from(finalizers.clone()));
            }
            if finalizers.is_empty() {
                if opts.dry_run {
                    return Ok(with_resource_version(&current.kv.value, current.kv.mod_revision));
                }
                match self.storage.delete(&self.key(namespace, name), Some(current.kv.mod_revision)).await {
                    Ok(d) => return Ok(with_resource_version(&d.prev.value, d.prev.mod_revision)),
                    Err(StorageError::Conflict { .. }) => continue,
                    Err(e) => return Err(ApiError::from_storage(e, info, name)),
                }
            }
            if meta.contains_key("deletionTimestamp") {
                // Already being deleted: the finalizers decide when it goes.
                return Ok(with_resource_version(&current.kv.value, current.kv.mod_revision));
            }
            meta.insert("deletionTimestamp".into(), Value::String(meta::now_rfc3339()));
            meta.insert("deletionGracePeriodSeconds".into(), Value::from(0));
            let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
            if generation > 0 {
                meta.insert("generation".into(), Value::from(generation + 1));
            }
            let bytes = encode_for_storage(&current.obj);
            if opts.dry_run {
                return Ok(with_resource_version(&bytes, current.kv.mod_revision));
            }
            match self.storage.update(&self.key(namespace, name), Bytes::from(bytes), current.kv.mod_revision).await {
                Ok(kv) => return Ok(with_resource_version(&kv.value, kv.mod_revision)),
                Err(StorageError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_storage(e, info, name)),
            }
        }
        Err(ApiError::conflict(info, name, "too many concurrent changes, please try again"))
    }
}

/// Validated DeleteOptions (from the body or the query).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

impl DeleteOptions {
    fn check_preconditions(&self, info: &ResourceInfo, name: &str, current: &Current) -> ApiResult<()> {
        let meta = current.obj.get("metadata").and_then(Value::as_object);
        let field = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str).unwrap_or("").to_string();
        if let Some(uid) = &self.precondition_uid {
            let actual = field("uid");
            if *uid != actual {
                return Err(ApiError::conflict(
                    info,
                    name,
                    &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
                ));
            }
        }
        if let Some(rv) = &self.precondition_rv {
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
}
