//! A job's bounded log of events (contract §7.3): what a late joiner or a
//! resuming viewer is sent, from any event still held.
//!
//! Events are kept as the job cut them (which stream, the text, or how it
//! ended), not encoded: each viewer encodes them in its own format with the
//! job's ids. The oldest events are forgotten once the log holds more than
//! its bound, but never one that an attached viewer has not taken yet: the
//! server reads the command only when every viewer has caught up, so the log
//! passes its bound by at most one read.
//!
//! Every event also gets a **global number** (contract §11.2) when it is
//! appended: one counter for every job of the process, so numbers increase
//! across jobs and are never reused while the server runs. The log keeps it
//! beside the event (8 bytes, no copy of the text), and those of the events
//! it forgot in a few KiB ([`forgotten`]), so a stream resuming after a
//! global number, however old, starts its `gap` after the last event it had.

mod forgotten;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sse::{Exit, Stream};
use forgotten::Forgotten;

/// What one event of a job says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logged {
    /// Output of the command: the text, cut as the job cut it.
    Output(Stream, Vec<u8>),
    /// The command could not start (`err`).
    Error(String),
    /// The command ended (`exit`).
    Exit(Exit),
}

/// What an event costs against the bound besides its text.
pub const EVENT_OVERHEAD: usize = 64;

/// The next global number (contract §11.2): one counter for the process.
/// The server is one thread; the atomic only makes the static safe.
static NEXT_GLOBAL: AtomicU64 = AtomicU64::new(1);

/// Takes the next global number.
fn next_global() -> u64 {
    NEXT_GLOBAL.fetch_add(1, Ordering::Relaxed)
}

/// The last global number given to any event so far (0 before the first).
pub fn last_global() -> u64 {
    NEXT_GLOBAL.load(Ordering::Relaxed) - 1
}

/// Where a stream that has every event up to global number `G` goes on in
/// one job's log (see [`EventLog::resume_after`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The id of the next event to send.
    pub next: u64,
    /// Events it missed that are no longer held: `(from, to, global)`,
    /// the ids inclusive and the global number of the last one.
    pub gap: Option<(u64, u64, u64)>,
}

/// The events of one job still held, with their ids.
#[derive(Debug)]
pub struct EventLog {
    events: VecDeque<Logged>,
    /// The global number of each held event: `globals[i]` is `events[i]`'s.
    globals: VecDeque<u64>,
    /// The global numbers of the events forgotten.
    forgotten: Forgotten,
    /// Id of `events[0]` (or of the next event when none is held).
    first_id: u64,
    /// Bytes held, as the bound counts them.
    bytes: usize,
    /// The bound (`--job-log`).
    limit: usize,
    /// Text buffers of forgotten events, for the next ones: a job streaming
    /// through a full log reuses them instead of allocating per event.
    spare: Vec<Vec<u8>>,
}

/// Spare buffers a log keeps, and the largest it keeps: one event in and one
/// out per read in the steady state, so one suffices. A finished job's log
/// keeps none.
const SPARES: usize = 1;
const SPARE_MAX: usize = 192 * 1024;

impl EventLog {
    /// An empty log whose first event will have id 1.
    pub fn new(limit: usize) -> EventLog {
        EventLog {
            events: VecDeque::new(),
            globals: VecDeque::new(),
            forgotten: Forgotten::new(),
            first_id: 1,
            bytes: 0,
            limit,
            spare: Vec::new(),
        }
    }

    /// The id the next event gets.
    pub fn next_id(&self) -> u64 {
        self.first_id + self.events.len() as u64
    }

    /// The id of the oldest event held, if any.
    pub fn first_held(&self) -> Option<u64> {
        (!self.events.is_empty()).then_some(self.first_id)
    }

    /// Events the job has made so far (held or forgotten).
    pub fn count(&self) -> u64 {
        self.next_id() - 1
    }

    /// Appends the event with id `id`, which must be [`EventLog::next_id`]
    /// (the job's encoder numbers them); an event out of order is dropped,
    /// returning false.
    pub fn push(&mut self, id: u64, event: Logged) -> bool {
        if id != self.next_id() {
            return false;
        }
        self.bytes += cost(&event);
        if matches!(event, Logged::Exit(_) | Logged::Error(_)) {
            self.spare = Vec::new();
        }
        self.events.push_back(event);
        self.globals.push_back(next_global());
        true
    }

    /// Appends an output event with a copy of `text`, in a spare buffer when
    /// one is left from a forgotten event (see [`EventLog::push`]).
    pub fn push_output(&mut self, id: u64, stream: Stream, text: &[u8]) -> bool {
        if id != self.next_id() {
            return false;
        }
        // A spare much larger than the text would hold memory the bound does
        // not count (it counts text, not capacity).
        let fits = self
            .spare
            .last()
            .is_some_and(|b| b.capacity() >= text.len() && b.capacity() <= 2 * text.len() + 1024);
        let mut buf = if fits {
            self.spare.pop().unwrap_or_default()
        } else {
            Vec::with_capacity(text.len())
        };
        buf.extend_from_slice(text);
        self.push(id, Logged::Output(stream, buf))
    }

