//! Delete and deletecollection in the generic store: preconditions, admission (the stored object as
//! `oldObject`), finalizers (deletionTimestamp instead of removal), propagation policies (finished by the server
//! itself when standalone), dry run.
//!
//! endpoints/delete, endpoints/delete_collection → **store delete** → admission → storage.

use backup_apis::{ErrorList, FieldError, ResourceInfo};
use backup_storage::StorageError;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Map, Value};

use super::{Attempt, Current, Store, WriteOptions, readable};
use crate::admission::RequestContext;
use crate::error::{ApiError, ApiResult};
use crate::fieldmanager::Manager;
use crate::registry::meta;
use crate::registry::object_bytes::{encode_for_storage, with_resource_version};
use crate::registry::strategy::{meta_name, metadata_mut};
use crate::request::info::Subresource;
use crate::request::options::{DeleteOptions, FieldValidation, ListOptions};

/// The finalizers the Orphan and Foreground propagation policies add, which the garbage collector finishes.
const PROPAGATION_FINALIZERS: [&str; 2] = ["orphan", "foregroundDeletion"];
/// The field manager of the standalone server's own removal of those finalizers.
const GARBAGE_COLLECTOR: &str = "backup-apiserver";

/// What a delete did.
#[derive(Debug, Clone)]
pub enum DeleteOutcome {
    /// The object is gone; this is how it was last stored.
    Deleted(Bytes),
    /// Finalizers hold it: it is marked with a deletionTimestamp (this object) and goes with the last finalizer.
    Pending(Bytes),
}

/// What a deletecollection deleted (or marked): the objects as listed, at the revision the list was read.
pub struct DeletedCollection {
    pub items: Vec<Value>,
    pub revision: i64,
    /// Objects left alone because they cannot be decoded.
    pub warnings: Vec<String>,
}

/// One object to delete, and how.
#[derive(Clone, Copy)]
struct OneDelete<'a> {
    namespace: &'a str,
    name: &'a str,
    opts: &'a DeleteOptions,
    request: &'a RequestContext,
    /// The namespace and name admission sees (a deletecollection's items: its namespace and "", as upstream).
    admitted_as: (&'a str, &'a str),
}

impl Store {
    /// Delete an object: with finalizers it is only marked (deletionTimestamp); otherwise it is removed.
    pub async fn delete(
        &self,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
        request: &RequestContext,
    ) -> ApiResult<DeleteOutcome> {
        self.delete_one(OneDelete { namespace, name, opts, request, admitted_as: (namespace, name) }).await
    }

    /// Delete one object.
    async fn delete_one(&self, delete: OneDelete<'_>) -> ApiResult<DeleteOutcome> {
        let OneDelete { namespace, name, opts, .. } = delete;
        if opts.ignore_store_read_error {
            // The object cannot be decoded, so admission cannot see it: an unsafe delete bypasses it, as upstream.
            return self.delete_unreadable(namespace, name).await;
        }
        self.retried(namespace, name, |current| self.delete_once(delete, current)).await
    }

