//! Oracles shared by the fuzz targets and the corpus-replay test: each takes
//! arbitrary bytes and panics if the code under test breaks a promise.
//!
//! The first bytes of an input steer the oracle (where reads are cut, which
//! format, when the flush timer fires); the rest is the data under test. The
//! layout of each input is given in the doc of its function, so a seed can be
//! written by hand. Nothing here is used by the server: it is behind the
//! `harness` feature and exists so that `fuzz/` (nightly, libFuzzer) and
//! `tests/corpus.rs` (stable `cargo test`) check exactly the same promises.
//!
//! The checks parse what the library emits with deliberately strict, separate
//! implementations (an SSE parser, a JSON string decoder, a chunked decoder),
//! written from the specifications rather than from `sse.rs`.

use std::borrow::Cow;

use crate::argv;
use crate::client::sse::End;
use crate::client::{payload, BodyDecoder, Framing, Item, SseParser};
use crate::http::query::{self, Query};
use crate::http::request::{self, HttpError, Parsed};
use crate::sse::scan::{self, Level, Needles};
use crate::sse::{self, Encoder, Exit, Format, Frame, PipeText, Stream};

/// Every status a bad request head may be answered with (contract §5).
const HEAD_STATUSES: [u16; 8] = [400, 408, 413, 414, 417, 431, 501, 505];

/// Request heads fed as a connection reads them.
///
/// Input: one control byte `c`, then `c & 3` cut bytes, then the bytes a
/// client sends. Each cut byte `b` is a read of `(b + 1) * scale` bytes (the
/// cut bytes are used in a cycle), with `scale` one of 1, 3, 64, 1024 chosen
/// by bits 2–3 of `c`. Without cut bytes the input arrives in one read, or one
/// byte per read when bit 4 of `c` is set.
///
/// Checks: each read is appended to a buffer that, as in `conn.rs`, never
/// holds more than `MAX_HEAD + 1` bytes, and parsed; the first result that is
/// not `Partial` (or the input running out) is the outcome, and it equals
/// parsing the whole input at once (same `Head` and length, or same error). A
/// full buffer is never `Partial` (the connection would wait forever). Errors
/// carry a contract status and a one-line message. A complete head ends with a
/// line end, parses the same on its own and followed by junk, has a target
/// starting with `/` within `MAX_TARGET`, and keeps HTTP/1.0 closing and
/// HTTP/1.1 with a `Host`.
pub fn http_head(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let cut_count = usize::from(control & 3).min(rest.len());
    let (cuts, input) = rest.split_at(cut_count);
    let scale = [1, 3, 64, 1024][usize::from((control >> 2) & 3)];
    let read_len = |index: usize| -> usize {
        if cuts.is_empty() {
            if control & 0x10 != 0 && input.len() <= 4096 {
                1
            } else {
                usize::MAX
            }
        } else {
            (usize::from(cuts[index % cuts.len()]) + 1) * scale
        }
    };

    let mut buf = Vec::new();
    let mut unread = input;
    let mut reads = 0;
    let incremental = loop {
        if unread.is_empty() {
            break Ok(Parsed::Partial);
        }
        let room = request::MAX_HEAD + 1 - buf.len();
        let take = read_len(reads).min(unread.len()).min(room);
        reads += 1;
        buf.extend_from_slice(&unread[..take]);
        unread = &unread[take..];
        let parsed = request::parse(&buf);
        check_head_result(&parsed);
        match parsed {
            Ok(Parsed::Partial) => {
                assert!(
                    buf.len() <= request::MAX_HEAD,
                    "Partial with {} bytes buffered: the connection could read no more and would wait \
                     for the timeout",
                    buf.len()
                );
            }
            decided => break decided,
        }
    };
    let whole = request::parse(input);
    assert_eq!(
        incremental, whole,
        "parsing as read ({reads} reads) and parsing the whole input disagree"
    );

    if let Ok(Parsed::Complete(head, len)) = &whole {
        let len = *len;
        assert!(len <= input.len() && len <= request::MAX_HEAD, "head length {len}");
        assert_eq!(input[len - 1], b'\n', "a head ends with a line end");
        let alone = request::parse(&input[..len]);
        assert_eq!(alone, whole, "the head alone parses differently");
        let mut followed = input[..len].to_vec();
        followed.extend_from_slice(b"\x00junk\r\n\r\n");
        assert_eq!(request::parse(&followed), whole, "bytes after the head change it");
        assert!(head.target.starts_with('/'), "target {:?}", head.target);
        assert!(head.target.len() <= request::MAX_TARGET);
        assert!(head.minor_version <= 1);
        if head.minor_version == 0 {
            assert!(!head.keep_alive, "HTTP/1.0 keeps alive");
        } else {
            assert!(head.host.is_some(), "HTTP/1.1 without Host accepted");
        }
        match head.target.split_once('?') {
            Some((path, query)) => assert_eq!((head.path(), head.query()), (path, query)),
            None => assert_eq!((head.path(), head.query()), (&head.target[..], "")),
        }
        assert!(!head.method.as_str().is_empty());
    }
}

fn check_head_result(parsed: &Result<Parsed, HttpError>) {
    if let Err(err) = parsed {
        let (status, reason) = err.status();
        assert!(HEAD_STATUSES.contains(&status), "status {status} for {err:?}");
        assert!(!reason.is_empty());
        let message = err.to_string();
        assert!(
            !message.is_empty() && !message.contains(['\r', '\n']),
            "message {message:?}"
        );
    }
}

