//! Text a client or a child controls, made fit for a log line (contract §1).
//!
//! Two promises: a log line holds no control character from such text (no
//! forged line, no terminal escape), and the token appears in no log line,
//! wherever a client put it — a query value, a path parameter, an argv word,
//! percent-encoded or not. Callers pass the text and the token; what to log
//! and at which level stays with them.

use std::fmt::{self, Write as _};

/// What stands in a log line where the token was.
pub const REDACTED: &str = "[token]";

/// Client- or child-controlled text for a log line: controls escaped, then
/// every occurrence of `secret` replaced by [`REDACTED`]. Build it with
/// [`safe`]; it allocates only when it has something to change.
#[derive(Debug, Clone, Copy)]
pub struct Safe<'a> {
    text: &'a str,
    secret: Option<&'a str>,
}

/// Wraps `text` for a log line; `secret` is the token (`None` under
/// `--no-auth`).
pub fn safe<'a>(text: &'a str, secret: Option<&'a str>) -> Safe<'a> {
    Safe { text, secret }
}

impl fmt::Display for Safe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !needs_escape(self.text) {
            return write_redacted(f, self.text, self.secret);
        }
        let mut escaped = String::with_capacity(self.text.len() + 16);
        escape_into(&mut escaped, self.text)?;
        // Redact after escaping: an escape such as `\x1b` next to plain text
        // could spell the token, so the line as printed is what is searched.
        write_redacted(f, &escaped, self.secret)
    }
}

/// The request target for the access line: `token` query parameters
/// dropped ([`crate::auth::redact_target`]), then made [`safe`].
pub fn target(target: &str, secret: Option<&str>) -> String {
    safe(&crate::auth::redact_target(target), secret).to_string()
}

/// A command line for a log line, shaped like `["ls", "-la"]`: each word
/// escaped (and `"` too, so word boundaries stay readable), the token
/// redacted. The type can only be built here, so every argv a log line
/// prints went through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogArgv(String);

impl LogArgv {
    /// The argv `words` for logs, with `secret` redacted.
    pub fn new(words: &[String], secret: Option<&str>) -> LogArgv {
        let mut line = String::from("[");
        for (i, word) in words.iter().enumerate() {
            if i > 0 {
                line.push_str(", ");
            }
            line.push('"');
            for ch in word.chars() {
                if ch == '"' {
                    line.push_str("\\\"");
                } else {
                    // Writing to a String cannot fail.
                    let _ = escape_char(&mut line, ch);
                }
            }
            line.push('"');
        }
        line.push(']');
        // The words are escaped already: redact only.
        LogArgv(Redacted(&line, secret).to_string())
    }
}

/// Text that is escaped already, with the secret still to redact.
struct Redacted<'a>(&'a str, Option<&'a str>);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_redacted(f, self.0, self.1)
    }
}

