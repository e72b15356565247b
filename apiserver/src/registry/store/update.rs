//! Update and patch (`registry.Store.Update`): the new object (a PUT body, or a patch applied to the stored
//! object) goes through mutating admission, is prepared by the strategy (`rest.BeforeUpdate`: status and spec
//! kept apart by subresource, system fields carried over, validation, generation), managedFields are tracked,
//! validating admission decides, then one compare-and-swap in storage (retried on a concurrent change when the
//! request did not pin a resourceVersion).
//!
//! endpoints/update, endpoints/patch → **store update** → admission (mutating) → strategy → field manager →
//! admission (validating) → storage.

use backup_apis::ResourceInfo;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::admit::Target;
use super::{Attempt, Current, Store, WriteOptions, Written};
use crate::admission::{Operation, RequestContext};
use crate::error::{ApiError, ApiResult};
use crate::fieldmanager::{self, Manager};
use crate::registry::object_bytes::with_resource_version;
use crate::registry::strategy::{Prepared, Validation, metadata_mut};
use crate::request::body::Decoded;
use crate::request::info::Subresource;
use crate::request::options::{PatchOptions, UpdateOptions};

/// A patch of any type, applied in place to the stored object (with its resourceVersion).
pub type PatchFn<'a> = dyn Fn(&mut Value) -> ApiResult<()> + Send + Sync + 'a;

