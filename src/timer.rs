//! Deadlines (partial-line flush, heartbeat, kill-grace, head timeout) and
//! the poll timeout they set.
//!
//! Owners keep their own [`Deadline`]; the queue only holds wake-ups. Moving a
//! deadline later costs nothing (the early wake-up finds it not yet due and
//! queues the new time), so a busy stream does no timer work per event; only
//! moving it earlier queues a new entry. Before sleeping, the server drops
//! stale entries from the front of the queue (their owner gone, or its
//! deadline cleared or moved), so they never wake an idle server.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Who a wake-up is for; the server looks the owner up and asks its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKey {
    /// A connection: head timeout, or the end of lingering after close.
    Conn(usize),
    /// A connection's heartbeat.
    Heartbeat(usize),
    /// A job: flush partial lines after quiet.
    Flush(usize),
    /// A job: `--timeout`, or SIGKILL after the kill grace.
    Kill(usize),
    /// A published job's record: forget it (`--keep`).
    Forget(usize),
    /// The server: end of shutdown, or resuming accept after EMFILE.
    Server,
}

/// One owner's deadline, and the earliest wake-up queued for it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Deadline {
    at: Option<Instant>,
    queued: Option<Instant>,
}

impl Deadline {
    /// When the deadline falls, if it is set.
    pub fn at(&self) -> Option<Instant> {
        self.at
    }

    /// Sets the deadline, queuing a wake-up only if none comes early enough.
    pub fn set(&mut self, at: Instant, key: TimerKey, timers: &mut Timers) {
        self.at = Some(at);
        if self.queued.is_none_or(|queued| at < queued) {
            timers.push(at, key);
            self.queued = Some(at);
        }
    }

    /// Unsets the deadline; a queued wake-up will find nothing to do.
    pub fn clear(&mut self) {
        self.at = None;
    }

    /// True if a wake-up queued for `queued_at` would find something to do:
    /// the deadline is set and falls no later than it.
    pub fn wants_wakeup_at(&self, queued_at: Instant) -> bool {
        self.at.is_some_and(|at| at <= queued_at)
    }

    /// Drops the wake-up queued for `queued_at` without waking (the caller
    /// popped it), and queues the right one if the deadline is still set.
    pub fn requeue(&mut self, queued_at: Instant, key: TimerKey, timers: &mut Timers) {
        if self.queued == Some(queued_at) {
            self.queued = None;
        }
        if let Some(at) = self.at {
            self.set(at, key, timers);
        }
    }

    /// Call when a wake-up for this owner pops at `now`: true if the deadline
    /// is due (and it is then cleared); else a later wake-up is queued.
    pub fn fire(&mut self, now: Instant, key: TimerKey, timers: &mut Timers) -> bool {
        if self.queued.is_some_and(|queued| queued <= now) {
            self.queued = None;
        }
        match self.at {
            Some(at) if at <= now => {
                self.at = None;
                true
            }
            Some(at) => {
                self.set(at, key, timers);
                false
            }
            None => false,
        }
    }
}

/// The wake-up queue, earliest first.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, TimerKey)>>,
}

impl Timers {
    /// Queues a wake-up for `key` at `at`.
    pub fn push(&mut self, at: Instant, key: TimerKey) {
        self.heap.push(Reverse((at, key)));
    }