/// Query strings, percent-encoding and command-line splitting.
///
/// Input: any bytes. Checks: the lossy UTF-8 text of the input, taken as a
/// query string and as a command line, never panics `Query::parse` or
/// `argv::split`; a parsed query re-encoded parses back to the same pairs; a
/// split line joined again splits back to the same words, which hold no NUL;
/// a line with no quote or backslash splits exactly at blanks; `decode`
/// undoes `encode`. Then the input minus its first byte, cut into words at
/// each occurrence of that first byte (words holding NUL left out, which
/// `split` rejects by design), is an argv that `join`, and `quote` with
/// assorted blanks between, turn into lines that split back to exactly it.
pub fn query_argv(data: &[u8]) {
    let text = String::from_utf8_lossy(data);

    // The query string as the server gets it.
    assert_eq!(query::decode(&query::encode(&text)).as_deref(), Ok(&*text));
    if let Ok(parsed) = Query::parse(&text) {
        let pairs: Vec<(&str, &str)> = parsed.pairs().collect();
        let again: Vec<String> = pairs
            .iter()
            .map(|(name, value)| format!("{}={}", query::encode(name), query::encode(value)))
            .collect();
        let reparsed = Query::parse(&again.join("&"));
        assert_eq!(reparsed.as_ref(), Ok(&parsed), "re-encoded query {again:?}");
        if let Some(command) = parsed.get("command") {
            check_split(command);
        }
    }
    for component in text.split(['&', '=']) {
        if let Ok(decoded) = query::decode(component) {
            assert_eq!(query::decode(&query::encode(&decoded)), Ok(decoded.clone()));
        }
    }

    // The text as a command line.
    check_split(&text);

    // An argv made from the input, joined and split back.
    let Some((&separator, rest)) = data.split_first() else {
        return;
    };
    let words: Vec<String> = rest
        .split(|&b| b == separator)
        .map(|word| String::from_utf8_lossy(word).into_owned())
        .filter(|word| !word.contains('\0'))
        .collect();
    let line = argv::join(&words);
    if words.is_empty() {
        assert_eq!(argv::split(&line), Err(argv::ArgvError::Empty));
        return;
    }
    assert_eq!(argv::split(&line).as_ref(), Ok(&words), "joined line {line:?}");
    const BLANKS: [&str; 4] = [" ", "\t", " \n ", "\r\x0b\x0c"];
    let mut spaced = String::from(BLANKS[usize::from(separator) % BLANKS.len()]);
    for (index, word) in words.iter().enumerate() {
        let quoted = argv::quote(word);
        assert_eq!(
            argv::split(&quoted).as_deref(),
            Ok(std::slice::from_ref(word)),
            "quoted word {quoted:?}"
        );
        spaced.push_str(&quoted);
        spaced.push_str(BLANKS[(index + usize::from(separator)) % BLANKS.len()]);
    }
    assert_eq!(argv::split(&spaced).as_ref(), Ok(&words), "quoted line {spaced:?}");
}

fn is_shell_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

fn check_split(line: &str) {
    let Ok(words) = argv::split(line) else {
        return;
    };
    assert!(!words.is_empty(), "split {line:?} into no words");
    assert!(
        words.iter().all(|word| !word.contains('\0')),
        "NUL in a word of {line:?}"
    );
    let joined = argv::join(&words);
    assert_eq!(argv::split(&joined).as_ref(), Ok(&words), "rejoined {joined:?}");
    if !line.contains(['\'', '"', '\\']) {
        let plain: Vec<&str> = line.split(is_shell_blank).filter(|w| !w.is_empty()).collect();
        assert_eq!(words, plain, "unquoted line {line:?}");
    }
}

/// One event as the strict parser read it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    id: u64,
    name: String,
    data: Vec<String>,
}

/// Parses an SSE byte stream strictly: UTF-8; LF line ends only (a CR would
/// end a line for a browser, so one inside a value is an error); fields
/// `id`, `event`, `data` in that order, each line `name: value` (the WHATWG
/// rule strips one space after the colon); `id` first, counting up by one
/// from `first_id`; then one `event` from `names`; then at least one `data`;
/// a blank line ends each event; no comments, no empty events, nothing after
/// the last blank line. The lines are split by the client's parser
/// ([`crate::client::SseParser`]); the rules on top are our wire's.
fn parse_sse(bytes: &[u8], first_id: u64, names: &[&str]) -> Vec<Event> {
    let text = std::str::from_utf8(bytes).unwrap_or_else(|err| panic!("SSE stream is not UTF-8: {err}"));
    assert!(!text.contains('\r'), "CR in SSE stream {text:?}");
    assert!(
        text.is_empty() || text.ends_with("\n\n"),
        "stream does not end with a blank line: {text:?}"
    );
    let mut strict = StrictSse {
        text,
        names,
        next_id: first_id,
        current: None,
        seen_event: false,
        events: Vec::new(),
    };
    let mut parser = SseParser::new();
    let fed = parser.feed(bytes, &mut |item| match item {
        Item::Event(_) | Item::Blank => strict.blank(),
        Item::Comment(_) => panic!("comment line in {text:?}"),
        Item::Field { name, value, colon } => {
            assert!(colon, "line without a colon in {text:?}");
            // Both are UTF-8: the whole text is, and they end at ASCII bytes.
            strict.field(&String::from_utf8_lossy(name), &String::from_utf8_lossy(value));
        }
    });
    fed.unwrap_or_else(|err| panic!("{err} in {text:?}"));
    assert_eq!(parser.finish(), End::Clean, "unfinished event in {text:?}");
    assert!(strict.current.is_none(), "unfinished event in {text:?}");
    strict.events
}

