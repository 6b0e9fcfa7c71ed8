//! `ssecommander bench` (CONTRACT §9), driving the real binary against a
//! real server: exact payload and line counts in json and raw, `--json`,
//! per-line latency from CLOCK_MONOTONIC stamps, the deadline, errors by
//! class, one-line usage errors (exit 2) and a closed port.
mod common;

use common::*;
use std::time::{Duration, Instant};

/// Bytes `seq 1 N` prints.
fn seq_bytes(n: u64) -> u64 {
    (1..=n).map(|i| i.to_string().len() as u64 + 1).sum()
}

/// Runs `ssecommander bench ARGS` (bounded); returns status, stdout, stderr.
fn bench(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    run_binary(&all, &[], Duration::from_secs(60))
}

/// Runs with `--json` and parses the one object it prints.
fn bench_json(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (status, out, err) = bench(&all);
    assert_eq!(
        out.lines().count(),
        1,
        "--json prints one line; stdout:\n{out}\nstderr:\n{err}"
    );
    let value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("--json output is not JSON ({e}):\n{out}"));
    (status.code(), value, err)
}

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a whole number in {v}"))
}

/// The `/run` access lines the server logged.
fn run_requests(server: &Server) -> usize {
    server.log().lines().filter(|l| l.contains(" GET /run?")).count()
}

/// §9: the payload is the child's output, byte for byte, whatever the
/// format; every stream completes; the token in the URL rides along (the
/// server requires it); exactly N requests reach the server.
#[test]
fn seq_payload_is_exact_in_json_and_raw() {
    let server = Server::start(&[]);
    assert!(server.url.contains("?token="), "the server runs with a token");
    let expected = 3 * seq_bytes(100_000);
    for format in ["json", "raw"] {
        let before = run_requests(&server);
        let (code, v, err) = bench_json(&[
            "--streams",
            "3",
            "--format",
            format,
            "--command",
            "seq 1 100000",
            &server.url,
        ]);
        assert_eq!(code, Some(0), "{format}: exit status; stderr:\n{err}\n{v}");
        assert_eq!(num(&v, "payload_bytes"), expected, "{format}: payload bytes\n{v}");
        assert_eq!(num(&v, "lines"), 300_000, "{format}\n{v}");
        assert_eq!(
            (num(&v, "completed"), num(&v, "failed"), num(&v, "cut")),
            (3, 0, 0),
            "{format}\n{v}"
        );
        assert_eq!(v["errors"], serde_json::json!({}), "{format}\n{v}");
        assert_eq!(v["format"], format, "{v}");
        assert!(num(&v, "events") > 3, "{format}: output events and 3 exits\n{v}");
        assert_eq!(num(&v["first_byte_ms"], "count"), 3, "{v}");
        assert_eq!(
            num(&v["latency_us"], "count"),
            0,
            "seq's numbers are not timestamps\n{v}"
        );
        assert!(
            !v["url"].as_str().unwrap().contains(server.token.as_deref().unwrap()),
            "token printed: {v}"
        );
        let wait = wait_until(Duration::from_secs(5), "access lines", || {
            run_requests(&server) >= before + 3
        });
        assert!(wait < Duration::from_secs(5));
        assert_eq!(run_requests(&server), before + 3, "{format}: one request per stream");
    }
}

/// §9: JSON escapes (tab, CR, non-ASCII, a character outside the BMP) are
/// decoded, so the payload counts the child's bytes exactly.
#[test]
fn json_escapes_are_decoded_to_the_exact_bytes() {
    let server = Server::start(&["--no-auth"]);
    // Built-in tools only (printf's octal escapes are the UTF-8 bytes).
    let cmd = r#"sh -c 'yes "$(printf "a\tb\303\251\360\237\230\200\001\r")" | head -n 5000'"#;
    let line_bytes = "a\tbé😀\u{1}\r\n".len() as u64;
    let (code, v, err) = bench_json(&["--streams", "2", "--command", cmd, &server.url]);
    assert_eq!(code, Some(0), "stderr:\n{err}\n{v}");
    assert_eq!(num(&v, "payload_bytes"), 2 * 5000 * line_bytes, "{v}");
    assert_eq!(num(&v, "lines"), 2 * 5000, "{v}");
}

