//! `Warning` response headers (`299 - "text"`), as k8s.io/apiserver's warning recorder writes them: deduplicated,
//! each truncated to [`MAX_WARNING_CHARS`], and no more once [`MAX_TOTAL_WARNING_CHARS`] have been written
//! (upstream's `truncateItemRunes` and `truncateAtTotalRunes`; upstream truncates items only past the total, and
//! drops rather than cleans a warning with control characters).

use std::collections::HashSet;

use axum::http::{HeaderMap, HeaderValue, header};

/// Upstream truncates each warning to this many characters.
const MAX_WARNING_CHARS: usize = 256;

/// Upstream writes no more warnings once this many characters have been written.
const MAX_TOTAL_WARNING_CHARS: usize = 4 * 1024;

/// `299 - "text"` with `\` and `"` escaped and control characters dropped, at most [`MAX_WARNING_CHARS`] of
/// them; None when the text cannot be a header value.
fn warning_header(text: &str) -> Option<(HeaderValue, usize)> {
    let text: String = text.chars().filter(|c| !c.is_control()).take(MAX_WARNING_CHARS).collect();
    let chars = text.chars().count();
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    HeaderValue::from_bytes(format!("299 - \"{escaped}\"").as_bytes()).ok().map(|h| (h, chars))
}

/// Append one `Warning` header per distinct, non-empty warning until [`MAX_TOTAL_WARNING_CHARS`] are written.
pub fn append_warnings(headers: &mut HeaderMap, warnings: &[String]) {
    let mut seen = HashSet::new();
    let mut written = 0;
    for w in warnings {
        if written >= MAX_TOTAL_WARNING_CHARS {
            break;
        }
        if w.is_empty() || !seen.insert(w.as_str()) {
            continue;
        }
        if let Some((h, chars)) = warning_header(w) {
            written += chars;
            headers.append(header::WARNING, h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(warnings: &[String]) -> Vec<String> {
        let mut h = HeaderMap::new();
        append_warnings(&mut h, warnings);
        h.get_all(header::WARNING).iter().map(|v| String::from_utf8(v.as_bytes().to_vec()).unwrap()).collect()
    }

    #[test]
    fn formats_like_upstream() {
        let h = headers(&["unknown field \"spec.foo\"".to_string()]);
        assert_eq!(h, [r#"299 - "unknown field \"spec.foo\"""#]);
        let h = headers(&["Iñtërnâtiô".to_string(), "a\nb".to_string(), String::new(), "Iñtërnâtiô".to_string()]);
        assert_eq!(h, [r#"299 - "Iñtërnâtiô""#, r#"299 - "ab""#]);
    }

    /// Issue 12: 5,000 warnings (say, unknown fields) become at most 4 KiB of headers.
    #[test]
    fn five_thousand_warnings_are_capped() {
        let warnings: Vec<String> = (0..5000).map(|i| format!("unknown field \"spec.field{i}\"")).collect();
        let h = headers(&warnings);
        assert!(h.len() < 200, "{}", h.len());
        let written: usize = warnings[..h.len()].iter().map(|w| w.chars().count()).sum();
        assert!((MAX_TOTAL_WARNING_CHARS..MAX_TOTAL_WARNING_CHARS + MAX_WARNING_CHARS).contains(&written), "{written}");
        assert_eq!(h[1], r#"299 - "unknown field \"spec.field1\"""#);
        // Long warnings are truncated, and still capped.
        let long: Vec<String> = (0..5000).map(|i| format!("{i}{}", "x".repeat(10_000))).collect();
        let h = headers(&long);
        assert_eq!(h.len(), MAX_TOTAL_WARNING_CHARS / MAX_WARNING_CHARS);
        assert!(h.iter().all(|v| v.len() <= MAX_WARNING_CHARS + r#"299 - """#.len()));
    }
}
