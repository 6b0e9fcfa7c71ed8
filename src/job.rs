//! One running command: the child, its pipes, the encoder and its event ids,
//! and how it is being stopped.
//!
//! A job lives in the server's job table; a connection watches it by index
//! and may leave before it ends. The job writes events into whatever
//! [`Sink`] the server hands it, and never learns what a socket is.

use std::io::{self, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::unix::pipe::Receiver;
use mio::{Interest, Registry, Token};

use crate::child::{self, Spawned};
use crate::contain::Scope;
use crate::input::{Input, Offer};
use crate::logsafe::LogArgv;
use crate::pty;
use crate::sse::{Encoder, Exit, Format, Frame, PipeText, Stream};
use crate::sys;
use crate::timer::{Deadline, TimerKey, Timers};

/// An unfinished line is sent after the child has been quiet this long
/// (contract §3.4).
pub const QUIET_FLUSH: Duration = Duration::from_millis(20);

/// Reads of one job's pipes per turn of the loop, so one fast child cannot
/// starve the others; the job is revisited before the next poll.
pub const FAIR_READS: usize = 16;

/// Room kept in front of each pipe read in the loop's read buffer, where a
/// held partial line is moved to join the bytes that finish it (see
/// [`PipeText::feed_after`]); the buffer is this much longer than a read.
pub const HOLD_ROOM: usize = 4 * 1024;

/// Poll token kinds in the low bits of a job's tokens.
pub const TOKEN_STDOUT: usize = 2;
/// See [`TOKEN_STDOUT`].
pub const TOKEN_STDERR: usize = 3;
/// The token kind of a job's stdin (writable events, contract §10.2).
pub const TOKEN_STDIN: usize = 4;
/// Bits of a token that hold its kind.
pub const TOKEN_KIND_BITS: usize = 3;

/// The poll token of a job's source.
pub fn token(job: usize, kind: usize) -> Token {
    Token(job << TOKEN_KIND_BITS | kind)
}

/// Where a job's events go: in practice a client connection.
pub trait Sink {
    /// Writes or queues one frame, encoded from `text`.
    fn send(&mut self, frame: &Frame, text: &[u8]);
    /// True while the sink takes more without queueing: when false the job
    /// stops reading its pipes, so a slow client slows the child down.
    fn ready(&self) -> bool;
    /// True for a sink that keeps each event's text and ignores the frame's
    /// bytes (a published job's log): the job's encoder then only measures
    /// (see [`Encoder::set_measuring`]).
    fn keeps_text(&self) -> bool {
        false
    }
}

impl Drop for Job {
    /// Dropping a job can never leak a process: a child not yet reaped is
    /// killed with all of its scope, and reaped (SIGKILL cannot be ignored,
    /// so the wait is short).
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        warn!("child {} {}: dropped while running: killing it", self.pgid, self.argv);
        self.scope.signal(libc::SIGKILL);
        let _ = sys::wait_blocking(self.pgid);
    }
}

/// Where a job's events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// `/run`: straight to the one connection watching it (`None` once it
    /// left: the command is being stopped and its output dropped).
    Direct(Option<usize>),
    /// A published job (contract §7): into the log of this record, which
    /// its viewers pull from.
    Published(usize),
}

/// The sink of a job nobody watches any more: its output is read and
/// dropped.
pub struct Discard;

impl Sink for Discard {
    fn send(&mut self, _frame: &Frame, _text: &[u8]) {}

    fn ready(&self) -> bool {
        true
    }
}

/// How far the job is in being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopping {
    /// Not asked to stop; maybe a `--timeout` falls at this instant.
    No { timeout_at: Option<Instant> },
    /// SIGTERM sent to the group; SIGKILL at this instant if any of it lives.
    Terminating { kill_at: Instant },
    /// SIGKILL sent (or the group was gone): nothing more to do.
    Done,
}

/// One pipe of the child.
#[derive(Debug)]
struct Pipe {
    rx: Receiver,
    /// Readiness not yet drained to `WouldBlock` (events are edges).
    ready: bool,
}

