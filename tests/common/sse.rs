//! The strict SSE parser: fails the test on anything our wire never sends.

use std::time::Instant;

use super::*;

/// One dispatched SSE event.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: u64,
    pub event: String,
    /// The data lines joined with `\n` (WHATWG).
    pub data: String,
    pub data_lines: Vec<String>,
    /// When the bytes completing this event arrived.
    pub at: Instant,
}

/// One item of a stream: an event or a comment line.
#[derive(Debug, Clone)]
pub enum Item {
    Event(Event),
    /// The text after the `:` (so `: ping` gives `" ping"`), and when it arrived.
    Comment(String, Instant),
}

/// One line of an event stream, as `ssecommander::client::SseParser` split
/// it (one space after the colon dropped), UTF-8 checked.
pub enum SseLine {
    /// An empty line: the end of an event (or of a `retry` block).
    Blank,
    /// A comment: the text after the `:`.
    Comment(String),
    /// A field line: name and value.
    Field(String, String),
}

/// SSE's line splitting, shared by the stream parsers: the client's parser
/// (CR, LF and CRLF end a line, also when split across reads), each line
/// reported as it completes; keeps the last bytes seen for failure messages.
#[derive(Default)]
pub struct SseLines {
    parser: client::SseParser,
    tail: Vec<u8>,
}

impl SseLines {
    /// The lines `bytes` completes.
    pub fn split(&mut self, bytes: &[u8]) -> Vec<SseLine> {
        self.tail.extend_from_slice(&bytes[bytes.len().saturating_sub(2048)..]);
        if self.tail.len() > 4096 {
            let cut = self.tail.len() - 2048;
            self.tail.drain(..cut);
        }
        let mut lines = Vec::new();
        let mut not_utf8 = None;
        let mut no_colon = false;
        let mut text = |bytes: &[u8]| match std::str::from_utf8(bytes) {
            Ok(text) => text.to_owned(),
            Err(err) => {
                not_utf8.get_or_insert((err, bytes.to_vec()));
                String::new()
            }
        };
        let fed = self.parser.feed(bytes, &mut |item| {
            lines.push(match item {
                client::Item::Event(_) | client::Item::Blank => SseLine::Blank,
                client::Item::Comment(comment) => SseLine::Comment(text(comment)),
                client::Item::Field { name, value, colon } => {
                    no_colon = no_colon || !colon;
                    SseLine::Field(text(name), text(value))
                }
            })
        });
        if let Err(err) = fed {
            panic!("{err}\ncontext:\n{}", self.context());
        }
        assert!(!no_colon, "SSE line without a colon\ncontext:\n{}", self.context());
        if let Some((err, bytes)) = not_utf8 {
            panic!(
                "SSE line is not UTF-8 ({}): {:?}\ncontext:\n{}",
                err,
                String::from_utf8_lossy(&bytes),
                self.context()
            );
        }
        lines
    }

    /// No unfinished line is pending.
    pub fn is_empty(&self) -> bool {
        self.parser.pending_line().is_empty()
    }

    /// The unfinished line, for failure messages.
    pub fn unfinished(&self) -> String {
        String::from_utf8_lossy(self.parser.pending_line()).into_owned()
    }

    /// The last bytes seen, for failure messages.
    pub fn context(&self) -> String {
        String::from_utf8_lossy(&self.tail).into_owned()
    }
}

/// The fields of the event being read, shared by the stream parsers: one
/// decimal `id`, one known `event` name, and `data` lines.
#[derive(Default)]
pub struct SseFields {
    id: Option<u64>,
    event: Option<String>,
    data: Vec<String>,
}

impl SseFields {
    /// Takes an `id`, `event` (one of `names`) or `data` field; false for
    /// any other field name. `lines` gives failure messages their context.
    pub(super) fn take(&mut self, field: &str, value: &str, names: &[&str], lines: &SseLines) -> bool {
        match field {
            "id" => {
                assert!(
                    self.id.is_none(),
                    "two id lines in one event\ncontext:\n{}",
                    lines.context()
                );
                assert!(
                    !value.is_empty() && value.bytes().all(|c| c.is_ascii_digit()),
                    "id is not a decimal number: {:?}\ncontext:\n{}",
                    value,
                    lines.context()
                );
                self.id = Some(value.parse().expect("id fits u64"));
            }
            "event" => {
                assert!(
                    self.event.is_none(),
                    "two event lines in one event\ncontext:\n{}",
                    lines.context()
                );
                assert!(
                    names.contains(&value),
                    "unknown event name {:?} (§3.2)\ncontext:\n{}",
                    value,
                    lines.context()
                );
                self.event = Some(value.to_owned());
            }
            "data" => self.data.push(value.to_owned()),
            _ => return false,
        }
        true
    }

