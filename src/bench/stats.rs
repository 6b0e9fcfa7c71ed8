//! What a bench run counts: a bounded latency histogram and the totals.

use std::collections::BTreeMap;

/// Exact buckets below this; above, 64 buckets per power of two.
const EXACT: u64 = 128;
/// Buckets: exact ones, then 64 per power of two up to 2^63.
const BUCKETS: usize = 59 * 64;

/// A log-linear histogram of nanosecond values: fixed size (30 KiB)
/// whatever the count, each value kept within 1/64 (1.6 %) of itself.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

fn bucket(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    ((e - 6) * 64) as usize + (v >> (e - 6)) as usize
}

/// The middle of bucket `i`.
fn value(i: usize) -> u64 {
    if i < EXACT as usize {
        return i as u64;
    }
    let e = (i / 64 + 5) as u32;
    let m = (i % 64 + 64) as u64;
    let width = 1u64 << (e - 6);
    (m << (e - 6)) + width / 2
}

impl Histogram {
    /// Counts one value.
    pub fn record(&mut self, ns: u64) {
        self.counts[bucket(ns)] += 1;
        self.total += 1;
    }

    /// How many values were counted.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1), nearest rank; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(value(i));
            }
        }
        None
    }
}

/// Why a stream failed; the report counts them by class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// The TCP connect failed (refused, unreachable, reset before a byte).
    Connect,
    /// Writing the request failed.
    Write,
    /// Reading failed.
    Read,
    /// The server closed before a complete response head.
    ClosedBeforeHead,
    /// A status other than 200 (the code is in the class name).
    Status(u16),
    /// The response head or body framing was malformed.
    BadHttp,
    /// The stream outgrew the SSE parser's bound.
    BadSse,
    /// The server closed in the middle of the body.
    ClosedMidBody,
    /// The body ended (cleanly) with no `exit` event.
    NoExit,
    /// The stream had an `err` event: the command could not start.
    ErrEvent,
    /// The `exit` event gave a code other than 0, or a signal.
    ExitNotZero,
    /// Registering the socket with the poll failed.
    Poll,
}

impl Failure {
    /// A short class name for the report.
    pub fn class(self) -> String {
        match self {
            Failure::Connect => "connect failed".into(),
            Failure::Write => "write failed".into(),
            Failure::Read => "read failed".into(),
            Failure::ClosedBeforeHead => "closed before head".into(),
            Failure::Status(code) => format!("http {code}"),
            Failure::BadHttp => "bad http framing".into(),
            Failure::BadSse => "sse event too long".into(),
            Failure::ClosedMidBody => "closed mid-body".into(),
            Failure::NoExit => "ended without exit event".into(),
            Failure::ErrEvent => "err event (command did not start)".into(),
            Failure::ExitNotZero => "exit not 0".into(),
            Failure::Poll => "poll register failed".into(),
        }
    }
}

/// The totals of a run.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Streams whose response ended after an `exit` event.
    pub completed: usize,
    /// Streams still open at the deadline, closed by us.
    pub cut: usize,
    /// Failed streams by class.
    pub failures: BTreeMap<Failure, usize>,
    /// Events dispatched (every kind).
    pub events: u64,
    /// Output events (`stdout`, `stderr`, unnamed).
    pub output_events: u64,
    /// Child output bytes the events carried (decoded).
    pub payload_bytes: u64,
    /// Lines of child output (LF-terminated).
    pub lines: u64,
    /// Bytes read from the sockets (heads and framing included).
    pub wire_bytes: u64,
    /// Comment lines (heartbeats).
    pub comments: u64,
    /// Per stream, request start to the first response byte.
    pub first_byte: Histogram,
    /// Per timestamped line, arrival minus its `CLOCK_MONOTONIC` stamp.
    pub latency: Histogram,
    /// Timestamps later than their arrival (another clock?): not counted.
    pub future_stamps: u64,
    /// A line is taken as a timestamp only from this `CLOCK_MONOTONIC`
    /// value on (the run's start, less a second): a command started by the
    /// run cannot print an earlier one, and `seq`'s numbers are far below.
    pub stamp_floor: u64,
    /// Streams that ended with an event or line unfinished (dropped).
    pub unfinished_events: u64,
    /// The first connect error, for the one-line message when none connects.
    pub connect_error: Option<String>,
}

impl Totals {
    /// Streams that failed.
    pub fn failed(&self) -> usize {
        self.failures.values().sum()
    }

    /// Keeps the first connect error's text.
    pub fn note_connect_error(&mut self, err: &std::io::Error) {
        if self.connect_error.is_none() {
            self.connect_error = Some(err.to_string().to_lowercase());
        }
    }

    /// Counts a failed stream.
    pub fn fail(&mut self, why: Failure) {
        *self.failures.entry(why).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_within_two_percent() {
        let mut last = 0;
        for v in (0..5000u64)
            .chain((13..63).map(|e| (1u64 << e) + 12345))
            .chain([u64::MAX])
        {
            let i = bucket(v);
            assert!(i < BUCKETS && i >= last, "{v}");
            last = i;
            let mid = value(i) as f64;
            assert!((mid - v as f64).abs() <= v as f64 / 64.0 + 1.0, "{v} -> {mid}");
        }
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(
            (h.quantile(0.5), h.quantile(0.99), h.quantile(0.0)),
            (Some(50), Some(99), Some(1))
        );
        assert_eq!(h.count(), 100);
    }
}
