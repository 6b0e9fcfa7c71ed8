//! What the server keeps to itself (CONTRACT v3 §1, §4): logs hold no
//! control character a client or a child chose and never the token;
//! `--token-file` keeps the token out of `ps`; commands cannot read the
//! server's environment; descriptors the server inherited reach no command.
mod common;

use common::*;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

/// Every byte of `text` as `%XX`, hex case alternating, so a redactor must
/// decode rather than match one spelling.
fn pct_all(text: &str) -> String {
    text.bytes()
        .enumerate()
        .map(|(i, b)| {
            if i % 2 == 0 {
                format!("%{b:02X}")
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// §1 v3: what a client or a child controls is logged with control
/// characters escaped, and the token appears in no log line, wherever the
/// client put it — at RUST_LOG=debug, which also logs every child's start.
#[test]
fn hostile_requests_leave_no_control_character_or_token_in_the_log() {
    let s = Server::start_env(&[], &[("RUST_LOG", "debug")]);
    let tok = s.token.clone().expect("a token in the URL line");
    let double = pct_all(&tok).replace('%', "%25");
    let targets = [
        // argv[0] with ESC and LF: the `cannot run …` line.
        "/run?command=%22%1b%5b31mRED%0aforged%22&m=m1".to_owned(),
        // A child that runs, with ESC, CR and LF in its argv: the child lines.
        "/run?command=echo+%22%1b%5b2J%0dforged2%0aforged3%22&m=m2".to_owned(),
        format!("/run?command=echo+m3+{tok}"),
        format!("/run;token={tok}?m=m4"),
        format!("/run?command=echo+m5&amp;token={tok}"),
        format!("/run?command=echo+m6&x={}", pct_all(&tok)),
        format!("/run?command=echo+m7&x={double}"),
        format!("/run?command=echo+m8+{}", pct_all(&tok)),
        format!("/run?command={tok}+m9"),
        // A C1 control (CSI, U+009B) raw in the target.
        "/m10\u{9b}31mC1".to_owned(),
    ];
    for target in &targets {
        s.request(&s.req("GET", target, &[]));
    }
    wait_until(Duration::from_secs(5), "the access lines of every request", || {
        let log = s.log();
        (1..=10).all(|i| log.contains(&format!("m{i}")))
    });
    // The child lines come with the exit events, which the requests above
    // have read; give a busy box a moment for the last write to land.
    wait_until(Duration::from_secs(5), "the exit lines of the six children", || {
        s.log().matches("exited").count() >= 6
    });
    let log = s.log();
    for (what, bad) in [("ESC", "\x1b"), ("CR", "\r"), ("CSI (C1)", "\u{9b}"), ("DEL", "\x7f")] {
        assert!(!log.contains(bad), "§1: a raw {what} in the log:\n{log}");
    }
    let forged: Vec<&str> = log.lines().filter(|l| !l.starts_with('[')).collect();
    assert!(
        forged.is_empty(),
        "§1: lines that are not the logger's (forged by a client):\n{}\nwhole log:\n{log}",
        forged.join("\n")
    );
    for (what, form) in [
        ("token", tok.clone()),
        ("encoded token", pct_all(&tok)),
        ("double-encoded token", double),
    ] {
        let leaks: Vec<&str> = log.lines().filter(|l| l.contains(&form)).collect();
        assert!(
            leaks.is_empty(),
            "§1/§4: the {what} is in the log:\n{}",
            leaks.join("\n")
        );
    }
    // What was logged instead: the escapes themselves, and the mark.
    for shown in [r"\x1b[31mRED\nforged", r"\x1b[2J\rforged2\nforged3", "[token]"] {
        assert!(log.contains(shown), "expected {shown:?} in the log:\n{log}");
    }
    let redacted = log.lines().filter(|l| l.contains("[token]")).count();
    assert!(
        redacted >= 7,
        "the token should be marked on each line that had it:\n{log}"
    );
}

/// §1 v3: `--token-file` gives the token (CRLF line ending stripped), and
/// the token is then nowhere in the server's command line.
#[test]
fn token_file_gives_the_token_and_keeps_it_out_of_cmdline() {
    let tok = format!("filetok{}x{}", std::process::id(), next_id());
    let file = marker_path("token-file");
    fs::write(file.path(), format!("{tok}\r\nignored second line\n")).expect("write token file");
    let s = Server::start(&["--token-file", file.str()]);
    assert_eq!(
        s.token.as_deref(),
        Some(tok.as_str()),
        "§1: the URL line carries the file's token"
    );
    s.run("echo with-file-token").assert_end(End::code(0));
    s.get_noauth("/run?command=echo+no").assert_status(401, "§4: no token");
    s.get_noauth("/run?command=echo+wrong&token=ignored")
        .assert_status(401, "§4: the file's second line is not a token");
    let cmdline = cmdline(s.pid()).expect("the server's cmdline");
    assert!(cmdline.contains("--token-file"), "cmdline read wrong: {cmdline:?}");
    assert!(
        !cmdline.contains(&tok),
        "§1: the token is in /proc/PID/cmdline: {cmdline:?}"
    );
}

/// Makes the server run as `nobody` when the test runs as root: root's
/// `CAP_SYS_PTRACE` reads any process's environment, so only an
/// unprivileged server shows what the server does for itself.
fn as_unprivileged(cmd: &mut Command) {
    // SAFETY: geteuid reads an integer.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    // SAFETY: between fork and exec only async-signal-safe calls are made
    // (setgroups, setgid, setuid), with no allocation.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// §4: a command cannot read the server's `/proc/PID/environ`, where
/// `SSECOMMANDER_TOKEN` stays for the kernel, because the server is not
/// dumpable. Checked with the pid named and through `--shell`'s `$PPID`.
#[test]
fn commands_cannot_read_the_server_environment() {
    let tok = format!("envtok{}x{}", std::process::id(), next_id());
    for shell in [false, true] {
        let args: &[&str] = if shell { &["--shell"] } else { &[] };
        let s = Server::start_with(args, &[("SSECOMMANDER_TOKEN", &tok)], as_unprivileged);
        assert_eq!(
            s.token.as_deref(),
            Some(tok.as_str()),
            "§1: the token is read from the env"
        );
        let command = if shell {
            "cat /proc/$PPID/environ".to_owned()
        } else {
            format!("cat /proc/{}/environ", s.pid())
        };
        let run = s.run(&command);
        let everything = format!("{}{}", run.stdout(), run.stderr());
        assert!(
            !everything.contains(&tok),
            "§4: a command read the token from the server's environ ({command})"
        );
        assert!(
            everything.contains("Permission denied"),
            "the read should have failed with EACCES ({command}); got: {everything:?}"
        );
        run.assert_end(End::code(1));
    }
}

/// Descriptor number the test leaks to the server without `FD_CLOEXEC`.
const LEAKED_FD: i32 = 57;

/// A careless parent: the server starts with `LEAKED_FD` open on `path`
/// and not close-on-exec.
fn leaking_fd(path: &std::path::Path) -> (File, impl FnOnce(&mut Command)) {
    let file = File::create(path).expect("create the leaked file");
    let raw = file.as_raw_fd();
    let setup = move |cmd: &mut Command| {
        // SAFETY: dup2 is async-signal-safe and allocates nothing; the
        // source descriptor is open in the child until exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(raw, LEAKED_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    };
    (file, setup)
}

/// Issue 9 item 7: a descriptor the server inherited without close-on-exec
/// does not reach its commands.
#[test]
fn inherited_descriptors_do_not_reach_commands() {
    let leaked = marker_path("leaked-fd");
    let (file, setup) = leaking_fd(leaked.path());
    let s = Server::start_with(&[], &[], setup);
    drop(file);
    // The server is not dumpable: only root may list its descriptors.
    // SAFETY: geteuid reads an integer.
    if unsafe { libc::geteuid() } == 0 {
        let server_fds = fd_list(s.pid());
        assert!(
            server_fds
                .iter()
                .any(|fd| fd.starts_with(&format!("{LEAKED_FD}->")) && fd.ends_with(leaked.str())),
            "the test did not leak fd {LEAKED_FD} to the server: {server_fds:?}"
        );
    }
    let run = s.run("ls -l /proc/self/fd");
    run.assert_end(End::code(0));
    let listing = run.stdout();
    assert!(listing.contains(" 2 -> "), "ls listed no descriptors:\n{listing}");
    assert!(
        !listing.contains(&format!(" {LEAKED_FD} -> ")) && !listing.contains(leaked.str()),
        "the command inherited fd {LEAKED_FD}:\n{listing}"
    );
}
