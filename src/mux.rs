//! The cursors of one stream that carries many jobs (contract §11): which
//! event of which job goes next, so events across jobs go out in increasing
//! global number.
//!
//! Each job's log is already in global order; the stream merges them. A
//! job with an event to send sits in a heap keyed by that event's global
//! number; a job the stream has caught up with waits outside it until the
//! server notes that its log grew ([`Mux::note`]), so a wake costs one heap
//! step, not a look at every job. Nothing is copied: the connection encodes
//! each event from the job's log. Pure: no sockets, no clock.

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::eventlog::EventLog;

/// What the stream finds a job's log in: the server's record of the job
/// (so [`Mux::next`] hands the caller the record it looked up, and the
/// caller looks it up no second time), or a bare log (tests).
pub trait JobLog {
    /// The job's log of events.
    fn log(&self) -> &EventLog;
}

impl JobLog for EventLog {
    fn log(&self) -> &EventLog {
        self
    }
}

/// At most this many jobs are named in `?ids=` (contract §11.1).
pub const MAX_IDS: usize = 64;

/// Slots remembered by record (see `Mux::hints`): as many as the jobs
/// named at most, so a stream of jobs started together (records next to
/// each other) finds every one at once.
const HINTS: usize = MAX_IDS;

/// What a cursor is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// In the heap: its next item is held.
    Queued,
    /// Caught up with its job: waits for the log to grow.
    Idle,
    /// Its log grew: look again before the next item.
    Noted,
    /// Its job's last event went out.
    Done,
}

/// One job on the stream.
#[derive(Debug)]
struct Cursor {
    record: usize,
    /// The id (in the job) of the next event to send.
    next: u64,
    /// Events no longer held that are owed as a `gap`: `(from, to, global)`.
    gap: Option<(u64, u64, u64)>,
    /// Its `job` event went out.
    announced: bool,
    wait: Wait,
}

/// A cursor in the heap, by its next item's global number, least first.
/// Numbers are never shared by two jobs, and a cursor is queued once, so
/// the number alone orders them (a `Reverse((global, slot))` compared both:
/// callgrind, 64 jobs under load, about 15 instructions per event).
#[derive(Debug, Clone, Copy)]
struct Queued {
    global: u64,
    slot: usize,
}

impl Ord for Queued {
    fn cmp(&self, other: &Queued) -> Ordering {
        // Reversed: `BinaryHeap` pops its greatest.
        other.global.cmp(&self.global)
    }
}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Queued) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Queued) -> bool {
        self.global == other.global
    }
}

impl Eq for Queued {}

/// What goes out next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// The job's record index.
    pub record: usize,
    /// The job has not been announced on this stream: its `job` event goes
    /// first.
    pub announce: bool,
    /// What of the job.
    pub what: What,
}

/// An event of a job, or the gap where events were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// The event with this id and global number.
    Event {
        /// Its id in the job.
        seq: u64,
        /// Its global number.
        global: u64,
    },
    /// Events `from`..=`to` are no longer held; `global` is the last one's.
    Gap {
        /// The first id missed.
        from: u64,
        /// The last id missed.
        to: u64,
        /// The last missed event's global number.
        global: u64,
    },
}

/// The jobs of one multiplexed stream.
#[derive(Debug)]
pub struct Mux {
    cursors: Vec<Cursor>,
    /// Cursor of each job: `(record index, slot)`, sorted by record. The
    /// server asks for a job's cursor three times per event of it (trim,
    /// pacing, note): a binary search in one small block cost less than
    /// the B-tree it replaced (callgrind, 64 jobs: about 150 instructions
    /// per event less), and it holds 16 bytes per job.
    by_record: Vec<(usize, usize)>,
    /// The slot last found for a record, by record index modulo
    /// [`HINTS`]: the server asks for a job's cursor three times per event
    /// of it (pacing, trim, note), and a hit costs no search. Checked
    /// against the cursor, so never stale. 256 bytes.
    hints: [Cell<u32>; HINTS],
    /// Cursors with a held item, by that item's global number.
    heap: BinaryHeap<Queued>,
    /// Cursors whose logs grew since they were last looked at, each with
    /// its next item's global number when the note gave it (0: look it up
    /// in the log; numbers start at 1).
    noted: Vec<(usize, u64)>,
    /// Free cursor slots (jobs done on an all-jobs stream).
    free: Vec<usize>,
    /// Every job of the instance, new ones included (no `ids`).
    every: bool,
    /// No job joins any more (shutdown): an all-jobs stream ends too once
    /// its jobs are done.
    closed: bool,
    /// Jobs this stream caught up with since the server last asked (their
    /// command may wait on it).
    caught_up: Vec<usize>,
    /// Cursors not done.
    live: usize,
}

