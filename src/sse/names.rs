//! The names of what a stream carries: the format, the pipe, the event
//! names, and how a command ended.

use std::fmt::Write as _;

/// How the output of a stream is written (`format=` on `/run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `data: {"type":"stdout","out":"…"}`: exact, JSON-escaped text.
    Json,
    /// One `data:` line per output line: for reading the wire by eye.
    Raw,
}

impl Format {
    /// Parses the `format` query value; `None` for an unknown one.
    pub fn from_query(value: &str) -> Option<Format> {
        match value {
            "json" => Some(Format::Json),
            "raw" => Some(Format::Raw),
            _ => None,
        }
    }
}

/// Which pipe of the child some output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The child's standard output.
    Stdout,
    /// The child's standard error.
    Stderr,
}

impl Stream {
    /// The event name, also the JSON `type`.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    pub(super) fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// The name of an event (contract §3.2, §7.3), so what is sent can be
/// counted by name without looking at its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventName {
    /// Output from the child's stdout.
    #[default]
    Stdout,
    /// Output from the child's stderr.
    Stderr,
    /// The command could not start.
    Err,
    /// The command ended.
    Exit,
    /// A job viewer missed events the log no longer holds.
    Gap,
}

impl EventName {
    /// Every name, in the order of [`EventName::index`].
    pub const ALL: [EventName; 5] = [
        EventName::Stdout,
        EventName::Stderr,
        EventName::Err,
        EventName::Exit,
        EventName::Gap,
    ];

    /// The name as the `event:` line spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::Stdout => "stdout",
            EventName::Stderr => "stderr",
            EventName::Err => "err",
            EventName::Exit => "exit",
            EventName::Gap => "gap",
        }
    }

    /// Its place in [`EventName::ALL`], for counters kept in an array.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl From<Stream> for EventName {
    fn from(stream: Stream) -> EventName {
        match stream {
            Stream::Stdout => EventName::Stdout,
            Stream::Stderr => EventName::Stderr,
        }
    }
}

/// How a command ended, as the `exit` event reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, if the child exited by itself.
    pub code: Option<i32>,
    /// The signal number that ended it, if one did.
    pub signal: Option<i32>,
    /// `--timeout` expired and the server stopped it.
    pub timed_out: bool,
}

impl Exit {
    /// The `exit` event's data: `{"type":"exit","code":0}`, with `signal`
    /// and `timed_out` when they apply.
    pub fn json(&self) -> String {
        let mut json = String::with_capacity(64);
        json.push_str("{\"type\":\"exit\",\"code\":");
        match self.code {
            Some(code) => {
                let _ = write!(json, "{code}");
            }
            None => json.push_str("null"),
        }
        if let Some(signal) = self.signal {
            let _ = write!(json, ",\"signal\":{signal}");
        }
        if self.timed_out {
            json.push_str(",\"timed_out\":true");
        }
        json.push('}');
        json
    }
}
