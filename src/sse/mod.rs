//! The SSE encoder: child output in, event frames out, as pieces that point at
//! the bytes they encode.
//!
//! A [`Frame`] is a list of pieces: long runs of the child's own bytes, where
//! they lie (in the loop's read buffer or in a pipe's held partial line), and
//! a reused scratch buffer holding everything else: the id, field names, JSON
//! escapes, U+FFFD, and runs too short to be worth a `writev` slice of their
//! own ([`POINT_AT`]). The connection turns the pieces into `IoSlice`s, so a
//! long line that needs no escaping is never copied. [`PipeText`] decides
//! where events end: whole lines, a partial line only when told to flush it.
//!
//! This module does no I/O and reads no clock; the job decides when to flush.

mod cut;
mod encoder;
mod frame;
mod json;
mod names;
mod raw;
pub(crate) mod scan;
mod tag;
mod utf8;

pub use cut::{last_line_end, Emit, PipeText, MAX_HELD};
pub use encoder::Encoder;
pub use frame::{chunk_line, Frame, POINT_AT};
pub use json::escape_json_into;
pub use names::{EventName, Exit, Format, Stream};
pub use tag::JobTag;
pub use utf8::char_boundary;

/// Where the text allows, an event's frame stays under about this size:
/// text that escapes heavily (NUL bytes become `\u0000`, six times their
/// size; empty raw lines seven) is sent as several smaller events, so the
/// bytes a stalled client leaves queued stay bounded (contract §3.7). Plain
/// text (a 64 KiB read of it encodes to about 66 KiB) stays one event.
pub const MAX_FRAME: usize = 80 * 1024;

/// The first line of a job stream (contract §7.3): EventSource waits a second
/// before it reconnects and resumes.
pub const RETRY: &[u8] = b"retry: 1000\n\n";

/// The heartbeat comment (contract §3.5), a complete SSE block on its own.
pub const HEARTBEAT: &[u8] = b": ping\n\n";

#[cfg(test)]
mod tests;
