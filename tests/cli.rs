//! The command line (CONTRACT §1) and command splitting (§2): help and
//! version, one-line errors with exit 2, the URL line, IPv6, `--cwd`,
//! `--shell`, and word splitting without expansion.
mod common;

use common::*;
use std::time::Duration;

fn assert_one_line_error(args: &[&str], status: std::process::ExitStatus, out: &str, err: &str) {
    assert_eq!(status.code(), Some(2), "{:?}: exit status; stderr:\n{}", args, err);
    assert_eq!(out, "", "{:?}: nothing on stdout", args);
    assert_eq!(
        err.lines().count(),
        1,
        "{:?}: §1 expects exactly one stderr line, got:\n{}",
        args,
        err
    );
    assert!(
        err.ends_with('\n'),
        "{:?}: the error line ends with a newline: {:?}",
        args,
        err
    );
    assert!(!err.trim().is_empty());
}

/// §1: `--help`/`-h` print usage and exit 0.
#[test]
fn help_exits_0() {
    for flag in ["--help", "-h"] {
        let (status, out, err) = run_binary(&[flag], &[], Duration::from_secs(5));
        assert_eq!(status.code(), Some(0), "{}: stderr:\n{}", flag, err);
        for opt in [
            "--listen",
            "--token",
            "--token-file",
            "--shell",
            "--max-procs",
            "--kill-grace",
        ] {
            assert!(out.contains(opt), "{} output lacks {}:\n{}", flag, opt, out);
        }
        // Every route of §2 is named.
        for route in [
            "/run",
            "/healthz",
            "/jobs/ID/events",
            "/jobs/events",
            "/metrics",
            "/jobs/ID/input",
        ] {
            assert!(
                out.contains(route),
                "{} output lacks the route {}:\n{}",
                flag,
                route,
                out
            );
        }
    }
}

/// §1: `--version`/`-V` print the version and exit 0.
#[test]
fn version_exits_0() {
    for flag in ["--version", "-V"] {
        let (status, out, err) = run_binary(&[flag], &[], Duration::from_secs(5));
        assert_eq!(status.code(), Some(0), "{}: stderr:\n{}", flag, err);
        assert!(
            out.contains(env!("CARGO_PKG_VERSION")),
            "{} output lacks the version:\n{}",
            flag,
            out
        );
    }
}

/// §1: an unknown option → one stderr line, exit 2.
#[test]
fn bad_option_exit_2_one_line() {
    for args in [&["--no-such-option"][..], &["-Z"], &["--listen"], &["stray-argument"]] {
        let (status, out, err) = run_binary(args, &[], Duration::from_secs(5));
        assert_one_line_error(args, status, &out, &err);
    }
}

/// §1 v3: a `--token-file` that is missing, unreadable, empty or holds no
/// valid token → one stderr line naming the flag, exit 2, and the file's
/// contents never shown; so is combining it with `--token` or `--no-auth`.
#[test]
fn bad_token_file_exit_2_one_line() {
    let dir = scratch_dir("token-file");
    let empty = dir.path().join("empty");
    let blank_first = dir.path().join("blank-first");
    let invalid = dir.path().join("invalid");
    let good = dir.path().join("good");
    std::fs::write(&empty, "").expect("write");
    std::fs::write(&blank_first, "\nsecond-line-token\n").expect("write");
    std::fs::write(&invalid, "secret with spaces\n").expect("write");
    std::fs::write(&good, "goodtoken\n").expect("write");
    let missing = dir.path().join("missing");
    let path = |p: &std::path::Path| p.to_str().expect("UTF-8 path").to_owned();
    let cases: Vec<Vec<String>> = vec![
        vec!["--token-file".into(), path(&missing)],
        vec!["--token-file".into(), path(dir.path())],
        vec!["--token-file".into(), path(&empty)],
        vec!["--token-file".into(), path(&blank_first)],
        vec!["--token-file".into(), path(&invalid)],
        vec!["--token-file".into(), path(&good), "--token".into(), "other".into()],
        vec!["--token-file".into(), path(&good), "--no-auth".into()],
        vec!["--token-file".into()],
    ];
    for case in &cases {
        let mut args: Vec<&str> = vec!["--listen", "127.0.0.1:0"];
        args.extend(case.iter().map(String::as_str));
        let (status, out, err) = run_binary(&args, &[], Duration::from_secs(5));
        assert_one_line_error(&args, status, &out, &err);
        assert!(
            err.contains("token-file"),
            "{args:?}: the error names the flag: {err:?}"
        );
        for secret in ["secret with spaces", "second-line-token", "goodtoken"] {
            assert!(
                !err.contains(secret),
                "{args:?}: the file's contents in the error: {err:?}"
            );
        }
    }
}

