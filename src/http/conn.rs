//! One client connection: the HTTP/1 state machine of a socket.
//!
//! The connection owns its rules: when a head is complete or took too long,
//! keep-alive or reply-and-close, lingering after a close, the FIN probe,
//! the heartbeat, a viewer's stall, and the access line. The server tells it
//! what happened (the socket is ready, a deadline fell) and carries out the
//! [`Action`] it answers: route a head, hand a stream events, or close.
//!
//! A connection writes frames straight from where they lie with `writev`;
//! only what the socket refuses is copied, into its outbox. It knows
//! requests and bytes, not commands: the server starts and stops jobs.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, info};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::eventlog::{EventLog, Logged};
use crate::http::body::{BodyError, BodyReader};
use crate::http::request::{self, Head, HttpError, Parsed};
use crate::http::response::{write_stream_head, Reply, HEARTBEAT_CHUNK, LAST_CHUNK, RETRY_CHUNK};
use crate::jobs::Record;
use crate::logsafe;
use crate::metrics::Sent;
use crate::mux::{Item, Mux, What};
use crate::sse::{chunk_line, Encoder, Format, Frame, HEARTBEAT, RETRY};
use crate::table::Table;
use crate::timer::{Deadline, TimerKey, Timers};

/// `writev` takes at most this many slices (Linux's `IOV_MAX`).
const MAX_SLICES: usize = 1024;

/// Slices of a write kept on the stack; a write of more parts (a large
/// frame of many lines) gathers them in a vector, a small cost beside it.
const FEW_SLICES: usize = 16;

/// Parts of a write gathered on the stack before anything else is done
/// with them (a frame is mostly three: chunk line, event, CRLF); a write of
/// more takes the general way (see `Out::parts`).
const FEW_PARTS: usize = 8;

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

/// After a client half-closes during a stream, it is probed (with a
/// heartbeat comment, which a closed socket answers with a reset) at least
/// this often (contract §3.6).
pub const FIN_PROBE: Duration = Duration::from_secs(1);

/// A viewer that takes nothing for this long while it is behind is
/// disconnected (contract §7.3); it can resume.
pub const VIEWER_STALL: Duration = Duration::from_secs(30);

/// The interim answer a client that sent `Expect: 100-continue` waits for
/// before it sends a body.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Events a viewer encodes per pull before others get theirs.
const PULL_STEP: usize = 64;

/// The poll token kind of a client socket (low bits; see `job::token`).
pub const TOKEN_CONN: usize = 1;

/// The poll token of connection `index`.
pub fn token(index: usize) -> Token {
    Token(index << crate::job::TOKEN_KIND_BITS | TOKEN_CONN)
}

/// What the server is to do for a connection.
#[derive(Debug)]
pub enum Action {
    /// Nothing until the socket is ready again or a deadline falls.
    Wait,
    /// A whole request head: route it and begin a response.
    Route(Head),
    /// A head the parser refused, or that never came whole: answer the
    /// error with [`Conn::reject`].
    Reject(HttpError),
    /// A stream with room in its socket: hand it events from its source.
    Pull(Source),
    /// The whole body of the request being answered (`POST /jobs/ID/input`,
    /// contract §10.2): act on it and answer with [`Conn::reply`].
    Body(Vec<u8>),
    /// The body cannot be read (too large, bad chunks): answer the error
    /// and close, as after a bad head.
    RefuseBody(BodyError),
    /// The connection is done (or broken): the server detaches it from its
    /// [`Conn::source`] and drops it.
    Close,
}

/// Where a stream's events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `/run`: the job at this index of the server's job table.
    Run(usize),
    /// A viewer of the published job whose record is at this index.
    Watch(usize),
    /// A viewer of many published jobs on one stream (contract §11).
    Mux,
}

/// What follows a response once it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    KeepAlive,
    Close,
}

/// How a stream's body is framed, and what follows it.
#[derive(Debug, Clone, Copy)]
struct Framing {
    /// HTTP/1.1 chunks (else a close-delimited HTTP/1.0 body).
    chunked: bool,
    then: After,
}

/// A client's FIN during a stream: it left, or only half-closed (nc, a
/// script) and still reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fin {
    NotSeen,
    /// Seen and asked with a heartbeat; probed every [`FIN_PROBE`] since.
    Probing,
}

/// A viewer's place in a published job (contract §7.3).
#[derive(Debug)]
struct Cursor {
    /// The id of the next event to send.
    next: u64,
    /// Encodes the job's events in this viewer's format, with the job's ids.
    encoder: Encoder,
}

/// The feed of a stream.
#[derive(Debug)]
enum Feed {
    /// `/run`: the job pushes nothing; the server pumps it into this stream.
    Run { job: usize },
    /// A published job's viewer.
    Watch {
        record: usize,
        cursor: Cursor,
        /// Let go when behind and taking nothing until then.
        stall: Deadline,
    },
    /// A viewer of many published jobs (contract §11).
    Mux {
        mux: Box<Mux>,
        /// Encodes every job's events, tagged with job, id and global number.
        encoder: Encoder,
        /// The small events of one pull but its last, copied together
        /// (plain SSE, one chunk when written) so they go out in one write
        /// with the last (written from where it lies) however many jobs
        /// they come from.
        batch: Vec<u8>,
        /// As for `Watch`.
        stall: Deadline,
    },
}

/// An open event stream.
#[derive(Debug)]
struct Stream {
    feed: Feed,
    framing: Framing,
    /// `--heartbeat`.
    every: Option<Duration>,
    /// Next heartbeat (or FIN probe).
    beat: Deadline,
    fin: Fin,
}

/// What a client connection is doing.
#[derive(Debug)]
enum Phase {
    /// A request head is arriving; refused past its size limit or after
    /// [`HEAD_TIMEOUT`]. `idle` while not one byte of it has come (between
    /// keep-alive requests: closed silently after [`IDLE_TIMEOUT`]).
    ReadingHead { deadline: Deadline, idle: bool },
    /// A request body is arriving (only `POST /jobs/ID/input` reads one);
    /// it must be whole within [`HEAD_TIMEOUT`], as a head.
    ReadingBody { body: BodyReader, deadline: Deadline },
    /// Sending an event stream.
    Streaming(Box<Stream>),
    /// The response is complete; flush what is unsent, then keep alive or close.
    Draining { then: After },
    /// Our side is shut; reading (and dropping) until the client closes, so
    /// unread request bytes do not turn the close into a reset that destroys
    /// the reply before the client reads it.
    Lingering { until: Deadline },
}