    /// How long `poll` may sleep: until the earliest wake-up, or forever
    /// (`None`) when nothing is queued, so an idle server never wakes.
    pub fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        self.heap.peek().map(|Reverse((at, _))| {
            // Round up to whole milliseconds: epoll would otherwise return a
            // little early and spin once more.
            let wait = at.saturating_duration_since(now);
            // Whole seconds and the nanoseconds apart: a 128-bit division
            // (`as_nanos`) is a library call, once per turn of the loop.
            let millis = wait
                .as_secs()
                .saturating_mul(1000)
                .saturating_add(u64::from(wait.subsec_nanos().div_ceil(1_000_000)));
            Duration::from_millis(millis)
        })
    }

    /// The earliest wake-up queued, stale or not.
    pub fn peek(&self) -> Option<(Instant, TimerKey)> {
        self.heap.peek().map(|Reverse(entry)| *entry)
    }

    /// Removes the earliest wake-up.
    pub fn pop(&mut self) -> Option<(Instant, TimerKey)> {
        self.heap.pop().map(|Reverse(entry)| entry)
    }

    /// Removes every wake-up, for the caller to queue again those still
    /// wanted.
    pub fn take_all(&mut self) -> Vec<(Instant, TimerKey)> {
        std::mem::take(&mut self.heap)
            .into_iter()
            .map(|Reverse(entry)| entry)
            .collect()
    }

    /// Gives back memory the queue no longer needs.
    pub fn shrink(&mut self) {
        self.heap.shrink_to(self.heap.len() * 2);
    }

    /// The next wake-up due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<TimerKey> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, key))| key),
            _ => None,
        }
    }

    /// Wake-ups queued (stale ones included).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_deadlines_queue_nothing_until_the_early_wakeup() {
        let mut timers = Timers::default();
        let mut d = Deadline::default();
        let t0 = Instant::now();
        d.set(t0 + Duration::from_millis(20), TimerKey::Flush(1), &mut timers);
        d.set(t0 + Duration::from_millis(30), TimerKey::Flush(1), &mut timers);
        assert_eq!(timers.len(), 1);
        let at20 = t0 + Duration::from_millis(20);
        assert_eq!(timers.pop_due(at20), Some(TimerKey::Flush(1)));
        assert!(!d.fire(at20, TimerKey::Flush(1), &mut timers));
        assert_eq!(timers.len(), 1, "re-queued for the later time");
        let at30 = t0 + Duration::from_millis(30);
        assert_eq!(timers.pop_due(at30), Some(TimerKey::Flush(1)));
        assert!(d.fire(at30, TimerKey::Flush(1), &mut timers));
        assert!(timers.is_empty());
        assert_eq!(timers.poll_timeout(at30), None);
    }

    #[test]
    fn stale_wakeups_are_requeued_or_dropped_without_firing() {
        let mut timers = Timers::default();
        let mut d = Deadline::default();
        let t0 = Instant::now();
        d.set(t0 + Duration::from_secs(1), TimerKey::Heartbeat(2), &mut timers);
        d.clear();
        let (at, key) = timers.peek().expect("one entry");
        assert!(!d.wants_wakeup_at(at), "a cleared deadline wants no wake-up");
        timers.pop();
        d.requeue(at, key, &mut timers);
        assert!(timers.is_empty(), "nothing to queue for a cleared deadline");
        d.set(t0 + Duration::from_secs(1), TimerKey::Heartbeat(2), &mut timers);
        d.set(t0 + Duration::from_secs(5), TimerKey::Heartbeat(2), &mut timers);
        let (at, key) = timers.peek().expect("the early entry");
        assert!(!d.wants_wakeup_at(at), "the deadline moved later");
        timers.pop();
        d.requeue(at, key, &mut timers);
        assert_eq!(
            timers.peek(),
            Some((t0 + Duration::from_secs(5), TimerKey::Heartbeat(2)))
        );
        assert!(d.wants_wakeup_at(t0 + Duration::from_secs(5)));
    }

    #[test]
    fn earlier_deadline_queues_a_new_wakeup() {
        let mut timers = Timers::default();
        let mut d = Deadline::default();
        let t0 = Instant::now();
        d.set(t0 + Duration::from_secs(10), TimerKey::Conn(3), &mut timers);
        d.set(t0 + Duration::from_secs(2), TimerKey::Conn(3), &mut timers);
        assert_eq!(timers.poll_timeout(t0), Some(Duration::from_secs(2)));
        let at2 = t0 + Duration::from_secs(2);
        assert_eq!(timers.pop_due(at2), Some(TimerKey::Conn(3)));
        assert!(d.fire(at2, TimerKey::Conn(3), &mut timers));
        // The stale 10 s entry pops later and finds nothing due.
        let at10 = t0 + Duration::from_secs(10);
        assert_eq!(timers.pop_due(at10), Some(TimerKey::Conn(3)));
        assert!(!d.fire(at10, TimerKey::Conn(3), &mut timers));
    }
}
