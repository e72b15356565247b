//! Key validation and the key layout shared by every backend.

use crate::{Result, StorageError};

/// Check a key (or a prefix ending with `/`): it starts with `/`, is UTF-8 (guaranteed by `&str`), and has no
/// empty, `.` or `..` segment.
pub fn validate_key(key: &str, is_prefix: bool) -> Result<()> {
    let invalid = |reason: &str| Err(StorageError::InvalidKey { key: key.to_string(), reason: reason.to_string() });
    let Some(rest) = key.strip_prefix('/') else {
        return invalid("must start with '/'");
    };
    let body = if is_prefix {
        if rest.is_empty() {
            // "/": the whole key space.
            return Ok(());
        }
        match rest.strip_suffix('/') {
            Some(b) => b,
            None => return invalid("a prefix must end with '/'"),
        }
    } else {
        rest
    };
    if body.is_empty() {
        return invalid(if is_prefix { "empty segment" } else { "empty key" });
    }
    for segment in body.split('/') {
        match segment {
            "" => return invalid("empty segment"),
            "." | ".." => return invalid("'.' and '..' segments are not allowed"),
            s if s.chars().any(|c| c.is_control()) => return invalid("control characters are not allowed"),
            _ => {}
        }
    }
    Ok(())
}

/// The end of the key range under `prefix` (exclusive): `prefix` with its trailing `/` replaced by `0`, the next
/// byte. `prefix` must have passed [`validate_key`] as a prefix.
pub fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.strip_suffix('/').unwrap_or(prefix).to_string();
    end.push('0');
    end
}

/// The first key a list reads: `start_key` if given (it must lie under `prefix`; it may be any string there,
/// e.g. a continue token's `last key + "\0"`), else `prefix`.
pub fn list_start<'a>(prefix: &'a str, start_key: Option<&'a str>) -> Result<&'a str> {
    match start_key {
        None => Ok(prefix),
        Some(start) if start.starts_with(prefix) => Ok(start),
        Some(start) => Err(StorageError::InvalidKey {
            key: start.to_string(),
            reason: format!("the start key is not under the listed prefix {prefix:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(validate_key("/g/r/ns/n", false).is_ok());
        assert!(validate_key("/g/r/ns/", true).is_ok());
        assert!(validate_key("/", true).is_ok());
        for bad in ["", "g/r", "/g//r", "/g/../r", "/g/./r", "/g/r/"] {
            assert!(validate_key(bad, false).is_err(), "{bad}");
        }
        assert!(validate_key("/g/r", true).is_err());
        assert!(validate_key("//", true).is_err());
        assert!(validate_key("/", false).is_err());
    }

    #[test]
    fn ranges() {
        assert_eq!(prefix_end("/g/r/ns/"), "/g/r/ns0");
        assert_eq!(prefix_end("/"), "0");
        assert!("/g/r/ns/zzz" < prefix_end("/g/r/ns/").as_str());
        assert!("/g/r/ns2/a" > prefix_end("/g/r/ns/").as_str());
        assert_eq!(list_start("/g/", None).ok(), Some("/g/"));
        assert_eq!(list_start("/g/", Some("/g/a\0")).ok(), Some("/g/a\0"));
        assert!(list_start("/g/", Some("/h/a")).is_err());
    }
}
