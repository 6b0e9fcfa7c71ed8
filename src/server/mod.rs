//! The event loop: one `mio::Poll` for the listener, every client socket,
//! every child's pipes, the signalfd (SIGCHLD reports every
//! child's exit) and the launch path's eventfd (a launched child has its
//! own descriptor table); the timer queue sets its timeout. Only this module calls `poll` and decides what closes.
//!
//! A failed system call ends one connection or one job, never the loop.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::child::{self, SpawnOptions};
use crate::cli::Config;
use crate::contain::Containment;
use crate::http::conn::{self, Action, Conn, Source};
use crate::http::request::{Head, HttpError};
use crate::http::response::Reply;
use crate::job::{Job, JobOptions, Reader, TOKEN_KIND_BITS, TOKEN_STDERR, TOKEN_STDIN, TOKEN_STDOUT};
use crate::jobs::Record;
use crate::logsafe::{self, LogArgv};
use crate::metrics::{Metrics, StopReason};
use crate::route::{self, Decision, RunRequest};
use crate::sse::Format;
use crate::sys;
use crate::table::Table;
use crate::timer::{Deadline, TimerKey, Timers};
use std::rc::Rc;

mod input;
mod mux;
mod publish;
mod run;
mod scrape;

/// The listener's poll token.
const LISTENER: Token = Token(0);
/// The signalfd's poll token (index 1, kind 0).
const SIGNALS: Token = Token(1 << TOKEN_KIND_BITS);
/// The launch path's eventfd's poll token (index 2, kind 0): see
/// `sys::launch_notifier`.
const LAUNCHES: Token = Token(2 << TOKEN_KIND_BITS);

/// Size of the one read buffer the whole loop shares (pipes and sockets).
/// 64 KiB is a default pipe's capacity: one read empties a full pipe.
pub const READ_BUFFER: usize = 64 * 1024;

pub use crate::http::conn::{FIN_PROBE, HEAD_TIMEOUT, IDLE_TIMEOUT, LINGER};

/// Connections accepted past `--max-conns` to be told `503`; beyond this many
/// more, new connections are closed without a word.
const REFUSAL_SLOTS: usize = 64;

/// Connections accepted per turn, so a connection storm cannot starve
/// streams that are already running.
const ACCEPTS_PER_TURN: usize = 128;

/// How long accepting pauses when the process is out of descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Connections and jobs at once that make a spell "busy": going idle after
/// one gives memory back (see `compact_when_idle`); after a lone request it
/// would only cost time.
const BUSY_SPELL: usize = 64;

/// Bytes of job logs (and of paused streams' scratch buffers) freed that
/// make the loop hand free heap back to the system before it sleeps (glibc
/// keeps a freed heap otherwise, and a slow client would seem to cost what
/// its stream once needed, not what it holds: contract §3.7).
const TRIM_AFTER: usize = 1024 * 1024;

/// How far off the earliest wake-up must be for the next poll's timeout
/// to be taken from the last batch's clock read (see `clock_for_timeout`).
const CLOCK_REUSE_MARGIN: Duration = Duration::from_secs(1);

/// Poll events fetched per call.
const EVENTS_PER_POLL: usize = 1024;

/// Exited children reaped per turn of the loop; past it the rest wait for
/// the next turn (before the next poll), so a burst of exits cannot hold the
/// loop.
const REAPS_PER_TURN: usize = 256;

/// How often the cgroups of ended commands are looked at again until they
/// are empty and can go (`cgroup.kill` is asynchronous).
const TIDY_EVERY: Duration = Duration::from_millis(100);

/// Why the loop is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Serving,
    /// SIGINT or SIGTERM came: children are being stopped; exit at the deadline.
    ShuttingDown {
        deadline: Instant,
    },
}