impl Mux {
    /// A stream of the jobs to be added with [`Mux::add`]; `every`: of all
    /// jobs, including those started later.
    pub fn new(every: bool) -> Mux {
        Mux {
            cursors: Vec::new(),
            by_record: Vec::new(),
            hints: std::array::from_fn(|_| Cell::new(u32::MAX)),
            heap: BinaryHeap::new(),
            noted: Vec::new(),
            free: Vec::new(),
            every,
            closed: false,
            caught_up: Vec::new(),
            live: 0,
        }
    }

    /// True for an all-jobs stream that still takes new jobs.
    pub fn takes_new_jobs(&self) -> bool {
        self.every && !self.closed
    }

    /// No job joins any more: the stream ends once its jobs are done.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Adds the job at `record` whose events numbered above `after` are to
    /// be sent; its cursor's slot (see [`Mux::cursor_at`]). None if it has
    /// nothing to send (it ended at or before `after`): then it is not
    /// added. A job already on the stream is left.
    pub fn add(&mut self, record: usize, log: &EventLog, after: u64) -> Option<usize> {
        let at = match self.find(record) {
            Ok(at) => return Some(self.by_record[at].1),
            Err(at) => at,
        };
        let resume = log.resume_after(after);
        if log.ended() && resume.gap.is_none() && resume.next >= log.next_id() {
            return None;
        }
        let cursor = Cursor {
            record,
            next: resume.next,
            gap: resume.gap,
            announced: false,
            wait: Wait::Noted,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.cursors[slot] = cursor;
                slot
            }
            None => {
                self.cursors.push(cursor);
                self.cursors.len() - 1
            }
        };
        self.by_record.insert(at, (record, slot));
        self.noted.push((slot, 0));
        self.live += 1;
        Some(slot)
    }

    /// Where `record` is in `by_record` (`Ok`), or would go (`Err`).
    #[inline]
    fn find(&self, record: usize) -> Result<usize, usize> {
        self.by_record.binary_search_by_key(&record, |&(r, _)| r)
    }

    /// The cursor slot of the job at `record`, while it is on the stream.
    #[inline]
    fn slot(&self, record: usize) -> Option<usize> {
        let hint = &self.hints[record % HINTS];
        let slot = hint.get() as usize;
        if self
            .cursors
            .get(slot)
            .is_some_and(|c| c.record == record && c.wait != Wait::Done)
        {
            // A job has one cursor, and a cursor not done is its job's.
            return Some(slot);
        }
        let slot = self.by_record[self.find(record).ok()?].1;
        hint.set(u32::try_from(slot).unwrap_or(u32::MAX));
        Some(slot)
    }

    /// The job at `record` has new events in its log.
    #[inline]
    pub fn note(&mut self, record: usize) {
        if let Some(slot) = self.slot(record) {
            self.note_slot(slot, 0);
        }
    }

    /// The log of the job at `record` grew from its event `first` on: as
    /// [`Mux::note`], its cursor looked for first in `slot` (the one
    /// [`Mux::add`] gave). A cursor caught up with the job needs that very
    /// event next: its global number, read here from `log`, is its key,
    /// and [`Mux::next`] looks at the log no more to find it (callgrind,
    /// 64 jobs: `Mux::held`, about 25 instructions per event, is gone).
    #[inline]
    pub fn note_at(&mut self, record: usize, slot: usize, log: &EventLog, first: u64) {
        let Some(cursor) = self
            .cursors
            .get(slot)
            .filter(|c| c.record == record && c.wait != Wait::Done)
        else {
            let Some(slot) = self.slot(record) else { return };
            return self.note_slot(slot, 0);
        };
        // A gap owed, or a cursor behind (its log held more than it took):
        // looked at as before.
        let key = if cursor.gap.is_none() && cursor.next == first {
            log.held_global_of(first).unwrap_or(0)
        } else {
            0
        };
        self.note_slot(slot, key);
    }

    /// Queues an idle cursor for a look, its next item's global number
    /// `key` when known (else 0).
    #[inline]
    fn note_slot(&mut self, slot: usize, key: u64) {
        let cursor = &mut self.cursors[slot];
        if cursor.wait == Wait::Idle {
            cursor.wait = Wait::Noted;
            self.noted.push((slot, key));
        }
    }

    /// As [`Mux::cursor`], the cursor looked for first in `slot` (the one
    /// [`Mux::add`] gave): no search while it is the job's.
    #[inline]
    pub fn cursor_at(&self, record: usize, slot: usize) -> Option<u64> {
        match self.cursors.get(slot) {
            // A job has one cursor, and a cursor not done is its job's.
            Some(cursor) if cursor.record == record && cursor.wait != Wait::Done => {
                Some(cursor.gap.map_or(cursor.next, |(from, _, _)| from))
            }
            _ => self.cursor(record),
        }
    }

    /// The id of the next event this stream needs from the job at
    /// `record`, while it needs any (the log keeps it).
    #[inline]
    pub fn cursor(&self, record: usize) -> Option<u64> {
        let cursor = &self.cursors[self.slot(record)?];
        Some(cursor.gap.map_or(cursor.next, |(from, _, _)| from))
    }

    /// The jobs on the stream (their record indices).
    pub fn records(&self) -> impl Iterator<Item = usize> + '_ {
        self.by_record.iter().map(|&(record, _)| record)
    }

    /// True once every job is done and none can join: the stream ends.
    pub fn ended(&self) -> bool {
        self.live == 0 && !self.takes_new_jobs()
    }

    /// True while nothing is held that the stream has not sent.
    #[inline]
    pub fn is_caught_up(&self) -> bool {
        self.heap.is_empty() && self.noted.is_empty()
    }

    /// Jobs caught up with since last asked, those `wanted` into `into`.
    pub fn take_caught_up(&mut self, into: &mut Vec<usize>, wanted: impl Fn(usize) -> bool) {
        for record in self.caught_up.drain(..) {
            if wanted(record) {
                into.push(record);
            }
        }
    }

    /// The next item in global order, from the jobs `job_of` gives, and
    /// that job; the cursor moves past it. A job whose last event it is
    /// leaves the stream (`left` gets its record).
    pub fn next<'a, J: JobLog + 'a>(
        &mut self,
        job_of: impl Fn(usize) -> Option<&'a J>,
        left: &mut Vec<usize>,
    ) -> Option<(Item, &'a J)> {
        let (key, slot) = if self.heap.is_empty() && self.noted.len() == 1 {
            // One job grew and nothing else is held (the usual wake: 64
            // jobs' lines rarely meet): its item goes next, with no step
            // through the heap (callgrind, 64 jobs: about 60 instructions
            // per event).
            let (slot, key) = self.noted.pop()?;
            (self.key(slot, key, &job_of, left)?, slot)
        } else {
            // Popped, not taken: the vector keeps its room for the next
            // wake (`key` notes nothing).
            while let Some((slot, key)) = self.noted.pop() {
                if let Some(key) = self.key(slot, key, &job_of, left) {
                    self.heap.push(Queued { global: key, slot });
                }
            }
            // The key is the item's global number (see `held`).
            let Queued { global, slot } = self.heap.pop()?;
            (global, slot)
        };
        let cursor = &mut self.cursors[slot];
        let record = cursor.record;
        let announce = !cursor.announced;
        cursor.announced = true;
        let Some(job) = job_of(record) else {
            self.finish(slot, left);
            return self.next(job_of, left);
        };
        let log = job.log();
        let what = match cursor.gap.take() {
            Some((from, to, global)) => What::Gap { from, to, global },
            None => {
                let seq = cursor.next;
                cursor.next += 1;
                What::Event { seq, global: key }
            }
        };
        let next_id = log.next_id();
        let event = matches!(what, What::Event { .. });
        if event && cursor.next == next_id && log.ended() {
            // Its last event.
            self.finish(slot, left);
        } else if cursor.gap.is_none() && cursor.next >= next_id {
            // Caught up with its job (the usual case: one new line): what
            // `look` would find, without looking the log up again.
            cursor.wait = Wait::Idle;
            self.caught_up.push(record);
        } else if let Some(global) = log.held_global_of(cursor.next).filter(|_| event) {
            // Its log holds its next event (it wrote more than one line at
            // once): queued from the log at hand.
            cursor.wait = Wait::Queued;
            self.heap.push(Queued { global, slot });
        } else {
            self.look(slot, &job_of, left);
        }
        Some((Item { record, announce, what }, job))
    }

    /// The global number of the cursor's next item: `noted` when the note
    /// gave it (the cursor is then `Queued`), else as [`Mux::held`] finds.
    #[inline]
    fn key<'a, J: JobLog + 'a>(
        &mut self,
        slot: usize,
        noted: u64,
        job_of: &impl Fn(usize) -> Option<&'a J>,
        left: &mut Vec<usize>,
    ) -> Option<u64> {
        if noted == 0 {
            return self.held(slot, job_of, left);
        }
        self.cursors[slot].wait = Wait::Queued;
        Some(noted)
    }

    /// Queues the cursor's next item if its log holds it, else lets it wait.
    fn look<'a, J: JobLog + 'a>(
        &mut self,
        slot: usize,
        job_of: &impl Fn(usize) -> Option<&'a J>,
        left: &mut Vec<usize>,
    ) {
        if let Some(global) = self.held(slot, job_of, left) {
            self.heap.push(Queued { global, slot });
        }
    }

    /// The global number of the cursor's next item if its log holds it (the
    /// cursor is then `Queued`: the caller queues it or sends the item),
    /// else None and it waits (or is done).
    fn held<'a, J: JobLog + 'a>(
        &mut self,
        slot: usize,
        job_of: &impl Fn(usize) -> Option<&'a J>,
        left: &mut Vec<usize>,
    ) -> Option<u64> {
        let cursor = &mut self.cursors[slot];
        if cursor.wait == Wait::Done {
            return None;
        }
        let Some(job) = job_of(cursor.record) else {
            self.finish(slot, left);
            return None;
        };
        let log = job.log();
        if cursor.gap.is_none() {
            if let Some(first) = log.first_held().filter(|&first| cursor.next < first) {
                // Never silent: had the log forgotten events this stream
                // still needed (the trim keeps them), it says so.
                let to = first - 1;
                cursor.gap = log.global_of(to).map(|global| (cursor.next, to, global));
                cursor.next = first;
            }
        }
        let key = match cursor.gap {
            Some((_, _, global)) => Some(global),
            None => log.global_of(cursor.next).filter(|_| cursor.next < log.next_id()),
        };
        match key {
            Some(global) => {
                cursor.wait = Wait::Queued;
                Some(global)
            }
            None => {
                if cursor.wait != Wait::Idle {
                    self.caught_up.push(cursor.record);
                }
                cursor.wait = Wait::Idle;
                None
            }
        }
    }

    fn finish(&mut self, slot: usize, left: &mut Vec<usize>) {
        let cursor = &mut self.cursors[slot];
        if cursor.wait == Wait::Done {
            return;
        }
        cursor.wait = Wait::Done;
        let record = cursor.record;
        if let Ok(at) = self.find(record) {
            self.by_record.remove(at);
        }
        left.push(record);
        self.free.push(slot);
        self.live -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventlog::Logged;
    use crate::sse::{Exit, Stream};

    fn push(log: &mut EventLog, text: &str) {
        let id = log.next_id();
        assert!(log.push_output(id, Stream::Stdout, text.as_bytes()));
    }

    fn exit(log: &mut EventLog) {
        let id = log.next_id();
        assert!(log.push(
            id,
            Logged::Exit(Exit {
                code: Some(0),
                signal: None,
                timed_out: false
            })
        ));
    }

    fn drain(mux: &mut Mux, logs: &[EventLog], left: &mut Vec<usize>) -> Vec<Item> {
        let mut items = Vec::new();
        while let Some((item, _)) = mux.next(|r| logs.get(r), left) {
            items.push(item);
        }
        items
    }

    fn global(item: &Item) -> u64 {
        match item.what {
            What::Event { global, .. } | What::Gap { global, .. } => global,
        }
    }

    #[test]
    fn merges_in_global_order_and_waits_for_notes() {
        let mut logs = vec![EventLog::new(1 << 20), EventLog::new(1 << 20)];
        for i in 0..3 {
            push(&mut logs[0], &format!("a{i}"));
            push(&mut logs[1], &format!("b{i}"));
        }
        let mut mux = Mux::new(false);
        let mut left = Vec::new();
        assert!(mux.add(0, &logs[0], 0).is_some());
        assert!(mux.add(1, &logs[1], 0).is_some());
        let items = drain(&mut mux, &logs, &mut left);
        assert_eq!(items.len(), 6);
        assert!(items.windows(2).all(|w| global(&w[0]) < global(&w[1])));
        assert_eq!(items.iter().filter(|i| i.announce).count(), 2);
        assert!(mux.is_caught_up());
        assert_eq!(mux.cursor(0), Some(4));
        // The log grows: nothing until noted.
        push(&mut logs[1], "b3");
        exit(&mut logs[1]);
        assert_eq!(drain(&mut mux, &logs, &mut left), vec![]);
        mux.note(1);
        let items = drain(&mut mux, &logs, &mut left);
        assert_eq!(items.len(), 2);
        assert_eq!(left, vec![1], "job 1 ended and left");
        assert_eq!(mux.cursor(1), None);
        assert!(!mux.ended());
        exit(&mut logs[0]);
        mux.note(0);
        assert_eq!(drain(&mut mux, &logs, &mut left).len(), 1);
        assert!(mux.ended());
    }

    /// A note that gives the first new event (`note_at`) sends what a bare
    /// note sends, in the same order: for cursors caught up (whose key it
    /// gives), behind, or newly added, with lines written one or several
    /// at once.
    #[test]
    fn notes_with_the_first_new_event_send_what_a_bare_note_sends() {
        let mut logs: Vec<EventLog> = (0..3).map(|_| EventLog::new(1 << 20)).collect();
        let (mut given, mut bare) = (Mux::new(false), Mux::new(false));
        let mut slots = Vec::new();
        let mut left = Vec::new();
        for (r, log) in logs.iter().enumerate() {
            slots.push(given.add(r, log, 0).expect("added"));
            assert!(bare.add(r, log, 0).is_some());
        }
        // Rounds of (job, lines written), drained after each round; job 2
        // is left behind in round 1 (its note comes in round 2).
        let rounds: [&[(usize, usize)]; 4] = [
            &[(0, 1), (1, 2)],
            &[(2, 3), (0, 1), (1, 1)],
            &[(1, 2), (2, 1)],
            &[(0, 3)],
        ];
        let mut silent = Vec::new();
        for (round, writes) in rounds.iter().enumerate() {
            for &(r, lines) in writes.iter() {
                let first = logs[r].next_id();
                for i in 0..lines {
                    push(&mut logs[r], &format!("{r}.{round}.{i}"));
                }
                if round == 1 && r == 2 {
                    silent.push((r, first));
                    continue;
                }
                given.note_at(r, slots[r], &logs[r], first);
                bare.note(r);
            }
            if round == 2 {
                for &(r, first) in &silent {
                    // Behind: its first new event is not the one it needs.
                    given.note_at(r, slots[r], &logs[r], first + 1);
                    bare.note(r);
                }
            }
            let sent = drain(&mut given, &logs, &mut left);
            assert_eq!(sent, drain(&mut bare, &logs, &mut left), "round {round}");
            assert!(sent.windows(2).all(|w| global(&w[0]) < global(&w[1])));
        }
        assert_eq!(
            (given.cursor(0), given.cursor(1), given.cursor(2)),
            (Some(6), Some(6), Some(5))
        );
    }

    #[test]
    fn resumes_after_a_global_number_with_gaps() {
        let mut logs = vec![EventLog::new(0), EventLog::new(1 << 20)];
        for i in 0..4 {
            push(&mut logs[0], &format!("a{i}"));
            push(&mut logs[1], &format!("b{i}"));
        }
        logs[0].trim(5);
        assert_eq!(logs[0].first_held(), Some(4));
        let after = logs[1].global_of(1).expect("held");
        let mut mux = Mux::new(false);
        let mut left = Vec::new();
        assert!(mux.add(0, &logs[0], after).is_some());
        assert!(mux.add(1, &logs[1], after).is_some());
        assert_eq!(mux.cursor(0), Some(2));
        let items = drain(&mut mux, &logs, &mut left);
        let gap_global = logs[0].global_of(3).expect("retained");
        // b's event 2 was numbered before a's event 3, the last a missed.
        assert_eq!(
            items[1],
            Item {
                record: 0,
                announce: true,
                what: What::Gap {
                    from: 2,
                    to: 3,
                    global: gap_global
                }
            }
        );
        assert!(items.windows(2).all(|w| global(&w[0]) < global(&w[1])));
        assert!(items.iter().all(|i| global(i) > after));
        // Job 1 resumes at its event 2; job 0 after its gap at 4.
        let seqs: Vec<(usize, u64)> = items
            .iter()
            .filter_map(|i| match i.what {
                What::Event { seq, .. } => Some((i.record, seq)),
                What::Gap { .. } => None,
            })
            .collect();
        assert_eq!(seqs, vec![(1, 2), (1, 3), (0, 4), (1, 4)]);
        assert!(items[0].announce && items[0].record == 1);
        // A job that ended at or before the number is not added.
        exit(&mut logs[1]);
        let last = logs[1].last_global().expect("some");
        let mut again = Mux::new(false);
        assert!(again.add(1, &logs[1], last).is_none());
        assert!(again.ended());
    }

    #[test]
    fn cursors_found_by_record_whatever_shares_their_hint() {
        // Records 0, 64 and 128 share a hint; slot 0 is reused by 128.
        let mut logs: Vec<EventLog> = (0..=128).map(|_| EventLog::new(1 << 20)).collect();
        for r in [0, 64, 128] {
            push(&mut logs[r], "a");
            push(&mut logs[r], "b");
        }
        exit(&mut logs[0]);
        let mut mux = Mux::new(false);
        let mut left = Vec::new();
        let slot0 = mux.add(0, &logs[0], 0).expect("added");
        let slot64 = mux.add(64, &logs[64], 0).expect("added");
        assert_eq!(mux.add(64, &logs[64], 0), Some(slot64), "already on: its slot");
        assert_eq!(
            (mux.cursor(0), mux.cursor(64), mux.cursor(0)),
            (Some(1), Some(1), Some(1))
        );
        assert_eq!(drain(&mut mux, &logs, &mut left).len(), 5);
        assert_eq!(left, vec![0]);
        assert_eq!((mux.cursor(64), mux.cursor(0)), (Some(3), None));
        assert_eq!(mux.add(128, &logs[128], 0), Some(slot0), "the slot is reused");
        assert_eq!(
            (mux.cursor(128), mux.cursor(0), mux.cursor(64)),
            (Some(1), None, Some(3))
        );
        // A slot given for another job, or one it never had, is only a hint.
        assert_eq!(
            (
                mux.cursor_at(0, slot0),
                mux.cursor_at(128, slot64),
                mux.cursor_at(64, 99)
            ),
            (None, Some(1), Some(3))
        );
        mux.note_at(0, slot0, &logs[0], 3);
        mux.note_at(128, slot64, &logs[128], 3);
        assert_eq!(drain(&mut mux, &logs, &mut left).len(), 2);
        assert_eq!((mux.cursor(128), mux.cursor(64)), (Some(3), Some(3)));
    }
}
