//! The encoder: numbered events in either format.

use std::rc::Rc;

use super::frame::{JSON_HEAD, KEEP_SCRATCH};
use super::json::{escape_json_into, json_bound, push_json_escaped};
use super::raw::RawLines;
use super::utf8::for_each_utf8_segment;
use super::{EventName, Exit, Format, Frame, JobTag, Stream};

/// Turns a stream's output into numbered SSE events (ids 1, 2, 3…).
#[derive(Debug)]
pub struct Encoder {
    format: Format,
    next_id: u64,
    frame: Frame,
    /// Per stream: the last raw event ended with CR, so a leading LF is the
    /// second half of a CRLF, not an empty line.
    after_cr: [bool; 2],
    /// JSON output is only measured (see [`Encoder::set_measuring`]).
    measuring: bool,
    /// The next event's place in a stream of many jobs (see
    /// [`Encoder::tag_next`]): used once.
    tag: Option<Tag>,
}

/// An event of one job on a stream of many (contract §11.2).
#[derive(Debug, Clone)]
struct Tag {
    /// The job's [`JobTag`] bytes, shared with it.
    job: Rc<[u8]>,
    seq: u64,
    global: u64,
}

impl Encoder {
    /// A new encoder whose first event has id 1.
    pub fn new(format: Format) -> Encoder {
        Encoder {
            format,
            next_id: 1,
            frame: Frame::default(),
            after_cr: [false; 2],
            measuring: false,
            tag: None,
        }
    }

    /// With `on`, JSON output events get their ids and streams but no bytes,
    /// and a length that is an upper bound, not exact (the text is encoded
    /// only when the bound is over [`MAX_FRAME`], to cut it exactly as a
    /// full encoding would). For a sink that keeps the text, not the frame:
    /// a published job's log, whose viewers encode each event themselves.
    pub fn set_measuring(&mut self, on: bool) {
        self.measuring = on;
    }

    /// The format this encoder writes.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Gives back a large scratch buffer; called while the stream waits on
    /// a slow client, so a paused stream holds only what it must. Returns
    /// the bytes given back.
    pub fn release_scratch(&mut self) -> usize {
        let capacity = self.frame.scratch.capacity();
        if capacity <= KEEP_SCRATCH {
            return 0;
        }
        self.frame.scratch = Vec::new();
        capacity
    }

    /// What an event changes in the encoder, to undo an encoding.
    pub(super) fn checkpoint(&self) -> (u64, [bool; 2]) {
        (self.next_id, self.after_cr)
    }

    pub(super) fn restore(&mut self, (next_id, after_cr): (u64, [bool; 2])) {
        self.next_id = next_id;
        self.after_cr = after_cr;
    }