    /// Forgets the oldest events while the log is over its bound, keeping
    /// every event from `keep_from` on (the first one some attached viewer
    /// still needs), and always the last one: a job's `exit` is never
    /// forgotten, so a late viewer always learns how it ended.
    pub fn trim(&mut self, keep_from: u64) {
        while self.bytes > self.limit && self.first_id < keep_from && self.events.len() > 1 {
            let Some(event) = self.events.pop_front() else { break };
            self.bytes -= cost(&event);
            if let Some(global) = self.globals.pop_front() {
                self.forgotten.push(self.first_id, global);
            }
            self.first_id += 1;
            if let Logged::Output(_, mut text) = event {
                if self.spare.len() < SPARES && text.capacity() <= SPARE_MAX {
                    text.clear();
                    self.spare.push(text);
                }
            }
        }
        if self.events.is_empty() && self.events.capacity() > 64 {
            self.events = VecDeque::new();
            self.spare = Vec::new();
        }
    }

    /// Bytes held, as the bound counts them.
    pub fn held_bytes(&self) -> usize {
        self.bytes
    }

    /// The event with id `id`, if held.
    pub fn get(&self, id: u64) -> Option<&Logged> {
        let index = id.checked_sub(self.first_id)?;
        self.events.get(usize::try_from(index).ok()?)
    }

    /// The global number of event `id`, if held (or forgotten and still
    /// known exactly: always so for the last one forgotten).
    #[inline]
    pub fn global_of(&self, id: u64) -> Option<u64> {
        match id.checked_sub(self.first_id) {
            Some(index) => self.globals.get(usize::try_from(index).ok()?).copied(),
            None => self.forgotten.global_of(id),
        }
    }

    /// The global number of event `id` while it is held (none for one
    /// forgotten, unlike [`EventLog::global_of`]).
    #[inline]
    pub fn held_global_of(&self, id: u64) -> Option<u64> {
        self.globals
            .get(usize::try_from(id.checked_sub(self.first_id)?).ok()?)
            .copied()
    }

    /// The global number of the last event, if any.
    pub fn last_global(&self) -> Option<u64> {
        self.globals.back().copied()
    }

    /// Where a stream that has every event numbered `after` or less goes on
    /// (contract §11.3; `after` 0 for a stream from the start): the first
    /// event numbered above it, and the `gap` for those of them no longer
    /// held.
    pub fn resume_after(&self, after: u64) -> Resume {
        // Global numbers increase along the log: the first above `after`.
        let held = self.globals.partition_point(|&global| global <= after);
        if held > 0 {
            return Resume {
                next: self.first_id + held as u64,
                gap: None,
            };
        }
        let from = self.forgotten.first_after(after, self.first_id);
        let to = self.first_id - 1;
        let gap = (from <= to)
            .then(|| self.global_of(to).map(|global| (from, to, global)))
            .flatten();
        Resume {
            next: self.first_id,
            gap,
        }
    }

    /// The last event, if it ends the job (`exit` or `err`).
    pub fn ended(&self) -> bool {
        matches!(self.events.back(), Some(Logged::Exit(_) | Logged::Error(_)))
    }
}