/// The socket's read half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadHalf {
    /// Open; `ready` while readiness is not yet drained to `WouldBlock`.
    Open { ready: bool },
    /// The client shut its side (a read returned 0).
    Ended,
    /// A read failed (a reset): the connection is beyond saving.
    Failed,
}

/// What one poll event said of a connection's socket.
#[derive(Debug, Clone, Copy, Default)]
pub struct Readiness {
    /// Something may be there to read.
    pub readable: bool,
    /// The client shut its side (`EPOLLRDHUP`).
    pub read_closed: bool,
    /// The socket takes writes again.
    pub writable: bool,
    /// A reset, or both directions shut.
    pub error: bool,
}

/// Response bytes the socket has not taken: `bytes[sent..]` is unsent.
#[derive(Debug, Default)]
struct Outbox {
    bytes: Vec<u8>,
    sent: usize,
}

impl Outbox {
    fn len(&self) -> usize {
        self.bytes.len() - self.sent
    }
}

/// The socket's write half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteHalf {
    /// The socket took everything last time, or said it has room again.
    Ready,
    /// The socket is full: wait for it to say it has room.
    Full,
    /// A write failed: the connection is beyond saving.
    Failed,
}

/// The request being answered, for its access line.
#[derive(Debug)]
struct Access {
    method: String,
    path: String,
}

/// What one pull from a job's log did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pulled {
    /// Events sent.
    pub sent: usize,
    /// The viewer has every event of the log and its socket has taken them.
    pub caught_up: bool,
    /// The stream ended (the job's last event went out).
    pub ended: bool,
}

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    sock: TcpStream,
    index: usize,
    peer: SocketAddr,
    phase: Phase,
    /// Request bytes received and not yet parsed (at most `request::MAX_HEAD`).
    inbuf: Vec<u8>,
    read: ReadHalf,
    write: WriteHalf,
    outbox: Outbox,
    /// When bytes were last handed to the socket (heartbeat and stall
    /// measure from it).
    last_write: Instant,
    /// Counts against `--max-conns` (a refused extra connection does not).
    counted: bool,
    /// A poll event said the client shut its side (or the socket failed):
    /// reads go on to the end. Until then a short read means the socket is
    /// empty (an edge-triggered poll announces anything that comes later,
    /// and reports what is unread when it announces), so no read is made
    /// only to hear `EAGAIN`: one system call fewer per request.
    shut_seen: bool,
    /// Requests completed on this connection.
    requests: u64,
    /// The request being answered.
    access: Option<Access>,
    /// The token, masked in access lines.
    token: Option<Rc<str>>,
    /// What it wrote, for `/metrics`; the server adds it up.
    counts: Sent,
}

impl Conn {
    /// A connection just accepted at table `index`: its head must come
    /// within [`HEAD_TIMEOUT`].
    pub fn new(
        sock: TcpStream,
        peer: SocketAddr,
        index: usize,
        counted: bool,
        token: Option<Rc<str>>,
        now: Instant,
        timers: &mut Timers,
    ) -> Conn {
        let mut deadline = Deadline::default();
        deadline.set(now + HEAD_TIMEOUT, TimerKey::Conn(index), timers);
        Conn {
            sock,
            index,
            peer,
            phase: Phase::ReadingHead { deadline, idle: false },
            inbuf: Vec::new(),
            read: ReadHalf::Open { ready: true },
            write: WriteHalf::Ready,
            outbox: Outbox::default(),
            last_write: now,
            counted,
            shut_seen: false,
            requests: 0,
            access: None,
            token,
            counts: Sent::default(),
        }
    }

