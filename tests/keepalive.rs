//! Connections (CONTRACT §3.1, WIRE.md): keep-alive after a stream, HTTP/1.0
//! close-delimited streams, pipelining, `Connection: close`.
mod common;

use common::*;
use std::time::{Duration, Instant};

const HI_BODY: &str = "id: 1\nevent: stdout\ndata: {\"type\":\"stdout\",\"out\":\"hi\\n\"}\n\n\
                       id: 2\nevent: exit\ndata: {\"type\":\"exit\",\"code\":0}\n\n";

/// §3.1: two `/run`s, one after the other, on one HTTP/1.1 connection.
#[test]
fn two_runs_on_one_connection() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    for word in ["first", "second", "third"] {
        let t0 = Instant::now();
        c.send(&s.req("GET", &format!("/run?command=echo%20{}", word), &[]));
        let r = c.read_run(t0);
        assert_eq!(r.stdout(), format!("{}\n", word));
        r.assert_end(End::code(0));
        assert_eq!(r.resp.header("transfer-encoding"), Some("chunked"));
        assert!(
            !r.resp.says_close(),
            "the server asked to close a keep-alive connection:\n{}",
            r.resp.raw_head
        );
    }
}

/// §3.1: an HTTP/1.0 client gets a close-delimited body (no chunking) and
/// the socket closes after the exit event.
#[test]
fn http10_gets_close_delimited_stream() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let auth = format!("Bearer {}", s.token.as_ref().unwrap());
    let req = build_request(
        "GET",
        "/run?command=echo%20hi",
        "HTTP/1.0",
        &[("Host".into(), s.host()), ("Authorization".into(), auth)],
    );
    c.send(&req);
    let r = c.read_response();
    r.assert_status(200, "HTTP/1.0 /run");
    check_stream_head(&r);
    assert_eq!(
        r.header("transfer-encoding"),
        None,
        "no chunking for HTTP/1.0:\n{}",
        r.raw_head
    );
    assert_eq!(
        r.header("content-length"),
        None,
        "a stream has no Content-Length:\n{}",
        r.raw_head
    );
    assert_eq!(r.framing, Framing::Close);
    assert_eq!(
        r.body_str(),
        HI_BODY,
        "\nexpected body:\n{}\ngot body:\n{}",
        HI_BODY,
        r.body_str()
    );
    // read_response read to EOF: the server closed the socket.
    assert!(c.closed_within(Duration::from_millis(100)));
}

/// HTTP/1.0 without keep-alive: a plain reply, then close.
#[test]
fn http10_healthz_closes() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    c.send(&build_request(
        "GET",
        "/healthz",
        "HTTP/1.0",
        &[("Host".into(), s.host())],
    ));
    let r = c.read_response();
    r.assert_status(200, "HTTP/1.0 /healthz");
    assert_eq!(r.body, b"ok");
    assert!(c.closed_within(Duration::from_secs(2)), "HTTP/1.0 connection left open");
}

/// Two requests in one write → two responses, in order.
#[test]
fn pipelined_requests_answered_in_order() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let mut both = s.req("GET", "/run?command=echo%20one", &[]);
    both.extend(s.req("GET", "/run?command=echo%20two", &[]));
    both.extend(s.req("GET", "/healthz", &[]));
    let t0 = Instant::now();
    c.send(&both);
    let r1 = c.read_run(t0);
    assert_eq!(r1.stdout(), "one\n", "first pipelined response");
    r1.assert_end(End::code(0));
    let r2 = c.read_run(t0);
    assert_eq!(r2.stdout(), "two\n", "second pipelined response");
    r2.assert_end(End::code(0));
    let r3 = c.read_response();
    r3.assert_status(200, "third pipelined request (/healthz)");
    assert_eq!(r3.body, b"ok");
}

/// `Connection: close` is honoured: said in the response, then the socket closes.
#[test]
fn connection_close_honoured() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let t0 = Instant::now();
    c.send(&s.req("GET", "/run?command=echo%20hi", &[("Connection", "close")]));
    let r = c.read_run(t0);
    assert_eq!(r.resp.body_str(), HI_BODY);
    assert!(
        r.resp.says_close(),
        "WIRE.md: Connection: close in the response head:\n{}",
        r.resp.raw_head
    );
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "socket not closed after Connection: close (/run)"
    );

    let mut c = s.connect();
    c.send(&s.req("GET", "/healthz", &[("Connection", "close")]));
    let r = c.read_response();
    r.assert_status(200, "/healthz with Connection: close");
    assert!(
        r.says_close(),
        "Connection: close in the response head:\n{}",
        r.raw_head
    );
    assert!(
        c.closed_within(Duration::from_secs(2)),
        "socket not closed after Connection: close (/healthz)"
    );
}

/// Replies that do not lose framing (404, 401, 405) keep the connection.
#[test]
fn keepalive_after_non_fatal_errors() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    c.send(&s.req("GET", "/nope", &[]));
    c.read_response().assert_status(404, "/nope");
    c.send(&s.req_noauth("GET", "/run?command=echo%20x", &[]));
    c.read_response().assert_status(401, "/run without token");
    c.send(&s.req("POST", "/healthz", &[("Content-Length", "0")]));
    c.read_response().assert_status(405, "POST /healthz");
    let t0 = Instant::now();
    c.send(&s.req("GET", "/run?command=echo%20hi", &[]));
    let r = c.read_run(t0);
    assert_eq!(r.resp.body_str(), HI_BODY);
}
