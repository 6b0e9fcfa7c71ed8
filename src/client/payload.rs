//! What an event of a command stream means: its kind by name, and the
//! child's output it carries — the JSON `out` string of ssecommander's (and
//! the tutorial's) `{"type":"stdout","out":"..."}` events, escapes decoded
//! (surrogate pairs included), or, in raw format, the data itself plus the
//! line end SSE framing removed.

/// The kind of an event, by its name (contract §3.2; `message` is what a
/// server that names no events sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `stdout`, or an unnamed event (`message`).
    Stdout,
    /// `stderr`.
    Stderr,
    /// `exit`: the command ended; the last event.
    Exit,
    /// `err` (or `error`): the command could not start.
    Err,
    /// `gap`: a job viewer missed events (contract §7.3).
    Gap,
    /// Any other name.
    Other,
}

impl Kind {
    /// The kind of an event named `name`.
    pub fn of(name: &[u8]) -> Kind {
        match name {
            b"stdout" | b"message" => Kind::Stdout,
            b"stderr" => Kind::Stderr,
            b"exit" => Kind::Exit,
            b"err" | b"error" => Kind::Err,
            b"gap" => Kind::Gap,
            _ => Kind::Other,
        }
    }

    /// True for the kinds that carry child output.
    pub fn is_output(self) -> bool {
        matches!(self, Kind::Stdout | Kind::Stderr)
    }
}

/// How an output event carried its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// A JSON object with a string member `out`.
    Json,
    /// Not JSON: the data lines are the text.
    Raw,
}

/// A piece of decoded child output, as [`output_pieces`] hands it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text with no LF in it (unless the sender broke JSON by putting a raw
    /// LF inside a string: that is passed through as text).
    Text(&'a [u8]),
    /// One LF.
    Newline,
}

/// Appends the child output that event data `data` carries to `out`: the
/// decoded `out` member when `data` is a JSON object that has one as a
/// string (a malformed escape inside it becomes U+FFFD), else `data` plus
/// `\n` (raw format: exact when events carry whole lines, as ours do).
pub fn output(data: &[u8], out: &mut Vec<u8>) -> Encoding {
    output_pieces(data, &mut |piece| match piece {
        Piece::Text(text) => out.extend_from_slice(text),
        Piece::Newline => out.push(b'\n'),
    })
}

/// The same output as [`output`], handed to `on` in pieces without copying
/// it: text runs (borrowed from `data` where no escape intervenes) and line
/// ends, so a caller that counts bytes and lines needs no buffer.
pub fn output_pieces<F: FnMut(Piece<'_>)>(data: &[u8], on: &mut F) -> Encoding {
    if let Some(at) = member(data, b"out").filter(|&at| data.get(at) == Some(&b'"')) {
        decode_string(data, at + 1, on);
        return Encoding::Json;
    }
    text_run(data, on);
    on(Piece::Newline);
    Encoding::Raw
}

/// The exit of an `exit` event: `(code, signal, timed_out)` from
/// `{"type":"exit","code":N|null,"signal":S,"timed_out":true}`; `None`
/// when the data is not such an object (the tutorial sends plain text).
pub fn exit_status(data: &[u8]) -> Option<(Option<i64>, Option<i64>, bool)> {
    let int = |key: &[u8]| {
        let at = member(data, key)?;
        let end = data[at..]
            .iter()
            .position(|&b| !(b == b'-' || b.is_ascii_digit()))
            .map_or(data.len(), |n| at + n);
        std::str::from_utf8(&data[at..end]).ok()?.parse::<i64>().ok()
    };
    member(data, b"code")?;
    let timed_out = member(data, b"timed_out").is_some_and(|at| data[at..].starts_with(b"true"));
    Some((int(b"code"), int(b"signal"), timed_out))
}

/// Where the value of top-level member `key` of the JSON object `data`
/// starts; `None` when `data` is not an object or has no such member. Keys
/// are compared as written (ours carry no escapes).
pub fn member(data: &[u8], key: &[u8]) -> Option<usize> {
    let mut i = skip_ws(data, 0);
    if data.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(data, i);
        if data.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(data, i + 1)?;
        let name = &data[i + 1..key_end - 1];
        i = skip_ws(data, key_end);
        if data.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(data, i + 1);
        if name == key {
            return (i < data.len()).then_some(i);
        }
        i = skip_ws(data, value_end(data, i)?);
        match data.get(i) {
            Some(b',') => i += 1,
            _ => return None,
        }
    }
}

fn skip_ws(data: &[u8], mut i: usize) -> usize {
    while matches!(data.get(i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        i += 1;
    }
    i
}

/// The index just past the closing quote of the string whose contents start
/// at `i`.
fn string_end(data: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i += memchr::memchr2(b'"', b'\\', data.get(i..)?)?;
        if data[i] == b'"' {
            return Some(i + 1);
        }
        i += 2;
    }
}

