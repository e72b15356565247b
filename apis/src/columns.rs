//! Printer columns: what `kubectl get` shows for a kind, rendered by the server into a Table.

use jiff::Timestamp;
use serde_json::Value;

use crate::json::at;

/// The Table column type (`columnDefinitions[].type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// A string cell.
    String,
    /// An integer cell.
    Integer,
    /// A floating-point cell.
    Number,
    /// A boolean cell.
    Boolean,
    /// A date cell (kubectl prints it as an age).
    Date,
}

impl ColumnType {
    /// The type's name in a Table's `columnDefinitions`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Date => "date",
        }
    }
}

/// Where a cell's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellSource {
    /// The object's name.
    Name,
    /// A JSON pointer; the value is shown as is (a missing value is `<none>`-like: rendered empty by kubectl).
    Pointer(&'static str),
    /// A JSON pointer to an RFC 3339 time, shown as a human age (`5m`, `3d`), as CRD date columns are.
    Age(&'static str),
    /// A JSON pointer to a byte count, shown as `12.3MiB`.
    Bytes(&'static str),
}

/// One column, as a CRD's `additionalPrinterColumns` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterColumn {
    /// Upper-cased by kubectl: `Name`, `Database`, `Last Backup`.
    pub name: &'static str,
    /// The cell type.
    pub column_type: ColumnType,
    /// `name` for the name column, else "".
    pub format: &'static str,
    /// What the column shows, for `columnDefinitions`.
    pub description: &'static str,
    /// 0 = always shown; 1 = only with `-o wide`.
    pub priority: i32,
    /// Where each row's cell comes from.
    pub source: CellSource,
}

impl CellSource {
    /// The JSON pointer the cell's value is read at.
    pub fn pointer(self) -> &'static str {
        match self {
            Self::Name => "/metadata/name",
            Self::Pointer(p) | Self::Age(p) | Self::Bytes(p) => p,
        }
    }
}

impl PrinterColumn {
    /// The cell for `obj` at time `now`.
    pub fn cell(&self, obj: &Value, now: Timestamp) -> Value {
        match self.source {
            CellSource::Name | CellSource::Pointer(_) => at(obj, self.source.pointer()).cloned().unwrap_or(Value::Null),
            CellSource::Age(p) => match at(obj, p).and_then(Value::as_str) {
                Some(s) => match s.parse() {
                    Ok(t) => Value::String(human_duration(now, t)),
                    Err(_) => Value::String("<invalid>".to_string()),
                },
                None => Value::Null,
            },
            CellSource::Bytes(p) => match at(obj, p).and_then(Value::as_u64) {
                Some(n) => Value::String(human_bytes(n)),
                None => Value::Null,
            },
        }
    }
}

/// Age as kubectl and CRD tables show it (`apimachinery/pkg/util/duration.HumanDuration`).
pub fn human_duration(now: Timestamp, then: Timestamp) -> String {
    let secs = now.as_second() - then.as_second();
    if secs < -1 {
        return "<invalid>".to_string();
    }
    let secs = secs.max(0);
    if secs < 60 * 2 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        let days = hours / 24;
        return if h == 0 { format!("{days}d") } else { format!("{days}d{h}h") };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = hours / 24;
        let years = days / 365;
        let d = days % 365;
        return if d == 0 { format!("{years}y") } else { format!("{years}y{d}d") };
    }
    format!("{}y", hours / 24 / 365)
}

/// Bytes in binary units with one decimal: `512B`, `1.5KiB`, `12.3MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let now: Timestamp = "2026-01-10T00:00:00Z".parse().unwrap();
        let ago = |s: i64| human_duration(now, Timestamp::from_second(now.as_second() - s).unwrap());
        assert_eq!(ago(5), "5s");
        assert_eq!(ago(150), "2m30s");
        assert_eq!(ago(600), "10m");
        assert_eq!(ago(3 * 3600 + 60), "3h1m");
        assert_eq!(ago(30 * 3600), "30h");
        assert_eq!(ago(3 * 86400), "3d");
        assert_eq!(ago(40 * 86400), "40d");
    }

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(1536), "1.5KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0MiB");
    }
}