/// One command and everything that belongs to it.
#[derive(Debug)]
pub struct Job {
    index: usize,
    pgid: libc::pid_t,
    /// The size of its terminals, when it runs on two (contract §10): its
    /// `stdout` and `stderr` pipes are then their master sides.
    terminal: Option<pty::Size>,
    /// Its standard input, when it takes input (contract §10.2).
    input: Option<Input>,
    /// Its process group and whatever left it (contract §3.6).
    scope: Scope,
    pipes: [Option<Pipe>; 2],
    text: [PipeText; 2],
    encoder: Encoder,
    /// Which pipe was read last, to alternate when both are ready.
    last_read: usize,
    /// Bytes read from both pipes so far.
    bytes_read: u64,
    /// The last pump stopped because the sink was full, not because the
    /// pipes were empty: only then does a viewer catching up need to
    /// revisit the job (else the next poll event will).
    held_back: bool,
    /// Where its events go.
    pub out: Output,
    status: Option<ExitStatus>,
    stopping: Stopping,
    timed_out: bool,
    exit_sent: bool,
    grace: Duration,
    /// Partial-line flush deadline.
    pub flush: Deadline,
    /// `--timeout` or SIGKILL deadline.
    pub kill: Deadline,
    /// The command line, for logs: escaped, token redacted.
    argv: LogArgv,
}

impl Job {
    /// Registers a spawned child's pipes under tokens of `index`. Its exit
    /// comes through the server's SIGCHLD path ([`Job::on_exited`]).
    pub fn start(
        spawned: Spawned,
        index: usize,
        format: Format,
        options: JobOptions,
        registry: &Registry,
    ) -> io::Result<Job> {
        let Spawned {
            pid,
            mut stdout,
            mut stderr,
            mut stdin,
            terminal,
            scope,
        } = spawned;
        let registered = registry
            .register(&mut stdout, token(index, TOKEN_STDOUT), Interest::READABLE)
            .and_then(|()| registry.register(&mut stderr, token(index, TOKEN_STDERR), Interest::READABLE))
            .and_then(|()| match &mut stdin {
                Some(tx) => registry.register(tx, token(index, TOKEN_STDIN), Interest::WRITABLE),
                None => Ok(()),
            });
        if let Err(err) = registered {
            // Nothing will watch this child: end and reap it now, so no
            // process or zombie is left behind.
            let _ = registry.deregister(&mut stdout);
            let _ = registry.deregister(&mut stderr);
            if let Some(tx) = &mut stdin {
                let _ = registry.deregister(tx);
            }
            scope.signal(libc::SIGKILL);
            let _ = sys::wait_blocking(pid);
            return Err(err);
        }
        let pgid = pid;
        let mut job = Job {
            index,
            pgid,
            terminal,
            input: stdin.map(|tx| Input::new(tx, terminal.is_some())),
            scope,
            pipes: [
                Some(Pipe {
                    rx: stdout,
                    ready: true,
                }),
                Some(Pipe {
                    rx: stderr,
                    ready: true,
                }),
            ],
            text: [PipeText::new(Stream::Stdout), PipeText::new(Stream::Stderr)],
            encoder: Encoder::new(format),
            last_read: 1,
            held_back: false,
            bytes_read: 0,
            out: Output::Direct(None),
            status: None,
            stopping: Stopping::No {
                timeout_at: options.timeout.map(|t| options.now + t),
            },
            timed_out: false,
            exit_sent: false,
            grace: options.kill_grace,
            flush: Deadline::default(),
            kill: Deadline::default(),
            argv: options.argv_for_log,
        };
        if let Stopping::No { timeout_at: Some(at) } = job.stopping {
            job.kill.set(at, TimerKey::Kill(index), options.timers);
        }
        debug!("child {} started: {}", pgid, job.argv);
        Ok(job)
    }

    /// The size of its terminals, when it runs on them (contract §10).
    pub fn terminal(&self) -> Option<pty::Size> {
        self.terminal
    }

    /// Sends `signal` to the command's process group (contract §10.3). An
    /// error only if the group cannot be signalled (it is gone: no error).
    pub fn signal_group(&self, signal: libc::c_int) -> io::Result<()> {
        debug!("child {}: signal {signal} to its group (asked by a client)", self.pgid);
        sys::kill_group(self.pgid, signal)
    }

    /// Gives both terminals `size` and makes sure the command's group gets
    /// one `SIGWINCH` (contract §10.4): the kernel sends it to the
    /// terminal's foreground group when the size changed; we send it when
    /// it did not, or when another group is in the foreground. False when
    /// the command is not on a terminal.
    pub fn resize(&mut self, size: pty::Size) -> io::Result<bool> {
        let Some(before) = self.terminal else { return Ok(false) };
        for pipe in self.pipes.iter().flatten() {
            pty::set_size(&pipe.rx, size)?;
        }
        self.terminal = Some(size);
        let foreground = self.pipes[0].as_ref().and_then(|pipe| pty::foreground_group(&pipe.rx));
        if before == size || foreground != Some(self.pgid) {
            sys::kill_group(self.pgid, libc::SIGWINCH)?;
        }
        Ok(true)
    }

