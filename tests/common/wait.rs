//! Waiting: every wait bounded in time and count.

use std::thread;
use std::time::{Duration, Instant};

/// Polls `cond` every 10 ms until it holds; panics after `within` (and a
/// matching bound on the number of polls) with a message naming `what`.
/// Returns the time it took.
pub fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    let step = Duration::from_millis(10);
    let max_polls = within.as_millis() as u64 / 10 + 2;
    for _ in 0..max_polls {
        if cond() {
            return start.elapsed();
        }
        if start.elapsed() >= within {
            break;
        }
        thread::sleep(step);
    }
    if cond() {
        return start.elapsed();
    }
    panic!("timed out after {:?} waiting for: {}", start.elapsed(), what);
}

/// Like [`wait_until`] but returns `false` instead of panicking.
pub fn poll_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let max_polls = within.as_millis() as u64 / 10 + 2;
    for _ in 0..max_polls {
        if cond() {
            return true;
        }
        if start.elapsed() >= within {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    cond()
}
