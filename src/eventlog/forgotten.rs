//! The global numbers of a job's forgotten events, kept small: enough for a
//! stream resuming after a global number (contract §11.3) to start its
//! `gap` right after the last event it had, however far back that was.
//!
//! A job's events take consecutive global numbers while no other job makes
//! one, so the numbers are kept as runs (ids `id..id + len` numbered
//! `global..global + len`): a job printing alone is one run whatever its
//! length. The last [`RUNS`] runs are exact. Older runs are sampled: one is
//! kept as a mark when it ends at least `stride` events after the last mark,
//! and when [`MARKS`] are held every second one goes and the stride doubles,
//! so the marks span the whole history evenly. A stream resuming before the
//! exact runs starts after the nearest mark at or below its number: it is
//! told it missed at most two strides' worth (1/32 of the history) that it
//! had, never that it had one it missed.

use std::collections::VecDeque;

/// Runs kept exactly: 24 bytes each, 6 KiB a log at most. A job interleaved
/// with others makes a run per event, so this is also how many forgotten
/// events are known one by one in the worst case.
pub const RUNS: usize = 256;

/// Older runs kept as marks: 24 bytes each, 1.5 KiB a log at most.
pub const MARKS: usize = 64;

/// Events `id..id + len` were numbered `global..global + len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    id: u64,
    global: u64,
    len: u64,
}

impl Run {
    fn last_id(&self) -> u64 {
        self.id + self.len - 1
    }

    fn last_global(&self) -> u64 {
        self.global + self.len - 1
    }
}

/// The numbers of one log's forgotten events (ids `1..` up to the first
/// held one, in order).
#[derive(Debug)]
pub struct Forgotten {
    runs: VecDeque<Run>,
    /// Some runs older than `runs`, in order.
    marks: Vec<Run>,
    /// Events a new mark must end after the last one (doubles with each
    /// thinning).
    stride: u64,
}

impl Forgotten {
    /// Nothing forgotten yet.
    pub fn new() -> Forgotten {
        Forgotten {
            runs: VecDeque::new(),
            marks: Vec::new(),
            stride: 1,
        }
    }

    /// Event `id` (the one after the last forgotten) numbered `global`
    /// (above every number pushed before) is forgotten.
    pub fn push(&mut self, id: u64, global: u64) {
        if let Some(run) = self.runs.back_mut() {
            if run.id + run.len == id && run.global + run.len == global {
                run.len += 1;
                return;
            }
        }
        // Make room before pushing: the deque never grows past RUNS.
        if self.runs.len() == RUNS {
            if let Some(old) = self.runs.pop_front() {
                self.mark(old);
            }
        }
        self.runs.push_back(Run { id, global, len: 1 });
    }

    fn mark(&mut self, run: Run) {
        let far_enough =
            |marks: &[Run], stride: u64| marks.last().is_none_or(|mark| run.last_id() >= mark.last_id() + stride);
        if !far_enough(&self.marks, self.stride) {
            return;
        }
        if self.marks.len() == MARKS {
            // Keep the oldest and every second one after it.
            let mut index = 0;
            self.marks.retain(|_| {
                index += 1;
                index % 2 == 1
            });
            self.stride *= 2;
            if !far_enough(&self.marks, self.stride) {
                return;
            }
        }
        self.marks.push(run);
    }

    /// The global number of forgotten event `id`, if still known exactly.
    pub fn global_of(&self, id: u64) -> Option<u64> {
        let index = self.runs.partition_point(|run| run.last_id() < id);
        let run = self.runs.get(index)?;
        (run.id <= id).then(|| run.global + (id - run.id))
    }

