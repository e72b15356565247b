//! Admission in the store (upstream's `rest.AdmissionToValidateObjectFunc` and the handlers' mutating step): the
//! attributes of a write, the mutating phase before the strategy, the validating phase before storage, and the
//! managedFields of a write that webhooks changed — upstream updates managedFields before mutating admission, so
//! what a webhook changed belongs to no manager: the request's own object decides what its manager owns.
//!
//! store create / update / delete → **admit** → admission.

use serde_json::Value;

use super::{Store, WriteOptions};
use crate::admission::{self, Attributes, Object, Operation, RequestContext};
use crate::error::ApiResult;
use crate::fieldmanager::{self, Manager};
use crate::registry::strategy::{Prepared, Validation};
use crate::request::info::Subresource;
use crate::request::options::{DeleteOptions, FieldValidation};

/// Where a write goes, as admission names it.
pub(super) struct Target<'a> {
    pub operation: Operation,
    pub subresource: &'a Subresource,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl<'a> Target<'a> {
    /// A create in `namespace` (`name` may be "", for a name yet to be generated).
    pub fn create(namespace: &'a str, name: &'a str) -> Self {
        Self { operation: Operation::Create, subresource: &Subresource::Main, namespace, name }
    }
}

impl Store {
    /// The attributes of a create or update.
    pub(super) fn write_attributes<'a>(
        &'a self,
        target: Target<'a>,
        old: Option<&'a Object>,
        opts: &WriteOptions<'a>,
    ) -> Attributes<'a> {
        let options = match target.operation {
            Operation::Create => admission::create_options(opts.dry_run, opts.field_manager),
            _ => admission::update_options(opts.dry_run, opts.field_manager),
        };
        Attributes {
            operation: target.operation,
            resource: self.info(),
            subresource: target.subresource,
            namespace: target.namespace,
            name: target.name,
            old_object: old,
            dry_run: opts.dry_run,
            options,
            request: opts.request,
        }
    }

    /// The mutating phase on `obj`: the object as the request made it when admission changed it.
    pub(super) async fn admit(&self, attrs: &Attributes<'_>, obj: &mut Object) -> ApiResult<Option<Object>> {
        match &self.admission {
            Some(a) => a.admit(attrs, Some(obj)).await,
            None => Ok(None),
        }
    }

    /// The validating phase on the object about to be stored.
    pub(super) async fn validate(&self, attrs: &Attributes<'_>, obj: &Object) -> ApiResult<()> {
        match &self.admission {
            Some(a) => a.validate(attrs, Some(obj)).await,
            None => Ok(()),
        }
    }

    /// Both phases of a delete of `old` (`name` is "" for the items of a deletecollection, as upstream).
    pub(super) async fn admit_delete(
        &self,
        (namespace, name): (&str, &str),
        old: &Object,
        opts: &DeleteOptions,
        request: &RequestContext,
    ) -> ApiResult<()> {
        let Some(a) = &self.admission else { return Ok(()) };
        let attrs = Attributes {
            operation: Operation::Delete,
            resource: self.info(),
            subresource: &Subresource::Main,
            namespace,
            name,
            old_object: Some(old),
            dry_run: opts.dry_run,
            options: admission::delete_options(opts),
            request,
        };
        a.admit(&attrs, None).await?;
        a.validate(&attrs, None).await
    }

    /// Give `obj` (prepared from what admission made of `own`) the managedFields `own` alone would have had, when
    /// `own` can be prepared; `prepare` is the strategy's create or update.
    pub(super) fn keep_managed_fields_of_request(
        &self,
        own: Object,
        obj: &mut Object,
        opts: &WriteOptions<'_>,
        (sub, live): (&Subresource, Option<&Value>),
        prepare: impl FnOnce(Object, Validation<'_>) -> ApiResult<Prepared>,
    ) {
        if !matches!(opts.manager, Manager::Update(_)) {
            // An apply's managedFields were computed before admission already.
            return;
        }
        let mut scratch = Vec::new();
        let validation =
            Validation { field_validation: FieldValidation::Ignore, duplicates: &[], warnings: &mut scratch };
        let Ok(prepared) = prepare(own, validation) else { return };
        let mut own = prepared.obj;
        let schema = self.strategy.schema();
        fieldmanager::track(schema, self.info(), sub, opts.manager, live, &mut own, prepared.requested_managed_fields);
        let managed = fieldmanager::take_managed_fields(&mut own);
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            match managed {
                Some(m) => meta.insert("managedFields".into(), m),
                None => meta.remove("managedFields"),
            };
        }
    }
}
