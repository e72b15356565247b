//! InfluxDB line protocol, as a restore writes it: escaping of names, tags and strings, and field values typed so
//! InfluxDB stores exactly what was backed up (integers with `i`, floats in a form that parses back to the same bits).
//!
//! API → controller → engine → InfluxDB → **line protocol (this file)**.

use std::fmt::Write;

use crate::format::{Column, FieldValue};

/// Appends one point: `measurement,tag=v field=1i,other="s" time`; nothing if it has no value.
pub fn write_point(out: &mut String, series_key: &str, columns: &[Column], values: &[Option<FieldValue>], time: i64) {
    let mut fields = columns.iter().zip(values).filter_map(|(c, v)| Some((c, v.as_ref()?))).peekable();
    if fields.peek().is_none() {
        return;
    }
    out.push_str(series_key);
    let mut separator = ' ';
    for (column, value) in fields {
        out.push(separator);
        separator = ',';
        escape(out, &column.name, &[',', '=', ' ']);
        out.push('=');
        match value {
            FieldValue::Float(f) => write_float(out, *f),
            FieldValue::Integer(i) => {
                let _ = write!(out, "{i}i");
            }
            FieldValue::Unsigned(u) => {
                let _ = write!(out, "{u}u");
            }
            FieldValue::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
            FieldValue::String(s) => {
                out.push('"');
                escape(out, s, &['"', '\\']);
                out.push('"');
            }
        }
    }
    let _ = writeln!(out, " {time}");
}

/// `measurement,tag=value,...` with tags in the given (sorted) order and empty tag values left out.
pub fn series_key(measurement: &str, tags: &[(String, String)]) -> String {
    let mut out = String::new();
    escape(&mut out, measurement, &[',', ' ']);
    for (key, value) in tags.iter().filter(|(_, v)| !v.is_empty()) {
        out.push(',');
        escape(&mut out, key, &[',', '=', ' ']);
        out.push('=');
        escape(&mut out, value, &[',', '=', ' ']);
    }
    out
}

fn escape(out: &mut String, s: &str, special: &[char]) {
    for c in s.chars() {
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The shortest decimal that parses back to the same float; exponent form for very large or small magnitudes.
fn write_float(out: &mut String, f: f64) {
    let magnitude = f.abs();
    if magnitude == 0.0 || (1e-4..1e16).contains(&magnitude) {
        let _ = write!(out, "{f}");
    } else {
        let _ = write!(out, "{f:e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::FieldType;

    #[test]
    fn lines() {
        let key = series_key("cpu load,x", &[("host".into(), "a b=c,d".into()), ("empty".into(), String::new())]);
        assert_eq!(key, r"cpu\ load\,x,host=a\ b\=c\,d");
        let columns: Vec<Column> = [
            ("f", FieldType::Float),
            ("i", FieldType::Integer),
            ("s", FieldType::String),
            ("b", FieldType::Boolean),
            ("x y", FieldType::Float),
        ]
        .iter()
        .map(|(n, t)| Column { name: n.to_string(), field_type: *t })
        .collect();
        let mut out = String::new();
        let values = [
            Some(FieldValue::Float(-0.0)),
            Some(FieldValue::Integer(-9_007_199_254_740_993)),
            Some(FieldValue::String("say \"hi\" \\o/".into())),
            None,
            Some(FieldValue::Float(5e-324)),
        ];
        write_point(&mut out, &key, &columns, &values, 1_700_000_000_000_000_001);
        write_point(&mut out, &key, &columns, &[None, None, None, None, None], 5);
        write_point(&mut out, "m", &columns[3..], &[Some(FieldValue::Boolean(true))], -1);
        assert_eq!(
            out,
            "cpu\\ load\\,x,host=a\\ b\\=c\\,d f=-0,i=-9007199254740993i,s=\"say \\\"hi\\\" \\\\o/\",x\\ y=5e-324 \
             1700000000000000001\nm b=true -1\n"
        );
        for f in [0.1, 1e300, -1.7976931348623157e308, 123456789.125, 1e-5, 2.5e15, 3e16] {
            let mut s = String::new();
            write_float(&mut s, f);
            assert_eq!(s.parse::<f64>().unwrap().to_bits(), f.to_bits(), "{s}");
        }
    }
}
