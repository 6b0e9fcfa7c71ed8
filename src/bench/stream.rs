//! One bench stream: connect, send the request, read the response through
//! the client (HTTP → SSE → payload), count what arrives into [`Totals`].

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::stats::{Failure, Totals};
use crate::client::payload::{self, Kind};
use crate::client::sse::{End, Item, SseParser};
use crate::client::ResponseReader;

/// Bound on one SSE line and on one event's data, per stream: ssecommander
/// sends at most 64 KiB of text per event (under 400 KiB as JSON); a
/// tutorial server that sends a whole 64 KiB pipe read as one event stays
/// well under it too.
const MAX_EVENT: usize = 4 << 20;

/// Reads per stream per turn before the loop serves the others (then the
/// stream is revisited without waiting for a new readiness edge).
pub const READS_PER_TURN: usize = 16;

/// The longest line that can be a timestamp: `u64::MAX` has 20 digits.
const MAX_STAMP: usize = 20;

/// Where a step left the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Waiting for readiness.
    Wait,
    /// Bytes may still be waiting: revisit before polling again.
    Again,
    /// The stream ended (counted in the totals); drop it.
    Done,
}

/// What an event sets on its stream.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    exit: bool,
    exit_not_zero: bool,
    err: bool,
}

/// One stream.
pub struct Stream {
    sock: TcpStream,
    sent: usize,
    started: Instant,
    got_byte: bool,
    reader: ResponseReader,
    sse: SseParser,
    seen: Seen,
    /// The unfinished last line of output so far, while it may still be a
    /// timestamp (at most [`MAX_STAMP`] bytes).
    carry: Vec<u8>,
    /// The unfinished line is longer than a timestamp.
    carry_long: bool,
}

impl Stream {
    /// Starts a non-blocking connect to `addr` and registers it as `token`.
    pub fn connect(addr: SocketAddr, registry: &Registry, token: Token) -> io::Result<Stream> {
        let mut sock = TcpStream::connect(addr)?;
        registry.register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)?;
        // Latency-bound streams: do not hold our tiny request back.
        let _ = sock.set_nodelay(true);
        Ok(Stream {
            sock,
            sent: 0,
            started: Instant::now(),
            got_byte: false,
            reader: ResponseReader::new(false),
            sse: SseParser::with_max(MAX_EVENT),
            seen: Seen::default(),
            carry: Vec::with_capacity(MAX_STAMP),
            carry_long: false,
        })
    }

    /// Drops the socket from the poll; the stream is closed when dropped.
    pub fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.sock);
    }

    /// Acts on readiness: sends the rest of `request` when writable, reads
    /// (up to [`READS_PER_TURN`] times into `buf`) when readable. An ended
    /// stream is counted in `totals` (completed or failed).
    pub fn step(
        &mut self,
        writable: bool,
        readable: bool,
        request: &[u8],
        buf: &mut [u8],
        scratch: &mut Vec<u8>,
        totals: &mut Totals,
    ) -> Step {
        if writable && self.sent < request.len() {
            if let Err(why) = self.write(request, totals) {
                totals.fail(why);
                return Step::Done;
            }
        }
        if !readable {
            return Step::Wait;
        }
        for _ in 0..READS_PER_TURN {
            let n = match self.sock.read(buf) {
                Ok(0) => return self.on_close(totals),
                Ok(n) => n,
                Err(err) if err.kind() == ErrorKind::WouldBlock => return Step::Wait,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == ErrorKind::NotConnected => return Step::Wait,
                Err(err) => {
                    let why = if self.got_byte { Failure::Read } else { Failure::Connect };
                    if why == Failure::Connect {
                        totals.note_connect_error(&err);
                    }
                    totals.fail(why);
                    return Step::Done;
                }
            };
            if let Some(done) = self.on_bytes(&buf[..n], scratch, totals) {
                return done;
            }
        }
        Step::Again
    }

    fn write(&mut self, request: &[u8], totals: &mut Totals) -> Result<(), Failure> {
        match self.sock.take_error() {
            Ok(None) => {}
            Ok(Some(err)) | Err(err) => {
                totals.note_connect_error(&err);
                return Err(Failure::Connect);
            }
        }
        if self.sock.peer_addr().is_err() {
            // Still connecting: a later writable event says when.
            return Ok(());
        }
        while self.sent < request.len() {
            match self.sock.write(&request[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(Failure::Write),
            }
        }
        Ok(())
    }

    /// Feeds one read; `Some` when the stream ended.
    fn on_bytes(&mut self, bytes: &[u8], scratch: &mut Vec<u8>, totals: &mut Totals) -> Option<Step> {
        let arrived = crate::sys::monotonic_ns();
        totals.wire_bytes += bytes.len() as u64;
        if !self.got_byte {
            self.got_byte = true;
            totals.first_byte.record(self.started.elapsed().as_nanos() as u64);
        }
        let fed = if self.reader.head().is_some() {
            let mut sse_err = None;
            let Stream {
                reader,
                sse,
                seen,
                carry,
                carry_long,
                ..
            } = self;
            let res = reader.feed(bytes, &mut |body: &[u8]| {
                if sse_err.is_none() {
                    sse_err = feed_sse(sse, body, arrived, seen, carry, carry_long, scratch, totals).err();
                }
            });
            match (res, sse_err) {
                (Err(_), _) => Err(Failure::BadHttp),
                (_, Some(why)) => Err(why),
                (Ok(_), None) => Ok(()),
            }
        } else {
            self.on_first_bytes(bytes, arrived, scratch, totals)
        };
        if let Err(why) = fed {
            totals.fail(why);
            return Some(Step::Done);
        }
        self.reader.is_done().then(|| self.on_end(totals))
    }

    /// Bytes while the head is incomplete: the status decides whether the
    /// body is an event stream at all.
    fn on_first_bytes(
        &mut self,
        bytes: &[u8],
        arrived: u64,
        scratch: &mut Vec<u8>,
        totals: &mut Totals,
    ) -> Result<(), Failure> {
        let mut body = Vec::new();
        self.reader
            .feed(bytes, &mut |b: &[u8]| body.extend_from_slice(b))
            .map_err(|_| Failure::BadHttp)?;
        match self.reader.head().map(|h| h.status) {
            None => Ok(()),
            Some(200) => {
                let Stream {
                    sse,
                    seen,
                    carry,
                    carry_long,
                    ..
                } = self;
                feed_sse(sse, &body, arrived, seen, carry, carry_long, scratch, totals)
            }
            Some(status) => Err(Failure::Status(status)),
        }
    }

    /// The response ended: what the events said decides the outcome.
    fn on_end(&mut self, totals: &mut Totals) -> Step {
        if self.sse.finish() != End::Clean {
            totals.unfinished_events += 1;
        }
        if self.seen.err {
            totals.fail(Failure::ErrEvent);
        } else if !self.seen.exit {
            totals.fail(Failure::NoExit);
        } else if self.seen.exit_not_zero {
            totals.fail(Failure::ExitNotZero);
        } else {
            totals.completed += 1;
        }
        Step::Done
    }

    fn on_close(&mut self, totals: &mut Totals) -> Step {
        match self.reader.finish() {
            Ok(()) => self.on_end(totals),
            Err(_) if self.reader.head().is_none() => {
                totals.fail(Failure::ClosedBeforeHead);
                Step::Done
            }
            Err(_) => {
                totals.fail(Failure::ClosedMidBody);
                Step::Done
            }
        }
    }
}

