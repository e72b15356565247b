//! The generic registry store (k8s.io/apiserver `registry/generic/registry.Store`): create, get, update and patch
//! for any kind, with the kind's strategy deciding defaults and validation; delete is in [`super::delete`].
//!
//! HTTP → authn → authz → REST handlers → **this store** → the kind's strategy (`backup_apis::Kind`) → storage.

use std::sync::Arc;

use backup_apis::{ErrorList, Kind, ResourceInfo, objectmeta, schema};
use backup_storage::{KeyValue, Storage, StorageError, check_value_size};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::admission::Admission;
use crate::error::{ApiError, ApiResult};
use crate::rest::fieldmanager::{self, Manager};
use crate::rest::meta;
use crate::rest::object_bytes::{decode, encode_for_storage, with_resource_version};
use crate::rest::params::FieldValidation;

/// How many times a write without a resourceVersion precondition is retried on a concurrent change.
pub(super) const MAX_UPDATE_RETRIES: usize = 16;

/// Which part of the object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Main,
    Status,
}

/// Options common to writes.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions<'a> {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    /// Who writes, for `metadata.managedFields`.
    pub manager: Manager<'a>,
    /// Keys the request body repeated (for fieldValidation).
    pub duplicate_fields: &'a [String],
}

/// The result of a write: the object as served, whether it was created, and warnings for the client.
#[derive(Debug, Clone)]
pub struct Written {
    pub body: Bytes,
    pub created: bool,
    pub warnings: Vec<String>,
}

/// One kind's store.
pub struct ResourceStore {
    pub kind: Arc<dyn Kind>,
    pub storage: Arc<dyn Storage>,
    schema: Value,
    /// Admission plugins run on create (NamespaceLifecycle in a cluster; none standalone).
    admission: Option<Arc<dyn Admission>>,
    /// Field selector names: `metadata.name`, `metadata.namespace`, then the kind's own.
    field_names: Vec<&'static str>,
}

/// A stored object decoded, with its mod revision.
pub struct Current {
    pub kv: KeyValue,
    pub obj: Map<String, Value>,
}

impl ResourceStore {
    pub fn new(kind: Arc<dyn Kind>, storage: Arc<dyn Storage>, admission: Option<Arc<dyn Admission>>) -> Self {
        let schema = kind.schema();
        let mut field_names = vec!["metadata.name", "metadata.namespace"];
        field_names.extend(kind.selectable_fields().iter().map(|f| f.name));
        Self { kind, storage, schema, admission, field_names }
    }

    pub fn info(&self) -> &ResourceInfo {
        self.kind.resource()
    }

