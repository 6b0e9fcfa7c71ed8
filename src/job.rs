//! One running command: the child, its pipes, the encoder and its event ids,
//! and how it is being stopped.
//!
//! A job lives in the server's job table. It produces events: its pump
//! reads the pipes and hands each frame (pointing into the loop's read
//! buffer) to a function the server gives it, which passes it on to its
//! [`Reader`] — a `/run` socket or a published job's log. The job never
//! learns what a socket is, and calls nothing back.

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
use crate::sse::{Emit, Encoder, Exit, Format, Frame, PipeText, Stream, MAX_HELD};
use crate::sys::{self, pty};
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

impl Drop for Job {
    /// Dropping a job can never leak a process: a child not yet reaped is
    /// killed with all of its scope, and reaped (SIGKILL cannot be ignored,
    /// so the wait is short).
    fn drop(&mut self) {
        if self.has_exited() {
            return;
        }
        warn!("child {} {}: dropped while running: killing it", self.pgid, self.argv);
        self.scope.signal(libc::SIGKILL);
        let _ = sys::wait_blocking(self.pgid);
        // A late exec failure of this pid is nobody's news any more.
        let _ = sys::take_launch_failure(self.pgid);
    }
}

/// Who takes a job's events. The server hands each frame the pump
/// produces on to it; the job only chooses how to encode (a log keeps text,
/// so for it the encoder only measures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// `/run`: the connection at this index writes them as they come.
    Stream(usize),
    /// A published job (contract §7): the record at this index logs them,
    /// and its viewers pull from the log.
    Log(usize),
    /// Nobody any more (the `/run` client left): the command is being
    /// stopped, and what it still writes is read and dropped.
    Nobody,
}

/// A job's life: one state, so a stopped, exited or finished job is never
/// half of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    /// The command runs; maybe a `--timeout` falls at this instant.
    Running { timeout_at: Option<Instant> },
    /// SIGTERM sent to its scope; SIGKILL at `kill_at` if any of it lives.
    Stopping { kill_at: Instant, timed_out: bool },
    /// SIGKILL sent; the leader is not reaped yet.
    Killed { timed_out: bool },
    /// The leader is reaped; its output is still being handed on. `grace`:
    /// what is left of its scope (a background grandchild got SIGTERM) is
    /// killed then.
    Draining {
        status: ExitStatus,
        timed_out: bool,
        grace: Option<Instant>,
    },
    /// Its `exit` was handed on; it waits only for the end of `grace`.
    Done { grace: Option<Instant> },
}

/// What one pump did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pumped {
    /// It stopped at the read cap with readiness left: revisit the job.
    pub capped: bool,
    /// It stopped because the reader took no more (output left unread).
    pub held: bool,
    /// Bytes of buffer it gave back (a paused stream's large scratch): the
    /// server counts them towards handing free heap back to the kernel.
    pub released: usize,
}

