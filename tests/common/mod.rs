//! Test harness for driving the real `ssecommander` binary (STYLE.md, "Tests
//! that drive the real binary").
//!
//! - [`Server`]: starts the binary on `127.0.0.1:0` through the shared guard
//!   `ssecommander::harness::server::Server` (which reads the URL line within
//!   5 s and stops it by PID on drop: SIGTERM, then SIGKILL), with its stderr
//!   in a file under the target directory (shown when a test fails).
//! - [`Conn`]: a raw HTTP/1.x client over `std::net::TcpStream` with read
//!   timeouts: send any bytes, read one response (chunked, Content-Length or
//!   close-delimited), keep the connection for keep-alive or pipelining, or
//!   read a body piece by piece with arrival times.
//! - [`SseParser`]: a strict WHATWG event-stream parser that fails the test on
//!   anything our wire never sends (malformed lines, unknown fields, events
//!   without id / event / data, ids that are not 1, 2, 3…).
//! - `/proc` helpers (fd count, RSS, children, state, wchan, io counters,
//!   pids by argv marker), re-exported from `ssecommander::harness::procfs`,
//!   and [`wait_until`], the only way tests wait.
//!
//! Every wait is bounded in time and count and panics saying what it waited
//! for; every process is ended by its PID.
#![allow(dead_code)]

mod data;
mod http;
mod jobs;
mod names;
mod run;
mod server;
mod sse;
mod wait;

use std::time::Duration;

// Not every test binary uses every part.
#[allow(unused_imports)]
pub use data::*;
pub use http::*;
#[allow(unused_imports)]
pub use jobs::*;
pub use names::*;
pub use run::*;
pub use server::*;
pub use sse::*;
pub use wait::*;

/// The /proc helpers (fd count, RSS, children, state, wchan, io counters,
/// pids by argv marker) and `send_signal`.
pub use ssecommander::harness::procfs::*;
/// Percent-encodes a query value: everything but `A-Z a-z 0-9 - . _ ~`.
pub use ssecommander::http::query::encode as pct;
use ssecommander::{client, harness};

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ssecommander");

/// Default socket read timeout: no single read of a healthy server takes this long.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why cgroup mode cannot be tested here, if it cannot: no cgroup2 mount,
/// or one we may not write to.
pub fn cgroup_unavailable() -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(mount) = info.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        (after.split(' ').next()? == "cgroup2").then(|| before.split(' ').nth(4).map(std::path::PathBuf::from))?
    }) else {
        return Some("no cgroup2 mount in /proc/self/mountinfo".to_owned());
    };
    let path = std::ffi::CString::new(mount.join("cgroup.procs").to_string_lossy().into_owned()).ok()?;
    // SAFETY: access() reads a NUL-terminated path that lives for the call.
    if unsafe { libc::access(path.as_ptr(), libc::W_OK) } != 0 {
        return Some(format!("{} is not writable", mount.display()));
    }
    None
}
