//! A strict incremental `text/event-stream` parser, by the WHATWG HTML
//! standard (§9.2.6 "Interpreting an event stream"): CR, LF and CRLF end a
//! line, also when split across reads; one leading BOM is skipped; `data`
//! lines are joined with LF; one space after the colon is dropped; `id`
//! (without NUL) sets the last event id, `retry` (digits only) the reconnect
//! time; a blank line dispatches the event unless it has no data. It works on
//! bytes and does no I/O; what the bytes mean is [`super::payload`]'s job.
//!
//! Every line is also reported as an [`Item`], so a caller can be stricter
//! than the standard (the test harness checks our own wire, contract §3).

use std::fmt;

/// Default bound on one line and on one event's data: large enough for any
/// event ssecommander sends (64 KiB of text, at most 6 bytes per byte once
/// JSON-escaped) many times over.
pub const DEFAULT_MAX_EVENT: usize = 16 << 20;

/// The UTF-8 byte-order mark, skipped once at the start of a stream.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Why a stream cannot be parsed: only its size is ever wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseError {
    /// A line, or the data of one event, grew past the parser's bound.
    TooLong(usize),
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::TooLong(max) => write!(f, "SSE line or event data over {max} bytes"),
        }
    }
}

impl std::error::Error for SseError {}

/// A dispatched event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The event type: the last `event:` value, or `message` when none.
    pub name: &'a [u8],
    /// The `data:` values joined with LF.
    pub data: &'a [u8],
    /// The last event id of the stream so far (ids persist across events).
    pub last_event_id: &'a [u8],
    /// True when this event itself had an (accepted) `id:` line.
    pub has_id: bool,
    /// How many `data:` lines it had.
    pub data_lines: usize,
}

/// What one line, or a blank line, produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// A blank line completed an event with data.
    Event(Event<'a>),
    /// A comment line: the bytes after the `:` (so `: ping` gives ` ping`).
    Comment(&'a [u8]),
    /// A field line, known or not, as split: name and value (one leading
    /// space dropped). Reported before its effect on the event.
    Field {
        /// The field name (the whole line when it has no colon).
        name: &'a [u8],
        /// The value.
        value: &'a [u8],
        /// The line had a colon (false: the whole line is the name), so a
        /// caller checking its own wire can refuse `data` without one.
        colon: bool,
    },
    /// A blank line with no data pending: nothing is dispatched (it may
    /// still end an event that had only `id`/`event`/`retry` lines).
    Blank,
}

/// How a stream ended, from [`SseParser::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Between events: nothing was pending.
    Clean,
    /// Fields of an event had come but no blank line: the event is dropped,
    /// as the standard says. `bytes` of an unfinished line were pending too.
    UnfinishedEvent {
        /// Bytes of an unfinished last line (0 when the last line ended).
        bytes: usize,
    },
    /// Only an unfinished line was pending.
    UnfinishedLine {
        /// Its length.
        bytes: usize,
    },
}

/// Counters of what the parser has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events dispatched.
    pub events: u64,
    /// Comment lines.
    pub comments: u64,
    /// Blank lines that dispatched nothing.
    pub empty: u64,
    /// Bytes fed (after the BOM).
    pub bytes: u64,
}

/// The parser. Feed it decoded body bytes; it calls back per line.
#[derive(Debug, Clone)]
pub struct SseParser {
    /// The unfinished line carried over from earlier feeds.
    line: Vec<u8>,
    /// The last feed ended with CR: an LF first in the next one belongs to it.
    after_cr: bool,
    /// BOM bytes matched so far; `None` once past the start of the stream.
    bom: Option<usize>,
    data: Vec<u8>,
    has_data: bool,
    data_lines: usize,
    name: Vec<u8>,
    last_id: Vec<u8>,
    has_id: bool,
    /// A field line came since the last blank line.
    in_event: bool,
    retry: Option<u64>,
    max: usize,
    counts: Counts,
}

impl Default for SseParser {
    fn default() -> SseParser {
        SseParser::new()
    }
}

impl SseParser {
    /// A parser with the [`DEFAULT_MAX_EVENT`] bound.
    pub fn new() -> SseParser {
        SseParser::with_max(DEFAULT_MAX_EVENT)
    }

    /// A parser whose lines and event data may not exceed `max` bytes.
    pub fn with_max(max: usize) -> SseParser {
        SseParser {
            line: Vec::new(),
            after_cr: false,
            bom: Some(0),
            data: Vec::new(),
            has_data: false,
            data_lines: 0,
            name: Vec::new(),
            last_id: Vec::new(),
            has_id: false,
            in_event: false,
            retry: None,
            max,
            counts: Counts::default(),
        }
    }