impl fmt::Display for LogArgv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True for a character a terminal or a log reader could act on: C0
/// controls, DEL, C1 controls, the Unicode line and paragraph separators,
/// and the bidirectional overrides (which reorder what a reader sees).
fn is_control(ch: char) -> bool {
    ch.is_control()
        || matches!(ch, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn needs_escape(text: &str) -> bool {
    text.chars().any(|ch| ch == '\\' || is_control(ch))
}

/// Escapes one character: `\n`, `\r`, `\t` by name, other ASCII controls as
/// `\xNN`, other controls as `\u{NNNN}`, and the backslash itself, so an
/// escape in the log always means the byte was really there.
fn escape_char(out: &mut String, ch: char) -> fmt::Result {
    match ch {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_ascii_control() => write!(out, "\\x{:02x}", c as u32)?,
        c if is_control(c) => write!(out, "\\u{{{:x}}}", c as u32)?,
        c => out.push(c),
    }
    Ok(())
}

fn escape_into(out: &mut String, text: &str) -> fmt::Result {
    text.chars().try_for_each(|ch| escape_char(out, ch))
}

/// Writes `text` with every occurrence of `secret` (see [`match_len`])
/// replaced by [`REDACTED`].
fn write_redacted(f: &mut fmt::Formatter<'_>, text: &str, secret: Option<&str>) -> fmt::Result {
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return f.write_str(text);
    };
    let (bytes, secret) = (text.as_bytes(), secret.as_bytes());
    // Fast path: no literal occurrence and no percent sign to decode.
    if memchr::memchr(b'%', bytes).is_none() && memchr::memmem::find(bytes, secret).is_none() {
        return f.write_str(text);
    }
    let mut start = 0; // first byte not yet written
    let mut at = 0;
    while at < bytes.len() {
        match match_len(&bytes[at..], secret) {
            Some(len) => {
                f.write_str(&text[start..at])?;
                f.write_str(REDACTED)?;
                at += len;
                start = at;
            }
            None => at += 1,
        }
    }
    f.write_str(&text[start..])
}

/// If `text` begins with `secret`, the number of bytes it spans there. Each
/// byte of the secret may appear as itself or percent-encoded, with the
/// percent sign itself encoded any number of times (`A`, `%41`, `%2541`, …),
/// hex digits in either case: every form a decoder could turn back into the
/// token. A match always ends on a character boundary: the secret is ASCII
/// (the token rules of `cli`) and so is every byte of an encoding.
fn match_len(text: &[u8], secret: &[u8]) -> Option<usize> {
    let mut at = 0;
    for &want in secret {
        at += byte_len(&text[at..], want)?;
    }
    Some(at)
}

/// The length of `want` at the start of `text`, as itself or as
/// `%`, `25`*, two hex digits.
fn byte_len(text: &[u8], want: u8) -> Option<usize> {
    match text.first() {
        Some(&b) if b == want => Some(1),
        Some(b'%') => {
            // The token holds no `%`, so a `25` pair is always an encoded
            // percent sign, never the byte we want: skip them all.
            let mut at = 1;
            while text[at..].starts_with(b"25") {
                at += 2;
            }
            (hex_pair(&text[at..]) == Some(want)).then_some(at + 2)
        }
        _ => None,
    }
}

fn hex_pair(text: &[u8]) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    match text {
        [hi, lo, ..] => Some((digit(*hi)? * 16 + digit(*lo)?) as u8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(text: &str, secret: Option<&str>) -> String {
        safe(text, secret).to_string()
    }

    #[test]
    fn escapes_controls() {
        assert_eq!(show("\"\x1b[31mRED\nforged\"", None), "\"\\x1b[31mRED\\nforged\"");
        assert_eq!(show("a\rb\tc\x7fd\0", None), "a\\rb\\tc\\x7fd\\x00");
        assert_eq!(show("c1\u{9b}31m", None), "c1\\u{9b}31m");
        assert_eq!(show("bidi\u{202e}txt\u{2028}", None), "bidi\\u{202e}txt\\u{2028}");
        assert_eq!(show("back\\slash", None), "back\\\\slash");
        assert_eq!(show("plain /run?command=ls", None), "plain /run?command=ls");
        assert_eq!(show("naïve ✓", None), "naïve ✓");
    }

    #[test]
    fn redacts_the_secret_anywhere() {
        let t = Some("Tok-en_9");
        assert_eq!(show("/run?command=echo+Tok-en_9", t), "/run?command=echo+[token]");
        assert_eq!(show("/run;token=Tok-en_9", t), "/run;token=[token]");
        assert_eq!(show("/run?a=1&amp;token=Tok-en_9&b", t), "/run?a=1&amp;token=[token]&b");
        assert_eq!(show("x=%54ok-en_9", t), "x=[token]");
        assert_eq!(show("x=%54%6f%6B%2D%65%6e%5F%39y", t), "x=[token]y");
        assert_eq!(show("x=%2554ok%252D%25255fen", Some("Tok-_en")), "x=[token]");
        assert_eq!(show("Tok-en_9Tok-en_9", t), "[token][token]");
        assert_eq!(show("Tok-en_", t), "Tok-en_");
        assert_eq!(show("%", t), "%");
        assert_eq!(show("%2", t), "%2");
        assert_eq!(show("%25", t), "%25");
        assert_eq!(show("%25%", t), "%25%");
        assert_eq!(show("anything", Some("")), "anything");
    }

    #[test]
    fn redacts_a_secret_spelled_by_an_escape() {
        // The escaped line reads `\x1bAB`; a token `x1bAB` must not show.
        assert_eq!(show("\x1bAB", Some("x1bAB")), "\\[token]");
    }

    #[test]
    fn argv_words() {
        let words = [
            "echo".to_owned(),
            "a\"b".to_owned(),
            "\x1b[2J\nx".to_owned(),
            "Tok".to_owned(),
        ];
        assert_eq!(
            LogArgv::new(&words, Some("Tok")).to_string(),
            r#"["echo", "a\"b", "\x1b[2J\nx", "[token]"]"#
        );
        assert_eq!(LogArgv::new(&[], None).to_string(), "[]");
    }
}