/// The rules of [`parse_sse`] on top of the client's line splitting.
struct StrictSse<'a> {
    text: &'a str,
    names: &'a [&'a str],
    next_id: u64,
    current: Option<Event>,
    seen_event: bool,
    events: Vec<Event>,
}

impl StrictSse<'_> {
    fn blank(&mut self) {
        let text = self.text;
        let event = self.current.take().unwrap_or_else(|| panic!("empty event in {text:?}"));
        assert!(self.seen_event, "event without an event name in {text:?}");
        assert!(!event.data.is_empty(), "event without data in {text:?}");
        self.events.push(event);
        self.seen_event = false;
    }

    fn field(&mut self, field: &str, value: &str) {
        let text = self.text;
        match field {
            "" => panic!("comment line in {text:?}"),
            "id" => {
                assert!(self.current.is_none(), "id inside an event: {value:?} in {text:?}");
                let id: u64 = value.parse().unwrap_or_else(|_| panic!("bad id {value:?}"));
                assert_eq!(value, id.to_string(), "id not in plain decimal");
                assert_eq!(id, self.next_id, "ids must count up by one");
                self.next_id += 1;
                self.current = Some(Event {
                    id,
                    name: String::new(),
                    data: Vec::new(),
                });
            }
            "event" => {
                let event = self
                    .current
                    .as_mut()
                    .unwrap_or_else(|| panic!("event before id: {text:?}"));
                assert!(
                    !self.seen_event && event.data.is_empty(),
                    "event name out of place: {text:?}"
                );
                assert!(self.names.contains(&value), "event name {value:?}");
                event.name = value.to_owned();
                self.seen_event = true;
            }
            "data" => {
                let event = self
                    .current
                    .as_mut()
                    .unwrap_or_else(|| panic!("data before id: {text:?}"));
                assert!(self.seen_event, "data before the event name: {text:?}");
                event.data.push(value.to_owned());
            }
            other => panic!("unknown field {other:?} in {text:?}"),
        }
    }
}

/// A JSON value of the kinds the encoder writes.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Str(String),
    Num(i64),
    Bool(bool),
    Null,
}

/// Parses a flat JSON object strictly (RFC 8259: escapes, surrogate pairs,
/// no raw control characters); `None` if it is not one.
fn parse_json_object(text: &str) -> Option<Vec<(String, Json)>> {
    let mut p = JsonParser { rest: text.as_bytes() };
    p.ws();
    p.eat(b'{')?;
    let mut members = Vec::new();
    p.ws();
    if p.eat(b'}').is_none() {
        loop {
            p.ws();
            let key = p.string()?;
            p.ws();
            p.eat(b':')?;
            p.ws();
            let value = p.value()?;
            members.push((key, value));
            p.ws();
            if p.eat(b',').is_none() {
                p.eat(b'}')?;
                break;
            }
        }
    }
    p.ws();
    p.rest.is_empty().then_some(members)
}

struct JsonParser<'a> {
    rest: &'a [u8],
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while let [b' ' | b'\t' | b'\n' | b'\r', tail @ ..] = self.rest {
            self.rest = tail;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        let (&first, tail) = self.rest.split_first()?;
        (first == byte).then(|| self.rest = tail)
    }

    fn value(&mut self) -> Option<Json> {
        match *self.rest.first()? {
            b'"' => self.string().map(Json::Str),
            b'n' => self.word(b"null", Json::Null),
            b't' => self.word(b"true", Json::Bool(true)),
            b'f' => self.word(b"false", Json::Bool(false)),
            _ => {
                let len = self
                    .rest
                    .iter()
                    .position(|b| !(b.is_ascii_digit() || *b == b'-'))
                    .unwrap_or(self.rest.len());
                let digits = std::str::from_utf8(&self.rest[..len]).ok()?;
                let unsigned = digits.strip_prefix('-').unwrap_or(digits);
                if unsigned.is_empty() || (unsigned.len() > 1 && unsigned.starts_with('0')) {
                    return None;
                }
                self.rest = &self.rest[len..];
                digits.parse().ok().map(Json::Num)
            }
        }
    }

    fn word(&mut self, word: &[u8], value: Json) -> Option<Json> {
        self.rest = self.rest.strip_prefix(word)?;
        Some(value)
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.rest.get(..4)?;
        let mut value = 0;
        for &d in digits {
            value = value * 16 + char::from(d).to_digit(16)?;
        }
        self.rest = &self.rest[4..];
        Some(value)
    }

    fn string(&mut self) -> Option<String> {
        self.eat(b'"')?;
        let mut out = String::new();
        loop {
            let end = self.rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
            out.push_str(std::str::from_utf8(&self.rest[..end]).ok()?);
            let stop = self.rest[end];
            self.rest = &self.rest[end + 1..];
            match stop {
                b'"' => return Some(out),
                b'\\' => {
                    let (&escape, tail) = self.rest.split_first()?;
                    self.rest = tail;
                    out.push(match (escape, payload::simple_escape(escape)) {
                        (_, Some(ch)) => ch,
                        (b'u', None) => {
                            let high = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&high) {
                                self.rest = self.rest.strip_prefix(b"\\u")?;
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return None;
                                }
                                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                            } else {
                                high
                            };
                            char::from_u32(code)?
                        }
                        _ => return None,
                    });
                }
                _ => return None, // a raw control character
            }
        }
    }
}

