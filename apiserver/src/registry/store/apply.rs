//! Server-side apply: the configuration is merged into the live object by the field manager, or — on the main
//! resource of a missing object — creates it (201), as upstream's patcher does with `forceAllowCreate`.
//!
//! endpoints/patch → **store apply** → field manager → store update or create → admission, strategy → storage.

use serde_json::{Value, json};

use super::{Store, WriteOptions, Written};
use crate::admission::RequestContext;
use crate::error::{ApiError, ApiResult};
use crate::fieldmanager::{self, ApplyRequest, Manager};
use crate::request::info::Subresource;
use crate::request::options::{FieldValidation, PatchOptions};

/// An apply configuration (the object, from YAML or JSON), or the 400 of one that does not parse: the first call
/// gives the parsed one, later calls (retries after a conflict) parse the body again, so that no attempt keeps a
/// copy.
pub type ConfigurationFn<'a> = dyn Fn() -> ApiResult<Value> + Send + Sync + 'a;

impl Store {
    /// Apply the configuration to `name` for `opts.field_manager`; `duplicates` is the strict decoder's complaint
    /// about repeated keys in it (the later value was kept), which fieldValidation decides on.
    #[allow(clippy::too_many_arguments)] // the configuration, then what every write takes
    pub async fn apply(
        &self,
        namespace: &str,
        name: &str,
        config: &ConfigurationFn<'_>,
        duplicates: Option<&str>,
        sub: &Subresource,
        opts: &PatchOptions,
        request: &RequestContext,
    ) -> ApiResult<Written> {
        let warnings = duplicate_warnings(duplicates, opts.field_validation)?;
        let req = ApplyRequest { manager: &opts.field_manager, force: opts.force, sub };
        let write = WriteOptions {
            dry_run: opts.dry_run,
            field_validation: opts.field_validation,
            manager: Manager::Applied,
            duplicate_fields: &[],
            field_manager: &opts.field_manager,
            request,
        };
        let mut written = self.apply_or_create(namespace, name, config, req, write).await?;
        written.warnings.splice(0..0, warnings);
        Ok(written)
    }

    async fn apply_or_create(
        &self,
        namespace: &str,
        name: &str,
        config: &ConfigurationFn<'_>,
        req: ApplyRequest<'_>,
        write: WriteOptions<'_>,
    ) -> ApiResult<Written> {
        let info = self.info();
        let schema = self.strategy.schema();
        let merge = |doc: &mut Value| -> ApiResult<()> {
            *doc = fieldmanager::apply(schema, info, std::mem::take(doc), config()?, req)?;
            Ok(())
        };
        // A create that loses a race with another create applies to the object that won.
        for _ in 0..2 {
            match self.patch_with(namespace, name, &merge, req.sub, write).await {
                Err(e) if e.is_not_found() && *req.sub == Subresource::Main => {}
                other => return other,
            }
            let empty = json!({"apiVersion": info.api_version(), "kind": info.kind});
            let obj = fieldmanager::apply(schema, info, empty, config()?, req)?;
            let field = |k: &str| obj.get("metadata").and_then(|m| m.get(k)).and_then(Value::as_str).unwrap_or("");
            let uid = field("uid");
            if !uid.is_empty() {
                return Err(ApiError::conflict(
                    info,
                    name,
                    &format!("uid mismatch: the provided object specified uid {uid}, and no existing object was found"),
                ));
            }
            if field("name") != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    field("name")
                )));
            }
            match self.create_object(namespace, obj, write).await {
                Err(e) if e.is_already_exists() => continue,
                other => return other,
            }
        }
        Err(ApiError::conflict(info, name, "too many concurrent changes, please try again"))
    }
}

/// What fieldValidation makes of repeated keys in an apply body: 400 when Strict, a warning when Warn.
fn duplicate_warnings(duplicates: Option<&str>, fv: FieldValidation) -> ApiResult<Vec<String>> {
    match (duplicates, fv) {
        (Some(d), FieldValidation::Strict) => Err(ApiError::bad_request(format!("error strict decoding YAML: {d}"))),
        (Some(d), FieldValidation::Warn) => Ok(vec![d.to_string()]),
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_per_field_validation() {
        assert_eq!(duplicate_warnings(Some("dup"), FieldValidation::Strict).unwrap_err().code, 400);
        assert_eq!(duplicate_warnings(Some("dup"), FieldValidation::Warn).unwrap(), vec!["dup".to_string()]);
        assert!(duplicate_warnings(Some("dup"), FieldValidation::Ignore).unwrap().is_empty());
        assert!(duplicate_warnings(None, FieldValidation::Strict).unwrap().is_empty());
    }
}
