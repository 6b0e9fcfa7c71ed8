//! The bench loop: one thread, one `mio::Poll`, every stream a non-blocking
//! socket. One thread is enough: the work per byte is a memchr-driven parse,
//! far cheaper than the server's and the command's (which share the same
//! cores on a single machine), and one thread keeps the counts exact without
//! locks.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use super::args::Plan;
use super::stats::{Failure, Totals};
use super::stream::{Step, Stream};
use crate::client::http;

/// Bytes per read: large reads keep a fast stream's syscalls few.
const READ_BUF: usize = 256 * 1024;

/// How often the progress line is redrawn.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// A snapshot for the progress line.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Since the run began.
    pub elapsed: Duration,
    /// Streams open now.
    pub open: usize,
    /// Streams asked for.
    pub streams: usize,
    /// Events so far.
    pub events: u64,
    /// Payload bytes so far.
    pub payload_bytes: u64,
    /// Failed streams so far.
    pub failed: usize,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The totals.
    pub totals: Totals,
    /// From the first connect until the last stream ended or the deadline.
    pub elapsed: Duration,
    /// The address contacted.
    pub addr: SocketAddr,
}

/// The request every stream sends.
pub fn request(plan: &Plan) -> Vec<u8> {
    let mut extra = Vec::new();
    if let Some(format) = &plan.format {
        extra.push(("format", format.as_str()));
    }
    let target = plan.url.run_target(&plan.command, &extra);
    let agent = concat!("ssecommander-bench/", env!("CARGO_PKG_VERSION"));
    let mut out = Vec::with_capacity(target.len() + 128);
    http::write_request(
        &mut out,
        "GET",
        &target,
        &plan.url.authority(),
        &[("Accept", "text/event-stream"), ("User-Agent", agent)],
    );
    out
}

/// Runs the plan against `addr` (the URL's host, resolved once): opens every
/// stream, reads until each ends or the duration is up, then closes what is
/// left. `progress` is called about once a second.
pub fn run(plan: &Plan, addr: SocketAddr, progress: &mut dyn FnMut(&Progress)) -> io::Result<Outcome> {
    let mut poll = Poll::new()?;
    let request = request(plan);
    let mut totals = Totals {
        stamp_floor: crate::sys::monotonic_ns().saturating_sub(1_000_000_000),
        ..Totals::default()
    };
    let start = Instant::now();
    let deadline = start + plan.duration;
    let mut streams: Vec<Option<Stream>> = Vec::with_capacity(plan.streams);
    for i in 0..plan.streams {
        match Stream::connect(addr, poll.registry(), Token(i)) {
            Ok(stream) => streams.push(Some(stream)),
            Err(err) => {
                totals.note_connect_error(&err);
                totals.fail(if err.kind() == ErrorKind::Other {
                    Failure::Poll
                } else {
                    Failure::Connect
                });
                streams.push(None);
            }
        }
    }
    let mut open = streams.iter().flatten().count();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; READ_BUF];
    let mut scratch = Vec::new();
    let mut again: Vec<usize> = Vec::new();
    let mut queued = vec![false; plan.streams];
    let mut work: Vec<(usize, bool, bool)> = Vec::new();
    let mut next_progress = start + PROGRESS_EVERY;
    while open > 0 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let wait = if again.is_empty() {
            deadline.min(next_progress).saturating_duration_since(now)
        } else {
            Duration::ZERO
        };
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
        work.clear();
        for i in again.drain(..) {
            queued[i] = false;
            work.push((i, false, true));
        }
        for event in events.iter() {
            // An error or hang-up is seen by the read or the write.
            let readable = event.is_readable() || event.is_read_closed() || event.is_error();
            let writable = event.is_writable() || event.is_error();
            work.push((event.token().0, writable, readable));
        }
        for &(i, writable, readable) in &work {
            let Some(Some(stream)) = streams.get_mut(i) else {
                continue;
            };
            match stream.step(writable, readable, &request, &mut buf, &mut scratch, &mut totals) {
                Step::Wait => {}
                Step::Again if !queued[i] => {
                    queued[i] = true;
                    again.push(i);
                }
                Step::Again => {}
                Step::Done => {
                    stream.deregister(poll.registry());
                    streams[i] = None;
                    open -= 1;
                }
            }
        }
        if Instant::now() >= next_progress {
            next_progress += PROGRESS_EVERY;
            progress(&snapshot(plan, start, open, &totals));
        }
    }
    let elapsed = start.elapsed().min(plan.duration);
    totals.cut = open;
    Ok(Outcome { totals, elapsed, addr })
}

fn snapshot(plan: &Plan, start: Instant, open: usize, totals: &Totals) -> Progress {
    Progress {
        elapsed: start.elapsed(),
        open,
        streams: plan.streams,
        events: totals.events,
        payload_bytes: totals.payload_bytes,
        failed: totals.failed(),
    }
}