/// The `out` string of a JSON `stdout`/`stderr` data line.
fn json_out(data: &str, name: &str) -> String {
    let members = parse_json_object(data).unwrap_or_else(|| panic!("data is not a JSON object: {data:?}"));
    match members.as_slice() {
        [(type_key, Json::Str(kind)), (out_key, Json::Str(out))]
            if type_key == "type" && out_key == "out" && kind == name =>
        {
            out.clone()
        }
        other => panic!("unexpected JSON {other:?} for event {name}"),
    }
}

/// Splits text at each CR, LF or CRLF: the lines, and whether the text ended
/// with a line end (then no empty last line is listed).
fn split_lines(text: &str) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut chars = text.chars().peekable();
    let mut ended = false;
    while let Some(c) = chars.next() {
        ended = false;
        match c {
            '\r' | '\n' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                lines.push(std::mem::take(&mut line));
                ended = true;
            }
            c => line.push(c),
        }
    }
    if !ended && !text.is_empty() {
        lines.push(line);
    }
    (lines, ended)
}

/// Where an event was emitted from, for the rules on where text may be cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A pipe read; it holds the length of the pipe's input before the read.
    Feed(usize),
    Flush,
    Finish,
}

/// One emitted frame, with the text it encodes.
struct Emitted {
    frame: Vec<u8>,
    text: Vec<u8>,
    stream: Stream,
    origin: Origin,
}

