//! One client socket: what phase it is in, the head bytes received so far,
//! and the response bytes the socket has not taken yet.
//!
//! A connection writes frames straight from where they lie with `writev`;
//! only what the socket refuses is copied, into `pending`. It knows requests
//! and bytes, not commands: the server starts and stops jobs.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::http::request::{self, Head, HttpError, Parsed};
use crate::http::response::{write_stream_head, HEARTBEAT_CHUNK, LAST_CHUNK};
use crate::job::Sink;
use crate::metrics::Sent;
use crate::sse::{Encoder, Frame, HEARTBEAT};
use crate::timer::Deadline;

/// `writev` takes at most this many slices (Linux's `IOV_MAX`).
const MAX_SLICES: usize = 1024;

/// A kept-alive connection frees buffers larger than this once they are
/// empty, so thousands of idle connections cost little.
const KEEP_CAPACITY: usize = 16 * 1024;

/// A request head must be complete this long after it began (contract §5).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// An idle kept-alive connection is closed (silently) after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// After our side closes, how long we keep reading (and dropping) what the
/// client still sends before we close for good.
pub const LINGER: Duration = Duration::from_secs(2);

/// The poll token kind of a client socket (low bits; see `job::token`).
pub const TOKEN_CONN: usize = 1;

/// The poll token of connection `index`.
pub fn token(index: usize) -> Token {
    Token(index << crate::job::TOKEN_KIND_BITS | TOKEN_CONN)
}

/// What happens once a response is fully written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Wait for the next request on the same connection.
    KeepAlive,
    /// Close the connection.
    Close,
}

/// What a client connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A request head is arriving; refused past its size limit or after 10 s.
    /// `idle` while not one byte of it has come (between keep-alive requests).
    ReadingHead {
        /// When the wait for this head began.
        since: Instant,
        /// No byte of this request has arrived yet.
        idle: bool,
    },
    /// A request's body is arriving (only `POST /jobs/ID/input` takes one,
    /// contract §10.2); the server holds what it has of it.
    ReadingBody,
    /// Watching a job; its events go out as they are encoded.
    Streaming {
        /// The job's index in the job table.
        job: usize,
    },
    /// Watching a published job: pulling events from its record's log.
    Watching {
        /// The record's index in the server's record table.
        record: usize,
    },
    /// The response is complete; flush what is unsent, then keep alive or close.
    Draining {
        /// What follows the flush.
        then: After,
    },
    /// Our side is shut; reading (and dropping) until the client closes, so
    /// unread request bytes do not turn the close into a reset that destroys
    /// the reply before the client reads it.
    Lingering,
    /// Nothing more to read or write; the server drops it this turn.
    Closed,
}

/// A viewer's place in a published job (contract §7.3).
#[derive(Debug)]
pub struct Watch {
    /// The id of the next event to send.
    pub next: u64,
    /// Encodes the job's events in this viewer's format, with the job's ids.
    pub encoder: Encoder,
}

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    sock: TcpStream,
    /// The client's address, for the access log.
    pub peer: SocketAddr,
    /// What it is doing.
    pub phase: Phase,
    /// Request bytes received and not yet parsed (at most `request::MAX_HEAD`).
    inbuf: Vec<u8>,
    /// Response bytes the socket has not taken; `pending[sent..]` is unsent.
    pending: Vec<u8>,
    sent: usize,
    /// Read readiness not yet drained to `WouldBlock`.
    pub readable: bool,
    /// The socket took everything last time (or said it has room again).
    pub writable: bool,
    /// The client shut its side (read returned 0).
    pub read_closed: bool,
    /// A write or read failed: the connection is beyond saving.
    pub failed: bool,
    /// The client's FIN during a stream was answered with a heartbeat, to
    /// tell a half-close from a close.
    pub probed: bool,
    /// The current stream uses chunked framing.
    chunked: bool,
    /// What follows the current response.
    after: After,
    /// Head timeout, or end of lingering.
    pub deadline: Deadline,
    /// Heartbeat while streaming.
    pub heartbeat: Deadline,
    /// When bytes were last handed to the socket (heartbeat measures from it).
    pub last_write: Instant,
    /// Counts against `--max-conns` (a refused extra connection does not).
    pub counted: bool,
    /// Requests completed on this connection.
    pub requests: u64,
    /// Its place in the job it watches (`Phase::Watching`).
    pub watch: Option<Watch>,
    /// What it wrote, for `/metrics`; the server adds it up.
    counts: Sent,
}

impl Conn {
    /// A connection just accepted.
    pub fn new(sock: TcpStream, peer: SocketAddr, now: Instant, counted: bool) -> Conn {
        Conn {
            sock,
            peer,
            phase: Phase::ReadingHead {
                since: now,
                idle: false,
            },
            inbuf: Vec::new(),
            pending: Vec::new(),
            sent: 0,
            readable: true,
            writable: true,
            read_closed: false,
            failed: false,
            probed: false,
            chunked: false,
            after: After::Close,
            deadline: Deadline::default(),
            heartbeat: Deadline::default(),
            last_write: now,
            counted,
            requests: 0,
            watch: None,
            counts: Sent::default(),
        }
    }