    /// One attempt at deleting `current`: deleted, marked for its finalizers, or refused.
    async fn delete_once(&self, delete: OneDelete<'_>, mut current: Current) -> Attempt<DeleteOutcome> {
        let OneDelete { namespace, name, opts, request, admitted_as } = delete;
        let info = self.info();
        if let Err(e) = check_preconditions(opts, info, name, &current) {
            return Attempt::Done(Err(e));
        }
        if let Err(e) = self.admit_delete(admitted_as, &current.obj, opts, request).await {
            return Attempt::Done(Err(e));
        }
        let meta = match metadata_mut(&mut current.obj) {
            Ok(meta) => meta,
            Err(e) => return Attempt::Done(Err(e)),
        };
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
                let body = with_resource_version(&current.kv.value, current.kv.mod_revision);
                return Attempt::Done(Ok(DeleteOutcome::Deleted(body)));
            }
            return match self.storage.delete(&self.key(namespace, name), Some(current.kv.mod_revision)).await {
                Ok(d) => {
                    let body = with_resource_version(&d.prev.value, d.prev.mod_revision);
                    Attempt::Stored(Ok(DeleteOutcome::Deleted(body)))
                }
                Err(e @ StorageError::Conflict { .. }) => Attempt::Conflict(ApiError::from_storage(e, info, name)),
                Err(e) => Attempt::Done(Err(ApiError::from_storage(e, info, name))),
            };
        }
        if meta.contains_key("deletionTimestamp") {
            // Already being deleted: the finalizers decide when it goes. Finishing the propagation writes, so it is
            // done from the backend's copy only.
            if current.cached && !opts.dry_run {
                return Attempt::Conflict(ApiError::conflict(info, name, "the object is being deleted"));
            }
            if !opts.dry_run
                && let Err(e) = self.finish_propagation(namespace, name, &finalizers, request).await
            {
                return Attempt::Done(Err(e));
            }
            return Attempt::Done(Ok(DeleteOutcome::Pending(with_resource_version(
                &current.kv.value,
                current.kv.mod_revision,
            ))));
        }
        meta.insert("deletionTimestamp".into(), Value::String(backup_apis::objectmeta::timestamp_now()));
        meta.insert("deletionGracePeriodSeconds".into(), Value::from(0));
        let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
        if generation > 0 {
            meta.insert("generation".into(), Value::from(generation + 1));
        }
        let bytes = encode_for_storage(&current.obj);
        if opts.dry_run {
            return Attempt::Done(Ok(DeleteOutcome::Pending(with_resource_version(&bytes, current.kv.mod_revision))));
        }
        match self.storage.update(&self.key(namespace, name), Bytes::from(bytes), current.kv.mod_revision).await {
            Ok(kv) => {
                let marked = self.finish_propagation(namespace, name, &finalizers, request).await;
                Attempt::Stored(
                    marked.map(|()| DeleteOutcome::Pending(with_resource_version(&kv.value, kv.mod_revision))),
                )
            }
            Err(e @ StorageError::Conflict { .. }) => Attempt::Conflict(ApiError::from_storage(e, info, name)),
            Err(e) => Attempt::Done(Err(ApiError::from_storage(e, info, name))),
        }
    }

    /// Standalone, the finalizers of the Orphan and Foreground policies are the server's to remove: there is no
    /// garbage collector (behind the aggregator kube-controller-manager's removes them) and nothing else to wait
    /// for. So right after marking the object the server does what the collector would: it removes `orphan` and
    /// `foregroundDeletion` with an update, which deletes the object when no other finalizer is left. The answer
    /// to the DELETE stays the marked object, as upstream's (the collector acts after it).
    async fn finish_propagation(
        &self,
        namespace: &str,
        name: &str,
        finalizers: &[String],
        request: &RequestContext,
    ) -> ApiResult<()> {
        if !self.finishes_propagation || !finalizers.iter().any(|f| PROPAGATION_FINALIZERS.contains(&f.as_str())) {
            return Ok(());
        }
        let remove = |doc: &mut Value| -> ApiResult<()> {
            if let Some(list) = doc.pointer_mut("/metadata/finalizers").and_then(Value::as_array_mut) {
                list.retain(|f| !f.as_str().is_some_and(|f| PROPAGATION_FINALIZERS.contains(&f)));
            }
            Ok(())
        };
        let write = WriteOptions {
            dry_run: false,
            field_validation: FieldValidation::Ignore,
            manager: Manager::Update(GARBAGE_COLLECTOR),
            duplicate_fields: &[],
            field_manager: GARBAGE_COLLECTOR,
            request,
        };
        match self.patch_with(namespace, name, &remove, &Subresource::Main, write).await {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }

    /// KEP-3926's unsafe delete: remove an object whose stored bytes cannot be decoded, without decoding them (no
    /// finalizers run, no preconditions). Refused for an object that can be read, as upstream.
    async fn delete_unreadable(&self, namespace: &str, name: &str) -> ApiResult<DeleteOutcome> {
        let key = self.key(namespace, name);
        let kv = match self.storage.get(&key).await {
            // Stored encrypted with a key the configuration lacks: deleted at the revision it was read at.
            Err(StorageError::Unreadable { revision, .. }) => {
                return self.delete_unread(namespace, name, revision).await;
            }
            other => other.map_err(self.storage_err(name))?.ok_or_else(|| ApiError::not_found(self.info(), name))?,
        };
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
        self.delete_unread(namespace, name, kv.mod_revision).await
    }

    /// Delete the object stored at `revision` without reading it; the answer names it (its stored bytes are not
    /// an object).
    async fn delete_unread(&self, namespace: &str, name: &str, revision: i64) -> ApiResult<DeleteOutcome> {
        tracing::warn!(resource = self.info().plural, namespace, name, "deleting an unreadable object");
        let d =
            self.storage.delete(&self.key(namespace, name), Some(revision)).await.map_err(self.storage_err(name))?;
        let named = serde_json::json!({"metadata": {"name": name, "namespace": namespace}});
        Ok(DeleteOutcome::Deleted(with_resource_version(&named.to_string().into_bytes(), d.prev.mod_revision)))
    }

    /// Delete every object of `namespace` (all namespaces when empty) that `list_opts` selects; objects deleted
    /// meanwhile by someone else are skipped. Admission sees each delete with the request's namespace and no name,
    /// as upstream's.
    pub async fn delete_collection(
        &self,
        namespace: &str,
        list_opts: &ListOptions,
        opts: &DeleteOptions,
        request: &RequestContext,
    ) -> ApiResult<DeletedCollection> {
        let page = self.list((!namespace.is_empty()).then_some(namespace), list_opts).await?;
        let revision = page.revision;
        let mut warnings = Vec::new();
        // As `registry.Store.DeleteCollection`: the answer is the list as it was read.
        let items: Vec<Map<String, Value>> = page
            .into_objects(&mut warnings)
            .filter_map(|obj| match obj {
                Ok(Value::Object(obj)) => Some(Ok(obj)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<ApiResult<_>>()?;
        // `--delete-collection-workers` at once; the first failure ends the collection's deletion.
        let names: Vec<(String, String)> = items
            .iter()
            .map(|obj| {
                let ns = obj.get("metadata").and_then(|m| m.get("namespace")).and_then(Value::as_str).unwrap_or("");
                (ns.to_string(), meta_name(obj))
            })
            .collect();
        let mut deletes = futures::stream::iter(names)
            .map(|(item_ns, name)| async move {
                let delete =
                    OneDelete { namespace: &item_ns, name: &name, opts, request, admitted_as: (namespace, "") };
                match self.delete_one(delete).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_not_found() => Ok(()),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(self.tuning.delete_collection_workers.max(1));
        while let Some(done) = deletes.next().await {
            done?;
        }
        drop(deletes);
        Ok(DeletedCollection { items: items.into_iter().map(Value::Object).collect(), revision, warnings })
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