/// §1: a bad option value → one stderr line, exit 2.
#[test]
fn bad_value_exit_2_one_line() {
    let cases: [&[&str]; 6] = [
        &["--listen", "127.0.0.1:0", "--max-procs", "abc"],
        &["--listen", "127.0.0.1:0", "--max-conns", "-1"],
        &["--listen", "not-an-address"],
        &["--listen", "127.0.0.1:0", "--timeout", "soon"],
        &["--listen", "127.0.0.1:0", "--heartbeat", "x"],
        &["--listen", "127.0.0.1:99999"],
    ];
    for args in cases {
        let (status, out, err) = run_binary(args, &[], Duration::from_secs(5));
        assert_one_line_error(args, status, &out, &err);
    }
}

/// §1: an address already in use → one stderr line, exit 2.
#[test]
fn address_in_use_exit_2_one_line() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let args = ["--listen", addr.as_str()];
    let (status, out, err) = run_binary(&args, &[], Duration::from_secs(5));
    assert_one_line_error(&args, status, &out, &err);
    drop(holder);
}

/// §1: exactly one stdout line, `ssecommander listening on
/// http://127.0.0.1:PORT/?token=TOKEN`; a new random token at each start.
#[test]
fn url_line_and_fresh_token() {
    let a = Server::start(&[]);
    let b = Server::start(&[]);
    for s in [&a, &b] {
        assert!(s.url.starts_with("http://127.0.0.1:"), "URL {}", s.url);
        assert_ne!(s.addr.port(), 0, "port 0 picks a free port");
        let tok = s.token.as_ref().expect("URL has ?token=");
        assert_eq!(s.url, format!("http://127.0.0.1:{}/?token={}", s.addr.port(), tok));
        assert!(
            tok.len() >= 22 && tok.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "token {:?}",
            tok
        );
        // Serve a request, then check nothing more was printed on stdout.
        s.get("/healthz").assert_status(200, "healthz");
        assert_eq!(s.stdout_rest(), "", "§1: exactly one line on stdout");
    }
    assert_ne!(a.token, b.token, "§1: a new token at each start");
}

/// §1: `--listen [::1]:0` works (skipped without an IPv6 loopback).
#[test]
fn listen_ipv6_loopback() {
    if let Err(e) = std::net::TcpListener::bind("[::1]:0") {
        eprintln!(
            "SKIPPED listen_ipv6_loopback: this machine has no IPv6 loopback ({})",
            e
        );
        return;
    }
    let s = Server::start(&["--listen", "[::1]:0"]);
    assert!(s.addr.is_ipv6(), "URL {}", s.url);
    assert!(s.url.starts_with("http://[::1]:"), "URL {}", s.url);
    let r = s.run("echo v6");
    assert_eq!(r.stdout(), "v6\n");
    r.assert_end(End::code(0));
}

/// §1: `--cwd DIR` is the children's working directory.
#[test]
fn cwd_option() {
    let dir = scratch_dir("cwd");
    let canon = std::fs::canonicalize(dir.path()).unwrap();
    let d = canon.to_str().unwrap();
    let s = Server::start(&["--cwd", d]);
    let r = s.run("pwd");
    assert_eq!(r.stdout(), format!("{}\n", d));
    r.assert_end(End::code(0));
}

/// §1: a `--cwd` that does not exist → one stderr line, exit 2.
#[test]
fn cwd_missing_exit_2() {
    let missing = format!("/nonexistent-ssec-{}-{}", std::process::id(), next_id());
    let args = ["--listen", "127.0.0.1:0", "--cwd", missing.as_str()];
    let (status, out, err) = run_binary(&args, &[], Duration::from_secs(5));
    assert_one_line_error(&args, status, &out, &err);
}

/// §1: `--shell` runs the line with /bin/sh -c: pipes work.
#[test]
fn shell_runs_pipes() {
    let s = Server::start(&["--shell"]);
    let r = s.run("echo a | tr a b");
    assert_eq!(r.stdout(), "b\n");
    r.assert_end(End::code(0));
}

