//! A job's bounded log of events (contract §7.3): what a late joiner or a
//! resuming viewer is sent, from any event still held.
//!
//! Events are kept as the job cut them (which stream, the text, or how it
//! ended), not encoded: each viewer encodes them in its own format with the
//! job's ids. The oldest events are forgotten once the log holds more than
//! its bound, but never one that an attached viewer has not taken yet: the
//! server reads the command only when every viewer has caught up, so the log
//! passes its bound by at most one read.

use std::collections::VecDeque;

use crate::sse::{Exit, Stream};

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

/// The events of one job still held, with their ids.
#[derive(Debug)]
pub struct EventLog {
    events: VecDeque<Logged>,
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
}