    /// What it has seen so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The last event id so far (empty when none).
    pub fn last_event_id(&self) -> &[u8] {
        &self.last_id
    }

    /// The last valid `retry:` value, in milliseconds.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// The unfinished line, for failure messages.
    pub fn pending_line(&self) -> &[u8] {
        &self.line
    }

    /// Parses `bytes`, calling `on` for each completed line (in order).
    /// Fails only when a line or an event's data outgrows the bound; the
    /// parser should then be dropped.
    pub fn feed<F: FnMut(Item<'_>)>(&mut self, mut bytes: &[u8], on: &mut F) -> Result<(), SseError> {
        if let Some(mut matched) = self.bom {
            while matched < BOM.len() {
                match bytes.split_first() {
                    None => {
                        self.bom = Some(matched);
                        return Ok(());
                    }
                    Some((&b, rest)) if b == BOM[matched] => {
                        matched += 1;
                        bytes = rest;
                    }
                    Some(_) => break,
                }
            }
            self.bom = None;
            // Bytes that began like a BOM but were not one are text.
            if matched < BOM.len() && matched > 0 {
                self.counts.bytes += matched as u64;
                self.push_line(&BOM[..matched])?;
            }
        }
        self.counts.bytes += bytes.len() as u64;
        if self.after_cr && !bytes.is_empty() {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(i) = memchr::memchr2(b'\r', b'\n', bytes) {
            if self.line.is_empty() {
                self.on_line(&bytes[..i], on)?;
            } else {
                self.push_line(&bytes[..i])?;
                let line = std::mem::take(&mut self.line);
                let res = self.on_line(&line, on);
                self.line = line;
                self.line.clear();
                res?;
            }
            let cr = bytes[i] == b'\r';
            bytes = &bytes[i + 1..];
            if cr {
                match bytes.first() {
                    None => self.after_cr = true,
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                }
            }
        }
        self.push_line(bytes)
    }

    /// The stream ended: says what was left unfinished (an unfinished event
    /// is never dispatched) and resets the event state.
    pub fn finish(&mut self) -> End {
        let bytes = self.line.len();
        let end = if self.in_event {
            End::UnfinishedEvent { bytes }
        } else if bytes > 0 {
            End::UnfinishedLine { bytes }
        } else {
            End::Clean
        };
        self.line.clear();
        self.reset_event();
        end
    }

    fn push_line(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > self.max {
            return Err(SseError::TooLong(self.max));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn reset_event(&mut self) {
        self.data.clear();
        self.has_data = false;
        self.data_lines = 0;
        self.name.clear();
        self.has_id = false;
        self.in_event = false;
    }

    fn on_line<F: FnMut(Item<'_>)>(&mut self, line: &[u8], on: &mut F) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch(on);
            return Ok(());
        }
        if line.len() > self.max {
            return Err(SseError::TooLong(self.max));
        }
        if let Some(comment) = line.strip_prefix(b":") {
            self.counts.comments += 1;
            on(Item::Comment(comment));
            return Ok(());
        }
        let (name, value, colon) = match memchr::memchr(b':', line) {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value), true)
            }
            None => (line, &b""[..], false),
        };
        on(Item::Field { name, value, colon });
        self.in_event = true;
        match name {
            b"data" => {
                if self.data.len() + value.len() + 1 > self.max {
                    return Err(SseError::TooLong(self.max));
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
                self.data_lines += 1;
            }
            b"event" => {
                self.name.clear();
                self.name.extend_from_slice(value);
            }
            b"id" if !value.contains(&0) => {
                self.last_id.clear();
                self.last_id.extend_from_slice(value);
                self.has_id = true;
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch<F: FnMut(Item<'_>)>(&mut self, on: &mut F) {
        if !self.has_data {
            self.counts.empty += 1;
            on(Item::Blank);
        } else {
            self.counts.events += 1;
            let name: &[u8] = if self.name.is_empty() { b"message" } else { &self.name };
            on(Item::Event(Event {
                name,
                data: &self.data,
                last_event_id: &self.last_id,
                has_id: self.has_id,
                data_lines: self.data_lines,
            }));
        }
        self.reset_event();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the parser reports, as owned text, one string per item.
    fn run(chunks: &[&[u8]]) -> (Vec<String>, End) {
        let mut parser = SseParser::new();
        let mut seen = Vec::new();
        for chunk in chunks {
            parser
                .feed(chunk, &mut |item: Item<'_>| {
                    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                    seen.push(match item {
                        Item::Event(ev) => format!(
                            "event {} [{}] id={} own_id={} lines={}",
                            text(ev.name),
                            text(ev.data),
                            text(ev.last_event_id),
                            ev.has_id,
                            ev.data_lines
                        ),
                        Item::Comment(c) => format!("comment [{}]", text(c)),
                        Item::Field { name, value, .. } => format!("field {}={}", text(name), text(value)),
                        Item::Blank => "blank".to_owned(),
                    });
                })
                .unwrap();
        }
        let end = parser.finish();
        (seen, end)
    }

    /// The same stream fed whole, split at every byte, and byte by byte.
    fn same_at_every_split(stream: &[u8]) -> (Vec<String>, End) {
        let whole = run(&[stream]);
        for cut in 0..=stream.len() {
            assert_eq!(run(&[&stream[..cut], &stream[cut..]]), whole, "cut at {cut}");
        }
        for a in 0..=stream.len() {
            for b in a..=stream.len() {
                assert_eq!(run(&[&stream[..a], &stream[a..b], &stream[b..]]), whole, "cuts {a} {b}");
            }
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(&bytes), whole, "byte by byte");
        whole
    }

    #[test]
    fn line_ends_bom_and_fields_at_every_split() {
        let stream = b"\xEF\xBB\xBF: hi\r\nid: 1\revent: stdout\ndata:a\r\ndata:  b\n\nretry: 30\r\rdata\r\n\r\n";
        let (items, end) = same_at_every_split(stream);
        assert_eq!(
            items,
            [
                "comment [ hi]",
                "field id=1",
                "field event=stdout",
                "field data=a",
                "field data= b",
                "event stdout [a\n b] id=1 own_id=true lines=2",
                "field retry=30",
                "blank",
                "field data=",
                "event message [] id=1 own_id=false lines=1",
            ]
        );
        assert_eq!(end, End::Clean);
    }

    #[test]
    fn bom_only_once_and_partial_bom_is_text() {
        let (items, _) = same_at_every_split(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n");
        assert_eq!(items[0], "field \u{feff}data=x");
        let (items, _) = same_at_every_split(b"\xEF\xBBdata: x\n\n");
        assert_eq!(items[0], "field \u{fffd}data=x");
    }

    #[test]
    fn ids_without_nul_persist_and_bad_retry_is_ignored() {
        let mut parser = SseParser::new();
        let mut ids = Vec::new();
        parser
            .feed(
                b"id: 7\ndata: a\n\nid: x\0y\ndata: b\n\nretry: 1x\nretry: 250\ndata: c\n\n",
                &mut |item: Item<'_>| {
                    if let Item::Event(ev) = item {
                        ids.push((ev.last_event_id.to_vec(), ev.has_id));
                    }
                },
            )
            .unwrap();
        assert_eq!(
            ids,
            [(b"7".to_vec(), true), (b"7".to_vec(), false), (b"7".to_vec(), false)]
        );
        assert_eq!(parser.retry(), Some(250));
        assert_eq!(parser.counts().events, 3);
    }

    #[test]
    fn unfinished_endings_are_reported() {
        assert_eq!(run(&[b"data: a\n"]).1, End::UnfinishedEvent { bytes: 0 });
        assert_eq!(run(&[b"data: a\n\ndata: b"]).1, End::UnfinishedLine { bytes: 7 });
        assert_eq!(run(&[b"event: e\ndata: b"]).1, End::UnfinishedEvent { bytes: 7 });
        assert_eq!(run(&[b"data: a\n\n: c"]).1, End::UnfinishedLine { bytes: 3 });
        assert_eq!(run(&[b"data: a\n\n"]).1, End::Clean);
    }

    #[test]
    fn bounds_lines_and_data() {
        let mut parser = SseParser::with_max(8);
        assert!(parser.feed(b"data: 1234", &mut |_: Item<'_>| {}).is_err());
        let mut parser = SseParser::with_max(10);
        assert!(parser.feed(b"data: 1234\n", &mut |_: Item<'_>| {}).is_ok());
        assert!(parser.feed(b"data: 1234\n", &mut |_: Item<'_>| {}).is_ok());
        assert!(parser.feed(b"data: 1234\n", &mut |_: Item<'_>| {}).is_err());
    }
}