/// Child output through `PipeText` and `Encoder`, as a job streams it.
///
/// Input: a flags byte `f`, then `f >> 4` cut bytes, then the child's output.
/// Bit 0 of `f` chooses raw (else JSON); bit 1 lets reads go to stderr; bit 2
/// repeats the output to over 72 KiB (to cross the 64 KiB cap); bit 3
/// multiplies read lengths by 1031. A cut byte `c` (used in a cycle) is a
/// pipe read of `(c & 0x3f) + 1` bytes, from stderr if bit 7 is set (and
/// allowed), followed by a flush of both pipes (the 20 ms timer) if bit 6 is
/// set. Without cut bytes the output is one read. Both pipes are finished at
/// the end, stdout first, then the `exit` event is encoded.
///
/// Checks, per pipe: the texts of its events concatenated are its input,
/// byte for byte (less, in raw, the LF of a CRLF split across two reads,
/// which makes no event); after a read, what is held is the unfinished last line
/// (no CR or LF, under `MAX_HELD`); after a flush at most an unfinished
/// character is held; after `finish` nothing. An event emitted by a read
/// ends at a line end unless the 64 KiB cap forced it. The frames, alone and
/// together, pass the strict SSE parser (ids 1, 2, 3…, names `stdout`,
/// `stderr`, `exit`), and each chunk-framed frame decodes to the frame.
///
/// JSON: every data line is `{"type":NAME,"out":TEXT}` with TEXT the lossy
/// UTF-8 decoding of the event's text, never empty, and the TEXTs of a pipe
/// concatenated equal `String::from_utf8_lossy` of its whole input (no
/// character is split or lost at a cut).
///
/// Raw: with `lines(t)` = the text `t` lossy-decoded and split at every CR,
/// LF or CRLF (no empty last line after a final line end), an event has one
/// `data:` line per element of `lines(t)` for its text `t`, less a leading LF
/// when the pipe's previous event ended with CR (the two halves of a CRLF;
/// an event that was only that LF is not sent and takes no id). Over a pipe,
/// reading the `data:` lines in order and joining an event's first line to
/// the previous event's last when that event did not end at a line end gives
/// exactly `lines(whole input)`. So raw keeps every line's text, empty
/// lines included, but not: which of CR, LF, CRLF ended a line; whether the
/// last line had a line end; nor, on the wire alone, where a line was cut by
/// a flush, the 64 KiB cap or the end of input (the reader sees a line end
/// there).
pub fn sse_encoder(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let format = if flags & 1 == 1 { Format::Raw } else { Format::Json };
    let stderr_allowed = flags & 2 != 0;
    let scale = if flags & 8 != 0 { 1031 } else { 1 };
    let cut_count = usize::from(flags >> 4).min(rest.len());
    let (cuts, output) = rest.split_at(cut_count);
    let output: Cow<'_, [u8]> = if flags & 4 != 0 && !output.is_empty() {
        let times = (sse::MAX_HELD + sse::MAX_HELD / 8) / output.len() + 1;
        Cow::Owned(output.repeat(times))
    } else {
        Cow::Borrowed(output)
    };

    let mut enc = Encoder::new(format);
    let mut pipes = [PipeText::new(Stream::Stdout), PipeText::new(Stream::Stderr)];
    let mut fed: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut emitted: Vec<Emitted> = Vec::new();
    let mut sent = [0usize; 2];
    let mut fates: [Vec<Fate>; 2] = [Vec::new(), Vec::new()];

    let mut unread: &[u8] = &output;
    let mut read = 0;
    while !unread.is_empty() {
        let (len, which, flush) = if cuts.is_empty() {
            (unread.len(), 0, false)
        } else {
            let c = cuts[read % cuts.len()];
            let which = usize::from(stderr_allowed && c & 0x80 != 0);
            ((usize::from(c & 0x3f) + 1) * scale, which, c & 0x40 != 0)
        };
        read += 1;
        let (bytes, tail) = unread.split_at(len.min(unread.len()));
        unread = tail;
        let fed_before = fed[which].len();
        fed[which].extend_from_slice(bytes);
        let stream = pipes[which].stream();
        let before = emitted.len();
        pipes[which].feed(&mut enc, bytes, &mut |frame, text| {
            emitted.push(record(frame, text, stream, Origin::Feed(fed_before)));
            true
        });
        account(&emitted, before, &pipes[which], &fed, &mut sent, &mut fates, format);
        check_held(&pipes[which], &fed[which], sent[which], Origin::Feed(fed_before));
        if flush {
            for pipe in &mut pipes {
                let stream = pipe.stream();
                let before = emitted.len();
                pipe.flush(&mut enc, &mut |frame, text| {
                    emitted.push(record(frame, text, stream, Origin::Flush));
                    true
                });
                account(&emitted, before, pipe, &fed, &mut sent, &mut fates, format);
                let i = stream_index(stream);
                check_held(pipe, &fed[i], sent[i], Origin::Flush);
            }
        }
    }
    for pipe in &mut pipes {
        let stream = pipe.stream();
        let before = emitted.len();
        pipe.finish(&mut enc, &mut |frame, text| {
            emitted.push(record(frame, text, stream, Origin::Finish));
            true
        });
        account(&emitted, before, pipe, &fed, &mut sent, &mut fates, format);
        let i = stream_index(stream);
        check_held(pipe, &fed[i], sent[i], Origin::Finish);
    }
    let exit_id = enc.next_id();
    let exit = enc.exit(&Exit {
        code: Some(0),
        signal: None,
        timed_out: false,
    });
    let exit_frame = exit.to_vec(b"", false);
    check_chunked_frame(exit, b"");

    // Each frame alone is exactly one whole event (ending in a blank line,
    // starting with its id), so the stream is simply their sequence.
    let names = ["stdout", "stderr", "exit"];
    let mut events = Vec::new();
    for (index, item) in emitted.iter().enumerate() {
        let id = index as u64 + 1;
        let mut parsed = parse_sse(&item.frame, id, &names);
        assert_eq!(parsed.len(), 1, "one frame, one event");
        let event = parsed.pop().unwrap_or_else(|| unreachable!());
        assert_eq!(event.name, item.stream.name(), "event name");
        assert!(!item.text.is_empty(), "an event with no text");
        assert!(
            item.frame.len() <= sse::MAX_FRAME || item.text.len() <= sse::MAX_HELD,
            "a frame of {} bytes from {} bytes of text: over MAX_FRAME, yet not one line",
            item.frame.len(),
            item.text.len()
        );
        events.push(event);
    }
    check_cuts(&emitted);
    assert_eq!(exit_id, emitted.len() as u64 + 1, "the exit event's id");
    let exit_events = parse_sse(&exit_frame, exit_id, &names);
    assert!(
        exit_events.len() == 1 && exit_events[0].name == "exit",
        "exit frame {exit_frame:?}"
    );
    let exit_json = parse_json_object(&exit_events[0].data[0]);
    assert_eq!(
        exit_json,
        Some(vec![
            ("type".to_owned(), Json::Str("exit".to_owned())),
            ("code".to_owned(), Json::Num(0))
        ]),
        "exit data"
    );

    for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
        let mut rebuilt = Vec::new();
        for fate in &fates[i] {
            match *fate {
                Fate::Event(index) => {
                    assert_eq!(emitted[index].stream, stream);
                    rebuilt.extend_from_slice(&emitted[index].text);
                }
                Fate::DroppedLf => rebuilt.push(b'\n'),
            }
        }
        assert_eq!(rebuilt, fed[i], "{} texts do not add up to the input", stream.name());
        let whole = String::from_utf8_lossy(&fed[i]);
        match format {
            Format::Json => check_json_stream(&fates[i], &emitted, &events, &whole),
            Format::Raw => check_raw_stream(&fates[i], &emitted, &events, &whole),
        }
    }
}

fn stream_index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

/// A read sends whole lines, and cuts an unfinished line only once
/// `MAX_HELD` of it has piled up, maybe as several events when it escapes
/// heavily (`MAX_FRAME`): the events of one read that end mid-line add up to
/// at least the cap (less an unfinished character).
fn check_cuts(emitted: &[Emitted]) {
    let mut at = 0;
    while at < emitted.len() {
        let Origin::Feed(read) = emitted[at].origin else {
            at += 1;
            continue;
        };
        let stream = emitted[at].stream;
        let group = emitted[at..]
            .iter()
            .take_while(|e| matches!(e.origin, Origin::Feed(r) if r == read) && e.stream == stream)
            .count();
        let mid_line: usize = emitted[at..at + group]
            .iter()
            .filter(|e| !e.text.ends_with(b"\n") && !e.text.ends_with(b"\r"))
            .map(|e| e.text.len())
            .sum();
        assert!(
            mid_line == 0 || mid_line + 3 >= sse::MAX_HELD,
            "a read emitted {mid_line} bytes that end mid-line below the cap"
        );
        at += group;
    }
}