    /// True while no field of an event has come.
    pub(super) fn is_empty(&self) -> bool {
        self.id.is_none() && self.event.is_none() && self.data.is_empty()
    }

    /// The completed event's id, name and data lines; panics when one of
    /// them is missing.
    pub(super) fn finish(&mut self, lines: &SseLines) -> (u64, String, Vec<String>) {
        let Some(id) = self.id.take() else {
            panic!("SSE event without an id line (§3.2)\ncontext:\n{}", lines.context())
        };
        let Some(event) = self.event.take() else {
            panic!("SSE event without an event line\ncontext:\n{}", lines.context())
        };
        let data = std::mem::take(&mut self.data);
        assert!(
            !data.is_empty(),
            "SSE event {} ({}) without data\ncontext:\n{}",
            id,
            event,
            lines.context()
        );
        (id, event, data)
    }
}

/// A strict incremental parser of `text/event-stream` (WHATWG rules), which
/// panics on anything our wire (CONTRACT §3, WIRE.md) never sends.
pub struct SseParser {
    lines: SseLines,
    fields: SseFields,
    in_event: bool,
    last_id: u64,
    pub bytes: u64,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new()
    }
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser {
            lines: SseLines::default(),
            fields: SseFields::default(),
            in_event: false,
            last_id: 0,
            bytes: 0,
        }
    }

    fn context(&self) -> String {
        self.lines.context()
    }

    /// Feeds decoded body bytes that arrived at `at`; returns the items completed.
    pub fn feed(&mut self, bytes: &[u8], at: Instant) -> Vec<Item> {
        self.bytes += bytes.len() as u64;
        let lines = self.lines.split(bytes);
        lines.iter().filter_map(|line| self.on_line(line, at)).collect()
    }

    fn on_line(&mut self, line: &SseLine, at: Instant) -> Option<Item> {
        let (field, value) = match line {
            SseLine::Blank => return self.dispatch(at),
            SseLine::Comment(c) => {
                assert!(
                    !self.in_event,
                    "comment in the middle of an event: {:?}\ncontext:\n{}",
                    c,
                    self.context()
                );
                return Some(Item::Comment(c.clone(), at));
            }
            SseLine::Field(field, value) => (field, value),
        };
        self.in_event = true;
        if !self
            .fields
            .take(field, value, &["stdout", "stderr", "err", "exit"], &self.lines)
        {
            panic!(
                "unknown SSE field {:?} (value {:?})\ncontext:\n{}",
                field,
                value,
                self.context()
            );
        }
        None
    }

    fn dispatch(&mut self, at: Instant) -> Option<Item> {
        if !self.in_event {
            return None;
        }
        self.in_event = false;
        let (id, event, data) = self.fields.finish(&self.lines);
        assert_eq!(
            id,
            self.last_id + 1,
            "SSE ids must be 1, 2, 3… in order (§3.2): after {} came {}\ncontext:\n{}",
            self.last_id,
            id,
            self.context()
        );
        self.last_id = id;
        Some(Item::Event(Event {
            id,
            event,
            data: data.join("\n"),
            data_lines: data,
            at,
        }))
    }

    /// Asserts the stream ended between events.
    pub fn finish(&self) {
        assert!(
            self.lines.is_empty() && !self.in_event,
            "SSE stream ended in the middle of an event or line: pending line {:?}\ncontext:\n{}",
            self.lines.unfinished(),
            self.context()
        );
    }
}

/// Parses a complete stream body (all arriving at `at`).
pub fn parse_sse(body: &[u8], at: Instant) -> Vec<Item> {
    let mut p = SseParser::new();
    let items = p.feed(body, at);
    p.finish();
    items
}

/// The events of a list of items.
pub fn events_of(items: &[Item]) -> Vec<Event> {
    items
        .iter()
        .filter_map(|i| if let Item::Event(e) = i { Some(e.clone()) } else { None })
        .collect()
}