/// The index just past the value starting at `i`.
fn value_end(data: &[u8], i: usize) -> Option<usize> {
    match data.get(i)? {
        b'"' => string_end(data, i + 1),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match data.get(j)? {
                    b'"' => {
                        j = string_end(data, j + 1)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => Some(
            data[i..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'))
                .map_or(data.len(), |n| i + n),
        ),
    }
}

fn hex4(data: &[u8], at: usize) -> Option<u32> {
    let digits = data.get(at..at + 4)?;
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// Decodes the JSON string whose contents start at `i`, up to its closing
/// quote (or the end of `data`), into pieces for `on`. A lone surrogate or a
/// bad escape becomes U+FFFD. A JSON string holds no raw control bytes, so
/// the runs between escapes are passed on unscanned; a `\n` escape is a
/// line end.
fn decode_string<F: FnMut(Piece<'_>)>(data: &[u8], mut i: usize, on: &mut F) {
    while let Some(n) = memchr::memchr2(b'"', b'\\', &data[i..]) {
        let j = i + n;
        if j > i {
            on(Piece::Text(&data[i..j]));
        }
        if data[j] == b'"' {
            return;
        }
        let Some(&esc) = data.get(j + 1) else { return };
        i = j + 2;
        let ch = match (esc, simple_escape(esc)) {
            (_, Some(ch)) => ch,
            (b'u', None) => {
                let (ch, used) = unicode_escape(data, i);
                i += used;
                ch
            }
            _ => '\u{fffd}',
        };
        if ch == '\n' {
            on(Piece::Newline);
        } else {
            let mut utf8 = [0u8; 4];
            on(Piece::Text(ch.encode_utf8(&mut utf8).as_bytes()));
        }
    }
    if i < data.len() {
        on(Piece::Text(&data[i..]));
    }
}

/// Raw text, cut into pieces at each LF.
fn text_run<F: FnMut(Piece<'_>)>(run: &[u8], on: &mut F) {
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', run) {
        if end > start {
            on(Piece::Text(&run[start..end]));
        }
        on(Piece::Newline);
        start = end + 1;
    }
    if start < run.len() {
        on(Piece::Text(&run[start..]));
    }
}

/// The character of a `\u` escape whose hex digits start at `i`, joining a
/// surrogate pair; and how many bytes after the `\u` it used.
fn unicode_escape(data: &[u8], i: usize) -> (char, usize) {
    let Some(high) = hex4(data, i) else {
        return ('\u{fffd}', 0);
    };
    if (0xD800..0xDC00).contains(&high) && data.get(i + 4..i + 6) == Some(b"\\u") {
        if let Some(low) = hex4(data, i + 6).filter(|low| (0xDC00..0xE000).contains(low)) {
            let cp = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
            return (char::from_u32(cp).unwrap_or('\u{fffd}'), 10);
        }
    }
    (char::from_u32(high).unwrap_or('\u{fffd}'), 4)
}

/// The character a one-letter JSON string escape (`\\n`, `\\"`, …) stands
/// for; `None` for `u` (four hex digits follow) and for anything invalid.
pub fn simple_escape(letter: u8) -> Option<char> {
    Some(match letter {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(data: &[u8]) -> (String, Encoding) {
        let mut out = Vec::new();
        let enc = output(data, &mut out);
        (String::from_utf8(out).unwrap(), enc)
    }

    #[test]
    fn json_out_with_every_escape() {
        let data = br#"{"type":"stdout","out":"a\"b\\c\/d\b\f\n\r\t\u0001\u00e9\ud83d\ude00 \ud800x"}"#;
        assert_eq!(
            text(data),
            ("a\"b\\c/d\u{8}\u{c}\n\r\t\u{1}é😀 \u{fffd}x".to_owned(), Encoding::Json)
        );
    }

    #[test]
    fn out_found_in_any_position_and_not_inside_strings() {
        assert_eq!(text(br#"{ "out" : "x", "type":"stdout"}"#).0, "x");
        assert_eq!(
            text(br#"{"note":"\"out\":\"no","n":[1,{"out":"no"}],"out":"yes"}"#).0,
            "yes"
        );
        assert_eq!(
            text(br#"{"type":"stdout"}"#),
            ("{\"type\":\"stdout\"}\n".to_owned(), Encoding::Raw)
        );
        assert_eq!(text(b"plain line"), ("plain line\n".to_owned(), Encoding::Raw));
        assert_eq!(text(br#"{"out":12}"#).1, Encoding::Raw);
    }

    #[test]
    fn pieces_borrow_runs_and_mark_line_ends() {
        let mut pieces = Vec::new();
        let mut collect = |p: Piece<'_>| {
            pieces.push(match p {
                Piece::Text(t) => String::from_utf8_lossy(t).into_owned(),
                Piece::Newline => "NL".to_owned(),
            })
        };
        assert_eq!(
            output_pieces(br#"{"out":"ab\ncd\u000a\t"}"#, &mut collect),
            Encoding::Json
        );
        assert_eq!(output_pieces(b"x\n\ny", &mut collect), Encoding::Raw);
        assert_eq!(pieces, ["ab", "NL", "cd", "NL", "\t", "x", "NL", "NL", "y", "NL"]);
    }

    #[test]
    fn exit_statuses() {
        assert_eq!(
            exit_status(br#"{"type":"exit","code":3}"#),
            Some((Some(3), None, false))
        );
        assert_eq!(
            exit_status(br#"{"type":"exit","code":null,"signal":15,"timed_out":true}"#),
            Some((None, Some(15), true))
        );
        assert_eq!(exit_status(b"exited"), None);
    }

    #[test]
    fn kinds() {
        assert_eq!(Kind::of(b"message"), Kind::Stdout);
        assert_eq!(Kind::of(b"err"), Kind::Err);
        assert!(Kind::of(b"stderr").is_output());
        assert!(!Kind::of(b"exit").is_output());
    }
}