fn record(frame: &Frame, text: &[u8], stream: Stream, origin: Origin) -> Emitted {
    assert!(!frame.is_empty(), "an empty frame was emitted");
    let bytes = frame.to_vec(text, false);
    assert_eq!(bytes.len(), frame.len(), "Frame::len");
    check_chunked_frame(frame, text);
    Emitted {
        frame: bytes,
        text: text.to_vec(),
        stream,
        origin,
    }
}

/// What became of a piece of a pipe's input, in input order.
#[derive(Debug, Clone, Copy)]
enum Fate {
    /// It is the text of this event (an index into the emitted frames).
    Event(usize),
    /// A raw LF right after an event that ended with CR: the second half of a
    /// CRLF whose first half already ended a line; it makes no event.
    DroppedLf,
}

/// Places the events emitted since `from` in their pipe's input: each text
/// must be the next bytes, the only gap allowed being a dropped LF (raw, just
/// after a CR). Afterwards what was sent plus what `pipe` holds must be
/// everything fed to it.
fn account(
    emitted: &[Emitted],
    from: usize,
    pipe: &PipeText,
    fed: &[Vec<u8>; 2],
    sent: &mut [usize; 2],
    fates: &mut [Vec<Fate>; 2],
    format: Format,
) {
    let may_drop_lf = |input: &[u8], at: usize| {
        format == Format::Raw && at > 0 && input[at - 1] == b'\r' && input.get(at) == Some(&b'\n')
    };
    for (index, item) in emitted.iter().enumerate().skip(from) {
        let i = stream_index(item.stream);
        let at = sent[i];
        if !fed[i][at..].starts_with(&item.text) {
            assert!(
                may_drop_lf(&fed[i], at) && fed[i][at + 1..].starts_with(&item.text),
                "event text {:?} is not the next input of {} at {at}",
                String::from_utf8_lossy(&item.text),
                item.stream.name()
            );
            fates[i].push(Fate::DroppedLf);
            sent[i] += 1;
        }
        fates[i].push(Fate::Event(index));
        sent[i] += item.text.len();
    }
    let i = stream_index(pipe.stream());
    if sent[i] + pipe.held_len() < fed[i].len() && may_drop_lf(&fed[i], sent[i]) {
        fates[i].push(Fate::DroppedLf);
        sent[i] += 1;
    }
}

/// What a pipe holds after a call, against what it was fed and has sent.
///
/// After a read, the held bytes from before it were checked then: only the
/// new ones are scanned for line ends, so a long line costs linear time.
fn check_held(pipe: &PipeText, fed: &[u8], sent: usize, origin: Origin) {
    assert!(sent <= fed.len(), "sent more than was read");
    assert_eq!(pipe.held_len(), fed.len() - sent, "held bytes do not add up");
    assert_eq!(pipe.has_held(), pipe.held_len() > 0);
    let held = &fed[sent..];
    match origin {
        Origin::Feed(fed_before) => {
            assert!(held.len() < sse::MAX_HELD, "{} bytes held", held.len());
            let new = &fed[sent.max(fed_before)..];
            assert!(
                !new.contains(&b'\n') && !new.contains(&b'\r'),
                "a whole line is held back"
            );
        }
        Origin::Flush => {
            if let Some((&lead, tail)) = held.split_first() {
                let width = match lead {
                    0xC2..=0xDF => 2,
                    0xE0..=0xEF => 3,
                    0xF0..=0xF4 => 4,
                    _ => panic!("flush held {held:?}"),
                };
                assert!(held.len() < width, "flush held a whole character {held:?}");
                assert!(tail.iter().all(|b| b & 0xC0 == 0x80), "flush held {held:?}");
            }
        }
        Origin::Finish => assert!(held.is_empty(), "finish left {held:?}"),
    }
}

fn check_json_stream(fates: &[Fate], emitted: &[Emitted], events: &[Event], whole: &str) {
    let mut outs = String::new();
    for fate in fates {
        let Fate::Event(index) = *fate else {
            panic!("a JSON stream dropped an LF");
        };
        let event = &events[index];
        assert_eq!(event.data.len(), 1, "a JSON event has one data line");
        let out = json_out(&event.data[0], &event.name);
        assert_eq!(
            out,
            String::from_utf8_lossy(&emitted[index].text),
            "out is not the event's text"
        );
        assert!(!out.is_empty(), "an event with empty out");
        outs.push_str(&out);
    }
    assert_eq!(outs, whole, "the outs together are not the whole output");
}

fn check_raw_stream(fates: &[Fate], emitted: &[Emitted], events: &[Event], whole: &str) {
    let mut after_cr = false;
    let mut open = false;
    let mut lines: Vec<String> = Vec::new();
    for fate in fates {
        let Fate::Event(index) = *fate else {
            assert!(after_cr, "an LF dropped that did not follow a CR");
            after_cr = false;
            continue;
        };
        let (item, event) = (&emitted[index], &events[index]);
        let mut text = &item.text[..];
        if after_cr && text.first() == Some(&b'\n') {
            text = &text[1..];
        }
        assert!(!text.is_empty(), "an event for only the LF of a CRLF");
        let (expected, ended) = split_lines(&String::from_utf8_lossy(text));
        assert_eq!(
            event.data,
            expected,
            "data lines of text {:?}",
            String::from_utf8_lossy(text)
        );
        for (line_index, line) in event.data.iter().enumerate() {
            match lines.last_mut() {
                Some(last) if line_index == 0 && open => last.push_str(line),
                _ => lines.push(line.clone()),
            }
        }
        open = !ended;
        after_cr = item.text.last() == Some(&b'\r');
    }
    let (expected, _) = split_lines(whole);
    assert_eq!(lines, expected, "the data lines do not rebuild the output's lines");
}

