//! Text that came from a database (error bodies, unexpected lines) made safe for status, Events and logs: control
//! characters escaped, length capped.
//!
//! controller → **sanitize (this file)** ← engine, HTTP.

/// Longest `status.message` and condition message the controller writes, in characters.
pub const MAX_MESSAGE: usize = 1024;
/// Longest piece of a database's answer quoted in an error.
pub const MAX_QUOTE: usize = 300;

/// `text` with control characters (C0, DEL, C1: ESC, NUL, bidi-free but terminal-active bytes) written as `\x1b`,
/// `\u{9b}`, newlines and tabs as spaces, and cut to `max` characters with `…`.
pub fn text(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max + 8));
    for (n, c) in text.chars().enumerate() {
        if n >= max {
            out.push('…');
            break;
        }
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            c if (c as u32) < 0x80 && c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Bytes that should be text (invalid UTF-8 becomes `�`), sanitised as [`text`].
pub fn bytes(bytes: &[u8], max: usize) -> String {
    // Decoding more than is shown is wasted work: 4 bytes a character at most.
    let shown = &bytes[..bytes.len().min(max.saturating_mul(4).saturating_add(4))];
    text(&String::from_utf8_lossy(shown), max)
}

/// A message for status and logs.
pub fn message(message: &str) -> String {
    text(message, MAX_MESSAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_caps() {
        assert_eq!(text("plain", 10), "plain");
        assert_eq!(text("a\u{1b}[2Jb\0c\u{7f}", 20), "a\\x1b[2Jb\\x00c\\x7f");
        assert_eq!(text("line\nbreak\ttab", 20), "line break tab");
        assert_eq!(text("\u{9b}31m", 20), "\\u{9b}31m");
        assert_eq!(text("ünïcødé ✓", 4), "ünïc…");
        assert_eq!(bytes(b"ok \xff\xfe", 10), "ok ��");
        assert_eq!(bytes(&[b'x'; 10_000], 5), "xxxxx…");
        assert_eq!(message(&"y".repeat(5000)).chars().count(), MAX_MESSAGE + 1);
    }
}
