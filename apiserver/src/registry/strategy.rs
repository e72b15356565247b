//! The strategy of a kind (k8s.io/apiserver `rest.BeforeCreate`/`BeforeUpdate` with the kind's
//! `RESTCreateStrategy`/`RESTUpdateStrategy`): everything a write does to an object before the field manager and
//! storage see it — type checks, name and namespace against the URL, system fields, status kept apart from spec,
//! pruning of unknown fields (reported per fieldValidation), defaults, ObjectMeta rules, the kind's own validation
//! (`backup_apis::Kind`), and generation; plus the fields its field selectors may name.
//!
//! endpoints → registry store → **strategy** (→ system fields) → field manager → storage.

use std::sync::Arc;

use backup_apis::{ErrorList, Kind, ResourceInfo, json, objectmeta, schema};
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::fieldmanager;
use crate::registry::meta;
use crate::request::info::Subresource;
use crate::request::options::FieldValidation;

/// An object ready for the field manager: normalized and validated, with what the request said of managedFields
/// (taken out so that validation does not see them).
pub struct Prepared {
    pub obj: Map<String, Value>,
    pub requested_managed_fields: Option<Value>,
    /// Create: the name was generated from `generateName`.
    pub generated_name: bool,
    /// Update: the object is being deleted and its last finalizer went, so the write removes it.
    pub deleting: bool,
}

/// How unknown and repeated fields are reported, and where warnings go.
pub struct Validation<'a> {
    pub field_validation: FieldValidation,
    /// Keys the request body repeated.
    pub duplicates: &'a [String],
    pub warnings: &'a mut Vec<String>,
}

/// One kind's rules, with its schema computed once.
pub struct Strategy {
    pub kind: Arc<dyn Kind>,
    /// The kind's structural schema, as pruning, defaulting, validation, the field manager and strategic merge
    /// patch read it.
    schema: schema::Schema,
    /// Field selector names: `metadata.name`, `metadata.namespace`, then the kind's own.
    field_names: Vec<&'static str>,
}

impl Strategy {
    pub fn new(kind: Arc<dyn Kind>) -> Self {
        let schema = schema::Schema::new(&kind.schema());
        let mut field_names = vec!["metadata.name", "metadata.namespace"];
        field_names.extend(kind.selectable_fields().iter().map(|f| f.name));
        Self { kind, schema, field_names }
    }

    pub fn info(&self) -> &ResourceInfo {
        self.kind.resource()
    }

    /// The kind's structural schema, compiled (for the field manager and strategic merge patch).
    pub fn schema(&self) -> &schema::Schema {
        &self.schema
    }

    /// The fields a field selector may name.
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
        match json::at(obj, pointer) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        }
    }

    /// `rest.BeforeCreate`: a body to create in `namespace`, prepared.
    pub fn prepare_for_create(
        &self,
        mut obj: Map<String, Value>,
        namespace: &str,
        validation: Validation<'_>,
    ) -> ApiResult<Prepared> {
        let info = self.info();
        self.check_type_meta(&obj)?;
        let meta = metadata_mut(&mut obj)?;
        if info.namespaced {
            check_namespace(meta, namespace)?;
        }
        let generated_name = meta::prepare_create(meta);
        if info.status_subresource {
            obj.remove("status");
        }
        let requested_managed_fields = fieldmanager::take_managed_fields(&mut obj);
        self.normalize(&mut obj, None, validation)?;
        Ok(Prepared { obj, requested_managed_fields, generated_name, deleting: false })
    }

    /// `rest.BeforeUpdate`: `new` (a PUT body, or the stored object patched) replacing `old` at `namespace/name`
    /// through `sub`, prepared; generation goes up when anything but metadata (and a status subresource) changed.
    pub fn prepare_for_update(
        &self,
        mut new: Map<String, Value>,
        old: &Value,
        (namespace, name, sub): (&str, &str, &Subresource),
        validation: Validation<'_>,
    ) -> ApiResult<Prepared> {
        let info = self.info();
        let empty = Map::new();
        let old_map = old.as_object().unwrap_or(&empty);
        self.check_type_meta(&new)?;
        let old_meta = old_map.get("metadata").and_then(Value::as_object).unwrap_or(&empty);
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
            check_namespace(meta, namespace)?;
        }
        meta::prepare_update(meta, old_meta);
        let mut new = match (sub, info.status_subresource) {
            (Subresource::Status, _) => {
                // Only status changes through the status subresource (and managedFields, which apply computed):
                // the stored object without the two, copied, then the request's.
                let mut merged: Map<String, Value> = old_map
                    .iter()
                    .filter(|(k, _)| *k != "status")
                    .map(|(k, v)| match v {
                        Value::Object(m) if k == "metadata" => {
                            let meta = m.iter().filter(|(k, _)| *k != "managedFields");
                            (k.clone(), Value::Object(meta.map(|(k, v)| (k.clone(), v.clone())).collect()))
                        }
                        v => (k.clone(), v.clone()),
                    })
                    .collect();
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
            (_, true) => {
                match old_map.get("status") {
                    Some(s) => new.insert("status".into(), s.clone()),
                    None => new.remove("status"),
                };
                new
            }
            (_, false) => new,
        };
        let requested_managed_fields = fieldmanager::take_managed_fields(&mut new);
        self.normalize(&mut new, Some(old), validation)?;
        if meta::spec_changed(&new, old_map, info.status_subresource) {
            let generation = old_meta.get("generation").and_then(Value::as_i64);
            metadata_mut(&mut new)?.insert("generation".into(), Value::from(generation.unwrap_or(0) + 1));
        }
        let deleting = new
            .get("metadata")
            .and_then(Value::as_object)
            .is_some_and(|m| m.contains_key("deletionTimestamp") && meta::finalizers(m).is_empty());
        Ok(Prepared { obj: new, requested_managed_fields, generated_name: false, deleting })
    }

    /// Check `apiVersion` and `kind` of a body against this resource (400 on a mismatch).
    fn check_type_meta(&self, obj: &Map<String, Value>) -> ApiResult<()> {
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

    /// Prune unknown fields (reporting them and the body's repeated keys per fieldValidation), apply defaults, and
    /// validate everything; `old` is the stored object on an update.
    fn normalize(&self, obj: &mut Map<String, Value>, old: Option<&Value>, v: Validation<'_>) -> ApiResult<()> {
        let Validation { field_validation: fv, duplicates, warnings } = v;
        let info = self.info();
        let name = meta_name(obj);
        let mut value = Value::Object(std::mem::take(obj));
        // As upstream decodes a body: whole floats are integers, metadata goes through the typed ObjectMeta.
        schema::normalize_numbers(&mut value);
        if let Some(m) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta::drop_empty_fields(m);
        }
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
}

/// `metadata.name` of an object ("" when absent).
pub fn meta_name(obj: &Map<String, Value>) -> String {
    obj.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("").to_string()
}

/// `metadata` of an object, created when absent or null; 400 when it is not an object.
pub fn metadata_mut(obj: &mut Map<String, Value>) -> ApiResult<&mut Map<String, Value>> {
    let meta = obj.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if meta.is_null() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().ok_or_else(|| ApiError::bad_request("metadata must be a JSON object"))
}

/// The namespace of a body checked against the request's: filled in when absent, 400 when different.
fn check_namespace(meta: &mut Map<String, Value>, namespace: &str) -> ApiResult<()> {
    match meta.get("namespace").and_then(Value::as_str).unwrap_or("") {
        "" => {
            meta.insert("namespace".into(), Value::String(namespace.to_string()));
            Ok(())
        }
        ns if ns != namespace => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => Ok(()),
    }
}