/// The server: everything the loop owns.
pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    signals: sys::Signals,
    /// The job each running child (by pid) belongs to: SIGCHLD says only
    /// that some child exited. Its size is the children started and not yet
    /// reaped (`--max-procs`). A B-tree, not a hash map: no random keys to
    /// seed (a syscall and code pages) before the first command.
    children: BTreeMap<libc::pid_t, usize>,
    /// Exited children may be left to reap (SIGCHLD came, or a turn's reap
    /// cap was reached).
    reap_pending: bool,
    config: Config,
    spawn_options: SpawnOptions,
    conns: Table<Conn>,
    jobs: Table<Job>,
    /// Published jobs (contract §7), running and kept.
    records: Table<Record>,
    /// Jobs finished so far, to order the kept ones.
    finished_seq: u64,
    timers: Timers,
    /// The one read buffer of the loop.
    buf: Box<[u8]>,
    state: State,
    /// Connections counting against `--max-conns`.
    counted_conns: usize,
    /// Jobs stopped at their read cap, revisited before the next poll.
    revisit_jobs: Vec<usize>,
    /// Connections stopped at their step cap (pipelined requests still
    /// buffered), revisited before the next poll: no event will come for
    /// bytes already read.
    revisit_conns: Vec<usize>,
    /// Connections with something new to do (a job's log grew, a `/run`
    /// stream ended): driven from the top of the loop once the pump that
    /// woke them is done, so no pump calls back into a connection.
    woken: Vec<usize>,
    /// The batch of `woken` being driven (kept, with its capacity, so waking
    /// allocates nothing per event).
    waking: Vec<usize>,
    /// Jobs a multiplexed viewer caught up with in one pull (kept, with its
    /// capacity, as `waking`).
    caught_up: Vec<usize>,
    /// Connections and jobs at once since memory was last given back.
    busiest: usize,
    /// The listener has connections left (accept cap or pause).
    accept_pending: bool,
    /// Accepting is paused until this deadline (out of descriptors).
    accept_pause: Deadline,
    /// The shutdown deadline.
    shutdown: Deadline,
    /// A spare descriptor, given up to accept-and-close when out of them.
    reserve: Option<File>,
    /// Keeps what commands start, even outside their process group (§3.6).
    containment: Containment,
    /// Next look at ended commands' cgroups still waiting to be removed.
    tidy: Deadline,
    /// The counters `/metrics` reports (contract §8).
    metrics: Metrics,
    /// Bytes of job logs and scratch freed since heap was last handed back.
    freed: usize,
    /// `--token`, shared with every connection (masked in access lines).
    token: Option<Rc<str>>,
    /// Input requests whose bodies are arriving, by connection (contract
    /// §10.2).
    bodies: BTreeMap<usize, input::PendingInput>,
}

fn would_block(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}

fn interrupted(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::Interrupted
}

impl Server {
    /// Sets the loop up around a bound listener. SIGINT, SIGTERM and SIGCHLD
    /// arrive as events on a signalfd (or a self-pipe: see `sys::Signals`).
    pub fn new(mut listener: TcpListener, config: Config) -> io::Result<Server> {
        let poll = Poll::new()?;
        let containment = Containment::new().map_err(io::Error::other)?;
        crate::child::choose_spawn_path().map_err(io::Error::other)?;
        if containment.fell_back() {
            warn!("containment: {}", containment.description());
        } else {
            info!("containment: {}", containment.description());
        }
        // One SIGCHLD path for every child, not a pidfd each: a stream
        // costs three descriptors, not four.
        let signals = sys::Signals::new(&[libc::SIGINT, libc::SIGTERM, libc::SIGCHLD], crate::child::own_spawn())?;
        poll.registry()
            .register(&mut SourceFd(&signals.fd().as_raw_fd()), SIGNALS, Interest::READABLE)?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        if let Some(notifier) = sys::launch_notifier() {
            poll.registry()
                .register(&mut SourceFd(&notifier), LAUNCHES, Interest::READABLE)?;
        }
        let _ = sys::set_listen_backlog(&listener, 4096);
        let token = config.token.as_deref().map(Rc::from);
        let spawn_options = SpawnOptions {
            cwd: config.cwd.clone(),
            allow: config.allow.clone(),
        };
        Ok(Server {
            poll,
            listener: Some(listener),
            signals,
            children: BTreeMap::new(),
            reap_pending: false,
            config,
            spawn_options,
            conns: Table::default(),
            jobs: Table::default(),
            records: Table::default(),
            finished_seq: 0,
            timers: Timers::default(),
            buf: vec![0u8; crate::job::HOLD_ROOM + READ_BUFFER].into_boxed_slice(),
            state: State::Serving,
            counted_conns: 0,
            revisit_jobs: Vec::new(),
            revisit_conns: Vec::new(),
            woken: Vec::new(),
            waking: Vec::new(),
            caught_up: Vec::new(),
            busiest: 0,
            accept_pending: false,
            accept_pause: Deadline::default(),
            shutdown: Deadline::default(),
            reserve: File::open("/dev/null").ok(),
            containment,
            tidy: Deadline::default(),
            metrics: Metrics::default(),
            freed: 0,
            token,
            bodies: BTreeMap::new(),
        })
    }