    /// The id the next event will carry.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    fn start(&mut self, name: EventName, event: &'static [u8]) {
        let id = match &self.tag {
            Some(tag) => tag.global,
            None => {
                self.next_id += 1;
                self.next_id - 1
            }
        };
        self.start_at(name, event, id);
    }

    /// Out of line, as when `output_tagged` called it too: inlined into
    /// `start`, its only caller now, it took `start` out of `output`
    /// (callgrind: about 10 instructions per event more on a job's own
    /// stream; `Frame::tag` likewise).
    #[inline(never)]
    fn start_at(&mut self, name: EventName, event: &'static [u8], id: u64) {
        self.frame.clear();
        self.frame.name = name;
        self.frame.lit(b"id: ");
        self.frame.number(id);
        self.frame.id = id;
        self.frame.stream = None;
        self.frame.lit(event);
    }

    /// Tags the next event (JSON only) for a stream that carries many jobs
    /// (contract §11.2): its `id:` is `global` and its JSON object gets
    /// `"job":"JOB","seq":SEQ` (`job`, then its own id in the job) after
    /// its type.
    pub fn tag_next(&mut self, job: &JobTag, seq: u64, global: u64) {
        self.tag = Some(Tag {
            job: job.shared(),
            seq,
            global,
        });
    }

    /// Writes the tag of the next event (if any) inside its JSON object,
    /// after the type, and uses it up: `"job":"ID","seq":SEQ,` in one
    /// piece (four copies were about 100 instructions per event of a
    /// multiplexed stream).
    fn put_tag(&mut self) {
        if let Some(tag) = self.tag.take() {
            self.frame.tag(&tag.job, tag.seq);
        }
    }

    /// Makes `id` the id of the next event: a viewer of a job encodes the
    /// job's events with the ids the job gave them.
    pub fn set_next_id(&mut self, id: u64) {
        self.next_id = id;
    }

    /// The `gap` event of a job stream (contract §7.3): events `from` to
    /// `to` were not kept; its id is `to`.
    pub fn gap(&mut self, from: u64, to: u64) -> &Frame {
        self.next_id = to;
        self.start(EventName::Gap, b"\nevent: gap\ndata: {\"type\":\"gap\",");
        self.put_tag();
        self.frame.lit(b"\"from\":");
        self.frame.number(from);
        self.frame.lit(b",\"to\":");
        self.frame.number(to);
        self.frame.lit(b"}\n\n");
        self.frame.seal();
        &self.frame
    }

    /// Encodes `text` from `stream` as one event. Bytes that are not UTF-8
    /// become U+FFFD, including an unfinished character at the end (callers
    /// cut text at character boundaries unless the pipe has ended). The
    /// frame may be empty (see [`Frame::is_empty`]); then no id was used.
    pub fn output(&mut self, stream: Stream, text: &[u8]) -> &Frame {
        match self.format {
            Format::Json => self.json_output(stream, text),
            Format::Raw => self.raw_output(stream, text),
        }
        &self.frame
    }

    /// [`Encoder::tag_next`] and [`Encoder::output`] in one, for the
    /// events of a stream of many jobs (the tag is written from `job`
    /// itself, not kept: about 50 instructions per event less). JSON only.
    pub fn output_tagged(&mut self, stream: Stream, text: &[u8], job: &JobTag, seq: u64, global: u64) -> &Frame {
        if self.format != Format::Json || self.measuring {
            self.tag_next(job, seq, global);
            return self.output(stream, text);
        }
        self.tag = None;
        self.frame.clear();
        self.frame.name = stream.into();
        self.frame.id = global;
        self.frame.tagged_head(global, json_head(stream), job, seq);
        // The text as an untagged event's (`json_text` shared, as before).
        self.json_text(stream, text);
        &self.frame
    }

    fn json_output(&mut self, stream: Stream, text: &[u8]) {
        if self.measuring {
            if let Some(bound) = json_bound(text) {
                self.frame.clear();
                self.frame.name = stream.into();
                self.frame.id = self.next_id;
                self.next_id += 1;
                self.frame.stream = Some(stream);
                self.frame.len = bound;
                return;
            }
        }
        self.start(stream.into(), json_head(stream));
        self.put_tag();
        self.json_text(stream, text);
    }

    /// The rest of a JSON output event: its text, and the end.
    fn json_text(&mut self, stream: Stream, text: &[u8]) {
        self.frame.lit(b"\"out\":\"");
        self.frame.stream = Some(stream);
        for_each_utf8_segment(text, &mut self.frame, push_json_escaped);
        self.frame.lit(b"\"}\n\n");
        self.frame.seal();
    }

    fn raw_output(&mut self, stream: Stream, text: &[u8]) {
        let after_cr = &mut self.after_cr[stream.index()];
        let mut skip = 0;
        if *after_cr && text.first() == Some(&b'\n') {
            skip = 1;
        }
        *after_cr = text.last() == Some(&b'\r');
        if skip == text.len() {
            self.frame.clear();
            return;
        }
        self.start(
            stream.into(),
            match stream {
                Stream::Stdout => b"\nevent: stdout\ndata: ",
                Stream::Stderr => b"\nevent: stderr\ndata: ",
            },
        );
        self.frame.stream = Some(stream);
        let mut state = RawLines {
            base: skip,
            pending_cr: false,
            line_open: true,
        };
        for_each_utf8_segment(&text[skip..], &mut self.frame, |frame, seg, off| {
            state.push(frame, seg, off)
        });
        self.frame.lit(b"\n\n");
        self.frame.seal();
    }

    /// The `err` event: the command could not start. The stream ends after it.
    pub fn error(&mut self, message: &str) -> &Frame {
        self.start(EventName::Err, b"\nevent: err\ndata: {\"type\":\"error\",");
        self.put_tag();
        self.frame.lit(b"\"out\":\"");
        let mut escaped = String::with_capacity(message.len() + 8);
        escape_json_into(&mut escaped, message);
        self.frame.scratch_str(&escaped);
        self.frame.lit(b"\"}\n\n");
        self.frame.seal();
        &self.frame
    }

    /// The `exit` event, the last of a stream.
    pub fn exit(&mut self, exit: &Exit) -> &Frame {
        self.start(EventName::Exit, b"\nevent: exit\ndata: ");
        let json = exit.json();
        match (self.tag.is_some(), json.strip_prefix("{\"type\":\"exit\",")) {
            (true, Some(rest)) => {
                self.frame.lit(b"{\"type\":\"exit\",");
                self.put_tag();
                self.frame.scratch_str(rest);
            }
            _ => self.frame.scratch_str(&json),
        }
        self.frame.lit(b"\n\n");
        self.frame.seal();
        &self.frame
    }
}

/// What a JSON output event of `stream` says after its `id:` line, up to
/// its object's first member.
fn json_head(stream: Stream) -> &'static [u8; JSON_HEAD] {
    match stream {
        Stream::Stdout => b"\nevent: stdout\ndata: {\"type\":\"stdout\",",
        Stream::Stderr => b"\nevent: stderr\ndata: {\"type\":\"stderr\",",
    }
}
