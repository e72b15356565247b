//! Create (`registry.Store.Create`): mutating admission, the strategy prepares the object (`rest.BeforeCreate`),
//! the field manager records managedFields, validating admission, then one storage create.
//!
//! endpoints/create → **store create** → admission (mutating) → strategy → field manager → admission (validating)
//! → storage.

use backup_storage::StorageError;
use bytes::Bytes;
use serde_json::Value;

use super::admit::Target;
use super::{Store, WriteOptions, Written};
use crate::admission::RequestContext;
use crate::error::{ApiError, ApiResult};
use crate::fieldmanager::{self, Manager};
use crate::registry::object_bytes::with_resource_version;
use crate::registry::strategy::{Prepared, Validation, meta_name};
use crate::request::body::Decoded;
use crate::request::info::Subresource;
use crate::request::options::CreateOptions;

impl Store {
    /// Create an object in `namespace` from a request body.
    pub async fn create(
        &self,
        namespace: &str,
        body: Decoded,
        opts: &CreateOptions,
        request: &RequestContext,
    ) -> ApiResult<Written> {
        let write = WriteOptions {
            dry_run: opts.dry_run,
            field_validation: opts.field_validation,
            manager: Manager::Update(&opts.field_manager),
            duplicate_fields: &body.duplicates,
            field_manager: &opts.field_manager,
            request,
        };
        self.create_object(namespace, body.value, write).await
    }

    /// Create from a decoded object (a create's body, or the result of an apply to a missing object).
    pub(super) async fn create_object(
        &self,
        namespace: &str,
        obj: Value,
        opts: WriteOptions<'_>,
    ) -> ApiResult<Written> {
        let info = self.info();
        let Value::Object(mut obj) = obj else {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        };
        let requested_name = meta_name(&obj);
        let target = Target::create(namespace, &requested_name);
        let own = self.admit(&self.write_attributes(target, None, &opts), &mut obj).await?;
        let mut warnings = Vec::new();
        let validation = Validation {
            field_validation: opts.field_validation,
            duplicates: opts.duplicate_fields,
            warnings: &mut warnings,
        };
        let Prepared { mut obj, requested_managed_fields, generated_name, .. } =
            self.strategy.prepare_for_create(obj, namespace, validation)?;
        let schema = self.strategy.schema();
        fieldmanager::track(schema, info, &Subresource::Main, opts.manager, None, &mut obj, requested_managed_fields);
        if let Some(own) = own {
            let prepare = |o, v: Validation<'_>| self.strategy.prepare_for_create(o, namespace, v);
            self.keep_managed_fields_of_request(own, &mut obj, &opts, (&Subresource::Main, None), prepare);
        }
        let name = meta_name(&obj);
        self.validate(&self.write_attributes(Target::create(namespace, &name), None, &opts), &obj).await?;
        let bytes = self.encode(&name, &obj)?;
        let key = self.key(namespace, &name);
        let stored = if opts.dry_run {
            // A dry run stores nothing but fails as the create would (upstream's `DryRunnableStorage.Create`).
            match self.storage.get(&key).await.map_err(self.storage_err(&name))? {
                Some(_) => Err(StorageError::AlreadyExists { key: key.clone() }),
                None => return Ok(Written { body: Bytes::from(bytes), created: true, warnings }),
            }
        } else {
            self.storage.create(&key, Bytes::from(bytes)).await
        };
        let kv = match stored {
            Err(StorageError::AlreadyExists { .. }) if generated_name => {
                return Err(ApiError::server_timeout(info, "POST", 1));
            }
            Err(e @ StorageError::AlreadyExists { .. }) => return Err(self.already_exists(&key, &name, e).await),
            other => other.map_err(self.storage_err(&name))?,
        };
        Ok(Written { body: with_resource_version(&kv.value, kv.mod_revision), created: true, warnings })
    }

    /// The AlreadyExists answer of `registry.Store.Create`, which says when the object in the way is being deleted.
    async fn already_exists(&self, key: &str, name: &str, err: StorageError) -> ApiError {
        let mut e = ApiError::from_storage(err, self.info(), name);
        let being_deleted = match self.storage.get(key).await {
            Ok(Some(kv)) => serde_json::from_slice::<Value>(&kv.value)
                .is_ok_and(|v| v.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())),
            _ => false,
        };
        if being_deleted {
            e.message = format!("object is being deleted: {}", e.message);
        }
        e
    }
}