/// One output source of the child: a pipe, or a terminal's master side
/// (read alike; a master's EIO, once no slave is open, ends it like EOF).
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
    /// Who takes its events.
    reader: Reader,
    life: Life,
    /// `--kill-grace`.
    grace: Duration,
    /// Partial-line flush deadline.
    pub flush: Deadline,
    /// `--timeout` or SIGKILL deadline.
    pub kill: Deadline,
    /// The command line, for logs: escaped, token redacted.
    argv: LogArgv,
    /// `argv[0]` as the client gave it, for an `err` message.
    program: Box<str>,
    /// The `err` message when the program turned out not to start after
    /// all (its `execve` failed after the spawn returned: see
    /// [`sys::take_launch_failure`]); the job then ends with `err`.
    late_failure: Option<String>,
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
            program,
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
                // Not read before the first event: the pipes are new, and
                // registering one that already holds data (or has ended)
                // reports it at the next poll, edges or not.
                Some(Pipe {
                    rx: stdout,
                    ready: false,
                }),
                Some(Pipe {
                    rx: stderr,
                    ready: false,
                }),
            ],
            text: [PipeText::new(Stream::Stdout), PipeText::new(Stream::Stderr)],
            encoder: Encoder::new(format),
            last_read: 1,
            bytes_read: 0,
            reader: options.reader,
            life: Life::Running {
                timeout_at: options.timeout.map(|t| options.now + t),
            },
            grace: options.kill_grace,
            flush: Deadline::default(),
            kill: Deadline::default(),
            argv: options.argv_for_log,
            program,
            late_failure: None,
        };
        job.encoder.set_measuring(matches!(job.reader, Reader::Log(_)));
        if let Life::Running { timeout_at: Some(at) } = job.life {
            job.kill.set(at, TimerKey::Kill(index), options.timers);
        }
        debug!("child {} started: {}", pgid, job.argv);
        Ok(job)
    }

    /// Who takes its events.
    pub fn reader(&self) -> Reader {
        self.reader
    }

    /// True once the leader is reaped (its output may still be draining).
    pub fn has_exited(&self) -> bool {
        matches!(self.life, Life::Draining { .. } | Life::Done { .. })
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
        let exited = self.has_exited();
        let Some(input) = self.input.as_mut().filter(|_| !exited) else {
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
    /// and hands each event to `take`, which returns true while the reader
    /// takes more (`room`: whether it does now). Stops when the pipes would
    /// block, the reader is full, or after [`FAIR_READS`] reads.
    pub fn pump(
        &mut self,
        buf: &mut [u8],
        room: bool,
        take: &mut Emit<'_>,
        timers: &mut Timers,
        registry: &Registry,
    ) -> Pumped {
        if self.has_exited() {
            // Nobody will read what is still queued for the command.
            self.close_input(registry);
        }
        let mut room = room;
        for _ in 0..FAIR_READS {
            if room {
                room = self.drain_backlog(take);
            }
            if !room {
                // Paused on a slow reader: hold only what must be held.
                return Pumped {
                    capped: false,
                    held: true,
                    released: self.encoder.release_scratch(),
                };
            }
            let Some(which) = self.next_ready() else {
                return Pumped {
                    capped: false,
                    held: false,
                    released: 0,
                };
            };
            self.last_read = which;
            let exited = self.has_exited();
            let Some(pipe) = &mut self.pipes[which] else {
                break;
            };
            let at = buf.len().min(HOLD_ROOM);
            match pipe.rx.read(&mut buf[at..]) {
                Ok(0) => room = self.close_pipe(which, Some(&mut *take), registry),
                Ok(n) => {
                    if n < buf.len() - at && !exited {
                        // A pipe read takes all that is buffered (up to the
                        // buffer): a short read left it empty, and the next
                        // write wakes the poll again. This saves a read that
                        // would only say WouldBlock, once per event. After
                        // exit we read to WouldBlock to know it is drained.
                        pipe.ready = false;
                    }
                    self.bytes_read += n as u64;
                    let (text, encoder) = (&mut self.text[which], &mut self.encoder);
                    text.feed_after(encoder, buf, at, n, &mut |frame, bytes| {
                        room = take(frame, bytes);
                        room
                    });
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
                    if exited {
                        // The child is gone and its pipe is empty: whatever a
                        // grandchild may still write is not this stream's.
                        room = self.close_pipe(which, Some(&mut *take), registry);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    debug!("child {}: reading its pipe failed: {err}", self.pgid);
                    room = self.close_pipe(which, Some(&mut *take), registry);
                }
            }
        }
        Pumped {
            capped: self.has_ready_pipe(),
            held: false,
            released: 0,
        }
    }

    /// True if output waits to be read or handed on: a pipe with readiness
    /// not yet drained, or text the reader did not take.
    pub fn has_unread(&self) -> bool {
        self.has_ready_pipe() || self.text.iter().any(PipeText::has_backlog)
    }

    /// Sends text the reader did not take earlier, before anything newer;
    /// true once none is left.
    fn drain_backlog(&mut self, take: &mut Emit<'_>) -> bool {
        let (texts, encoder) = (&mut self.text, &mut self.encoder);
        // Asked first, as cheaply as can be: nearly always there is nothing
        // to drain (the pump asks before every read: callgrind, W4, about
        // 70 instructions a line for calls that did nothing).
        texts
            .iter_mut()
            .all(|text| !(text.has_backlog() || text.held_len() >= MAX_HELD) || text.drain(encoder, take))
    }

    /// Closes a pipe; with `take`, hands on what it held (true while the
    /// reader takes more).
    fn close_pipe(&mut self, which: usize, take: Option<&mut Emit<'_>>, registry: &Registry) -> bool {
        if let Some(mut pipe) = self.pipes[which].take() {
            // A pipe's read end is ours alone (a child starting may hold a
            // copy until its `execve`, never after): its close takes it out
            // of the poll (epoll drops a file at its last close), so no
            // `epoll_ctl` per pipe. Should a copy outlive it for a moment,
            // an event it brings is for a slot that reads to `WouldBlock`:
            // harmless. A terminal's master is also the job's stdin (a
            // second descriptor of the same file, for the job's life): that
            // one is taken out by hand.
            if self.terminal.is_some() {
                let _ = registry.deregister(&mut pipe.rx);
            }
        }
        let mut room = true;
        if let Some(take) = take {
            self.text[which].finish(&mut self.encoder, &mut |frame, bytes| {
                room = take(frame, bytes);
                room
            });
        }
        room
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
        room: bool,
        take: &mut Emit<'_>,
        now: Instant,
        timers: &mut Timers,
        registry: &Registry,
    ) -> bool {
        if !room {
            self.flush.set(now + QUIET_FLUSH, TimerKey::Flush(self.index), timers);
            return false;
        }
        for pipe in self.pipes.iter_mut().flatten() {
            pipe.ready = true;
        }
        let before = self.bytes_read;
        let pumped = self.pump(buf, room, take, timers, registry);
        if self.bytes_read != before || pumped.held {
            // More came (the flush deadline moved with it), or the reader
            // is behind: not the moment to cut a line.
            if self.text.iter().any(PipeText::has_held) {
                let at = Instant::now() + QUIET_FLUSH;
                self.flush.set(at, TimerKey::Flush(self.index), timers);
            }
            return pumped.capped;
        }
        for which in 0..2 {
            let (text, encoder) = (&mut self.text[which], &mut self.encoder);
            text.flush(encoder, take);
        }
        pumped.capped
    }

    /// The child has exited (the server saw its zombie after SIGCHLD, not
    /// yet reaped): signal what is left of its group, reap it, and return
    /// true. False if it could not be reaped after all.
    pub fn on_exited(&mut self, now: Instant, timers: &mut Timers) -> bool {
        let timed_out = match self.life {
            Life::Running { .. } => false,
            Life::Stopping { timed_out, .. } | Life::Killed { timed_out } => timed_out,
            Life::Draining { .. } | Life::Done { .. } => return false,
        };
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
        if let Some(err) = sys::take_launch_failure(self.pgid) {
            let message = child::SpawnError::Start(self.program.to_string(), err).to_string();
            info!("{message}");
            self.late_failure = Some(message);
        }
        info!(
            "child {} {} exited: {}",
            self.pgid,
            self.argv,
            describe(status, timed_out)
        );
        // Drain both pipes once more: SIGCHLD can come while the child's
        // last write is still in the pipe, with no new edge to announce it.
        for pipe in self.pipes.iter_mut().flatten() {
            pipe.ready = true;
        }
        let grace = if self.scope.is_empty() {
            self.kill.clear();
            None
        } else {
            // A background grandchild got SIGTERM above; SIGKILL it later
            // (when a stop already began, at the end of its grace).
            let kill_at = match self.life {
                Life::Stopping { kill_at, .. } => kill_at,
                _ => now + self.grace,
            };
            self.kill.set(kill_at, TimerKey::Kill(self.index), timers);
            Some(kill_at)
        };
        self.life = Life::Draining {
            status,
            timed_out,
            grace,
        };
        true
    }

    /// Stops the command: SIGTERM to its group now, SIGKILL after the grace.
    /// True if this began the stop (it was running and not being stopped).
    pub fn terminate(&mut self, now: Instant, timers: &mut Timers) -> bool {
        self.stop(false, now, timers)
    }

    fn stop(&mut self, timed_out: bool, now: Instant, timers: &mut Timers) -> bool {
        let Life::Running { .. } = self.life else {
            return false;
        };
        debug!("child {}: SIGTERM to its group", self.pgid);
        self.scope.signal(libc::SIGTERM);
        let kill_at = now + self.grace;
        self.life = Life::Stopping { kill_at, timed_out };
        self.kill.clear();
        self.kill.set(kill_at, TimerKey::Kill(self.index), timers);
        true
    }

    /// The kill deadline fell: a `--timeout` starts the stop; the end of the
    /// grace sends SIGKILL to whatever of the scope is left. True when it
    /// was the `--timeout` that began a stop.
    pub fn on_kill_deadline(&mut self, now: Instant, timers: &mut Timers) -> bool {
        match self.life {
            Life::Running { timeout_at: Some(_) } => {
                info!("child {} {}: --timeout expired", self.pgid, self.argv);
                return self.stop(true, now, timers);
            }
            Life::Stopping { timed_out, .. } => {
                if !self.scope.is_empty() {
                    warn!(
                        "child {} {}: still running after SIGTERM, sending SIGKILL",
                        self.pgid, self.argv
                    );
                    self.scope.signal(libc::SIGKILL);
                }
                self.life = Life::Killed { timed_out };
            }
            Life::Draining {
                status,
                timed_out,
                grace: Some(_),
            } => {
                self.kill_strays();
                self.life = Life::Draining {
                    status,
                    timed_out,
                    grace: None,
                };
            }
            Life::Done { grace: Some(_) } => {
                self.kill_strays();
                self.life = Life::Done { grace: None };
            }
            Life::Running { timeout_at: None } | Life::Killed { .. } | Life::Draining { .. } | Life::Done { .. } => {}
        }
        false
    }

    fn kill_strays(&mut self) {
        if !self.scope.is_empty() {
            warn!(
                "child {} {}: still running after SIGTERM, sending SIGKILL",
                self.pgid, self.argv
            );
            self.scope.signal(libc::SIGKILL);
        }
    }

    /// The `/run` client left: stop the child. Its pipes stay open and are
    /// read and dropped until they end or the grace is over, so a command
    /// that prints while cleaning up on SIGTERM is not killed by SIGPIPE
    /// first (contract §3.6). True if this began stopping a running command.
    pub fn detach(&mut self, now: Instant, timers: &mut Timers) -> bool {
        self.reader = Reader::Nobody;
        self.encoder.set_measuring(true);
        self.flush.clear();
        self.terminate(now, timers)
    }

    /// A published job whose record is gone (it cannot happen: records
    /// outlive their jobs): its output is dropped rather than block it.
    pub fn orphan(&mut self) {
        self.reader = Reader::Nobody;
    }

    /// Stops reading an unwatched job's pipes once its grace is over: what
    /// still holds them open (a stray that left the group) is not waited for.
    pub fn stop_draining(&mut self, registry: &Registry) {
        let grace_over = match self.life {
            Life::Killed { .. } => true,
            Life::Draining { grace, .. } | Life::Done { grace } => grace.is_none(),
            Life::Running { .. } | Life::Stopping { .. } => false,
        };
        if self.reader == Reader::Nobody && grace_over {
            for which in 0..2 {
                self.close_pipe(which, None, registry);
            }
        }
    }

    /// How the command ended, once: when the child is reaped and every byte
    /// of its output has been handed on. The `exit` event's id is the next.
    pub fn exit_if_done(&mut self) -> Option<Exit> {
        let Life::Draining {
            status,
            timed_out,
            grace,
        } = self.life
        else {
            return None;
        };
        let drained = self.pipes.iter().all(Option::is_none) && !self.text.iter().any(PipeText::has_backlog);
        if !drained {
            return None;
        }
        self.life = Life::Done { grace };
        self.flush.clear();
        Some(child::exit_of(status, timed_out))
    }

    /// The last event's frame, for a reader that takes frames: `exit`, or
    /// `err` when the program turned out not to start
    /// ([`Job::late_failure`]).
    pub fn exit_frame(&mut self, exit: &Exit) -> &Frame {
        match &self.late_failure {
            Some(message) => self.encoder.error(message),
            None => self.encoder.exit(exit),
        }
    }

    /// The `err` message when the program's `execve` failed after the
    /// spawn had returned (known once the job is done): the job ends
    /// with `err` rather than `exit` (contract §3.2, §7.1).
    pub fn late_failure(&self) -> Option<&str> {
        self.late_failure.as_deref()
    }

    /// Bytes of output the command wrote so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// True when nothing of the job needs the loop any more: its `exit`
    /// handed on (or dropped, with nobody to read it) and the kill grace,
    /// if any, over.
    pub fn is_finished(&self) -> bool {
        self.life == Life::Done { grace: None }
    }
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
    /// Who takes its events.
    pub reader: Reader,
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