/// §9: the table names every figure; a human-readable run ends with 0.
#[test]
fn table_output() {
    let server = Server::start(&["--no-auth"]);
    let (status, out, err) = bench(&["--command", "seq 1 1000", &server.url]);
    assert_eq!(status.code(), Some(0), "stderr:\n{err}");
    for want in [
        "1 completed, 0 cut",
        "payload      0.004 MB",
        "1000 lines",
        "first byte   p50",
        "latency      -",
        "errors       none",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert_eq!(seq_bytes(1000), 3893);
}

/// §9: a command printing CLOCK_MONOTONIC nanoseconds gives per-line
/// latency; progress goes to stderr while it runs (once a second).
#[test]
fn latency_from_monotonic_stamps_and_progress() {
    // python3 prints the CLOCK_MONOTONIC stamps: an outside tool.
    let python = ssecommander::harness::outside::runs("python3", &["-c", "import time"]);
    if !ssecommander::harness::outside::available(python, "python3", "apt-get install python3") {
        return;
    }
    let server = Server::start(&["--no-auth"]);
    let cmd = r#"python3 -c "import time
for _ in range(25):
    print(time.monotonic_ns(), flush=True); time.sleep(0.06)""#;
    let (code, v, err) = bench_json(&["--streams", "4", "--command", cmd, &server.url]);
    assert_eq!(code, Some(0), "stderr:\n{err}\n{v}");
    let lat = &v["latency_us"];
    assert_eq!(num(lat, "count"), 100, "every line is a stamp\n{v}");
    let p50 = lat["p50"].as_f64().unwrap();
    let p99 = lat["p99"].as_f64().unwrap();
    // Generous: an unloaded machine sees well under a millisecond; the
    // check is that arrival minus stamp is a sane positive interval.
    assert!(p50 > 0.0 && p50 <= p99 && p99 < 1_000_000.0, "{v}");
    assert_eq!(num(&v, "future_stamps"), 0, "{v}");
    assert!(
        err.lines()
            .any(|l| l.contains("streams") && l.contains("open") && l.contains("events")),
        "a progress line on stderr during a 1.5 s run:\n{err}"
    );
}

/// §9: after --duration the open streams are cut (not errors) and the run
/// reports at once; the server stops the commands.
#[test]
fn duration_cuts_open_streams() {
    let server = Server::start(&["--no-auth"]);
    let marker = sleep_marker();
    let _guard = MarkerGuard(vec![marker.clone()]);
    let t0 = Instant::now();
    let (code, v, err) = bench_json(&[
        "--streams",
        "3",
        "--duration",
        "1",
        "--command",
        &format!("sleep {marker}"),
        &server.url,
    ]);
    let took = t0.elapsed();
    assert_eq!(code, Some(0), "cut streams are not failures; stderr:\n{err}\n{v}");
    assert_eq!(
        (num(&v, "cut"), num(&v, "completed"), num(&v, "failed")),
        (3, 0, 0),
        "{v}"
    );
    assert!(took < Duration::from_secs(10), "--duration 1 took {took:?}");
    let elapsed = v["elapsed_s"].as_f64().unwrap();
    assert!((0.9..=1.001).contains(&elapsed), "{v}");
    server.wait_no_children(Duration::from_secs(10));
}

/// §9: errors by class — a wrong token (401), a program that cannot start
/// (`err` event), a command that fails (exit not 0); exit status 1.
#[test]
fn errors_by_class() {
    let server = Server::start(&[]);
    let wrong = format!("{}/?token=wrong", server.base);
    for (url, cmd, class) in [
        (wrong.as_str(), "seq 1 3", "http 401"),
        (
            server.url.as_str(),
            "no-such-program-for-bench",
            "err event (command did not start)",
        ),
        (server.url.as_str(), "false", "exit not 0"),
    ] {
        let (code, v, err) = bench_json(&["--streams", "2", "--command", cmd, url]);
        assert_eq!(code, Some(1), "{class}: exit status; stderr:\n{err}\n{v}");
        assert_eq!(v["errors"], serde_json::json!({ class: 2 }), "{v}");
        assert_eq!((num(&v, "failed"), num(&v, "completed")), (2, 0), "{v}");
    }
}

/// §1/§9: a bad flag or URL is one stderr line and exit 2, nothing on stdout.
#[test]
fn bad_flags_exit_2_with_one_line() {
    for args in [
        &["--streams", "0", "http://127.0.0.1:9/"][..],
        &["--streams", "x", "http://127.0.0.1:9/"],
        &["--duration", "-1", "http://127.0.0.1:9/"],
        &["--format", "xml", "http://127.0.0.1:9/"],
        &["--bogus", "http://127.0.0.1:9/"],
        &["--streams"],
        &[],
        &["https://127.0.0.1:9/"],
        &["127.0.0.1:9"],
        &["http://127.0.0.1:99999/"],
    ] {
        let (status, out, err) = bench(args);
        assert_eq!(status.code(), Some(2), "{args:?}: stderr:\n{err}");
        assert_eq!(out, "", "{args:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line:\n{err}");
        assert!(err.starts_with("ssecommander: bench: "), "{args:?}: {err}");
    }
}

/// A URL whose port nobody listens on: one clear line, exit 1.
#[test]
fn closed_port_is_a_clear_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (status, out, err) = bench(&["--streams", "5", &format!("http://127.0.0.1:{port}/")]);
    assert_eq!(status.code(), Some(1), "stderr:\n{err}");
    assert_eq!(out, "");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("cannot connect to 127.0.0.1:{port}")) && err.contains("refused"),
        "{err}"
    );
}

/// `--help` lists the subcommand; `bench --help` its flags.
#[test]
fn help_lists_bench() {
    let (status, out, _) = run_binary(&["--help"], &[], Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(out.contains("ssecommander bench"), "{out}");
    let (status, out, _) = bench(&["--help"]);
    assert_eq!(status.code(), Some(0));
    for flag in [
        "--streams",
        "--duration",
        "--command",
        "--format",
        "--json",
        "CLOCK_MONOTONIC",
    ] {
        assert!(out.contains(flag), "{flag} in:\n{out}");
    }
}
