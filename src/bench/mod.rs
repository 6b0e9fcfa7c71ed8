//! `ssecommander bench` (contract §9): opens N SSE streams of a command
//! against a server with the tutorial's `/run?command=` and reports events/s,
//! payload MB/s, first-byte and per-line latency, and errors by class.
//!
//! - [`args`]: flags → a checked plan; the help text.
//! - [`run`]: the one-thread mio loop over every stream; [`stream`]: one
//!   stream (built on [`crate::client`]).
//! - [`stats`]: the counts and a bounded latency histogram; [`report`]:
//!   the table, the JSON object, the progress line.
//!
//! Bounds: at most [`args::MAX_STREAMS`] streams, [`args::MAX_DURATION`],
//! one 256 KiB read buffer, per stream a response head of 16 KiB and SSE
//! lines and event data of 4 MiB. It contacts only the URL's address.

pub mod args;
pub mod report;
pub mod run;
pub mod stats;
pub mod stream;

use std::ffi::OsString;
use std::io::{IsTerminal, Write};

use args::Parsed;

/// Runs `ssecommander bench` with the arguments after `bench`; returns the
/// exit status: 0 when no stream failed, 1 when some did or none could
/// connect, 2 on a bad flag or URL (each error one stderr line).
pub fn main<I>(args: I) -> u8
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let plan = match args::parse(args) {
        Ok(Parsed::Run(plan)) => *plan,
        Ok(Parsed::Help) => {
            print!("{}", args::HELP);
            return 0;
        }
        Err(err) => {
            eprintln!("ssecommander: {err}");
            return 2;
        }
    };
    let addr = match plan.url.socket_addrs() {
        Ok(addrs) if !addrs.is_empty() => addrs[0],
        Ok(_) | Err(_) => {
            eprintln!("ssecommander: bench: cannot resolve host '{}'", plan.url.host());
            return 1;
        }
    };
    if let Err(err) = crate::sys::raise_nofile_limit() {
        eprintln!("ssecommander: bench: cannot raise the open-file limit: {err}");
    }
    let tty = std::io::stderr().is_terminal();
    let mut drew = false;
    let mut progress = |p: &run::Progress| {
        let line = report::progress_line(p);
        let mut err = std::io::stderr().lock();
        // On a terminal one line is redrawn; in a log, a line a second.
        let _ = if tty {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
        drew = true;
    };
    let outcome = match run::run(&plan, addr, &mut progress) {
        Ok(outcome) => outcome,
        Err(err) => {
            eprintln!("ssecommander: bench: event loop failed: {err}");
            return 1;
        }
    };
    if drew && tty {
        eprintln!();
    }
    let t = &outcome.totals;
    let connected_none = t.first_byte.count() == 0 && t.failed() == plan.streams;
    if connected_none {
        if let Some(err) = &t.connect_error {
            eprintln!("ssecommander: bench: cannot connect to {}: {err}", outcome.addr);
            return 1;
        }
    }
    let text = if plan.json {
        report::json(&plan, &outcome)
    } else {
        report::table(&plan, &outcome)
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    if t.failed() > 0 {
        1
    } else {
        0
    }
}