    /// Runs until a shutdown completes.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        // The clock as the last batch read it (see `clock_for_timeout`).
        let mut batch_clock = Instant::now();
        loop {
            let now = self.clock_for_timeout(batch_clock);
            if self.is_done(now) {
                return Ok(());
            }
            // No event of the last batch can name a slot freed in it any more.
            self.conns.release_freed();
            self.jobs.release_freed();
            self.records.release_freed();
            // Launched children give back what they no longer need (their
            // stdio once they have their own table: the eventfd woke us;
            // their memory once exec'd: looked at on any wake-up).
            sys::collect_launches();
            let timeout = if self.has_leftover_work() {
                Some(Duration::ZERO)
            } else {
                self.prune_timers();
                self.compact_when_idle();
                self.timers.poll_timeout(now)
            };
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if interrupted(&err) {
                    // The wait may have lasted long (a stop and continue
                    // interrupts it without a signal of ours): the next
                    // timeout must not be counted from before it.
                    batch_clock = Instant::now();
                    continue;
                }
                return Err(err);
            }
            // One clock read for the whole batch: a turn's work is bounded
            // per event, and a timer that falls due while it runs is seen by
            // the next turn.
            let now = Instant::now();
            batch_clock = now;
            for event in events.iter() {
                self.dispatch(event, now);
            }
            self.wake_conns(now);
            self.revisit(now);
            if self.reap_pending {
                self.reap_children(now);
                self.wake_conns(now);
            }
            self.on_timers(now);
            self.wake_conns(now);
            self.arm_tidy(now);
        }
    }

    /// The clock for the next poll's timeout: the last batch's read when
    /// the earliest wake-up is at least [`CLOCK_REUSE_MARGIN`] after it (a
    /// heartbeat, an idle timeout: late by one turn's work at most, which
    /// they do not notice), else a fresh read (a partial line's 20 ms, the
    /// last second of a kill grace): a wake-up is late by one turn's work
    /// at most, and only one a second or more away. Under a steady load of
    /// streams that is one clock read per batch, not two.
    fn clock_for_timeout(&self, batch_clock: Instant) -> Instant {
        let far = |(at, _)| at >= batch_clock + CLOCK_REUSE_MARGIN;
        if self.has_leftover_work() || !self.timers.peek().is_none_or(far) {
            return Instant::now();
        }
        batch_clock
    }

    fn has_leftover_work(&self) -> bool {
        !self.revisit_jobs.is_empty()
            || !self.revisit_conns.is_empty()
            || self.reap_pending
            || (self.accept_pending && self.accept_pause.at().is_none())
    }

    fn is_done(&mut self, now: Instant) -> bool {
        let State::ShuttingDown { deadline } = self.state else {
            return false;
        };
        let busy = self.conns.indices().into_iter().any(|i| {
            self.conns
                .get(i)
                .is_some_and(|c| c.is_streaming() || c.pending_len() > 0)
        });
        if !busy && self.children.is_empty() {
            info!("shutdown complete");
            return true;
        }
        if now >= deadline {
            warn!(
                "shutdown deadline reached with {} children and streams left",
                self.children.len()
            );
            // What still runs is killed (its whole scope) and reaped as the
            // server drops its jobs on the way out: see `Drop for Job`.
            return true;
        }
        false
    }

    fn dispatch(&mut self, event: &mio::event::Event, now: Instant) {
        let token = event.token();
        if token == LISTENER {
            self.accept_pending = true;
            self.on_listener(now);
            return;
        }
        if token == SIGNALS {
            self.on_signal(now);
            return;
        }
        if token == LAUNCHES {
            sys::on_launch_notice();
            return;
        }
        let index = token.0 >> TOKEN_KIND_BITS;
        match token.0 & ((1 << TOKEN_KIND_BITS) - 1) {
            conn::TOKEN_CONN => {
                if let Some(conn) = self.conns.get_mut(index) {
                    conn.on_event(conn::Readiness {
                        readable: event.is_readable(),
                        read_closed: event.is_read_closed(),
                        writable: event.is_writable(),
                        error: event.is_error() || event.is_write_closed(),
                    });
                }
                self.drive_conn(index, now);
            }
            kind @ (TOKEN_STDOUT | TOKEN_STDERR) => {
                if let Some(job) = self.jobs.get_mut(index) {
                    job.set_ready(kind);
                    // Pumped at once, in the order the events came: a job
                    // whose stdout and stderr both became ready is read in
                    // the order they did (a pty's text before the stderr
                    // line written after it), not by the pump's turn-taking.
                    self.pump_job(index, now);
                }
            }
            TOKEN_STDIN => self.on_stdin(index),
            _ => {}
        }
    }

    fn revisit(&mut self, now: Instant) {
        for index in std::mem::take(&mut self.revisit_jobs) {
            self.pump_job(index, now);
        }
        self.wake_conns(now);
        for index in std::mem::take(&mut self.revisit_conns) {
            self.drive_conn(index, now);
        }
        if self.accept_pending && self.accept_pause.at().is_none() {
            self.on_listener(now);
        }
    }

    // ----- accepting -------------------------------------------------------

    fn on_listener(&mut self, now: Instant) {
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listener) = &self.listener else { return };
            match listener.accept() {
                Ok((sock, peer)) => self.on_accepted(sock, peer, now),
                Err(err) if would_block(&err) => {
                    self.accept_pending = false;
                    return;
                }
                Err(err) if interrupted(&err) => {}
                Err(err) if matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    self.out_of_descriptors(now);
                    return;
                }
                Err(err) => {
                    // ECONNABORTED and friends: that one connection is gone.
                    debug!("accept failed: {err}");
                }
            }
        }
    }

    /// EMFILE: free the spare descriptor to accept one connection and close
    /// it (so the client is not left hanging), then pause accepting briefly
    /// instead of spinning on a listener that stays readable.
    fn out_of_descriptors(&mut self, now: Instant) {
        warn!("out of file descriptors: refusing connections for {ACCEPT_PAUSE:?}");
        self.reserve = None;
        if let Some(listener) = &self.listener {
            if let Ok((sock, _)) = listener.accept() {
                drop(sock);
            }
        }
        self.reserve = File::open("/dev/null").ok();
        self.accept_pause
            .set(now + ACCEPT_PAUSE, TimerKey::Server, &mut self.timers);
    }

    fn on_accepted(&mut self, sock: mio::net::TcpStream, peer: std::net::SocketAddr, now: Instant) {
        let over = self.counted_conns >= self.config.max_conns;
        if over && self.conns.len() >= self.counted_conns + REFUSAL_SLOTS {
            debug!("{peer}: dropped, too many connections");
            return;
        }
        // Streams are latency-sensitive and small: never wait for Nagle.
        let _ = sock.set_nodelay(true);
        let index = self.conns.next_index();
        let mut conn = Conn::new(sock, peer, index, !over, self.token.clone(), now, &mut self.timers);
        if let Err(err) = conn.register(self.poll.registry()) {
            warn!("{peer}: cannot register the connection: {err}");
            return;
        }
        self.conns.insert(conn);
        if over {
            let reply = Reply::text(503, "Service Unavailable", "too many connections: try again shortly")
                .header("Retry-After", "1")
                .closing();
            let note = format!(" (--max-conns {} reached)", self.config.max_conns);
            self.send_reply(index, &reply, 1, false, &note, now);
        } else {
            self.counted_conns += 1;
        }
        self.drive_conn(index, now);
    }

    // ----- connections -----------------------------------------------------

    /// Drives the connections a pump woke.
    ///
    /// Asked three times a turn, and most turns woke nobody: the question
    /// is inlined, the work is not (its call cost about 40 instructions a
    /// line in callgrind, W4, with nothing to do).
    #[inline]
    fn wake_conns(&mut self, now: Instant) {
        if !self.woken.is_empty() {
            self.drive_woken(now);
        }
    }

    /// [`Server::wake_conns`]'s work, when some connection was woken.
    #[inline(never)]
    fn drive_woken(&mut self, now: Instant) {
        let mut batch = std::mem::take(&mut self.waking);
        while !self.woken.is_empty() {
            std::mem::swap(&mut batch, &mut self.woken);
            if batch.len() > 1 {
                // A multiplexed viewer is woken by each of its jobs that
                // grew: one drive takes what every job has ready.
                batch.sort_unstable();
                batch.dedup();
            }
            for &index in &batch {
                self.drive_conn(index, now);
            }
            batch.clear();
        }
        self.waking = batch;
    }

    /// Moves a connection as far as its readiness allows, carrying out
    /// what it asks. Each turn makes progress or stops; the bound keeps one
    /// client pipelining hundreds of requests from starving the rest (past
    /// it the connection is revisited before the next poll).
    fn drive_conn(&mut self, index: usize, now: Instant) {
        for _ in 0..64 {
            let Some(conn) = self.conns.get_mut(index) else { return };
            let action = conn.advance(&mut self.buf, now, &mut self.timers);
            if !self.carry_out(index, action, now) {
                return;
            }
        }
        self.revisit_conns.push(index);
    }

    /// Does what a connection asked; true if it may have more to do at once.
    fn carry_out(&mut self, index: usize, action: Action, now: Instant) -> bool {
        match action {
            Action::Wait => false,
            Action::Route(head) => {
                self.on_request(index, head, now);
                true
            }
            Action::Reject(err) => {
                self.reject(index, err, now);
                true
            }
            Action::Pull(Source::Run(job)) => self.feed_run(index, job, now),
            Action::Pull(Source::Watch(record)) => self.pull(index, record, now),
            Action::Pull(Source::Mux) => self.pull_mux(index, now),
            Action::Body(body) => {
                self.finish_input(index, body, now);
                true
            }
            Action::RefuseBody(err) => {
                self.refuse_body(index, err, now);
                true
            }
            Action::Close => {
                self.close_conn(index, now);
                false
            }
        }
    }

    /// Answers a request the parser refused, then closes.
    fn reject(&mut self, index: usize, err: HttpError, now: Instant) {
        if let Some(conn) = self.conns.get_mut(index) {
            let status = conn.reject(err, now);
            self.metrics.response(status);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send_reply(&mut self, index: usize, reply: &Reply, minor: u8, head_only: bool, note: &str, now: Instant) {
        let Some(conn) = self.conns.get_mut(index) else { return };
        self.metrics.response(reply.status);
        conn.reply(reply, minor, head_only, note, now);
    }

    fn on_request(&mut self, index: usize, head: Head, now: Instant) {
        match route::decide(&head, &self.config) {
            Decision::Reply(reply) => self.answer(index, &head, reply, "", now),
            Decision::Run(run) => {
                if self.refuses_commands() {
                    let note = format!(" (--max-procs {} reached)", self.config.max_procs);
                    let mut reply = too_many_commands();
                    reply.headers.extend(run.headers);
                    self.answer(index, &head, reply, &note, now);
                    return;
                }
                self.start_stream(index, &head, run, now);
            }
            Decision::Job(request) => self.on_job_request(index, &head, request, now),
            Decision::Metrics(headers) => {
                let reply = self.scrape(headers);
                self.answer(index, &head, reply, "", now);
            }
        }
    }

    /// True when no command may start now: shutting down, or `--max-procs`
    /// commands (`/run` and jobs together) are running: a command counts
    /// until its whole scope is empty, kill grace included.
    fn refuses_commands(&self) -> bool {
        self.state != State::Serving || self.containment.running() >= self.config.max_procs
    }

    /// Sends a fixed reply to the request `head`; the connection closes
    /// after it when the client asked, when a body we did not read leaves
    /// the framing unknown, or when the server is shutting down.
    fn answer(&mut self, index: usize, head: &Head, mut reply: Reply, note: &str, now: Instant) {
        if !head.keep_alive || head.has_body || self.state != State::Serving {
            reply.close = true;
        }
        let head_only = head.method == crate::http::request::Method::Head;
        self.send_reply(index, &reply, head.minor_version, head_only, note, now);
    }

    // ----- streams and jobs ------------------------------------------------

    /// Starts `run`'s command (on pipes or a terminal, with or without
    /// input) as a job whose events go to `reader`; its job table index, or
    /// the `err` event's message.
    fn spawn_job(&mut self, run: &RunRequest, format: Format, reader: Reader, now: Instant) -> Result<usize, String> {
        let argv = &run.argv;
        let job_index = self.jobs.next_index();
        let spawned = match self.containment.spawn_scope() {
            Ok(scope) => child::spawn(argv, &self.spawn_options, run.streams, scope),
            Err(err) => Err(child::SpawnError::Contain(err)),
        };
        let argv_for_log = self.argv_for_log(argv);
        let started = spawned.map_err(|err| err.to_string()).and_then(|spawned| {
            let options = JobOptions {
                now,
                timeout: self.config.timeout,
                kill_grace: self.config.kill_grace,
                argv_for_log,
                timers: &mut self.timers,
                reader,
            };
            Job::start(spawned, job_index, format, options, self.poll.registry())
                .map_err(|err| format!("cannot watch the command: {err}"))
        });
        match started {
            Ok(job) => {
                self.metrics.command_started();
                let pid = job.pid();
                let index = self.jobs.insert(job);
                self.children.insert(pid, index);
                Ok(index)
            }
            Err(message) => {
                self.metrics.command_failed_to_start();
                info!("{}", logsafe::safe(&message, self.config.token.as_deref()));
                Err(message)
            }
        }
    }

    /// The command line for logs, escaped, with the token (if a client typed
    /// it) masked: the token appears in no log line.
    fn argv_for_log(&self, argv: &[String]) -> LogArgv {
        LogArgv::new(argv, self.config.token.as_deref())
    }

    /// Reads a job's pipes and hands its events on to its reader.
    fn pump_job(&mut self, index: usize, now: Instant) {
        let Some(job) = self.jobs.get_mut(index) else { return };
        match job.reader() {
            Reader::Log(record) => self.pump_published(index, record, now),
            Reader::Stream(conn) => {
                if self.feed_run(conn, index, now) {
                    self.woken.push(conn);
                }
            }
            Reader::Nobody => {
                let pumped = job.pump(
                    &mut self.buf,
                    true,
                    &mut |_, _| true,
                    &mut self.timers,
                    self.poll.registry(),
                );
                if pumped.capped {
                    self.revisit_jobs.push(index);
                }
                let _ = job.exit_if_done();
                self.reap_if_finished(index);
            }
        }
    }

    /// Reaps exited children, at most [`REAPS_PER_TURN`]: a command's
    /// leader goes to its job (which signals what is left of its group
    /// first, while the zombie still holds the group id); any other child is
    /// an orphan re-parented to us (subreaper mode) and is just reaped.
    fn reap_children(&mut self, now: Instant) {
        self.reap_pending = false;
        for _ in 0..REAPS_PER_TURN {
            let Some(pid) = sys::peek_exited_child() else { return };
            let Some(index) = self.children.remove(&pid) else {
                debug!("reaped orphan {pid}");
                sys::reap_pid(pid);
                continue;
            };
            let Some(job) = self.jobs.get_mut(index) else {
                sys::reap_pid(pid);
                continue;
            };
            if !job.on_exited(now, &mut self.timers) {
                // Not reapable after all (logged): keep it known, so the next
                // SIGCHLD tries again rather than taking it for an orphan,
                // and leave it rather than spin.
                self.children.insert(pid, index);
                return;
            }
            self.pump_job(index, now);
        }
        self.reap_pending = true;
    }

    fn reap_if_finished(&mut self, index: usize) {
        if self.jobs.get(index).is_some_and(Job::is_finished) {
            self.jobs.remove(index);
        }
    }

    fn close_conn(&mut self, index: usize, now: Instant) {
        self.bodies.remove(&index);
        let Some(conn) = self.conns.get(index) else { return };
        match conn.source() {
            Some(Source::Run(job)) => {
                if self.jobs.get_mut(job).is_some_and(|j| j.detach(now, &mut self.timers)) {
                    self.metrics.command_stopped(StopReason::ClientGone);
                }
                // What it still writes is read and dropped; done, it goes.
                self.pump_job(job, now);
            }
            Some(Source::Watch(record)) => self.unwatch(index, record, now),
            Some(Source::Mux) => self.unwatch_mux(index, now),
            None => {}
        }
        let Some(conn) = self.conns.remove(index) else {
            return;
        };
        self.metrics.conn_closed(conn.counts());
        // No `epoll_ctl` DEL: the socket is ours alone (a child starting may
        // hold a copy until its `execve`, never after), so its close, as
        // `conn` drops, takes it out of the poll. The slot is not reused
        // within this batch of events.
        if conn.counted() {
            self.counted_conns -= 1;
        }
    }

    // ----- signals ---------------------------------------------------------

    fn on_signal(&mut self, now: Instant) {
        let caught = match self.signals.take() {
            Ok(caught) => caught,
            Err(err) => {
                error!("reading signals failed: {err}");
                return;
            }
        };
        if caught & (1 << libc::SIGCHLD) != 0 {
            self.reap_children(now);
        }
        for signal in [libc::SIGINT, libc::SIGTERM] {
            if caught & (1 << signal) != 0 {
                self.begin_shutdown(signal, now);
            }
        }
    }

    /// Keeps a look-again queued while the containment has work (cgroups of
    /// ended commands to remove): done on later ticks,
    /// never waited for.
    fn arm_tidy(&mut self, now: Instant) {
        if self.tidy.at().is_none() && self.containment.has_pending() {
            self.tidy.set(now + TIDY_EVERY, TimerKey::Server, &mut self.timers);
        }
    }

    /// Stop accepting, stop every child, let each stream send its `exit`.
    fn begin_shutdown(&mut self, signal: libc::c_int, now: Instant) {
        if self.state != State::Serving {
            return;
        }
        info!("signal {signal}: shutting down");
        // Exit within the grace plus one second (contract §6); keep a little
        // of that second for the last exit events to go out.
        let deadline = now + self.config.kill_grace + Duration::from_millis(800);
        self.state = State::ShuttingDown { deadline };
        self.shutdown.set(deadline, TimerKey::Server, &mut self.timers);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        for index in self.jobs.indices() {
            if self
                .jobs
                .get_mut(index)
                .is_some_and(|j| j.terminate(now, &mut self.timers))
            {
                self.metrics.command_stopped(StopReason::Shutdown);
            }
        }
        for index in self.conns.indices() {
            let Some(conn) = self.conns.get_mut(index) else {
                continue;
            };
            if conn.is_idle() {
                self.close_conn(index, now);
            } else {
                conn.on_shutdown();
            }
        }
        self.mux_on_shutdown();
    }

    // ----- timers ----------------------------------------------------------

    /// Drops wake-ups at the front of the queue that would do nothing (their
    /// owner is gone, or its deadline was cleared or moved later), queuing
    /// the right time instead, so stale entries never wake an idle server.
    fn prune_timers(&mut self) {
        while let Some((at, key)) = self.timers.peek() {
            if key == TimerKey::Server {
                return;
            }
            let deadline = deadline_of(&mut self.conns, &mut self.jobs, &mut self.records, key);
            if deadline.as_ref().is_some_and(|d| d.wants_wakeup_at(at)) {
                return;
            }
            self.timers.pop();
            if let Some(deadline) = deadline {
                deadline.requeue(at, key, &mut self.timers);
            }
        }
    }

    /// Wake-ups for connections and jobs that are gone stay queued until
    /// their time (a heap cannot drop from the middle). When the queue holds
    /// far more than the live owners need, rebuild it without them, so a
    /// burst of connections leaves no memory behind.
    fn compact_timers(&mut self) {
        let live = 2 * (self.conns.len() + self.jobs.len()) + self.records.len() + 2;
        if self.timers.len() > 2 * live + 256 {
            self.rebuild_timers();
        }
    }

    /// Queues again only the wake-ups some owner still wants.
    fn rebuild_timers(&mut self) {
        for (at, key) in self.timers.take_all() {
            if key == TimerKey::Server {
                self.timers.push(at, key);
                continue;
            }
            match deadline_of(&mut self.conns, &mut self.jobs, &mut self.records, key) {
                Some(deadline) if deadline.wants_wakeup_at(at) => self.timers.push(at, key),
                Some(deadline) => deadline.requeue(at, key, &mut self.timers),
                None => {}
            }
        }
        self.timers.shrink();
    }

    /// Keeps memory flat across bursts: compacts the timer queue; hands free
    /// heap back to the kernel once [`TRIM_AFTER`] bytes of job logs or scratch were
    /// freed; and once the server is idle again after a busy spell, frees
    /// the tables' slots and hands free heap back too.
    fn compact_when_idle(&mut self) {
        self.compact_timers();
        if self.freed >= TRIM_AFTER {
            self.freed = 0;
            sys::release_free_memory();
        }
        self.busiest = self.busiest.max(self.conns.len() + self.jobs.len());
        if self.conns.is_empty() && self.jobs.is_empty() && self.busiest >= BUSY_SPELL {
            self.busiest = 0;
            self.conns.shrink();
            self.jobs.shrink();
            self.rebuild_timers();
            sys::release_free_memory();
        }
    }

    fn on_timers(&mut self, now: Instant) {
        while let Some(key) = self.timers.pop_due(now) {
            match key {
                TimerKey::Conn(index) => self.on_conn_deadline(index, now),
                TimerKey::Heartbeat(index) => self.on_heartbeat(index, now),
                TimerKey::Flush(index) => self.on_flush(index, now),
                TimerKey::Kill(index) => self.on_kill(index, now),
                TimerKey::Forget(index) => self.on_forget(index, now),
                TimerKey::Server => {
                    if self.accept_pause.fire(now, key, &mut self.timers) {
                        self.on_listener(now);
                    }
                    self.shutdown.fire(now, key, &mut self.timers);
                    if self.tidy.fire(now, key, &mut self.timers) {
                        self.containment.tidy();
                    }
                }
            }
        }
    }

    fn on_conn_deadline(&mut self, index: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(index) else { return };
        let action = conn.on_deadline(&mut self.buf, now, &mut self.timers);
        if self.carry_out(index, action, now) {
            self.drive_conn(index, now);
        }
    }

    fn on_heartbeat(&mut self, index: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(index) else { return };
        let action = conn.on_heartbeat(now, &mut self.timers);
        self.carry_out(index, action, now);
    }

    fn on_flush(&mut self, index: usize, now: Instant) {
        let Some(job) = self.jobs.get_mut(index) else { return };
        if !job.flush.fire(now, TimerKey::Flush(index), &mut self.timers) {
            return;
        }
        let capped = match job.reader() {
            Reader::Stream(conn) => self.quiet_run(index, conn, now),
            Reader::Log(record) => self.quiet_published(index, record, now),
            Reader::Nobody => return,
        };
        if capped {
            self.revisit_jobs.push(index);
        }
        // Reading may have met the end of the pipes, or a dead client: the
        // usual path finishes the stream or closes.
        self.pump_job(index, now);
    }

    fn on_kill(&mut self, index: usize, now: Instant) {
        let Some(job) = self.jobs.get_mut(index) else { return };
        if !job.kill.fire(now, TimerKey::Kill(index), &mut self.timers) {
            return;
        }
        if job.on_kill_deadline(now, &mut self.timers) {
            self.metrics.command_stopped(StopReason::Timeout);
        }
        let Some(job) = self.jobs.get_mut(index) else { return };
        job.stop_draining(self.poll.registry());
        self.pump_job(index, now);
        self.reap_if_finished(index);
    }
}

impl Drop for Server {
    /// Whatever the commands left (strays, their cgroups) goes with the server.
    fn drop(&mut self) {
        self.containment.shut_down();
    }
}

/// `503` for a command past `--max-procs` (or during shutdown).
fn too_many_commands() -> Reply {
    Reply::text(
        503,
        "Service Unavailable",
        "too many commands running: try again shortly",
    )
    .header("Retry-After", "1")
}

/// The deadline a (non-server) timer key stands for; `None` when its owner
/// is gone.
fn deadline_of<'a>(
    conns: &'a mut Table<Conn>,
    jobs: &'a mut Table<Job>,
    records: &'a mut Table<Record>,
    key: TimerKey,
) -> Option<&'a mut Deadline> {
    match key {
        TimerKey::Conn(index) | TimerKey::Heartbeat(index) => conns.get_mut(index).and_then(|c| c.deadline_mut(key)),
        TimerKey::Flush(index) => jobs.get_mut(index).map(|j| &mut j.flush),
        TimerKey::Kill(index) => jobs.get_mut(index).map(|j| &mut j.kill),
        TimerKey::Forget(index) => records.get_mut(index).map(|r| &mut r.forget),
        TimerKey::Server => None,
    }
}