/// §2: without `--shell` the line is split like POSIX words (quotes,
/// backslashes) with no expansion of any kind.
#[test]
fn argv_split_without_expansion() {
    let s = Server::start(&[]);
    let r = s.run(r#"echo "a  b" 'c  d' e\ f $HOME * ~ `x` | tr a b"#);
    assert_eq!(
        r.stdout(),
        "a  b c  d e f $HOME * ~ `x` | tr a b\n",
        "body:\n{}",
        r.resp.body_str()
    );
    r.assert_end(End::code(0));
    let r = s.run(r#"printf '%s|' "it's" 'say "hi"' "back\\slash" "\$x" ''"#);
    assert_eq!(
        r.stdout(),
        r#"it's|say "hi"|back\slash|$x||"#,
        "body:\n{}",
        r.resp.body_str()
    );
    // `+` in a query value is a space (§2).
    let r = s.run_target("/run?command=echo+plus+space");
    assert_eq!(r.stdout(), "plus space\n");
}

/// Issue 18.6: a heartbeat below 0.1 s (which would flood every quiet
/// stream with pings) is refused: one line, exit 2. 0 still turns it off,
/// and 0.1 is accepted.
#[test]
fn heartbeat_below_a_tenth_of_a_second_exit_2_one_line() {
    for value in ["1e-9", "0.05", "0.0999"] {
        let args = ["--listen", "127.0.0.1:0", "--heartbeat", value];
        let (status, out, err) = run_binary(&args, &[], Duration::from_secs(5));
        assert_one_line_error(&args, status, &out, &err);
        assert!(err.contains("--heartbeat") && err.contains("0.1"), "{value}: {err}");
    }
    for value in ["0", "0.1"] {
        let server = Server::start(&["--heartbeat", value]);
        server
            .get("/healthz")
            .assert_status(200, &format!("--heartbeat {value}"));
    }
}

/// Issue 18.6: `--token-file` on a FIFO that no process writes must not
/// block start-up: one line naming the file, exit 2, within seconds.
#[test]
fn token_file_fifo_without_writer_exit_2_one_line() {
    let dir = scratch_dir("token-fifo");
    let fifo = dir.path().join("fifo");
    let path = std::ffi::CString::new(fifo.to_str().expect("a UTF-8 path")).expect("no NUL");
    // SAFETY: mkfifo() reads a NUL-terminated path that lives for the call.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    let shown = fifo.to_str().expect("a UTF-8 path");
    let args = ["--listen", "127.0.0.1:0", "--token-file", shown];
    let (status, out, err) = run_binary(&args, &[], Duration::from_secs(10));
    assert_one_line_error(&args, status, &out, &err);
    assert!(err.contains("--token-file") && err.contains(shown), "{err}");
}

/// A FIFO with a writer (`--token-file <(…)` in a shell) still gives the token.
#[test]
fn token_file_fifo_with_writer_gives_the_token() {
    let dir = scratch_dir("token-fifo-writer");
    let fifo = dir.path().join("fifo");
    let path = std::ffi::CString::new(fifo.to_str().expect("a UTF-8 path")).expect("no NUL");
    // SAFETY: mkfifo() reads a NUL-terminated path that lives for the call.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    let writer_path = fifo.clone();
    let writer = std::thread::spawn(move || {
        // Opening for writing waits for the server to open its end.
        std::fs::write(&writer_path, b"fifo-token-0123456789\n").expect("write the fifo");
    });
    let server = Server::start(&["--token-file", fifo.to_str().expect("a UTF-8 path")]);
    writer.join().expect("the writer thread");
    assert_eq!(server.token.as_deref(), Some("fifo-token-0123456789"));
}

/// Issue 18.6: a token shorter than 16 characters is accepted, with one
/// warning line on stderr (a token that short can be guessed); 16 or more,
/// or a random one, gives none.
#[test]
fn short_token_gives_a_warning_line() {
    let warned = |server: &Server| {
        server
            .log()
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("16 characters"))
            .count()
    };
    for (args, env) in [
        (&["--token", "a"][..], &[][..]),
        (&[][..], &[("SSECOMMANDER_TOKEN", "short-token")][..]),
    ] {
        let server = Server::start_env(args, env);
        server.get("/healthz").assert_status(200, "a short token still serves");
        assert_eq!(
            warned(&server),
            1,
            "{args:?} {env:?}: one warning line:\n{}",
            server.log()
        );
    }
    for args in [&["--token", "sixteen-chars-ok"][..], &[][..]] {
        let server = Server::start(args);
        assert_eq!(warned(&server), 0, "{args:?}: no warning:\n{}", server.log());
    }
}
