//! The emitter (`e2e --emit INTERVAL_US SECS [COUNT_FILE]`).

use std::fs;
use std::io::{self, ErrorKind, Write};

use crate::sample::now_ns;

/// Writes `<CLOCK_MONOTONIC ns>\n` every INTERVAL_US µs for SECS s, one
/// `write(2)` per line, on absolute deadlines (a late line goes at once and
/// the schedule goes on), like `shared/bench/emitter.c`; then writes the
/// number of lines to COUNT_FILE. Exit status 0, 1 on a write error.
pub(crate) fn emit(args: &[String]) -> i32 {
    let interval_us = args.first().and_then(|a| a.parse::<i64>().ok()).filter(|&v| v > 0);
    let secs = args
        .get(1)
        .and_then(|a| a.parse::<f64>().ok())
        .filter(|&v| v > 0.0 && v < 3600.0);
    let (Some(interval_us), Some(secs)) = (interval_us, secs) else {
        eprintln!("usage: e2e --emit INTERVAL_US SECS [COUNT_FILE]");
        return 2;
    };
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes integers and writes no memory.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
    let interval = interval_us * 1000;
    let start = now_ns();
    let end = start + (secs * 1e9) as i64;
    let mut next = start;
    let mut sent: u64 = 0;
    let mut status = 0;
    loop {
        let mut t = now_ns();
        if t >= end {
            break;
        }
        if t < next {
            let dl = libc::timespec {
                tv_sec: next / 1_000_000_000,
                tv_nsec: next % 1_000_000_000,
            };
            // SAFETY: clock_nanosleep reads one timespec we own; no remainder.
            while unsafe {
                libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &dl, std::ptr::null_mut())
            } == libc::EINTR
            {}
            t = now_ns();
        }
        let mut line = [0u8; 24];
        let mut cursor = io::Cursor::new(&mut line[..]);
        let _ = writeln!(cursor, "{t}");
        let len = cursor.position() as usize;
        let mut off = 0;
        while off < len {
            // SAFETY: write() reads `len - off` bytes of our stack buffer.
            let w = unsafe { libc::write(1, line[off..].as_ptr().cast(), len - off) };
            if w < 0 {
                if io::Error::last_os_error().kind() == ErrorKind::Interrupted {
                    continue;
                }
                status = 1;
                break;
            }
            off += w as usize;
        }
        if status != 0 {
            break;
        }
        sent += 1;
        next += interval;
    }
    if let Some(path) = args.get(2) {
        let _ = fs::write(path, format!("{sent}\n"));
    }
    status
}
