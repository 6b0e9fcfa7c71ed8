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
}

impl EventLog {
    /// An empty log whose first event will have id 1.
    pub fn new(limit: usize) -> EventLog {
        EventLog {
            events: VecDeque::new(),
            first_id: 1,
            bytes: 0,
            limit,
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
        self.events.push_back(event);
        true
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
        }
        if self.events.is_empty() && self.events.capacity() > 64 {
            self.events = VecDeque::new();
        }
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
}