/// Body bytes → SSE → counted events.
#[allow(clippy::too_many_arguments)]
fn feed_sse(
    sse: &mut SseParser,
    body: &[u8],
    arrived: u64,
    seen: &mut Seen,
    carry: &mut Vec<u8>,
    carry_long: &mut bool,
    scratch: &mut Vec<u8>,
    totals: &mut Totals,
) -> Result<(), Failure> {
    sse.feed(body, &mut |item: Item<'_>| match item {
        Item::Event(ev) => {
            totals.events += 1;
            match Kind::of(ev.name) {
                kind if kind.is_output() => {
                    totals.output_events += 1;
                    scratch.clear();
                    payload::output(ev.data, scratch);
                    totals.payload_bytes += scratch.len() as u64;
                    count_lines(scratch, arrived, carry, carry_long, totals);
                }
                Kind::Exit => {
                    seen.exit = true;
                    if let Some((code, signal, _)) = payload::exit_status(ev.data) {
                        seen.exit_not_zero = code != Some(0) || signal.is_some();
                    }
                }
                Kind::Err => seen.err = true,
                _ => {}
            }
        }
        Item::Comment(_) => totals.comments += 1,
        _ => {}
    })
    .map_err(|_| Failure::BadSse)
}

/// Counts the lines of `out` and times those that are `CLOCK_MONOTONIC`
/// nanosecond stamps; a line split across events is judged when its end
/// arrives (so its latency is that of its last byte).
fn count_lines(out: &[u8], arrived: u64, carry: &mut Vec<u8>, carry_long: &mut bool, totals: &mut Totals) {
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', out) {
        totals.lines += 1;
        let piece = &out[start..end];
        start = end + 1;
        if carry.is_empty() && !*carry_long {
            time_line(piece, arrived, totals);
        } else if !*carry_long && carry.len() + piece.len() <= MAX_STAMP {
            carry.extend_from_slice(piece);
            time_line(carry, arrived, totals);
        }
        carry.clear();
        *carry_long = false;
    }
    let rest = &out[start..];
    if !*carry_long && carry.len() + rest.len() <= MAX_STAMP {
        carry.extend_from_slice(rest);
    } else {
        carry.clear();
        *carry_long = true;
    }
}

fn time_line(line: &[u8], arrived: u64, totals: &mut Totals) {
    if line.is_empty() || line.len() > MAX_STAMP || !line.iter().all(u8::is_ascii_digit) {
        return;
    }
    let Some(stamp) = std::str::from_utf8(line).ok().and_then(|s| s.parse::<u64>().ok()) else {
        return;
    };
    if stamp < totals.stamp_floor {
        return;
    }
    match arrived.checked_sub(stamp) {
        Some(ns) => totals.latency.record(ns),
        None => totals.future_stamps += 1,
    }
}