impl Store {
    /// Replace an object (PUT) or its status.
    pub async fn update(
        &self,
        namespace: &str,
        name: &str,
        body: Decoded,
        sub: &Subresource,
        opts: &UpdateOptions,
        request: &RequestContext,
    ) -> ApiResult<Written> {
        let Value::Object(body_obj) = body.value else {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        };
        let precondition = body_obj
            .get("metadata")
            .and_then(|m| m.get("resourceVersion"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        // As upstream: a missing object is 404 before the resourceVersion is looked at.
        let mut current = self.current_for_write(namespace, name).await?;
        let check = |current: &Current| match &precondition {
            None => Err(missing_resource_version(self.info(), name)),
            Some(rv) if *rv != current.kv.mod_revision.to_string() => Err(ApiError::stale(self.info(), name)),
            Some(_) => Ok(()),
        };
        if current.cached && check(&current).is_err() {
            // The cache's copy may be behind the version the client read, or the object gone from the backend.
            current = self.current(namespace, name).await?;
        }
        check(&current)?;
        let started = current.cached.then_some(current.kv.mod_revision);
        let write = WriteOptions {
            dry_run: opts.dry_run,
            field_validation: opts.field_validation,
            manager: Manager::Update(&opts.field_manager),
            duplicate_fields: &body.duplicates,
            field_manager: &opts.field_manager,
            request,
        };
        match (self.write_update(namespace, name, body_obj, current, sub, write).await, started) {
            (Attempt::Stored(result), _) => result,
            (Attempt::Conflict(e), _) => Err(e),
            (Attempt::Done(result), None) => result,
            // Computed from the cache's copy, the version the client sent: it stands while that copy is the
            // backend's latest; after a change since, the client's resourceVersion is stale.
            (Attempt::Done(result), Some(revision)) => {
                if self.get_kv(namespace, name).await?.mod_revision == revision {
                    result
                } else {
                    Err(ApiError::stale(self.info(), name))
                }
            }
        }
    }

    /// Apply `patch` (JSON, merge or strategic) to the stored object and write the result; on a concurrent change
    /// the patch is applied again to the new object.
    pub async fn patch(
        &self,
        namespace: &str,
        name: &str,
        patch: &PatchFn<'_>,
        sub: &Subresource,
        opts: &PatchOptions,
        request: &RequestContext,
    ) -> ApiResult<Written> {
        let write = WriteOptions {
            dry_run: opts.dry_run,
            field_validation: opts.field_validation,
            manager: Manager::Update(&opts.field_manager),
            duplicate_fields: &[],
            field_manager: &opts.field_manager,
            request,
        };
        self.patch_with(namespace, name, patch, sub, write).await
    }

    /// The patch loop, for patches and for apply (whose manager is [`Manager::Applied`]).
    pub(super) async fn patch_with(
        &self,
        namespace: &str,
        name: &str,
        patch: &PatchFn<'_>,
        sub: &Subresource,
        write: WriteOptions<'_>,
    ) -> ApiResult<Written> {
        // After a concurrent change the patch is applied again to the new object.
        self.retried(namespace, name, |current| self.patch_once(namespace, name, patch, current, sub, write)).await
    }

    /// One application of the patch to `current` and its write.
    async fn patch_once(
        &self,
        namespace: &str,
        name: &str,
        patch: &PatchFn<'_>,
        current: Current,
        sub: &Subresource,
        write: WriteOptions<'_>,
    ) -> Attempt {
        let current_rv = current.kv.mod_revision.to_string();
        // The patch sees the object as a client does, resourceVersion included (a JSON patch may `test` it).
        let mut patched = Value::Object(current.obj.clone());
        if let Err(e) = patch(&mut patched) {
            return Attempt::Done(Err(e));
        }
        let Value::Object(mut patched) = patched else {
            return Attempt::Done(Err(ApiError::bad_request("the patched object must be a JSON object")));
        };
        let meta = match metadata_mut(&mut patched) {
            Ok(meta) => meta,
            Err(e) => return Attempt::Done(Err(e)),
        };
        // As `registry.Store.Update`: a resourceVersion the patch left in place (or set) must be the current
        // one, and one it removed is missing (these kinds, as CRDs, allow no unconditional update). After a
        // concurrent change the patch is applied again to the new object, so one it set itself then conflicts.
        match meta.get("resourceVersion").and_then(Value::as_str).filter(|rv| !rv.is_empty()) {
            Some(rv) if rv != current_rv => Attempt::Done(Err(ApiError::stale(self.info(), name))),
            Some(_) => self.write_update(namespace, name, patched, current, sub, write).await,
            None => Attempt::Done(Err(missing_resource_version(self.info(), name))),
        }
    }

    /// Admit `new`, prepare it with the strategy, track managedFields, admit the result, and write it over
    /// `current` (or delete the object when its last finalizer went).
    async fn write_update(
        &self,
        namespace: &str,
        name: &str,
        new: Map<String, Value>,
        current: Current,
        sub: &Subresource,
        opts: WriteOptions<'_>,
    ) -> Attempt {
        match self.prepare_and_write(namespace, name, new, current, sub, opts).await {
            Ok((written, true)) => Attempt::Stored(Ok(written)),
            Err(e) if e.is_conflict() => Attempt::Conflict(e),
            other => Attempt::Done(other.map(|(written, _)| written)),
        }
    }

    /// [`Store::write_update`]'s work: the object served, and whether it was written to the backend.
    async fn prepare_and_write(
        &self,
        namespace: &str,
        name: &str,
        mut new: Map<String, Value>,
        current: Current,
        sub: &Subresource,
        opts: WriteOptions<'_>,
    ) -> ApiResult<(Written, bool)> {
        let info = self.info();
        let mut warnings = Vec::new();
        let Current { kv: current_kv, obj: old_map, .. } = current;
        let target = || Target { operation: Operation::Update, subresource: sub, namespace, name };
        let own = self.admit(&self.write_attributes(target(), Some(&old_map), &opts), &mut new).await?;
        // The stored object as a Value for the strategy, moved rather than copied.
        let old = Value::Object(old_map);
        let validation = Validation {
            field_validation: opts.field_validation,
            duplicates: opts.duplicate_fields,
            warnings: &mut warnings,
        };
        let Prepared { obj: mut new, requested_managed_fields, deleting, .. } =
            self.strategy.prepare_for_update(new, &old, (namespace, name, sub), validation)?;
        let live = old.as_object();
        let schema = self.strategy.schema();
        fieldmanager::track(schema, info, sub, opts.manager, Some(&old), &mut new, requested_managed_fields);
        if let Some(own) = own {
            let prepare = |o, v: Validation<'_>| self.strategy.prepare_for_update(o, &old, (namespace, name, sub), v);
            self.keep_managed_fields_of_request(own, &mut new, &opts, (sub, Some(&old)), prepare);
        }
        self.validate(&self.write_attributes(target(), live, &opts), &new).await?;
        let bytes = self.encode(name, &new)?;
        let key = self.key(namespace, name);
        // No change: nothing is written and the resourceVersion stays, unless the stored value was encrypted by
        // a provider or key that no longer writes (then it is written again, as upstream does, so that rewriting
        // every object re-encrypts it). A dry run writes nothing.
        let stale = || self.storage.rewrite_needed(&key, current_kv.mod_revision);
        if opts.dry_run || (bytes == current_kv.value && !stale().await.map_err(self.storage_err(name))?) {
            let body = with_resource_version(&bytes, current_kv.mod_revision);
            return Ok((Written { body, created: false, warnings }, false));
        }
        if deleting {
            let deleted =
                self.storage.delete(&key, Some(current_kv.mod_revision)).await.map_err(self.storage_err(name))?;
            let body = with_resource_version(&bytes, deleted.revision);
            return Ok((Written { body, created: false, warnings }, true));
        }
        let kv = self
            .storage
            .update(&key, Bytes::from(bytes), current_kv.mod_revision)
            .await
            .map_err(self.storage_err(name))?;
        Ok((Written { body: with_resource_version(&kv.value, kv.mod_revision), created: false, warnings }, true))
    }
}

/// Upstream's answer to an update without a resourceVersion (`registry.Store.Update`): 422 Invalid, naming the
/// resource (plural) where other Invalid errors name the kind.
fn missing_resource_version(info: &ResourceInfo, name: &str) -> ApiError {
    let detail = "Invalid value: 0x0: must be specified for an update";
    ApiError::unprocessable(format!(
        "{} \"{name}\" is invalid: metadata.resourceVersion: {detail}",
        info.qualified_resource()
    ))
    .with_details(json!({
        "name": name, "group": info.group, "kind": info.plural,
        "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": "metadata.resourceVersion"}],
    }))
}