    /// Registers the socket for both directions, once: readiness is tracked
    /// in flags rather than by re-registering.
    pub fn register(&mut self, registry: &Registry, index: usize) -> io::Result<()> {
        registry.register(&mut self.sock, token(index), Interest::READABLE | Interest::WRITABLE)
    }

    /// Removes the socket from the poll (it closes when the conn is dropped).
    pub fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.sock);
    }

    /// What it wrote so far (bytes, events, pauses).
    pub fn counts(&self) -> &Sent {
        &self.counts
    }

    /// Bytes queued and unsent.
    pub fn pending_len(&self) -> usize {
        self.pending.len() - self.sent
    }

    /// True if reading now is useful: the head buffer has room, or the phase
    /// only drains the socket.
    pub fn wants_read(&self) -> bool {
        self.readable
            && !self.read_closed
            && !self.failed
            && (self.phase == Phase::Lingering || self.inbuf.len() < request::MAX_HEAD)
    }

    /// Reads what the socket has (up to the head limit) into the head buffer;
    /// sets `read_closed` at end of stream and `failed` on a reset.
    pub fn read_some(&mut self, buf: &mut [u8]) {
        while self.wants_read() {
            let room = if self.phase == Phase::Lingering {
                buf.len()
            } else {
                buf.len().min(request::MAX_HEAD + 1 - self.inbuf.len())
            };
            match self.sock.read(&mut buf[..room]) {
                Ok(0) => self.read_closed = true,
                Ok(n) => {
                    if self.phase != Phase::Lingering {
                        self.inbuf.extend_from_slice(&buf[..n]);
                        if let Phase::ReadingHead { idle, .. } = &mut self.phase {
                            *idle = false;
                        }
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.failed = true;
                    self.read_closed = true;
                }
            }
        }
    }

    /// Parses the head buffer: `Ok(None)` until a whole head is there.
    pub fn take_head(&mut self) -> Result<Option<Head>, HttpError> {
        if self.inbuf.is_empty() {
            return Ok(None);
        }
        match request::parse(&self.inbuf)? {
            Parsed::Partial => Ok(None),
            Parsed::Complete(head, len) => {
                self.inbuf.drain(..len);
                if self.inbuf.is_empty() {
                    // Most connections send one request, then stream for long:
                    // hold no buffer meanwhile.
                    self.inbuf = Vec::new();
                }
                Ok(Some(head))
            }
        }
    }

    /// Bytes received and not yet used: a body's, then a next request's.
    pub fn input(&self) -> &[u8] {
        &self.inbuf
    }

    /// Drops the first `n` received bytes (a body's, now used).
    pub fn consume_input(&mut self, n: usize) {
        self.inbuf.drain(..n.min(self.inbuf.len()));
        if self.inbuf.is_empty() {
            self.inbuf = Vec::new();
        }
    }

    /// True if bytes of a next request are already here (pipelining).
    pub fn has_input(&self) -> bool {
        !self.inbuf.is_empty()
    }

    /// Starts an SSE response to `head` (contract §3.1): chunked for
    /// HTTP/1.1, and kept alive after it when the client and `reuse` allow;
    /// close-delimited for HTTP/1.0.
    pub fn begin_stream(&mut self, head: &Head, reuse: bool, headers: &[(&'static str, String)], now: Instant) {
        let chunked = head.minor_version == 1;
        let after = if chunked && head.keep_alive && reuse {
            After::KeepAlive
        } else {
            After::Close
        };
        let mut bytes = Vec::with_capacity(256);
        write_stream_head(&mut bytes, chunked, after == After::Close, headers);
        self.begin_response(chunked, after);
        self.queue(&bytes, now);
    }

    /// Sets the framing of the response about to be written.
    pub fn begin_response(&mut self, chunked: bool, after: After) {
        self.chunked = chunked;
        self.after = after;
    }

    /// What follows the current response.
    pub fn after(&self) -> After {
        self.after
    }

    /// Writes `bytes` now if the socket takes them, queueing the rest.
    pub fn queue(&mut self, bytes: &[u8], now: Instant) {
        self.send_parts(std::iter::once(bytes), now);
    }

    fn send_parts<'a, I>(&mut self, parts: I, now: Instant)
    where
        I: Iterator<Item = &'a [u8]> + Clone,
    {
        if self.failed {
            return;
        }
        let written = if self.pending_len() == 0 && self.writable {
            match write_parts(&mut self.sock, parts.clone()) {
                Ok(Written::All(n)) => {
                    self.counts.bytes += n as u64;
                    self.last_write = now;
                    return;
                }
                Ok(Written::Part(n)) => {
                    self.writable = false;
                    n
                }
                Err(_) => {
                    self.failed = true;
                    return;
                }
            }
        } else {
            0
        };
        if written > 0 {
            self.counts.bytes += written as u64;
            self.last_write = now;
        }
        let was_empty = self.pending_len() == 0;
        // Queue what the socket did not take: these bytes live in the shared
        // read buffer or a pipe's held line, which the next event reuses.
        let mut skip = written;
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            self.pending.extend_from_slice(&part[skip..]);
            skip = 0;
        }
        if was_empty && self.pending_len() > 0 && matches!(self.phase, Phase::Streaming { .. } | Phase::Watching { .. })
        {
            // The stream now waits on this socket (see `Sent::pauses`).
            self.counts.pauses += 1;
        }
    }

    /// Writes queued bytes while the socket takes them. Returns true when
    /// nothing is left queued.
    pub fn flush(&mut self, now: Instant) -> bool {
        while self.pending_len() > 0 && self.writable && !self.failed {
            match self.sock.write(&self.pending[self.sent..]) {
                Ok(0) => self.failed = true,
                Ok(n) => {
                    self.sent += n;
                    self.counts.bytes += n as u64;
                    self.last_write = now;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.failed = true,
            }
        }
        if self.pending_len() == 0 {
            self.pending.clear();
            self.sent = 0;
            if self.pending.capacity() > KEEP_CAPACITY {
                self.pending = Vec::new();
            }
            return true;
        }
        false
    }

    /// Ends the current stream: the last chunk, then drain and keep alive or
    /// close.
    pub fn end_stream(&mut self, now: Instant) {
        if self.chunked {
            self.queue(LAST_CHUNK, now);
        }
        self.phase = Phase::Draining { then: self.after };
    }

    /// Shuts our side: the client sees the end of a close-delimited body.
    pub fn shutdown_write(&mut self) {
        let _ = self.sock.shutdown(Shutdown::Write);
    }

    /// The response is fully written: with `keep_alive`, wait for the next
    /// request (at once if it is already buffered); else shut our side and
    /// linger, so unread request bytes do not turn the close into a reset.
    /// Returns how long the new phase may last (the caller arms the timer).
    pub fn response_done(&mut self, keep_alive: bool, now: Instant) -> Duration {
        self.heartbeat.clear();
        self.deadline.clear();
        if keep_alive {
            let waiting = self.has_input();
            self.phase = Phase::ReadingHead {
                since: now,
                idle: !waiting,
            };
            if waiting {
                HEAD_TIMEOUT
            } else {
                IDLE_TIMEOUT
            }
        } else {
            self.shutdown_write();
            self.phase = Phase::Lingering;
            LINGER
        }
    }

    /// A FIN during a stream: the client left, or only half-closed its side
    /// (nc, a script) and still reads. The first time, asks at once with a
    /// heartbeat: a closed socket answers it with a reset, which ends the
    /// stream within a round trip; a half-closed one reads a ping. Returns
    /// true when it did (the caller keeps probing every `FIN_PROBE`).
    pub fn probe_fin(&mut self, now: Instant) -> bool {
        if !self.read_closed || self.probed {
            return false;
        }
        log::debug!("{}: client sent FIN during its stream; probing", self.peer);
        self.probed = true;
        if self.pending_len() == 0 {
            self.heartbeat_now(now);
        }
        true
    }

    /// Queues one heartbeat comment in the stream's framing.
    pub fn heartbeat_now(&mut self, now: Instant) {
        self.queue_block(HEARTBEAT, HEARTBEAT_CHUNK, now);
        self.last_write = now;
    }

    /// Queues a fixed SSE block: `plain`, or `chunk` (the same block wrapped
    /// in one chunk) when the stream is chunked.
    pub fn queue_block(&mut self, plain: &[u8], chunk: &[u8], now: Instant) {
        let block = if self.chunked { chunk } else { plain };
        self.queue(block, now);
    }

    /// The framing of the current stream.
    pub fn is_chunked(&self) -> bool {
        self.chunked
    }
}

impl Sink for Conn {
    fn send(&mut self, frame: &Frame, text: &[u8]) {
        self.send_parts(frame.parts(text, self.chunked), Instant::now());
        if !self.failed && !frame.is_empty() {
            self.counts.events[frame.name().index()] += 1;
        }
    }

    fn ready(&self) -> bool {
        !self.failed && self.pending_len() == 0
    }
}

/// How much of a vectored write the socket took.
enum Written {
    /// All of it: this many bytes.
    All(usize),
    /// This many bytes, and the socket is full.
    Part(usize),
}

/// Writes `parts` with as few `writev` calls as the slice limit allows,
/// stopping when the socket is full.
fn write_parts<'a, I>(sock: &mut TcpStream, mut parts: I) -> io::Result<Written>
where
    I: Iterator<Item = &'a [u8]>,
{
    let mut slices = [IoSlice::new(&[]); MAX_SLICES];
    let mut written = 0;
    loop {
        let mut count = 0;
        let mut batch = 0;
        for part in parts.by_ref() {
            slices[count] = IoSlice::new(part);
            batch += part.len();
            count += 1;
            if count == MAX_SLICES {
                break;
            }
        }
        if count == 0 {
            return Ok(Written::All(written));
        }
        let n = loop {
            match sock.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => break n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(Written::Part(written)),
                Err(err) => return Err(err),
            }
        };
        written += n;
        if n < batch {
            return Ok(Written::Part(written));
        }
    }
}