/// Frames of every kind, with and without chunk framing.
///
/// Input: a format byte (bit 0: raw), then operations. An operation byte
/// `op` picks by `op & 3`: stdout output, stderr output, an `err` message, an
/// `exit`. Output and messages take a length byte and that many following
/// bytes; bit 2 of `op` repeats the text to over 64 KiB (a five-digit chunk
/// size). An exit takes four bytes of code and one of signal; bits 3, 4 and
/// 5 of `op` say whether the code and signal are present and whether it
/// timed out.
///
/// Checks: each non-empty frame chunk-framed, whether copied by `to_vec` or
/// written from `parts`, is exactly one chunk (hex size, no extension, CRLF,
/// the bytes, CRLF) whose bytes are the unchunked frame; no part is empty;
/// `len` is the unchunked length; all the frames as one chunked body,
/// closed by `0\r\n\r\n`, decode to the frames one after another.
pub fn chunked(data: &[u8]) {
    let Some((&format_byte, mut rest)) = data.split_first() else {
        return;
    };
    let format = if format_byte & 1 == 1 {
        Format::Raw
    } else {
        Format::Json
    };
    let mut enc = Encoder::new(format);
    let mut body = Vec::new();
    let mut plain = Vec::new();
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let frame = match op & 3 {
            0..=2 => {
                let len = take(&mut rest, 1).first().copied().map_or(0, usize::from);
                let mut text = take(&mut rest, len);
                if op & 4 != 0 && !text.is_empty() {
                    text = text.repeat(70 * 1024 / text.len() + 1);
                }
                let frame = match op & 3 {
                    0 => enc.output(Stream::Stdout, &text),
                    1 => enc.output(Stream::Stderr, &text),
                    _ => enc.error(&String::from_utf8_lossy(&text)),
                };
                if frame.is_empty() {
                    assert_eq!(frame.to_vec(&text, true), b"", "an empty frame has no chunk");
                    continue;
                }
                check_chunked_frame(frame, &text);
                (frame.to_vec(&text, false), frame.to_vec(&text, true))
            }
            _ => {
                let code_bytes = take(&mut rest, 4);
                let mut code = [0u8; 4];
                code[..code_bytes.len()].copy_from_slice(&code_bytes);
                let signal = take(&mut rest, 1).first().copied().unwrap_or(0);
                let exit = Exit {
                    code: (op & 8 != 0).then_some(i32::from_le_bytes(code)),
                    signal: (op & 16 != 0).then_some(i32::from(signal)),
                    timed_out: op & 32 != 0,
                };
                let frame = enc.exit(&exit);
                check_chunked_frame(frame, b"");
                (frame.to_vec(b"", false), frame.to_vec(b"", true))
            }
        };
        plain.extend_from_slice(&frame.0);
        body.extend_from_slice(&frame.1);
    }
    body.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(
        decode_chunked(&body),
        Some(plain),
        "the chunked body decodes differently"
    );
}

/// Takes up to `n` bytes off the front of `rest`.
fn take(rest: &mut &[u8], n: usize) -> Vec<u8> {
    let (head, tail) = rest.split_at(n.min(rest.len()));
    *rest = tail;
    head.to_vec()
}

/// A frame, chunked and not, by `to_vec` and by `parts`.
fn check_chunked_frame(frame: &Frame, text: &[u8]) {
    let plain = frame.to_vec(text, false);
    let framed = frame.to_vec(text, true);
    assert_eq!(plain.len(), frame.len(), "Frame::len");
    assert_eq!(frame.is_empty(), plain.is_empty(), "Frame::is_empty");
    for chunked in [false, true] {
        let parts: Vec<&[u8]> = frame.parts(text, chunked).collect();
        assert!(parts.iter().all(|part| !part.is_empty()), "an empty part");
        let want = if chunked { &framed } else { &plain };
        assert_eq!(&parts.concat(), want, "parts and to_vec disagree (chunked: {chunked})");
    }
    if plain.is_empty() {
        return;
    }
    let (size, after) = chunk_size_line(&framed).unwrap_or_else(|| panic!("bad chunk size line in {framed:?}"));
    assert_eq!(size, plain.len(), "chunk size");
    assert_eq!(after.len(), size + 2, "bytes after the chunk");
    assert_eq!(&after[..size], &plain[..], "chunk data");
    assert_eq!(&after[size..], b"\r\n", "chunk end");
}

/// Reads `1*HEXDIG CRLF` with no extension and no leading zero (bar `0`
/// itself): the size and what follows the line.
fn chunk_size_line(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let digits = bytes.iter().position(|b| !b.is_ascii_hexdigit())?;
    if digits == 0 || digits > 15 || (digits > 1 && bytes[0] == b'0') {
        return None;
    }
    let size = usize::from_str_radix(std::str::from_utf8(&bytes[..digits]).ok()?, 16).ok()?;
    let after = bytes[digits..].strip_prefix(b"\r\n")?;
    Some((size, after))
}

/// Decodes a whole chunked body with the client's decoder
/// ([`crate::client::BodyDecoder`]): `None` if it is malformed, unfinished or
/// has bytes after its end. (Each frame's own size line is checked strictly,
/// without extension or leading zero, by [`check_chunked_frame`].)
fn decode_chunked(body: &[u8]) -> Option<Vec<u8>> {
    let mut decoder = BodyDecoder::new(Framing::Chunked);
    let mut out = Vec::new();
    let used = decoder.decode(body, &mut |bytes| out.extend_from_slice(bytes)).ok()?;
    (used == body.len() && decoder.is_done()).then_some(out)
}

