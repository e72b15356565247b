//! The strategy of a kind (k8s.io/apiserver `rest.RESTCreateStrategy`/`RESTUpdateStrategy`): what the generic
//! store asks of a kind on every write, driven by its `backup_apis::Kind` — type checks, pruning of unknown fields
//! (reported per fieldValidation), defaults, ObjectMeta rules and the kind's own validation; plus the fields its
//! field selectors may name.
//!
//! endpoints → registry store → **strategy** → field manager → storage.

use std::sync::Arc;

use backup_apis::{ErrorList, Kind, ResourceInfo, objectmeta, schema};
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::request::options::FieldValidation;

/// One kind's rules, with its schema computed once.
pub struct Strategy {
    pub kind: Arc<dyn Kind>,
    schema: Value,
    /// Field selector names: `metadata.name`, `metadata.namespace`, then the kind's own.
    field_names: Vec<&'static str>,
}

impl Strategy {
    pub fn new(kind: Arc<dyn Kind>) -> Self {
        let schema = kind.schema();
        let mut field_names = vec!["metadata.name", "metadata.namespace"];
        field_names.extend(kind.selectable_fields().iter().map(|f| f.name));
        Self { kind, schema, field_names }
    }

    pub fn info(&self) -> &ResourceInfo {
        self.kind.resource()
    }

    /// The kind's OpenAPI v3 schema.
    pub fn schema(&self) -> &Value {
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
        match obj.pointer(pointer) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        }
    }

    /// Check `apiVersion` and `kind` of a body against this resource (400 on a mismatch).
    pub fn check_type_meta(&self, obj: &Map<String, Value>) -> ApiResult<()> {
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
    pub fn normalize(
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
}

/// `metadata.name` of an object ("" when absent).
pub fn meta_name(obj: &Map<String, Value>) -> String {
    obj.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("").to_string()
}