    /// The kind's OpenAPI v3 schema.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    pub fn field_names(&self) -> &[&'static str] {
        &self.field_names
    }

    /// The value a field selector compares for `field` on `obj` ("" when absent).
    pub fn field_value(&self, obj: &Value, field: &str) -> String {
        let pointer = match field {
            "metadata.name" => "/metadata/name",
            "metadata.namespace" => "/metadata/namespace",
            other => match self.kind.selectable_fields().iter().find(|f| f.name == other) {
                Some(f) => f.pointer,
                None => return String::new(),
            },
        };
        match obj.pointer(pointer) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        }
    }

    /// `/<group>/<plural>/` or `/<group>/<plural>/<ns>/`.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        let info = self.info();
        match namespace.filter(|n| !n.is_empty() && info.namespaced) {
            Some(ns) => format!("/{}/{}/{}/", info.group, info.plural, ns),
            None => format!("/{}/{}/", info.group, info.plural),
        }
    }

    pub(super) fn key(&self, namespace: &str, name: &str) -> String {
        let info = self.info();
        if info.namespaced {
            format!("/{}/{}/{}/{}", info.group, info.plural, namespace, name)
        } else {
            format!("/{}/{}/{}", info.group, info.plural, name)
        }
    }

    fn storage_err(&self, name: &str) -> impl Fn(StorageError) -> ApiError + '_ {
        let name = name.to_string();
        move |e| ApiError::from_storage(e, self.info(), &name)
    }

    /// The stored object as a client sees it.
    pub async fn get(&self, namespace: &str, name: &str) -> ApiResult<Bytes> {
        let kv = self.get_kv(namespace, name).await?;
        Ok(with_resource_version(&kv.value, kv.mod_revision))
    }

    async fn get_kv(&self, namespace: &str, name: &str) -> ApiResult<KeyValue> {
        self.storage
            .get(&self.key(namespace, name))
            .await
            .map_err(self.storage_err(name))?
            .ok_or_else(|| ApiError::not_found(self.info(), name))
    }

    pub(super) async fn current(&self, namespace: &str, name: &str) -> ApiResult<Current> {
        let kv = self.get_kv(namespace, name).await?;
        let obj = match decode(&kv.value, kv.mod_revision) {
            Ok(Value::Object(m)) => m,
            _ => return Err(ApiError::internal(format!("the stored object {name:?} is not a JSON object"))),
        };
        Ok(Current { kv, obj })
    }

    /// Check `apiVersion` and `kind` of a body against this resource (400 on a mismatch).
    fn check_type_meta(&self, obj: &mut Map<String, Value>) -> ApiResult<()> {
        let info = self.info();
        let expected_av = info.api_version();
        match obj.get("apiVersion").and_then(Value::as_str) {
            Some(av) if av == expected_av => {}
            None | Some("") => return Err(ApiError::bad_request("Object 'apiVersion' is missing in the request body")),
            Some(av) => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({expected_av})"
                )));
            }
        }
        match obj.get("kind").and_then(Value::as_str) {
            Some(k) if k == info.kind => Ok(()),
            None | Some("") => Err(ApiError::bad_request("Object 'Kind' is missing in the request body")),
            Some(k) => Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                info.kind
            ))),
        }
    }

    /// Prune unknown fields (reporting them per fieldValidation), apply defaults, and validate everything: the
    /// strategy's part of every write.
    fn normalize(
        &self,
        obj: &mut Map<String, Value>,
        old: Option<&Value>,
        fv: FieldValidation,
        duplicates: &[String],
        warnings: &mut Vec<String>,
    ) -> ApiResult<()> {
        let info = self.info();
        let name = meta_name(obj);
        let mut value = Value::Object(std::mem::take(obj));
        let unknown = schema::prune(&self.schema, &mut value);
        let problems: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .chain(duplicates.iter().map(|f| format!("duplicate field \"{f}\"")))
            .collect();
        match fv {
            FieldValidation::Strict if !problems.is_empty() => {
                let list = problems.join(", ");
                return Err(ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {list}",
                    info.kind, info.version, info.kind
                )));
            }
            FieldValidation::Warn => warnings.extend(problems),
            _ => {}
        }
        schema::apply_defaults(&self.schema, &mut value);
        self.kind.default(&mut value);
        let mut errors = ErrorList::default();
        let empty = Value::Object(Map::new());
        let meta_value = value.get("metadata").unwrap_or(&empty);
        errors.extend(objectmeta::validate_object_meta(meta_value, info.namespaced));
        if let Some(old) = old {
            let old_meta = old.get("metadata").unwrap_or(&empty);
            errors.extend(objectmeta::validate_object_meta_update(meta_value, old_meta));
        }
        errors.extend(schema::validate(&self.schema, &value));
        errors.extend(self.kind.validate(&value));
        if let Some(old) = old {
            errors.extend(self.kind.validate_update(&value, old));
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid(info, &name, &errors));
        }
        if let Value::Object(m) = value {
            *obj = m;
        }
        Ok(())
    }

    /// Create an object in `namespace` from a request body.
    pub async fn create(&self, namespace: &str, body: Value, opts: WriteOptions<'_>) -> ApiResult<Written> {
        let info = self.info();
        let Value::Object(mut obj) = body else {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        };
        self.check_type_meta(&mut obj)?;
        let meta = metadata_mut(&mut obj)?;
        if info.namespaced {
            match meta::str_field(meta, "namespace") {
                "" => {
                    meta.insert("namespace".into(), Value::String(namespace.to_string()));
                }
                ns if ns != namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {}
            }
        }
        let generated = meta::prepare_create(meta);
        if info.status_subresource {
            obj.remove("status");
        }
        let mut warnings = Vec::new();
        let requested = fieldmanager::take_managed_fields(&mut obj);
        self.normalize(&mut obj, None, opts.field_validation, opts.duplicate_fields, &mut warnings)?;
        fieldmanager::track(&self.schema, info, Subresource::Main, opts.manager, None, &mut obj, requested);
        let name = meta_name(&obj);
        if let Some(admission) = &self.admission {
            admission.admit_create(info, namespace, &name).await?;
        }
        let bytes = encode_for_storage(&obj);
        check_value_size(&bytes).map_err(self.storage_err(&name))?;
        if opts.dry_run {
            return Ok(Written { body: Bytes::from(bytes), created: true, warnings });
        }
        let kv = match self.storage.create(&self.key(namespace, &name), Bytes::from(bytes)).await {
            Err(StorageError::AlreadyExists { .. }) if generated => {
                return Err(ApiError::server_timeout(info, "POST", 1));
            }
            other => other.map_err(self.storage_err(&name))?,
        };
        Ok(Written { body: with_resource_version(&kv.value, kv.mod_revision), created: true, warnings })
    }

    /// Replace an object (PUT) or its status.
    pub async fn update(
        &self,
        namespace: &str,
        name: &str,
        body: Value,
        sub: Subresource,
        opts: WriteOptions<'_>,
    ) -> ApiResult<Written> {
        let Value::Object(body) = body else {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        };
        let precondition = body
            .get("metadata")
            .and_then(|m| m.get("resourceVersion"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        // As upstream: a missing object is 404 before the resourceVersion is looked at.
        let current = self.current(namespace, name).await?;
        let Some(rv) = precondition else {
            return Err(missing_resource_version(self.info(), name));
        };
        if rv != current.kv.mod_revision.to_string() {
            return Err(ApiError::stale(self.info(), name));
        }
        let new = self.prepare_update(name, body, &current.obj, sub)?;
        self.write_update(namespace, name, new, current, sub, opts).await
    }

    /// Apply `patch` to the stored object and write the result, retrying on concurrent changes unless the patch
    /// itself carries a resourceVersion.
    pub async fn patch(
        &self,
        namespace: &str,
        name: &str,
        apply_patch: &(dyn Fn(&mut Value) -> ApiResult<()> + Send + Sync),
        sub: Subresource,
        opts: WriteOptions<'_>,
    ) -> ApiResult<Written> {
        for _ in 0..MAX_UPDATE_RETRIES {
            let current = self.current(namespace, name).await?;
            let current_rv = current.kv.mod_revision.to_string();
            // The patch sees the object without its resourceVersion, so one it sets is a precondition.
            let mut patched = Value::Object(current.obj.clone());
            if let Some(m) = patched.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            apply_patch(&mut patched)?;
            let Value::Object(mut patched) = patched else {
                return Err(ApiError::bad_request("the patched object must be a JSON object"));
            };
            let meta = metadata_mut(&mut patched)?;
            let pinned = match meta.get("resourceVersion").and_then(Value::as_str) {
                Some(rv) if !rv.is_empty() && rv != current_rv => return Err(ApiError::stale(self.info(), name)),
                Some(rv) => !rv.is_empty(),
                None => false,
            };
            meta.insert("resourceVersion".into(), Value::String(current_rv));
            let new = self.prepare_update(name, patched, &current.obj, sub)?;
            match self.write_update(namespace, name, new, current, sub, opts).await {
                Err(e) if e.code == 409 && e.reason == "Conflict" && !pinned => continue,
                other => return other,
            }
        }
        Err(ApiError::conflict(self.info(), name, "too many concurrent changes, please try again"))
    }

    /// Build the object an update stores: body checks, status/spec separation, system fields, strategy.
    fn prepare_update(
        &self,
        name: &str,
        mut new: Map<String, Value>,
        old: &Map<String, Value>,
        sub: Subresource,
    ) -> ApiResult<Map<String, Value>> {
        let info = self.info();
        self.check_type_meta(&mut new)?;
        let old_meta = old.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
        let meta = metadata_mut(&mut new)?;
        match meta::str_field(meta, "name") {
            "" => {
                meta.insert("name".into(), Value::String(name.to_string()));
            }
            n if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => {}
        }
        if info.namespaced {
            let ns = meta::str_field(&old_meta, "namespace").to_string();
            match meta::str_field(meta, "namespace") {
                "" => {
                    meta.insert("namespace".into(), Value::String(ns));
                }
                n if n != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {}
            }
        }
        meta::prepare_update(meta, &old_meta);
        let new = match (sub, info.status_subresource) {
            (Subresource::Status, _) => {
                // Only status changes through the status subresource (and managedFields, which apply computed).
                let mut merged = old.clone();
                match new.remove("status") {
                    Some(s) => merged.insert("status".into(), s),
                    None => merged.remove("status"),
                };
                let managed = fieldmanager::take_managed_fields(&mut new);
                if let Some(m) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
                    match managed {
                        Some(mf) => m.insert("managedFields".into(), mf),
                        None => m.remove("managedFields"),
                    };
                }
                merged
            }
            (Subresource::Main, true) => {
                match old.get("status") {
                    Some(s) => new.insert("status".into(), s.clone()),
                    None => new.remove("status"),
                };
                new
            }
            (Subresource::Main, false) => new,
        };
        Ok(new)
    }

    /// Normalize, bump generation, and write `new` over `current` (or delete it when its last finalizer went).
    async fn write_update(
        &self,
        namespace: &str,
        name: &str,
        mut new: Map<String, Value>,
        current: Current,
        sub: Subresource,
        opts: WriteOptions<'_>,
    ) -> ApiResult<Written> {
        let info = self.info();
        let mut warnings = Vec::new();
        let requested = fieldmanager::take_managed_fields(&mut new);
        let Current { kv: current_kv, obj: old_map } = current;
        // The stored object as a Value for the strategy, moved rather than copied.
        let old = Value::Object(old_map);
        let Value::Object(old_map) = &old else {
            return Err(ApiError::internal("the stored object is not a JSON object"));
        };
        self.normalize(&mut new, Some(&old), opts.field_validation, opts.duplicate_fields, &mut warnings)?;
        fieldmanager::track(&self.schema, info, sub, opts.manager, Some(old_map), &mut new, requested);
        if meta::spec_changed(&new, old_map, info.status_subresource) {
            let generation = old_map.get("metadata").and_then(|m| m.get("generation")).and_then(Value::as_i64);
            let meta = metadata_mut(&mut new)?;
            meta.insert("generation".into(), Value::from(generation.unwrap_or(0) + 1));
        }
        let bytes = encode_for_storage(&new);
        check_value_size(&bytes).map_err(self.storage_err(name))?;
        if bytes == current_kv.value {
            // No change: nothing is written and the resourceVersion stays.
            return Ok(Written {
                body: with_resource_version(&bytes, current_kv.mod_revision),
                created: false,
                warnings,
            });
        }
        let deleting = new
            .get("metadata")
            .and_then(Value::as_object)
            .is_some_and(|m| m.contains_key("deletionTimestamp") && meta::finalizers(m).is_empty());
        if opts.dry_run {
            return Ok(Written {
                body: with_resource_version(&bytes, current_kv.mod_revision),
                created: false,
                warnings,
            });
        }
        let key = self.key(namespace, name);
        if deleting {
            let deleted =
                self.storage.delete(&key, Some(current_kv.mod_revision)).await.map_err(self.storage_err(name))?;
            return Ok(Written { body: with_resource_version(&bytes, deleted.revision), created: false, warnings });
        }
        let kv = self
            .storage
            .update(&key, Bytes::from(bytes), current_kv.mod_revision)
            .await
            .map_err(self.storage_err(name))?;
        Ok(Written { body: with_resource_version(&kv.value, kv.mod_revision), created: false, warnings })
    }
}

/// Upstream's answer to an update without a resourceVersion (`registry.Store.Update`): 422 Invalid, naming the
/// resource (plural) where other Invalid errors name the kind.
fn missing_resource_version(info: &ResourceInfo, name: &str) -> ApiError {
    let detail = "Invalid value: 0x0: must be specified for an update";
    ApiError {
        code: 422,
        reason: "Invalid",
        message: format!("{} \"{name}\" is invalid: metadata.resourceVersion: {detail}", info.qualified_resource()),
        details: Some(json!({
            "name": name, "group": info.group, "kind": info.plural,
            "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": "metadata.resourceVersion"}],
        })),
        retry_after: None,
        continue_token: None,
    }
}

pub(super) fn metadata_mut(obj: &mut Map<String, Value>) -> ApiResult<&mut Map<String, Value>> {
    let meta = obj.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if meta.is_null() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().ok_or_else(|| ApiError::bad_request("metadata must be a JSON object"))
}

fn meta_name(obj: &Map<String, Value>) -> String {
    obj.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("").to_string()
}