/// The line-end scanner (`sse::scan`): every level this CPU runs (AVX2,
/// SSE2, the portable word-at-a-time one) finds exactly the bytes a plain
/// byte-by-byte filter finds, in order, for both sets of needles (CR and LF;
/// what JSON escapes: bytes below 0x20, `"`, `\\`); its ASCII check agrees
/// with std's.
///
/// Input: the first byte's low six bits skip that many following bytes, so
/// the text starts at every place within a 64-byte block (the scanner reads
/// blocks from the text's start, but a heap buffer's alignment varies); the
/// rest is the text.
pub fn line_scan(data: &[u8]) {
    let Some((&skip, rest)) = data.split_first() else {
        return;
    };
    let text = &rest[usize::from(skip & 63).min(rest.len())..];
    for needles in [Needles::LineEnds, Needles::JsonEscapes] {
        let want: Vec<usize> = (0..text.len()).filter(|&i| needles.matches(text[i])).collect();
        for level in Level::available() {
            let mut got = Vec::with_capacity(want.len());
            scan::each_hit_at(text, needles, level, |i| got.push(i));
            assert_eq!(
                got, want,
                "{level:?} scan for {needles:?} differs from the byte filter on {text:?}"
            );
        }
    }
    assert_eq!(
        scan::is_ascii(text),
        text.is_ascii(),
        "is_ascii differs from std's on {text:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_sse_parser_accepts_what_it_should() {
        let events = parse_sse(
            b"id: 1\nevent: stdout\ndata: a\ndata:  b\n\nid: 2\nevent: exit\ndata: {}\n\n",
            1,
            &["stdout", "exit"],
        );
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].data, ["a", " b"]);
    }

    #[test]
    fn strict_sse_parser_refuses() {
        let bad: [&[u8]; 9] = [
            b"id: 1\nevent: stdout\ndata: a\n",
            b"id: 2\nevent: stdout\ndata: a\n\n",
            b"id: 1\nevent: stdout\n\n",
            b"id: 1\nevent: other\ndata: a\n\n",
            b"id: 1\nevent: stdout\ndata: a\r\n\n",
            b"\n",
            b": ping\n\n",
            b"id: 01\nevent: stdout\ndata: a\n\n",
            b"id: 1\nevent: stdout\ndata\n\n",
        ];
        for stream in bad {
            let result = std::panic::catch_unwind(|| parse_sse(stream, 1, &["stdout"]));
            assert!(result.is_err(), "accepted {:?}", String::from_utf8_lossy(stream));
        }
    }

    #[test]
    fn json_decoder() {
        let members = parse_json_object(r#"{"type":"stdout","out":"a\"\\\/\b\f\n\r\t\u00e9\ud83e\udd80"}"#);
        assert_eq!(
            members,
            Some(vec![
                ("type".to_owned(), Json::Str("stdout".to_owned())),
                ("out".to_owned(), Json::Str("a\"\\/\u{8}\u{c}\n\r\té🦀".to_owned())),
            ])
        );
        assert_eq!(
            parse_json_object(r#"{"code":-1,"x":null,"t":true}"#).map(|m| m.len()),
            Some(3)
        );
        for bad in [
            r#"{"a":"\ud800"}"#,
            "{\"a\":\"\t\"}",
            r#"{"a":"\x"}"#,
            r#"{"a":01}"#,
            r#"{"a":"b"} x"#,
        ] {
            assert_eq!(parse_json_object(bad), None, "{bad}");
        }
    }

    #[test]
    fn chunk_decoder() {
        assert_eq!(decode_chunked(b"3\r\nabc\r\n0\r\n\r\n"), Some(b"abc".to_vec()));
        assert_eq!(decode_chunked(b"3\r\nabc\r\n0\r\n\r\nx"), None);
        assert_eq!(decode_chunked(b"3\r\nabc\r\n"), None);
        assert_eq!(decode_chunked(b"3\r\nabcd\r\n0\r\n\r\n"), None);
        assert_eq!(chunk_size_line(b"3\r\nabc"), Some((3, &b"abc"[..])));
        assert_eq!(chunk_size_line(b"3;x\r\nabc"), None);
        assert_eq!(chunk_size_line(b"03\r\nabc"), None);
    }

    #[test]
    fn line_splitting() {
        assert_eq!(
            split_lines("a\r\nb\rc\n\nd"),
            (vec!["a".into(), "b".into(), "c".into(), "".into(), "d".into()], false)
        );
        assert_eq!(split_lines("a\n"), (vec!["a".into()], true));
        assert_eq!(split_lines(""), (vec![], false));
    }

    #[test]
    fn oracles_run_on_simple_inputs() {
        http_head(b"\x00GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        http_head(b"\x10GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        query_argv(b" echo 'a b' c");
        sse_encoder(b"\x00hello\nworld");
        sse_encoder(b"\x23\x81\x45a\r\nb\rc\xe2\x82\xac\n");
        chunked(b"\x00\x00\x03abc\x02\x01x\x3b\x00\x00\x00\x00\x09");
        line_scan(b"\x05ab\r\ncd\"\\\x1f\x20\x7f\x80");
    }
}