fn cost(event: &Logged) -> usize {
    EVENT_OVERHEAD
        + match event {
            Logged::Output(_, text) => text.len(),
            Logged::Error(message) => message.len(),
            Logged::Exit(_) => 0,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(text: &str) -> Logged {
        Logged::Output(Stream::Stdout, text.as_bytes().to_vec())
    }

    #[test]
    fn ids_bound_and_viewers() {
        let mut log = EventLog::new(3 * (EVENT_OVERHEAD + 1));
        for id in 1..=5 {
            assert!(log.push(id, out("x")));
        }
        assert!(!log.push(9, out("x")), "out of order");
        assert_eq!(log.next_id(), 6);
        // A viewer still needs event 2: nothing before it may go.
        log.trim(2);
        assert_eq!(log.first_held(), Some(2));
        log.trim(6);
        assert_eq!(log.first_held(), Some(3));
        assert_eq!(log.get(2), None);
        assert_eq!(log.get(3), Some(&out("x")));
        assert_eq!(log.get(6), None);
        assert!(!log.ended());
        assert!(log.push(
            6,
            Logged::Exit(Exit {
                code: Some(0),
                signal: None,
                timed_out: false
            })
        ));
        assert!(log.ended());
        // Even a bound of nothing keeps the last event: the exit.
        let mut tiny = EventLog::new(0);
        assert!(tiny.push(1, out("x")));
        let exit = Exit {
            code: Some(0),
            signal: None,
            timed_out: false,
        };
        assert!(tiny.push(2, Logged::Exit(exit)));
        tiny.trim(3);
        assert_eq!(tiny.first_held(), Some(2));
        assert!(tiny.ended());
        assert_eq!(log.count(), 6);
    }

    /// A log streaming through its bound reuses the text buffers of the
    /// events it forgets: no allocation per event once full.
    #[test]
    fn full_log_reuses_buffers() {
        let text = vec![b'x'; 1000];
        let mut log = EventLog::new(3 * (EVENT_OVERHEAD + 1000));
        let mut reused = 0;
        for id in 1..=20 {
            let spare = log.spare.last().map(|b| b.as_ptr());
            assert!(log.push_output(id, Stream::Stdout, &text));
            let Some(Logged::Output(_, held)) = log.get(id) else {
                panic!("event {id} not held");
            };
            assert_eq!(held, &text);
            if spare == Some(held.as_ptr()) {
                reused += 1;
            }
            log.trim(id + 1);
        }
        // From the fourth event on, each takes the buffer the trim freed.
        assert!(reused >= 16, "{reused} of 20 events reused a buffer");
        // A finished log keeps no spare.
        assert!(log.push(21, Logged::Error("gone".into())));
        assert!(log.spare.is_empty());
    }

    /// Global numbers increase across logs; a resume after any of them
    /// continues exactly after it, and says exactly what is no longer held.
    #[test]
    fn global_numbers_and_resume() {
        let mut a = EventLog::new(2 * (EVENT_OVERHEAD + 1));
        let mut b = EventLog::new(1 << 20);
        for id in 1..=6 {
            assert!(a.push(id, out("x")));
            assert!(b.push(id, out("y")));
        }
        for id in 1..6 {
            let (ga, gb) = (a.global_of(id).expect("held"), b.global_of(id).expect("held"));
            assert!(ga < gb && gb < a.global_of(id + 1).expect("held"));
        }
        assert!(last_global() >= b.last_global().expect("some"));
        a.trim(7);
        assert_eq!(a.first_held(), Some(5));
        // From the start: a gap for 1..=4, numbered as event 4.
        let g4 = a.global_of(4).expect("retained");
        assert_eq!(
            a.resume_after(0),
            Resume {
                next: 5,
                gap: Some((1, 4, g4))
            }
        );
        // After event 2 of a: 3 and 4 are gone.
        let g2 = a.global_of(2).expect("retained");
        assert_eq!(
            a.resume_after(g2),
            Resume {
                next: 5,
                gap: Some((3, 4, g4))
            }
        );
        // After b's event 4 (between a's 4 and 5): a goes on at 5, no gap.
        let after = b.global_of(4).expect("held");
        assert_eq!(a.resume_after(after), Resume { next: 5, gap: None });
        assert_eq!(b.resume_after(after), Resume { next: 5, gap: None });
        // After the last: the next one, not yet made.
        let last = b.last_global().expect("some");
        assert_eq!(b.resume_after(last), Resume { next: 7, gap: None });
    }

    /// A stream that had a job's first events and resumes after the log
    /// forgot far more than it keeps one by one (another job numbering in
    /// between, so each forgotten event is its own run): its gap starts
    /// after an event it had (at most 1/32 of the history before the last
    /// one), never at event 1 and never after one it missed; alone, the job's
    /// numbers are one run and the gap starts right after the last it had.
    #[test]
    fn a_gap_from_far_back_starts_after_the_last_event_had() {
        let mut c = EventLog::new(0);
        let mut other = EventLog::new(1 << 20);
        let many = 10 * forgotten::RUNS as u64;
        let mut had = 0;
        for id in 1..=many {
            assert!(c.push(id, out("z")));
            assert!(other.push(id, out("o")));
            c.trim(id + 1);
            if id == 5 {
                had = c.global_of(5).expect("held");
            }
        }
        assert_eq!(c.first_held(), Some(many));
        let gap = |after| c.resume_after(after).gap.map(|(from, to, _)| (from, to));
        for after in [had, had + 1] {
            let (from, to) = gap(after).expect("a gap");
            assert!((2..=6).contains(&from), "after {after}: gap from {from}");
            assert_eq!(to, many - 1);
        }
        let half = c.global_of(many / 2).map_or(0, |g| g);
        assert_eq!(half, 0, "no longer known one by one");
        let mid = other.global_of(many / 2).expect("held");
        let (from, _) = gap(mid).expect("a gap");
        assert!(from <= many / 2 + 1 && from + many / 32 > many / 2, "gap from {from}");
        // From the start, or before its first event: all of it.
        assert_eq!(gap(0), Some((1, many - 1)));
        assert_eq!(gap(other.global_of(1).expect("held") - 2), Some((1, many - 1)));
        // Recently forgotten: exact.
        let recent = c.global_of(many - 3).expect("exact");
        assert_eq!(gap(recent), Some((many - 2, many - 1)));
        assert_eq!(c.resume_after(recent).next, many);
        // Alone: exact however far back.
        let mut alone = EventLog::new(0);
        for id in 1..=many {
            assert!(alone.push(id, out("z")));
            alone.trim(id + 1);
            if id == 5 {
                had = alone.global_of(5).expect("held");
            }
        }
        let from = alone.resume_after(had).gap.map(|(from, _, _)| from);
        assert_eq!(from, Some(6));
    }
}
