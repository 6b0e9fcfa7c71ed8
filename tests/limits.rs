//! Limits (CONTRACT §1, §3.6): `--max-procs`, `--max-conns`, `--timeout`.
mod common;

use common::*;
use std::time::{Duration, Instant};

/// §1: `--max-procs 1`: a second concurrent /run → 503 with Retry-After;
/// after the first ends, a new one works.
#[test]
fn max_procs_503_with_retry_after() {
    let s = Server::start(&["--max-procs", "1"]);
    let m = sleep_marker();
    let _guard = MarkerGuard(vec![m.clone()]);
    let mut c = s.connect();
    c.send(&s.req("GET", &format!("/run?command={}", pct(&format!("sleep {}", m))), &[]));
    c.read_head().assert_status(200, "first /run");
    wait_until(Duration::from_secs(5), "the first command to start", || {
        !live_marked(&m).is_empty()
    });

    let r = s.get("/run?command=echo%20second");
    r.assert_status(503, "second /run past --max-procs 1");
    let ra = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("503 without Retry-After:\n{}", r.raw_head));
    assert!(
        ra.parse::<u32>().is_ok_and(|n| n >= 1),
        "Retry-After {:?} is not a positive number of seconds",
        ra
    );

    c.close();
    wait_until(
        Duration::from_secs(5),
        "the first command to be stopped after disconnect",
        || live_marked(&m).is_empty(),
    );
    let mut last = String::new();
    let ok = poll_until(Duration::from_secs(5), || {
        let r = s.get("/run?command=echo%20third");
        last = r.dump();
        r.status == 200 && Run::from_response(r, Instant::now()).stdout() == "third\n"
    });
    assert!(
        ok,
        "a new /run did not work after the first ended; last response:\n{}",
        last
    );
}

/// §1: `--max-conns 2`: a third connection gets 503 and is closed; after one
/// closes, a new connection works.
#[test]
fn max_conns_503_and_close() {
    let s = Server::start(&["--max-conns", "2"]);
    let mut a = s.connect();
    a.send(&s.req("GET", "/healthz", &[]));
    a.read_response().assert_status(200, "connection A");
    let mut b = s.connect();
    b.send(&s.req("GET", "/healthz", &[]));
    b.read_response().assert_status(200, "connection B");

    let mut c = s.connect();
    let _ = c.try_send(&s.req("GET", "/healthz", &[]));
    let r = c
        .try_read_response()
        .unwrap_or_else(|e| panic!("third connection: no 503 ({})", e));
    r.assert_status(503, "third connection past --max-conns 2");
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "third connection not closed after 503"
    );

    // B still works.
    b.send(&s.req("GET", "/healthz", &[]));
    b.read_response().assert_status(200, "connection B after the refusal");

    a.close();
    let mut last = String::new();
    let ok = poll_until(Duration::from_secs(5), || {
        let mut d = s.connect();
        if d.try_send(&s.req("GET", "/healthz", &[])).is_err() {
            return false;
        }
        match d.try_read_response() {
            Ok(r) => {
                last = r.dump();
                r.status == 200
            }
            Err(e) => {
                last = e;
                false
            }
        }
    });
    assert!(ok, "no new connection accepted after closing one; last: {}", last);
}

/// §1, §3.6 (WIRE.md): `--timeout 1` kills the command: exit event with
/// `"timed_out":true` about 1 s after the start.
#[test]
fn timeout_kills_with_timed_out_flag() {
    let s = Server::start(&["--timeout", "1"]);
    let m = sleep_marker();
    let _guard = MarkerGuard(vec![m.clone()]);
    let r = s.run(&format!("sleep {}", m));
    let took = r.last().at.duration_since(r.t0);
    assert_eq!(
        r.end,
        End::Exit {
            code: None,
            signal: Some(15),
            timed_out: true
        },
        "body:\n{}",
        r.resp.body_str()
    );
    assert!(took >= Duration::from_millis(900), "timed out after only {:?}", took);
    assert!(
        took <= Duration::from_secs(3),
        "timed out after {:?} (--timeout 1)",
        took
    );
    assert_eq!(
        json(r.last()),
        serde_json::json!({"type":"exit","code":null,"signal":15,"timed_out":true})
    );
    wait_until(Duration::from_secs(2), "the timed-out child to be gone", || {
        live_marked(&m).is_empty()
    });
}

/// §3.6: a timed-out command that ignores SIGTERM gets SIGKILL after
/// --kill-grace: signal 9 and `timed_out`.
#[test]
fn timeout_escalates_to_sigkill() {
    let s = Server::start(&["--shell", "--timeout", "1", "--kill-grace", "1"]);
    let m = sleep_marker();
    let _guard = MarkerGuard(vec![m.clone()]);
    let r = s.run(&format!("trap '' TERM; sleep {}", m));
    let took = r.last().at.duration_since(r.t0);
    assert_eq!(
        r.end,
        End::Exit {
            code: None,
            signal: Some(9),
            timed_out: true
        },
        "body:\n{}",
        r.resp.body_str()
    );
    assert!(
        took >= Duration::from_millis(1900),
        "ended after {:?}: before timeout 1 + grace 1",
        took
    );
    assert!(took <= Duration::from_secs(4), "ended after {:?}", took);
    wait_until(Duration::from_secs(2), "the child to be gone", || {
        live_marked(&m).is_empty()
    });
}