    /// Offers a posted body (and with `eof` the end of input) to the
    /// command's stdin, and writes what it can now (contract §10.2).
    pub fn offer_input(&mut self, body: &[u8], eof: bool, registry: &Registry) -> Offer {
        let Some(input) = self.input.as_mut().filter(|_| self.status.is_none()) else {
            return Offer::Closed;
        };
        let offer = input.offer(body, eof);
        input.write(registry);
        offer
    }

    /// The command's stdin became writable: write what is queued.
    pub fn on_stdin_writable(&mut self, registry: &Registry) {
        if let Some(input) = &mut self.input {
            input.set_writable();
            input.write(registry);
        }
    }

    /// Its input: `None` if it has none, else whether it is still open.
    pub fn input_open(&self) -> Option<bool> {
        self.input.as_ref().map(Input::is_open)
    }

    /// Ends its input (the command exited: nobody will read it).
    fn close_input(&mut self, registry: &Registry) {
        if let Some(input) = &mut self.input {
            input.close(registry);
        }
    }

    /// True once the command has exited (it may still be draining).
    pub fn has_exited(&self) -> bool {
        self.status.is_some()
    }

    /// The child's pid (also its process group).
    pub fn pid(&self) -> libc::pid_t {
        self.pgid
    }

    /// Marks a pipe as readable after a poll event.
    pub fn set_ready(&mut self, kind: usize) {
        let which = if kind == TOKEN_STDOUT { 0 } else { 1 };
        if let Some(pipe) = &mut self.pipes[which] {
            pipe.ready = true;
        }
    }

    /// True if a pipe has readiness not yet drained.
    pub fn has_ready_pipe(&self) -> bool {
        self.pipes.iter().flatten().any(|pipe| pipe.ready)
    }

    fn next_ready(&self) -> Option<usize> {
        let other = 1 - self.last_read;
        [other, self.last_read]
            .into_iter()
            .find(|&i| self.pipes[i].as_ref().is_some_and(|pipe| pipe.ready))
    }

