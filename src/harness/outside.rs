//! Outside tools a test may use (promtool, python3 and its modules, nginx,
//! openssl, `ss`…): one rule for all of them. A newcomer's
//! `cargo test --release` on a machine with only the Rust toolchain must
//! pass, so outside CI a missing tool is a loud `SKIPPED` line and the check
//! that needs it is left out; under `CI=true` (`.ci/run`, which installs
//! every tool) a missing tool fails the test.

use std::io::Write;
use std::process::{Command, Stdio};

/// True under `CI=true`: every outside tool must be there.
pub fn required() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// True when `program args…` runs and exits 0 (found on `PATH`, or at the
/// path given), with its output thrown away.
pub fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `found`, or else: under `CI=true` a panic naming `what` and how to
/// install it; outside CI a `SKIPPED` line (see [`skip`]) and `false`, so
/// the caller leaves that check out.
pub fn available(found: bool, what: &str, install: &str) -> bool {
    if !found {
        skip(&format!("{what} not found ({install}); that check is left out"));
    }
    found
}

/// A test or check cannot run for want of something outside: under
/// `CI=true` a panic saying `why`; outside CI a `SKIPPED` line on stderr.
/// The line is written to the stderr handle itself, not through
/// `eprintln!`, which the test harness captures and hides when the test
/// passes.
pub fn skip(why: &str) {
    assert!(!required(), "CI=true but {why} (.ci/run installs every outside tool)");
    let line = format!("\n*** SKIPPED: {why} ***\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}
