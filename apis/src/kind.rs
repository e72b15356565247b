//! The per-kind strategy the registry store calls (through `registry/strategy.rs`): the only place a kind's rules live.

use serde_json::Value;

use crate::columns::PrinterColumn;
use crate::field::ErrorList;
use crate::resource::ResourceInfo;

/// A field a field selector may name, beside `metadata.name` and `metadata.namespace` (which every kind has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectableField {
    /// The selector's name, e.g. `status.phase`.
    pub name: &'static str,
    /// JSON pointer into the object, e.g. `/status/phase`. A missing value selects as "".
    pub pointer: &'static str,
}

/// What the machinery needs of a kind. Objects are passed as whole JSON objects (`apiVersion`, `kind`, `metadata`,
/// `spec`, `status`); the machinery has already handled metadata (ObjectMeta rules, uid, timestamps, generation).
pub trait Kind: Send + Sync + 'static {
    /// Names and shape.
    fn resource(&self) -> &ResourceInfo;

    /// The OpenAPI v3 (structural) schema of the whole object, with `metadata` as
    /// `{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}` (the OpenAPI layer rewrites
    /// refs for v2), `default`s, `enum`s, `required`, and `x-kubernetes-list-type`/`x-kubernetes-list-map-keys`
    /// markers where lists are not atomic. The machinery prunes, defaults and type-checks objects with it.
    fn schema(&self) -> Value;

    /// Defaults the schema cannot express (computed from other fields), applied after schema defaults.
    fn default(&self, _obj: &mut Value) {}

    /// Rules beyond the schema (URLs, cron expressions, cross-field rules) for an object being created or updated.
    fn validate(&self, obj: &Value) -> ErrorList;

    /// Rules that compare an update with the stored object, beside `validate(new)`.
    fn validate_update(&self, _new: &Value, _old: &Value) -> ErrorList {
        ErrorList::default()
    }

    /// Columns for `kubectl get` (Table), in order; NAME first.
    fn printer_columns(&self) -> &[PrinterColumn];

    /// Extra field-selector fields.
    fn selectable_fields(&self) -> &[SelectableField];
}
