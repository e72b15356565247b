//! Field errors, as k8s.io/apimachinery's `field.Error`: what a 422 Invalid lists in `details.causes`.

use std::fmt;

use serde_json::Value;

/// The type of a field error; `reason()` is the `details.causes[].reason` of a Status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorType {
    /// A required field is missing.
    Required,
    /// A field's value is invalid.
    Invalid,
    /// A field's value is not one of the supported values.
    NotSupported,
    /// A field may not be set (here, or to this value).
    Forbidden,
    /// A value repeats where values must be unique.
    Duplicate,
    /// A value is longer than allowed.
    TooLong,
    /// A value has the wrong JSON type.
    TypeInvalid,
}

impl FieldErrorType {
    /// The Status cause reason, e.g. `FieldValueInvalid`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::Duplicate => "FieldValueDuplicate",
            Self::TooLong => "FieldValueTooLong",
            Self::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The words upstream puts after the field path, e.g. `Invalid value`.
    pub fn text(self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::Invalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::Forbidden => "Forbidden",
            Self::Duplicate => "Duplicate value",
            Self::TooLong => "Too long",
            Self::TypeInvalid => "Invalid value",
        }
    }
}

/// One invalid field: `spec.retention.keepLast: Invalid value: -1: must be greater than or equal to 0`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// What is wrong.
    pub error_type: FieldErrorType,
    /// Dotted path with indices, e.g. `spec.database.url`, `status.conditions[0].type`.
    pub field: String,
    /// The offending value (shown for Invalid, NotSupported, Duplicate, TypeInvalid).
    pub value: Option<Value>,
    /// Why, in words (`must be greater than or equal to 0`).
    pub detail: String,
}

impl FieldError {
    /// A missing required field.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { error_type: FieldErrorType::Required, field: field.into(), value: None, detail: detail.into() }
    }

    /// An invalid value.
    pub fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self { error_type: FieldErrorType::Invalid, field: field.into(), value: Some(value), detail: detail.into() }
    }

    /// A field that may not be set.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { error_type: FieldErrorType::Forbidden, field: field.into(), value: None, detail: detail.into() }
    }

    /// A value over `max` characters.
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self {
            error_type: FieldErrorType::TooLong,
            field: field.into(),
            value: None,
            detail: format!("must have at most {max} bytes"),
        }
    }

    /// A value of the wrong type.
    pub fn type_invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self { error_type: FieldErrorType::TypeInvalid, field: field.into(), value: Some(value), detail: detail.into() }
    }

    /// `Duplicate value: {"type":"Ready"}`: a second list item with the same key (or value, for a set).
    pub fn duplicate(field: impl Into<String>, value: Value) -> Self {
        Self { error_type: FieldErrorType::Duplicate, field: field.into(), value: Some(value), detail: String::new() }
    }

    /// `Too long: may not be longer than 253` (upstream's `TooLongMaxLength`: the value is not shown).
    pub fn too_long_max_length(field: impl Into<String>, max: usize) -> Self {
        Self {
            error_type: FieldErrorType::TooLong,
            field: field.into(),
            value: None,
            detail: format!("may not be longer than {max}"),
        }
    }

    /// `Unsupported value: "X": supported values: "A", "B"`.
    pub fn not_supported(field: impl Into<String>, value: Value, supported: &[&str]) -> Self {
        let list = supported.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
        Self {
            error_type: FieldErrorType::NotSupported,
            field: field.into(),
            value: Some(value),
            detail: format!("supported values: {list}"),
        }
    }

    /// The message without the field path (a Status cause's `message`).
    pub fn message(&self) -> String {
        let mut s = self.error_type.text().to_string();
        if let Some(v) = &self.value {
            s.push_str(": ");
            s.push_str(&render_value(v));
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

/// Values are shown as Go's `%#v`-like rendering: strings quoted, numbers and bools bare, others as JSON.
fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message())
    }
}

/// A list of field errors; empty means valid.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorList(pub Vec<FieldError>);

impl ErrorList {
    /// Add one error.
    pub fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }

    /// Add every error of `other`.
    pub fn extend(&mut self, other: ErrorList) {
        self.0.extend(other.0);
    }

    /// Whether there is no error.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The errors, in the order they were found.
    pub fn iter(&self) -> impl Iterator<Item = &FieldError> {
        self.0.iter()
    }

    /// `[a, b]` as upstream's aggregate error prints several, or the one error alone.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|e| e.to_string()).collect();
        if parts.len() == 1 { parts[0].clone() } else { format!("[{}]", parts.join(", ")) }
    }
}

impl From<Vec<FieldError>> for ErrorList {
    fn from(v: Vec<FieldError>) -> Self {
        Self(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_match_upstream() {
        let e = FieldError::invalid("spec.retention.keepLast", json!(-1), "must be greater than or equal to 0");
        assert_eq!(e.to_string(), "spec.retention.keepLast: Invalid value: -1: must be greater than or equal to 0");
        let e = FieldError::required("metadata.name", "name or generateName is required");
        assert_eq!(e.to_string(), "metadata.name: Required value: name or generateName is required");
        let e = FieldError::not_supported("spec.database.type", json!("Mongo"), &["Prometheus", "InfluxDB"]);
        assert_eq!(
            e.to_string(),
            "spec.database.type: Unsupported value: \"Mongo\": supported values: \"Prometheus\", \"InfluxDB\""
        );
        let list = ErrorList(vec![e.clone(), e]);
        assert!(list.summary().starts_with('['));
    }
}