    /// Registers the socket for both directions, once: readiness is tracked
    /// here rather than by re-registering.
    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        registry.register(
            &mut self.sock,
            token(self.index),
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// True if it counts against `--max-conns`.
    pub fn counted(&self) -> bool {
        self.counted
    }

    /// What it wrote so far (bytes, events, pauses).
    pub fn counts(&self) -> &Sent {
        &self.counts
    }

    /// Bytes queued and unsent.
    pub fn pending_len(&self) -> usize {
        self.outbox.len()
    }

    /// True while it sends an event stream.
    pub fn is_streaming(&self) -> bool {
        matches!(self.phase, Phase::Streaming(_))
    }

    /// True while between requests or lingering: nothing would be lost by
    /// closing it now.
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::ReadingHead { .. } | Phase::Lingering { .. })
    }

    /// Where its stream's events come from, while it streams.
    pub fn source(&self) -> Option<Source> {
        match &self.phase {
            Phase::Streaming(stream) => Some(match stream.feed {
                Feed::Run { job } => Source::Run(job),
                Feed::Watch { record, .. } => Source::Watch(record),
                Feed::Mux { .. } => Source::Mux,
            }),
            _ => None,
        }
    }

    /// The next event id a viewer needs, while it watches a job.
    pub fn cursor(&self) -> Option<u64> {
        match &self.phase {
            Phase::Streaming(stream) => match &stream.feed {
                Feed::Watch { cursor, .. } => Some(cursor.next),
                Feed::Run { .. } | Feed::Mux { .. } => None,
            },
            _ => None,
        }
    }

    /// The next event id this connection needs from the job at `record`,
    /// while it watches that job (alone, or among many).
    pub fn cursor_for(&self, record: usize) -> Option<u64> {
        match &self.phase {
            Phase::Streaming(stream) => match &stream.feed {
                Feed::Watch { cursor, record: r, .. } if *r == record => Some(cursor.next),
                Feed::Mux { mux, .. } => mux.cursor(record),
                _ => None,
            },
            _ => None,
        }
    }

    /// As [`Conn::cursor_for`], the job's cursor looked for first in `slot`
    /// of a multiplexed stream (see [`crate::jobs::Viewer`]).
    #[inline]
    pub fn cursor_at(&self, record: usize, slot: usize) -> Option<u64> {
        match &self.phase {
            Phase::Streaming(stream) => match &stream.feed {
                Feed::Watch { cursor, record: r, .. } if *r == record => Some(cursor.next),
                Feed::Mux { mux, .. } => mux.cursor_at(record, slot),
                _ => None,
            },
            _ => None,
        }
    }

    /// The jobs of a multiplexed stream, while it streams.
    pub fn mux_mut(&mut self) -> Option<&mut Mux> {
        match &mut self.phase {
            Phase::Streaming(stream) => match &mut stream.feed {
                Feed::Mux { mux, .. } => Some(mux),
                _ => None,
            },
            _ => None,
        }
    }

    /// True while the stream takes more without queueing: nothing unsent
    /// and the socket not broken. A job is read only while this holds, so
    /// a slow client slows the command down.
    pub fn has_room(&self) -> bool {
        self.outbox.len() == 0 && !self.is_broken()
    }

    /// True once a read or write failed: the connection is beyond saving.
    pub fn is_broken(&self) -> bool {
        self.read == ReadHalf::Failed || self.write == WriteHalf::Failed
    }

    /// Takes a poll event's readiness. A reset, or both directions shut,
    /// means the client is gone.
    pub fn on_event(&mut self, event: Readiness) {
        let Readiness {
            readable,
            read_closed,
            writable,
            error,
        } = event;
        if readable || read_closed || error {
            if let ReadHalf::Open { ready } = &mut self.read {
                *ready = true;
            }
        }
        // Sticky: the client's FIN is announced once, so from here reads go
        // on to the end (or an error), never stopping at a short one.
        self.shut_seen |= read_closed || error;
        if (writable || error) && self.write == WriteHalf::Full {
            self.write = WriteHalf::Ready;
        }
        if error {
            self.write = WriteHalf::Failed;
        }
    }

    /// Moves the connection as far as the socket allows: flushes, reads,
    /// and says what the server is to do next.
    pub fn advance(&mut self, buf: &mut [u8], now: Instant, timers: &mut Timers) -> Action {
        self.flush(now);
        self.read_some(buf);
        loop {
            if self.is_broken() {
                return Action::Close;
            }
            let again = match &mut self.phase {
                Phase::ReadingHead { .. } => return self.next_head(),
                Phase::ReadingBody { .. } => {
                    // The head buffer's bound stops each read: read on
                    // while the body takes what came.
                    let action = self.next_body();
                    if matches!(action, Action::Wait) && self.wants_read() {
                        self.read_some(buf);
                        continue;
                    }
                    return action;
                }
                Phase::Streaming(stream) => {
                    if self.read == ReadHalf::Ended && stream.fin == Fin::NotSeen {
                        // Ask at once: a closed socket answers the ping with
                        // a reset, which ends the stream within a round trip;
                        // a half-closed one reads it.
                        debug!("{}: client sent FIN during its stream; probing", self.peer);
                        stream.fin = Fin::Probing;
                        stream.beat.clear();
                        stream
                            .beat
                            .set(now + FIN_PROBE, TimerKey::Heartbeat(self.index), timers);
                        if self.outbox.len() == 0 {
                            self.heartbeat_now(now);
                        }
                        continue;
                    }
                    let source = self.source();
                    return match source {
                        Some(source) if self.outbox.len() == 0 => Action::Pull(source),
                        _ => Action::Wait,
                    };
                }
                Phase::Draining { then } => {
                    if self.outbox.len() > 0 {
                        return Action::Wait;
                    }
                    let then = *then;
                    self.response_done(then, now, timers);
                    true
                }
                Phase::Lingering { .. } => {
                    if self.read == ReadHalf::Ended {
                        return Action::Close;
                    }
                    return Action::Wait;
                }
            };
            debug_assert!(again);
        }
    }

    /// A deadline of this connection fell (`TimerKey::Conn`): the head or
    /// idle timeout, a viewer's stall, or the end of lingering.
    pub fn on_deadline(&mut self, buf: &mut [u8], now: Instant, timers: &mut Timers) -> Action {
        let key = TimerKey::Conn(self.index);
        match &mut self.phase {
            Phase::ReadingHead { deadline, idle } => {
                if !deadline.fire(now, key, timers) {
                    return Action::Wait;
                }
                if *idle && self.requests > 0 {
                    return Action::Close;
                }
                // A loop held up (a burst of thousands of spawns) may not
                // have come to this socket's event yet: a head that is
                // already there is served, not refused.
                if let ReadHalf::Open { ready } = &mut self.read {
                    *ready = true;
                }
                match self.advance(buf, now, timers) {
                    Action::Wait => Action::Reject(HttpError::Timeout),
                    action => action,
                }
            }
            Phase::Streaming(stream) => {
                let (Feed::Watch { stall, .. } | Feed::Mux { stall, .. }) = &mut stream.feed else {
                    return Action::Wait;
                };
                if !stall.fire(now, key, timers) {
                    return Action::Wait;
                }
                // Let go only after it has taken nothing for the whole time.
                let quiet_until = self.last_write + VIEWER_STALL;
                if quiet_until > now {
                    stall.set(quiet_until, key, timers);
                    return Action::Wait;
                }
                info!("{}: viewer took nothing for {VIEWER_STALL:?}: disconnected", self.peer);
                Action::Close
            }
            Phase::Lingering { until } => {
                if until.fire(now, key, timers) {
                    Action::Close
                } else {
                    Action::Wait
                }
            }
            Phase::ReadingBody { deadline, .. } => {
                if !deadline.fire(now, key, timers) {
                    return Action::Wait;
                }
                match self.advance(buf, now, timers) {
                    Action::Wait => Action::Reject(HttpError::Timeout),
                    action => action,
                }
            }
            Phase::Draining { .. } => Action::Wait,
        }
    }

    /// The heartbeat deadline fell (`TimerKey::Heartbeat`): a comment goes
    /// out if nothing did for `--heartbeat`, or for [`FIN_PROBE`] after a
    /// FIN (the probe that tells a half-close from a close).
    pub fn on_heartbeat(&mut self, now: Instant, timers: &mut Timers) -> Action {
        let key = TimerKey::Heartbeat(self.index);
        let Phase::Streaming(stream) = &mut self.phase else {
            return Action::Wait;
        };
        let probe = (stream.fin == Fin::Probing).then_some(FIN_PROBE);
        let Some(every) = stream.every.into_iter().chain(probe).min() else {
            return Action::Wait;
        };
        if !stream.beat.fire(now, key, timers) {
            return Action::Wait;
        }
        let due = self.last_write + every;
        let next = if due <= now { now + every } else { due };
        stream.beat.set(next, key, timers);
        if due <= now && self.outbox.len() == 0 {
            self.heartbeat_now(now);
        }
        if self.is_broken() {
            Action::Close
        } else {
            Action::Wait
        }
    }

    /// The server begins shutting down: what is being sent now is the last
    /// response of this connection.
    pub fn on_shutdown(&mut self) {
        match &mut self.phase {
            Phase::Streaming(stream) => {
                stream.framing.then = After::Close;
                if let Feed::Mux { mux, .. } = &mut stream.feed {
                    mux.close();
                }
            }
            Phase::Draining { then } => *then = After::Close,
            Phase::ReadingHead { .. } | Phase::ReadingBody { .. } | Phase::Lingering { .. } => {}
        }
    }

    /// The deadline a wake-up of this connection stands for, if its phase
    /// has one: [`TimerKey::Conn`] (head, idle, stall, linger) or
    /// [`TimerKey::Heartbeat`].
    pub fn deadline_mut(&mut self, key: TimerKey) -> Option<&mut Deadline> {
        match (&mut self.phase, key) {
            (Phase::ReadingHead { deadline, .. }, TimerKey::Conn(_)) => Some(deadline),
            (Phase::ReadingBody { deadline, .. }, TimerKey::Conn(_)) => Some(deadline),
            (Phase::Lingering { until }, TimerKey::Conn(_)) => Some(until),
            (Phase::Streaming(stream), TimerKey::Heartbeat(_)) => Some(&mut stream.beat),
            (Phase::Streaming(stream), TimerKey::Conn(_)) => match &mut stream.feed {
                Feed::Watch { stall, .. } | Feed::Mux { stall, .. } => Some(stall),
                Feed::Run { .. } => None,
            },
            _ => None,
        }
    }

    // ----- responses --------------------------------------------------------

    /// Sends a fixed reply (`head_only` for `HEAD`) with the access line,
    /// `note` after its status; then keep alive or close, as the reply says.
    pub fn reply(&mut self, reply: &Reply, minor: u8, head_only: bool, note: &str, now: Instant) {
        self.log_access(reply.status, note);
        let mut bytes = Vec::with_capacity(256 + reply.body.len());
        reply.write_to(&mut bytes, minor, head_only);
        let then = if reply.close { After::Close } else { After::KeepAlive };
        self.phase = Phase::Draining { then };
        self.queue(&bytes, now);
    }

    /// Begins reading the body `head` announces (the server routed it to
    /// the one route that takes one), at most `limit` bytes: it comes as
    /// [`Action::Body`]. A client that sent `Expect: 100-continue` is told
    /// to go on. `TooLarge` at once for a longer `Content-Length`.
    pub fn begin_body(
        &mut self,
        head: &Head,
        limit: usize,
        now: Instant,
        timers: &mut Timers,
    ) -> Result<(), BodyError> {
        let body = BodyReader::new(head.body, limit)?;
        if head.expect_continue && head.minor_version == 1 && !body.is_done() {
            self.queue(CONTINUE, now);
        }
        let mut deadline = Deadline::default();
        deadline.set(now + HEAD_TIMEOUT, TimerKey::Conn(self.index), timers);
        self.phase = Phase::ReadingBody { body, deadline };
        Ok(())
    }

    /// Answers a head the parser refused, then closes: after a bad head
    /// nobody knows where the next request would start. Returns its status.
    pub fn reject(&mut self, err: HttpError, now: Instant) -> u16 {
        let (status, reason) = err.status();
        self.access = None;
        let reply = Reply::text(status, reason, &err.to_string()).closing();
        self.reply(&reply, 1, false, &format!(" ({err})"), now);
        status
    }

    /// Starts a `/run` stream of job `job` in answer to `head` (contract
    /// §3.1): chunked for HTTP/1.1, kept alive after it when the client
    /// allows; close-delimited for HTTP/1.0.
    pub fn begin_run(
        &mut self,
        head: &Head,
        headers: &[(&'static str, String)],
        job: usize,
        every: Option<Duration>,
        now: Instant,
        timers: &mut Timers,
    ) {
        self.begin_stream(head, true, headers, Feed::Run { job }, every, now, timers);
    }

    /// Starts a stream that only says `err` (a `/run` command that could
    /// not start).
    pub fn begin_failed_run(
        &mut self,
        head: &Head,
        headers: &[(&'static str, String)],
        format: Format,
        message: &str,
        now: Instant,
    ) {
        self.log_access(200, "");
        let framing = stream_framing(head, true);
        self.queue_stream_head(framing, headers, now);
        self.phase = Phase::Draining { then: framing.then };
        let mut encoder = Encoder::new(format);
        let frame = encoder.error(message);
        self.send_parts(frame.parts(b"", framing.chunked), now);
        self.count_event(frame);
        if framing.chunked {
            self.queue(LAST_CHUNK, now);
        }
    }

    /// Starts a viewer of the published job at `record` (contract §7.3):
    /// the stream head, `retry:`, and a `gap` if the events after `after`
    /// are gone from `log`; then the viewer pulls. `reuse`: the connection
    /// may be kept alive after it (not while the server shuts down).
    #[allow(clippy::too_many_arguments)]
    pub fn begin_watch(
        &mut self,
        head: &Head,
        reuse: bool,
        headers: &[(&'static str, String)],
        record: usize,
        log: &EventLog,
        format: Format,
        after: Option<u64>,
        every: Option<Duration>,
        now: Instant,
        timers: &mut Timers,
    ) {
        let cursor = Cursor {
            next: after.map_or(1, |n| n + 1),
            encoder: Encoder::new(format),
        };
        let feed = Feed::Watch {
            record,
            cursor,
            stall: Deadline::default(),
        };
        self.begin_stream(head, reuse, headers, feed, every, now, timers);
        self.queue_block(RETRY, RETRY_CHUNK, now);
        self.send_gap(log, now);
    }

    /// Starts a viewer of many jobs (contract §11): the stream head and
    /// `retry:`; then it pulls ([`Conn::pull_mux`]). The server adds the
    /// jobs to `mux` (before or after).
    #[allow(clippy::too_many_arguments)]
    pub fn begin_mux(
        &mut self,
        head: &Head,
        reuse: bool,
        headers: &[(&'static str, String)],
        mux: Mux,
        every: Option<Duration>,
        now: Instant,
        timers: &mut Timers,
    ) {
        let feed = Feed::Mux {
            mux: Box::new(mux),
            encoder: Encoder::new(Format::Json),
            batch: Vec::new(),
            stall: Deadline::default(),
        };
        self.begin_stream(head, reuse, headers, feed, every, now, timers);
        self.queue_block(RETRY, RETRY_CHUNK, now);
    }

    /// Sends a viewer of many jobs their events in global order while its
    /// socket takes them, at most [`PULL_STEP`]; each job's `job` event
    /// before its first. `records` holds the jobs' logs; jobs whose last
    /// event went out are added to `left` (the server detaches them). Ends
    /// the stream once the [`Mux`] has ended.
    pub fn pull_mux(
        &mut self,
        records: &Table<Record>,
        now: Instant,
        timers: &mut Timers,
        left: &mut Vec<usize>,
    ) -> Pulled {
        let mut pulled = Pulled {
            sent: 0,
            caught_up: false,
            ended: false,
        };
        let Phase::Streaming(stream) = &mut self.phase else {
            return pulled;
        };
        let chunked = stream.framing.chunked;
        let Feed::Mux {
            mux,
            encoder,
            batch,
            stall,
        } = &mut stream.feed
        else {
            return pulled;
        };
        let mut out = Out {
            sock: &mut self.sock,
            write: &mut self.write,
            outbox: &mut self.outbox,
            counts: &mut self.counts,
            last_write: &mut self.last_write,
        };
        while pulled.sent < PULL_STEP && out.outbox.len() == 0 && *out.write != WriteHalf::Failed {
            // The job's record comes with its item: looked up once.
            let Some((Item { announce, what, .. }, job)) = mux.next(|record| records.get(record), left) else {
                break;
            };
            if announce {
                push_job_event(batch, job);
            }
            let (frame, text) = match what {
                What::Gap { from, to, global } => {
                    encoder.tag_next(&job.tag, to, global);
                    (encoder.gap(from, to), &[][..])
                }
                What::Event { seq, global } => match job.log.get(seq) {
                    Some(Logged::Output(which, text)) => {
                        (encoder.output_tagged(*which, text, &job.tag, seq, global), &text[..])
                    }
                    Some(Logged::Error(message)) => {
                        encoder.tag_next(&job.tag, seq, global);
                        (encoder.error(message), &[][..])
                    }
                    Some(Logged::Exit(exit)) => {
                        encoder.tag_next(&job.tag, seq, global);
                        (encoder.exit(exit), &[][..])
                    }
                    // The log keeps every event a cursor needs.
                    None => continue,
                },
            };
            pulled.sent += 1;
            if frame.is_empty() {
                continue;
            }
            // The last event ready (most wakes bring one) or a large one
            // is written from where it lies, after what the batch holds:
            // copying it into the batch first cost about a thousand
            // instructions per event (callgrind, 64 jobs of short lines).
            if frame.len() >= BATCH_EVENT_MAX || mux.is_caught_up() {
                out.batch_then(batch, Some((frame, text)), chunked, now);
                batch.clear();
                continue;
            }
            for part in frame.parts(text, false) {
                batch.extend_from_slice(part);
            }
            out.counts.events[frame.name().index()] += 1;
            if batch.len() >= BATCH_MAX {
                out.batch_then(batch, None, chunked, now);
                batch.clear();
            }
        }
        if !batch.is_empty() {
            out.batch_then(batch, None, chunked, now);
            batch.clear();
        }
        if batch.capacity() > KEEP_CAPACITY {
            *batch = Vec::new();
        }
        pulled.ended = mux.ended();
        pulled.caught_up = mux.is_caught_up() && out.outbox.len() == 0;
        if pulled.sent > 0 || pulled.caught_up {
            stall.clear();
        }
        let waited_on = || {
            mux.records()
                .any(|record| records.get(record).is_some_and(|r| !r.is_finished()))
        };
        if !pulled.caught_up && !pulled.ended && waited_on() {
            // Behind, with running commands: they may wait on this viewer.
            stall.set(now + VIEWER_STALL, TimerKey::Conn(self.index), timers);
        }
        if pulled.ended {
            self.end_stream(now);
        }
        pulled
    }

    #[allow(clippy::too_many_arguments)]
    fn begin_stream(
        &mut self,
        head: &Head,
        reuse: bool,
        headers: &[(&'static str, String)],
        feed: Feed,
        every: Option<Duration>,
        now: Instant,
        timers: &mut Timers,
    ) {
        self.log_access(200, "");
        let framing = stream_framing(head, reuse);
        let mut beat = Deadline::default();
        if let Some(every) = every {
            beat.set(now + every, TimerKey::Heartbeat(self.index), timers);
        }
        self.phase = Phase::Streaming(Box::new(Stream {
            feed,
            framing,
            every,
            beat,
            fin: Fin::NotSeen,
        }));
        self.queue_stream_head(framing, headers, now);
    }

    fn queue_stream_head(&mut self, framing: Framing, headers: &[(&'static str, String)], now: Instant) {
        let mut bytes = Vec::with_capacity(256);
        write_stream_head(&mut bytes, framing.chunked, framing.then == After::Close, headers);
        self.queue(&bytes, now);
    }

    /// Sends one frame of a `/run` stream, encoded from `text` (where the
    /// frame's pieces point). True while the stream takes more.
    pub fn send(&mut self, frame: &Frame, text: &[u8], now: Instant) -> bool {
        let Phase::Streaming(stream) = &self.phase else {
            return false;
        };
        let chunked = stream.framing.chunked;
        let mut few = [IoSlice::new(&[]); FEW_PARTS];
        match frame.gather(text, chunked, &mut few) {
            Some(count) => {
                let mut out = Out {
                    sock: &mut self.sock,
                    write: &mut self.write,
                    outbox: &mut self.outbox,
                    counts: &mut self.counts,
                    last_write: &mut self.last_write,
                };
                if *out.write != WriteHalf::Failed {
                    out.few_parts(&few[..count], true, now);
                }
            }
            None => self.send_parts(frame.parts(text, chunked), now),
        }
        self.count_event(frame);
        self.has_room()
    }

    fn count_event(&mut self, frame: &Frame) {
        if !self.is_broken() && !frame.is_empty() {
            self.counts.events[frame.name().index()] += 1;
        }
    }

    /// Sends the last frame of a `/run` stream (its `exit` or `err`) and
    /// ends the stream, the last chunk in the same `writev`: one segment
    /// and one wake-up for the client, not two. Then drain and keep alive
    /// or close.
    pub fn send_last(&mut self, frame: &Frame, text: &[u8], now: Instant) {
        let Phase::Streaming(stream) = &self.phase else {
            return;
        };
        let framing = stream.framing;
        let last: &[u8] = if framing.chunked { LAST_CHUNK } else { b"" };
        let parts = frame.parts(text, framing.chunked).chain(std::iter::once(last));
        self.send_parts(parts.filter(|part| !part.is_empty()), now);
        self.count_event(frame);
        self.phase = Phase::Draining { then: framing.then };
    }

    /// Ends the current stream: the last chunk, then drain and keep alive or
    /// close.
    pub fn end_stream(&mut self, now: Instant) {
        let Phase::Streaming(stream) = &self.phase else {
            return;
        };
        let framing = stream.framing;
        self.phase = Phase::Draining { then: framing.then };
        if framing.chunked {
            self.queue(LAST_CHUNK, now);
        }
    }

    /// Sends a viewer the events of `log` it has not had, while its socket
    /// takes them, at most [`PULL_STEP`]. A viewer left behind is let go
    /// after [`VIEWER_STALL`] of taking nothing, whether its job runs (it
    /// paces the command), ended or was forgotten (it pins the log).
    pub fn pull(&mut self, log: &EventLog, now: Instant, timers: &mut Timers) -> Pulled {
        let mut pulled = Pulled {
            sent: 0,
            caught_up: false,
            ended: false,
        };
        let Phase::Streaming(stream) = &mut self.phase else {
            return pulled;
        };
        let chunked = stream.framing.chunked;
        let Feed::Watch { cursor, stall, .. } = &mut stream.feed else {
            return pulled;
        };
        let mut out = Out {
            sock: &mut self.sock,
            write: &mut self.write,
            outbox: &mut self.outbox,
            counts: &mut self.counts,
            last_write: &mut self.last_write,
        };
        while pulled.sent < PULL_STEP && out.outbox.len() == 0 && *out.write != WriteHalf::Failed {
            if let Some(first) = log.first_held().filter(|&first| cursor.next < first) {
                // Never silent: had the log forgotten events this viewer
                // still needed (the trim keeps them), it would say so.
                let frame = cursor.encoder.gap(cursor.next, first - 1);
                out.frame(frame, b"", chunked, now);
                cursor.next = first;
                pulled.sent += 1;
                continue;
            }
            let Some(event) = log.get(cursor.next) else { break };
            cursor.encoder.set_next_id(cursor.next);
            match event {
                Logged::Output(which, text) => {
                    let frame = cursor.encoder.output(*which, text);
                    if !frame.is_empty() {
                        out.frame(frame, text, chunked, now);
                    }
                }
                Logged::Error(message) => {
                    out.frame(cursor.encoder.error(message), b"", chunked, now);
                    pulled.ended = true;
                }
                Logged::Exit(exit) => {
                    out.frame(cursor.encoder.exit(exit), b"", chunked, now);
                    pulled.ended = true;
                }
            }
            cursor.next += 1;
            pulled.sent += 1;
            if pulled.ended {
                break;
            }
        }
        pulled.caught_up = cursor.next >= log.next_id() && out.outbox.len() == 0;
        if pulled.sent > 0 || pulled.caught_up {
            stall.clear();
        }
        if !pulled.caught_up && !pulled.ended {
            stall.set(now + VIEWER_STALL, TimerKey::Conn(self.index), timers);
        }
        if pulled.ended {
            self.end_stream(now);
        }
        pulled
    }

    /// The `gap` a viewer is owed when the events it asked for are gone.
    fn send_gap(&mut self, log: &EventLog, now: Instant) {
        let Phase::Streaming(stream) = &mut self.phase else {
            return;
        };
        let chunked = stream.framing.chunked;
        let Feed::Watch { cursor, .. } = &mut stream.feed else {
            return;
        };
        let first_held = log.first_held().unwrap_or_else(|| log.next_id());
        if cursor.next < first_held {
            let frame = cursor.encoder.gap(cursor.next, first_held - 1);
            let mut out = Out {
                sock: &mut self.sock,
                write: &mut self.write,
                outbox: &mut self.outbox,
                counts: &mut self.counts,
                last_write: &mut self.last_write,
            };
            out.frame(frame, b"", chunked, now);
            cursor.next = first_held;
        }
    }

    // ----- internals --------------------------------------------------------

    /// Parses the head buffer once the phase waits for a head.
    fn next_head(&mut self) -> Action {
        let Phase::ReadingHead { deadline, idle } = &mut self.phase else {
            return Action::Wait;
        };
        let idle = *idle;
        let parsed = if self.inbuf.is_empty() {
            Ok(Parsed::Partial)
        } else {
            request::parse(&self.inbuf)
        };
        match parsed {
            Ok(Parsed::Complete(head, len)) => {
                deadline.clear();
                self.inbuf.drain(..len);
                if self.inbuf.is_empty() {
                    // Most connections send one request, then stream for
                    // long: hold no buffer meanwhile.
                    self.inbuf = Vec::new();
                }
                self.requests += 1;
                let token = self.token.as_deref();
                self.access = Some(Access {
                    method: logsafe::safe(head.method.as_str(), token).to_string(),
                    path: logsafe::target(&head.target, token),
                });
                Action::Route(head)
            }
            Ok(Parsed::Partial) if self.read == ReadHalf::Ended => {
                // The client is done sending and no whole request came.
                if idle || self.inbuf.is_empty() {
                    Action::Close
                } else {
                    Action::Reject(HttpError::BadRequest("connection closed mid-head"))
                }
            }
            Ok(Parsed::Partial) => Action::Wait,
            Err(err) => Action::Reject(err),
        }
    }

    /// Takes the received bytes into the body being read: the body once
    /// whole, or why it cannot be.
    fn next_body(&mut self) -> Action {
        let Phase::ReadingBody { body, deadline } = &mut self.phase else {
            return Action::Wait;
        };
        let used = match body.feed(&self.inbuf) {
            Ok(used) => used,
            Err(err) => return Action::RefuseBody(err),
        };
        self.inbuf.drain(..used);
        if self.inbuf.is_empty() {
            self.inbuf = Vec::new();
        }
        if body.is_done() {
            deadline.clear();
            // Answered next by `reply`; until then nothing is queued.
            let done = std::mem::replace(&mut self.phase, Phase::Draining { then: After::KeepAlive });
            if let Phase::ReadingBody { body, .. } = done {
                return Action::Body(body.into_body());
            }
            return Action::Wait;
        }
        if self.read == ReadHalf::Ended {
            // The client stopped sending halfway: nobody to answer.
            return Action::Close;
        }
        Action::Wait
    }

    fn log_access(&mut self, status: u16, note: &str) {
        match self.access.take() {
            Some(Access { method, path }) => info!("{} {method} {path} {status}{note}", self.peer),
            None => info!("{} - - {status}{note}", self.peer),
        }
    }

    /// The response is fully written: keep alive (wait for the next request,
    /// at once if it is already buffered), or shut our side and linger.
    fn response_done(&mut self, then: After, now: Instant, timers: &mut Timers) {
        let key = TimerKey::Conn(self.index);
        let mut deadline = Deadline::default();
        if then == After::KeepAlive {
            let waiting = !self.inbuf.is_empty();
            let wait = if waiting { HEAD_TIMEOUT } else { IDLE_TIMEOUT };
            deadline.set(now + wait, key, timers);
            self.phase = Phase::ReadingHead {
                deadline,
                idle: !waiting,
            };
        } else {
            let _ = self.sock.shutdown(Shutdown::Write);
            deadline.set(now + LINGER, key, timers);
            self.phase = Phase::Lingering { until: deadline };
        }
    }

    /// True if reading now is useful: the head buffer has room, or the phase
    /// only drains the socket.
    fn wants_read(&self) -> bool {
        self.read == ReadHalf::Open { ready: true }
            && self.write != WriteHalf::Failed
            && (matches!(self.phase, Phase::Lingering { .. }) || self.inbuf.len() < request::MAX_HEAD)
    }

    /// Reads what the socket has (up to the head limit) into the head buffer.
    fn read_some(&mut self, buf: &mut [u8]) {
        while self.wants_read() {
            let lingering = matches!(self.phase, Phase::Lingering { .. });
            let room = if lingering {
                buf.len()
            } else {
                buf.len().min(request::MAX_HEAD + 1 - self.inbuf.len())
            };
            match self.sock.read(&mut buf[..room]) {
                Ok(0) => self.read = ReadHalf::Ended,
                Ok(n) => {
                    if !lingering {
                        self.inbuf.extend_from_slice(&buf[..n]);
                        if let Phase::ReadingHead { idle, .. } = &mut self.phase {
                            *idle = false;
                        }
                    }
                    if n < room && !self.shut_seen {
                        self.read = ReadHalf::Open { ready: false };
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.read = ReadHalf::Open { ready: false },
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.read = ReadHalf::Failed,
            }
        }
    }

    /// Writes queued bytes while the socket takes them.
    fn flush(&mut self, now: Instant) {
        while self.outbox.len() > 0 && self.write == WriteHalf::Ready {
            match self.sock.write(&self.outbox.bytes[self.outbox.sent..]) {
                Ok(0) => self.write = WriteHalf::Failed,
                Ok(n) => {
                    self.outbox.sent += n;
                    self.counts.bytes += n as u64;
                    self.last_write = now;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.write = WriteHalf::Full,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.write = WriteHalf::Failed,
            }
        }
        if self.outbox.len() == 0 && !self.outbox.bytes.is_empty() {
            self.outbox.bytes.clear();
            self.outbox.sent = 0;
            if self.outbox.bytes.capacity() > KEEP_CAPACITY {
                self.outbox.bytes = Vec::new();
            }
        }
    }

    /// Queues one heartbeat comment in the stream's framing.
    fn heartbeat_now(&mut self, now: Instant) {
        self.queue_block(HEARTBEAT, HEARTBEAT_CHUNK, now);
        self.last_write = now;
    }

    /// Queues a fixed SSE block: `plain`, or `chunk` (the same block wrapped
    /// in one chunk) when the stream is chunked.
    fn queue_block(&mut self, plain: &[u8], chunk: &[u8], now: Instant) {
        let chunked = matches!(&self.phase, Phase::Streaming(s) if s.framing.chunked);
        self.queue(if chunked { chunk } else { plain }, now);
    }

    /// Writes `bytes` now if the socket takes them, queueing the rest.
    fn queue(&mut self, bytes: &[u8], now: Instant) {
        self.send_parts(std::iter::once(bytes), now);
    }

    fn send_parts<'a, I>(&mut self, parts: I, now: Instant)
    where
        I: Iterator<Item = &'a [u8]> + Clone,
    {
        let streaming = self.is_streaming();
        let mut out = Out {
            sock: &mut self.sock,
            write: &mut self.write,
            outbox: &mut self.outbox,
            counts: &mut self.counts,
            last_write: &mut self.last_write,
        };
        out.parts(parts, streaming, now);
    }
}

/// The framing of a stream answering `head`; `reuse`: the server allows
/// keeping the connection.
fn stream_framing(head: &Head, reuse: bool) -> Framing {
    let chunked = head.minor_version == 1;
    let then = if chunked && head.keep_alive && reuse {
        After::KeepAlive
    } else {
        After::Close
    };
    Framing { chunked, then }
}

/// The write side of a connection, borrowed apart from its phase (a
/// viewer's cursor encodes while this writes).
struct Out<'a> {
    sock: &'a mut TcpStream,
    write: &'a mut WriteHalf,
    outbox: &'a mut Outbox,
    counts: &'a mut Sent,
    last_write: &'a mut Instant,
}

/// Events at least this large are not copied into a multiplexed stream's
/// batch (see `Feed::Mux`).
const BATCH_EVENT_MAX: usize = 4 * 1024;

/// A multiplexed stream's batch is written once it holds this much.
const BATCH_MAX: usize = 32 * 1024;

/// Appends the `job` event of a stream of many jobs (contract §11.2) to
/// `batch`: the job's §7.2 object with `"type":"job"`, and no `id:` line,
/// so it does not move the client's last event id.
fn push_job_event(batch: &mut Vec<u8>, record: &Record) {
    let json = record.json();
    batch.extend_from_slice(b"event: job\ndata: {\"type\":\"job\",");
    batch.extend_from_slice(json.strip_prefix('{').unwrap_or(&json).as_bytes());
    batch.extend_from_slice(b"\n\n");
}

impl Out<'_> {
    fn frame(&mut self, frame: &Frame, text: &[u8], chunked: bool, now: Instant) {
        self.parts(frame.parts(text, chunked), true, now);
        if *self.write != WriteHalf::Failed && !frame.is_empty() {
            self.counts.events[frame.name().index()] += 1;
        }
    }

    /// Writes `batch` (whole SSE blocks, maybe none: one chunk when
    /// `chunked`) and then `frame` (encoded from `text`), in one `writev`
    /// while the socket takes them.
    fn batch_then(&mut self, batch: &[u8], frame: Option<(&Frame, &[u8])>, chunked: bool, now: Instant) {
        if batch.is_empty() {
            if let Some((frame, text)) = frame {
                self.frame(frame, text, chunked, now);
            }
            return;
        }
        let (line, line_len) = chunk_line(batch.len());
        let wrapped: [&[u8]; 3] = if chunked {
            [&line[..line_len], batch, b"\r\n"]
        } else {
            [batch, b"", b""]
        };
        // The slices gathered in an array: chained iterators (batch, then
        // the frame's parts) cost more than the event they wrote.
        let mut slices: [&[u8]; FEW_SLICES] = [&[]; FEW_SLICES];
        let mut count = 0;
        // (Never an empty slice: a writev of nothing returns 0, which
        // reads as a dead socket.)
        for part in wrapped.into_iter().filter(|part| !part.is_empty()) {
            slices[count] = part;
            count += 1;
        }
        let batch_slices = count;
        if let Some((frame, text)) = frame {
            for part in frame.parts(text, chunked) {
                if count == FEW_SLICES {
                    // A frame of many pieces: after the batch, on its own.
                    self.parts(slices[..batch_slices].iter().copied(), true, now);
                    self.frame(frame, text, chunked, now);
                    return;
                }
                slices[count] = part;
                count += 1;
            }
        }
        self.parts(slices[..count].iter().copied(), true, now);
        if let Some((frame, _)) = frame {
            if *self.write != WriteHalf::Failed && !frame.is_empty() {
                self.counts.events[frame.name().index()] += 1;
            }
        }
    }

    /// Writes `parts` with `writev` while the socket takes them; only what
    /// it refuses is copied into the outbox. `stream`: a refusal pauses an
    /// event stream (counted, see `Sent::pauses`).
    fn parts<'a, I>(&mut self, parts: I, stream: bool, now: Instant)
    where
        I: Iterator<Item = &'a [u8]> + Clone,
    {
        if *self.write == WriteHalf::Failed {
            return;
        }
        // Most writes are one frame of a few parts (chunk line, the
        // event, CRLF): gathered once into a stack array and written from
        // it, not walked again as an iterator for the write and for what
        // the socket refuses (callgrind, W4: about 120 instructions a line).
        let mut few = [IoSlice::new(&[]); FEW_PARTS];
        let mut count = 0;
        let mut more = parts.clone();
        for part in more.by_ref() {
            few[count] = IoSlice::new(part);
            count += 1;
            if count == FEW_PARTS {
                break;
            }
        }
        if count < FEW_PARTS || more.next().is_none() {
            self.few_parts(&few[..count], stream, now);
            return;
        }
        self.many_parts(parts, stream, now);
    }

    /// [`Out::parts`] for at most [`FEW_PARTS`] parts: one `writev`, the
    /// rest queued.
    fn few_parts(&mut self, parts: &[IoSlice<'_>], stream: bool, now: Instant) {
        let mut written = 0;
        if self.outbox.len() == 0 && *self.write == WriteHalf::Ready {
            let total: usize = parts.iter().map(|part| part.len()).sum();
            if total == 0 {
                // (A writev of nothing returns 0, which reads as a dead socket.)
                return;
            }
            match writev(self.sock, parts) {
                Ok(Some(n)) => written = n,
                Ok(None) => {}
                Err(_) => {
                    *self.write = WriteHalf::Failed;
                    return;
                }
            }
            if written > 0 {
                self.counts.bytes += written as u64;
                *self.last_write = now;
            }
            if written == total {
                return;
            }
            *self.write = WriteHalf::Full;
        }
        self.queue_rest(parts.iter().map(|part| &**part), written, stream);
    }

    /// Copies what the socket did not take of `parts` (all but the first
    /// `skip` bytes) into the outbox.
    fn queue_rest<'a, I>(&mut self, parts: I, skip: usize, stream: bool)
    where
        I: Iterator<Item = &'a [u8]>,
    {
        let was_empty = self.outbox.len() == 0;
        // Queue what the socket did not take: these bytes live in the shared
        // read buffer or a pipe's held line, which the next event reuses.
        let mut skip = skip;
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            self.outbox.bytes.extend_from_slice(&part[skip..]);
            skip = 0;
        }
        if was_empty && self.outbox.len() > 0 && stream {
            self.counts.pauses += 1;
        }
    }

    /// [`Out::parts`] for a frame of many parts.
    fn many_parts<'a, I>(&mut self, parts: I, stream: bool, now: Instant)
    where
        I: Iterator<Item = &'a [u8]> + Clone,
    {
        let written = if self.outbox.len() == 0 && *self.write == WriteHalf::Ready {
            match write_parts(self.sock, parts.clone()) {
                Ok(Written::All(n)) => {
                    self.counts.bytes += n as u64;
                    *self.last_write = now;
                    return;
                }
                Ok(Written::Part(n)) => {
                    *self.write = WriteHalf::Full;
                    n
                }
                Err(_) => {
                    *self.write = WriteHalf::Failed;
                    return;
                }
            }
        } else {
            0
        };
        if written > 0 {
            self.counts.bytes += written as u64;
            *self.last_write = now;
        }
        self.queue_rest(parts, written, stream);
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
fn write_parts<'a, I>(sock: &mut TcpStream, parts: I) -> io::Result<Written>
where
    I: Iterator<Item = &'a [u8]>,
{
    let mut parts = parts.peekable();
    // Most writes are a few parts: filling (and first clearing) an array
    // of MAX_SLICES for each cost more than the rest of a small event.
    let mut few = [IoSlice::new(&[]); FEW_SLICES];
    let mut many: Vec<IoSlice<'a>> = Vec::new();
    let mut written = 0;
    loop {
        let mut count = 0;
        let mut batch = 0;
        while count < FEW_SLICES {
            let Some(part) = parts.next() else { break };
            few[count] = IoSlice::new(part);
            batch += part.len();
            count += 1;
        }
        let slices: &[IoSlice<'a>] = if count == FEW_SLICES && parts.peek().is_some() {
            // A frame of many parts: gather up to MAX_SLICES of them.
            many.clear();
            many.extend_from_slice(&few);
            for part in parts.by_ref() {
                many.push(IoSlice::new(part));
                batch += part.len();
                if many.len() == MAX_SLICES {
                    break;
                }
            }
            &many
        } else {
            &few[..count]
        };
        if slices.is_empty() {
            return Ok(Written::All(written));
        }
        let Some(n) = writev(sock, slices)? else {
            return Ok(Written::Part(written));
        };
        written += n;
        if n < batch {
            return Ok(Written::Part(written));
        }
    }
}

/// One `writev` of `slices`, again if a signal interrupted it: the bytes
/// the socket took, `None` when it is full, an error when it is broken (a
/// write of 0 bytes included: `slices` are never all empty here).
fn writev(sock: &mut TcpStream, slices: &[IoSlice<'_>]) -> io::Result<Option<usize>> {
    loop {
        match sock.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => return Ok(Some(n)),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests;