    /// The first forgotten event numbered above `after`, as far as known:
    /// never a later one (so nothing is skipped), at worst one the stream
    /// had, after the nearest mark at or below `after`. `end` (the id after
    /// the last forgotten) when every forgotten event is numbered `after`
    /// or less.
    pub fn first_after(&self, after: u64, end: u64) -> u64 {
        let index = self.runs.partition_point(|run| run.last_global() <= after);
        if let Some(run) = self.runs.get(index) {
            if run.global <= after {
                return run.id + (after - run.global + 1);
            }
            if index > 0 {
                // The run before ended at or below `after`: exact.
                return run.id;
            }
        } else if !self.runs.is_empty() {
            return end;
        }
        // Before the runs kept: inside a mark, or after the nearest one.
        let index = self.marks.partition_point(|mark| mark.last_global() <= after);
        match self.marks.get(index) {
            Some(mark) if mark.global <= after => mark.id + (after - mark.global + 1),
            _ => match index.checked_sub(1).and_then(|i| self.marks.get(i)) {
                Some(mark) => mark.last_id() + 1,
                None => 1,
            },
        }
    }

    /// Bytes this holds beyond its own size (the bound the docs give).
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        self.runs.capacity() * std::mem::size_of::<Run>() + self.marks.capacity() * std::mem::size_of::<Run>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job printing alone is one run; interleaved, a run per event.
    #[test]
    fn runs_are_exact() {
        let mut f = Forgotten::new();
        assert_eq!(f.first_after(0, 1), 1);
        for id in 1..=10 {
            f.push(id, 100 + id);
        }
        assert_eq!(f.runs.len(), 1);
        for id in 11..=20 {
            f.push(id, 100 + 2 * id);
        }
        assert_eq!(f.runs.len(), 11);
        assert_eq!(f.global_of(5), Some(105));
        assert_eq!(f.global_of(15), Some(130));
        assert_eq!(f.global_of(21), None);
        assert_eq!(f.first_after(0, 21), 1);
        assert_eq!(f.first_after(104, 21), 5);
        assert_eq!(f.first_after(110, 21), 11);
        // Between two numbers of this job: the next one.
        assert_eq!(f.first_after(123, 21), 12);
        assert_eq!(f.first_after(124, 21), 13);
        assert_eq!(f.first_after(140, 21), 21);
        assert_eq!(f.first_after(1000, 21), 21);
    }

    /// Far back, past the runs kept: a mark at or below the number gives a
    /// start never later than the true one, and close to it; memory stays
    /// within RUNS runs and MARKS marks.
    #[test]
    fn marks_far_back_never_skip() {
        let mut f = Forgotten::new();
        // Each event its own run: another job numbers in between.
        let global = |id: u64| 3 * id;
        let last = 100_000;
        for id in 1..=last {
            f.push(id, global(id));
        }
        assert_eq!(f.runs.len(), RUNS);
        assert!(f.marks.len() <= MARKS);
        assert!(f.heap_bytes() <= (RUNS + MARKS) * 24, "{} bytes", f.heap_bytes());
        let mut worst = 0;
        for had in (1..last).step_by(97) {
            // Exactly at a number, and between two.
            for after in [global(had), global(had) + 1] {
                let start = f.first_after(after, last + 1);
                assert!(start <= had + 1, "after {after}: start {start} skips event {}", had + 1);
                assert!(start >= 1);
                worst = worst.max(had + 1 - start);
            }
        }
        // Recent history is exact.
        assert_eq!(f.first_after(global(last - 10), last + 1), last - 9);
        // At most two strides of the history are claimed again, not all of
        // it from event 1.
        assert!(worst <= last / 32, "at worst {worst} events claimed again");
        assert!(worst > 0, "the marks are samples");
        // Before anything kept: from 1.
        assert_eq!(f.first_after(0, last + 1), 1);
    }

    /// A long run pushed out of the exact ones stays exact as a mark.
    #[test]
    fn a_long_run_stays_exact_as_a_mark() {
        let mut f = Forgotten::new();
        for id in 1..=10_000 {
            f.push(id, id);
        }
        for id in 10_001..=10_000 + RUNS as u64 {
            f.push(id, 2 * id);
        }
        assert_eq!(f.marks.len(), 1);
        assert_eq!(f.global_of(5000), None, "no longer exact by id");
        assert_eq!(f.first_after(4999, 10_001 + RUNS as u64), 5000);
        assert_eq!(f.first_after(10_000, 10_001 + RUNS as u64), 10_001);
    }
}
