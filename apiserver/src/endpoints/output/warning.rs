//! `Warning` response headers (`299 - "text"`), as k8s.io/apiserver's warning recorder writes them.

use axum::http::HeaderValue;

/// Upstream truncates each warning to this many characters.
const MAX_WARNING_CHARS: usize = 256;

/// `299 - "text"` with `\` and `"` escaped; None when the text cannot be a header value.
pub fn warning_header(text: &str) -> Option<HeaderValue> {
    let text: String = text.chars().filter(|c| !c.is_control()).take(MAX_WARNING_CHARS).collect();
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    HeaderValue::from_str(&format!("299 - \"{escaped}\"")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_upstream() {
        let h = warning_header("unknown field \"spec.foo\"").unwrap();
        assert_eq!(h.to_str().unwrap(), r#"299 - "unknown field \"spec.foo\"""#);
    }
}
