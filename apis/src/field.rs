//! Field errors, as k8s.io/apimachinery's `field.Error`: what a 422 Invalid lists in `details.causes`.

use std::fmt;

use serde_json::Value;

/// The type of a field error; `reason()` is the `details.causes[].reason` of a Status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorType {
    Required,
    Invalid,
    NotSupported,
    Forbidden,
    Duplicate,
    TooLong,
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
    pub error_type: FieldErrorType,
    /// Dotted path with indices, e.g. `spec.database.url`, `status.conditions[0].type`.
    pub field: String,
    /// The offending value (shown for Invalid, NotSupported, Duplicate, TypeInvalid).
    pub value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { error_type: FieldErrorType::Required, field: field.into(), value: None, detail: detail.into() }
    }

    pub fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self { error_type: FieldErrorType::Invalid, field: field.into(), value: Some(value), detail: detail.into() }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { error_type: FieldErrorType::Forbidden, field: field.into(), value: None, detail: detail.into() }
    }

    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self {
            error_type: FieldErrorType::TooLong,
            field: field.into(),
            value: None,
            detail: format!("must have at most {max} bytes"),
        }
    }

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
    pub fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }

    pub fn extend(&mut self, other: ErrorList) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

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