    /// Reads ready pipes into `buf` (after its first [`HOLD_ROOM`] bytes)
    /// and sends what they hold to `sink`, until
    /// the pipes would block, the sink is full, or [`FAIR_READS`] reads.
    /// Returns true if it stopped at the read cap with readiness left.
    pub fn pump(&mut self, buf: &mut [u8], sink: &mut dyn Sink, timers: &mut Timers, registry: &Registry) -> bool {
        self.held_back = false;
        if self.status.is_some() {
            // Nobody will read what is still queued for the command.
            self.close_input(registry);
        }
        self.encoder.set_measuring(sink.keeps_text());
        for _ in 0..FAIR_READS {
            if !sink.ready() || !self.drain_backlog(sink) {
                self.held_back = true;
                // Paused on a slow client: hold only what must be held.
                self.encoder.release_scratch();
                return false;
            }
            let Some(which) = self.next_ready() else {
                return false;
            };
            self.last_read = which;
            let Some(pipe) = &mut self.pipes[which] else {
                return false;
            };
            let room = buf.len().min(HOLD_ROOM);
            match pipe.rx.read(&mut buf[room..]) {
                Ok(0) => self.close_pipe(which, Some(sink), registry),
                Ok(n) => {
                    if n < buf.len() - room && self.status.is_none() {
                        // A pipe read takes all that is buffered (up to the
                        // buffer): a short read left it empty, and the next
                        // write wakes the poll again. This saves a read that
                        // would only say WouldBlock, once per event. After
                        // exit we read to WouldBlock to know it is drained.
                        pipe.ready = false;
                    }
                    self.bytes_read += n as u64;
                    let (text, encoder) = (&mut self.text[which], &mut self.encoder);
                    text.feed_after(encoder, buf, room, n, &mut |frame, bytes| send_to(sink, frame, bytes));
                    if text.has_held() {
                        // The clock is read here, not taken from the top of
                        // the loop's turn: if the server was held up since
                        // then (a loaded box, a VM steal), that time would
                        // make the child's quiet look 20 ms old already, and
                        // the held line be cut although more of it is on its
                        // way (contract §3.4: the quiet is the child's).
                        let at = Instant::now() + QUIET_FLUSH;
                        self.flush.set(at, TimerKey::Flush(self.index), timers);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    pipe.ready = false;
                    if self.status.is_some() {
                        // The child is gone and its pipe is empty: whatever a
                        // grandchild may still write is not this stream's.
                        self.close_pipe(which, Some(sink), registry);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    debug!("child {}: reading its pipe failed: {err}", self.pgid);
                    self.close_pipe(which, Some(sink), registry);
                }
            }
        }
        self.has_ready_pipe()
    }

    /// Sends text the sink did not take earlier, before anything newer;
    /// true once none is left.
    fn drain_backlog(&mut self, sink: &mut dyn Sink) -> bool {
        let (texts, encoder) = (&mut self.text, &mut self.encoder);
        texts
            .iter_mut()
            .all(|text| text.drain(encoder, &mut |frame, bytes| send_to(sink, frame, bytes)))
    }

    fn close_pipe(&mut self, which: usize, sink: Option<&mut dyn Sink>, registry: &Registry) {
        if let Some(mut pipe) = self.pipes[which].take() {
            let _ = registry.deregister(&mut pipe.rx);
        }
        if let Some(sink) = sink {
            self.encoder.set_measuring(sink.keeps_text());
            self.text[which].finish(&mut self.encoder, &mut |frame, bytes| send_to(sink, frame, bytes));
        }
    }

    /// The quiet time passed since the last read left a partial line: sends
    /// held partial lines, unless the child was not quiet after all. Returns
    /// true if reading stopped at the read cap (revisit the job).
    ///
    /// The pipes are read first: on a busy machine the loop may not have
    /// read for 20 ms while the child kept writing, and a line cut there
    /// would be a line break that was never written (raw format shows it).
    pub fn on_quiet(
        &mut self,
        buf: &mut [u8],
        sink: &mut dyn Sink,
        now: Instant,
        timers: &mut Timers,
        registry: &Registry,
    ) -> bool {
        if !sink.ready() {
            self.flush.set(now + QUIET_FLUSH, TimerKey::Flush(self.index), timers);
            return false;
        }
        for pipe in self.pipes.iter_mut().flatten() {
            pipe.ready = true;
        }
        let before = self.bytes_read;
        let capped = self.pump(buf, sink, timers, registry);
        if self.bytes_read != before || !sink.ready() {
            // More came (the flush deadline moved with it), or the client
            // is behind: not the moment to cut a line.
            if self.text.iter().any(PipeText::has_held) {
                let at = Instant::now() + QUIET_FLUSH;
                self.flush.set(at, TimerKey::Flush(self.index), timers);
            }
            return capped;
        }
        for which in 0..2 {
            let (text, encoder) = (&mut self.text[which], &mut self.encoder);
            text.flush(encoder, &mut |frame, bytes| send_to(sink, frame, bytes));
        }
        capped
    }

    /// The child has exited (the server saw its zombie after SIGCHLD, not
    /// yet reaped): signal what is left of its group, reap it, and return
    /// true. False if it could not be reaped after all.
    pub fn on_exited(&mut self, now: Instant, timers: &mut Timers) -> bool {
        if self.status.is_some() {
            return false;
        }
        // Signal the group before reaping the leader: while its zombie exists
        // the group id cannot be reused, so no stranger gets the signal.
        self.scope.signal(libc::SIGTERM);
        let status = match sys::reap_status(self.pgid) {
            Ok(Some(raw)) => ExitStatus::from_raw(raw),
            Ok(None) => return false,
            Err(err) => {
                warn!("child {}: cannot reap it: {err}", self.pgid);
                return false;
            }
        };
        self.status = Some(status);
        info!(
            "child {} {} exited: {}",
            self.pgid,
            self.argv,
            describe(status, self.timed_out)
        );
        // Drain both pipes once more: SIGCHLD can come while the child's
        // last write is still in the pipe, with no new edge to announce it.
        for pipe in self.pipes.iter_mut().flatten() {
            pipe.ready = true;
        }
        if !self.scope.is_empty() {
            // A background grandchild got SIGTERM above; SIGKILL it later.
            self.begin_kill_grace(now, timers);
        } else {
            self.stopping = Stopping::Done;
            self.kill.clear();
        }
        true
    }

    /// Stops the command: SIGTERM to its group now, SIGKILL after the grace.
    /// True if this began the stop (it was running and not being stopped).
    pub fn terminate(&mut self, now: Instant, timers: &mut Timers) -> bool {
        if let Stopping::No { .. } = self.stopping {
            debug!("child {}: SIGTERM to its group", self.pgid);
            self.scope.signal(libc::SIGTERM);
            self.begin_kill_grace(now, timers);
            return true;
        }
        false
    }

    fn begin_kill_grace(&mut self, now: Instant, timers: &mut Timers) {
        if let Stopping::Terminating { .. } = self.stopping {
            return;
        }
        let kill_at = now + self.grace;
        self.stopping = Stopping::Terminating { kill_at };
        self.kill.clear();
        self.kill.set(kill_at, TimerKey::Kill(self.index), timers);
    }

    /// The kill deadline fell: a `--timeout` starts the stop; the end of the
    /// grace sends SIGKILL to whatever of the group is left. True when it
    /// was the `--timeout` that began a stop.
    pub fn on_kill_deadline(&mut self, now: Instant, timers: &mut Timers) -> bool {
        match self.stopping {
            Stopping::No { timeout_at: Some(_) } => {
                info!("child {} {}: --timeout expired", self.pgid, self.argv);
                self.timed_out = true;
                return self.terminate(now, timers);
            }
            Stopping::Terminating { .. } => {
                if !self.scope.is_empty() {
                    warn!(
                        "child {} {}: still running after SIGTERM, sending SIGKILL",
                        self.pgid, self.argv
                    );
                    self.scope.signal(libc::SIGKILL);
                }
                self.stopping = Stopping::Done;
            }
            Stopping::No { timeout_at: None } | Stopping::Done => {}
        }
        false
    }

    /// The watcher left: stop the child. Its pipes stay open and are read
    /// into [`Discard`] until they end or the grace is over, so a command
    /// that prints while cleaning up on SIGTERM is not killed by SIGPIPE
    /// first (contract §3.6). True if this began stopping a running command.
    pub fn detach(&mut self, now: Instant, timers: &mut Timers) -> bool {
        self.out = Output::Direct(None);
        self.flush.clear();
        self.status.is_none() && self.terminate(now, timers)
    }

    /// Stops reading an unwatched job's pipes once its grace is over: what
    /// still holds them open (a stray that left the group) is not waited for.
    pub fn stop_draining(&mut self, registry: &Registry) {
        if self.out == Output::Direct(None) && self.stopping == Stopping::Done {
            for which in 0..2 {
                self.close_pipe(which, None, registry);
            }
        }
    }

    /// Sends the `exit` event once the child is reaped and both pipes are
    /// drained; returns true when it did (the stream is then complete).
    pub fn finish_if_done(&mut self, sink: &mut dyn Sink) -> bool {
        let Some(exit) = self.exit_if_done() else { return false };
        sink.send(self.encoder.exit(&exit), b"");
        true
    }

    /// How the command ended, once: when the child is reaped and every byte
    /// of its output has been handed on. The `exit` event's id is the next.
    pub fn exit_if_done(&mut self) -> Option<Exit> {
        if self.exit_sent || self.pipes.iter().any(Option::is_some) || self.text.iter().any(PipeText::has_backlog) {
            return None;
        }
        let status = self.status?;
        self.exit_sent = true;
        self.flush.clear();
        Some(child::exit_of(status, self.timed_out))
    }

    /// True if the last pump stopped on a full sink (a viewer behind), with
    /// the command's output left unread.
    pub fn is_held_back(&self) -> bool {
        self.held_back
    }

    /// Bytes of output the command wrote so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// True when nothing of the job needs the loop any more: reaped, pipes
    /// closed, every byte of output handed on, no `/run` watcher, a published
    /// job's `exit` logged, and the kill grace (if any) over.
    pub fn is_finished(&self) -> bool {
        let handed_on = match self.out {
            Output::Direct(Some(_)) => false,
            Output::Direct(None) => true,
            Output::Published(_) => self.exit_sent,
        };
        self.status.is_some()
            && handed_on
            && !self.text.iter().any(PipeText::has_backlog)
            && self.pipes.iter().all(Option::is_none)
            && !matches!(self.stopping, Stopping::Terminating { .. })
    }
}

/// Hands one event to `sink`; true while it takes more.
fn send_to(sink: &mut dyn Sink, frame: &Frame, text: &[u8]) -> bool {
    sink.send(frame, text);
    sink.ready()
}

/// What a job needs besides the child.
pub struct JobOptions<'a> {
    /// Now, for the `--timeout` deadline.
    pub now: Instant,
    /// `--timeout`.
    pub timeout: Option<Duration>,
    /// `--kill-grace`.
    pub kill_grace: Duration,
    /// The command line as logs show it (escaped, token redacted).
    pub argv_for_log: LogArgv,
    /// The timer queue.
    pub timers: &'a mut Timers,
}

fn describe(status: ExitStatus, timed_out: bool) -> String {
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "unknown status".to_owned(),
    };
    if timed_out {
        format!("{how} (timed out)")
    } else {
        how
    }
}
