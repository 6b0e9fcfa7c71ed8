//! A job's input (CONTRACT §10.2): `stdin=1`, `POST /jobs/ID/input` with a
//! `Content-Length` or chunked body, `eof=1` on a pipe and on a terminal,
//! the `409`, `413` and `503` answers. Real programs (cat, head, Python) on
//! the real binary, over raw sockets.
mod common;

use common::*;
use std::time::Duration;

/// A `POST /jobs/ID/input` request with `body`, framed by `Content-Length`
/// or (`chunked`) in chunks of at most 7 bytes with an extension and a
/// trailer.
fn input_request(s: &Server, id: &str, query: &str, body: &[u8], chunked: bool) -> Vec<u8> {
    let target = format!("/jobs/{id}/input{query}");
    if !chunked {
        let mut req = s.req("POST", &target, &[("Content-Length", &body.len().to_string())]);
        req.extend_from_slice(body);
        return req;
    }
    let mut req = s.req("POST", &target, &[("Transfer-Encoding", "chunked")]);
    for piece in body.chunks(7) {
        req.extend_from_slice(format!("{:x};piece=1\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\nX-Trailer: end\r\n\r\n");
    req
}

/// Posts `body` as input on a new connection; the response.
fn post_input(s: &Server, id: &str, query: &str, body: &[u8]) -> Response {
    s.request(&input_request(s, id, query, body, false))
}

/// §10.2: 200 posts to `cat`, by `Content-Length` and chunked, several on
/// one kept-alive connection, come out byte-exact and in order; `eof=1`
/// ends the input (cat exits 0); `GET /jobs/ID` shows `stdin` open, then
/// closed; `input_bytes_total` counts them.
#[test]
fn two_hundred_posts_reach_cat_byte_exact() {
    let s = Server::start(&[]);
    let id = job_start_id(&s, "cat", "&stdin=1");
    assert_eq!(job_info(&s, &id)["stdin"], "open");
    let before = s.metric("ssecommander_input_bytes_total");
    let mut want = String::new();
    let mut c = s.connect();
    for i in 0..200 {
        // Lines, partial lines, tabs, CR, multi-byte text, a quote.
        let body = match i % 4 {
            0 => format!("line {i}\n"),
            1 => format!("part {i} \t\"é\" "),
            2 => format!("{}\r\n", "x".repeat(i * 7)),
            _ => format!("ß{i}€\n"),
        };
        want.push_str(&body);
        if i % 10 == 0 {
            // A new connection now and then; the others keep one alive.
            c = s.connect();
        }
        c.send(&input_request(&s, &id, "", body.as_bytes(), i % 2 == 1));
        let r = c.read_response();
        r.assert_status(204, &format!("post {i}"));
        assert!(
            !r.says_close(),
            "the connection stays usable after post {i}:\n{}",
            r.dump()
        );
    }
    post_input(&s, &id, "?eof=1", b"").assert_status(204, "eof=1");
    let (out, _, end) = job_output(&s, &id);
    assert_eq!(end, End::code(0), "cat read the end of its input");
    assert_eq!(out, want, "every byte, in order");
    assert_eq!(job_info(&s, &id)["stdin"], "closed");
    assert_eq!(s.metric("ssecommander_input_bytes_total"), before + want.len() as u64);
}

/// §10.2: once the command stops reading (`head -c 5` exits), the input is
/// `409`; so is a job without `stdin=1` (it reads /dev/null: `none`), and
/// a job whose input was ended with `eof=1`.
#[test]
fn input_to_a_finished_job_or_one_without_input_is_409() {
    let s = Server::start(&[]);
    let id = job_start_id(&s, "head -c 5", "&stdin=1");
    post_input(&s, &id, "", b"hello world\n").assert_status(204, "first post");
    let ended = job_wait_ended(&s, &id, Duration::from_secs(5));
    assert_eq!(ended["exit"]["code"], 0, "{ended}");
    let (out, _, _) = job_output(&s, &id);
    assert_eq!(out, "hello");
    post_input(&s, &id, "", b"more").assert_status(409, "after head exited");

    let m = sleep_marker();
    let _g = MarkerGuard(vec![m.clone()]);
    let none = job_start_id(&s, &format!("sleep {m}"), "");
    assert_eq!(job_info(&s, &none)["stdin"], "none");
    let r = post_input(&s, &none, "", b"x");
    r.assert_status(409, "a job without stdin=1");
    assert!(r.body_str().contains("stdin=1"), "{}", r.body_str());

    let ended = job_start_id(&s, &format!("sleep {m}"), "&stdin=1");
    post_input(&s, &ended, "?eof=1", b"bye").assert_status(204, "eof=1");
    wait_until(Duration::from_secs(3), "stdin to be closed", || {
        job_info(&s, &ended)["stdin"] == "closed"
    });
    post_input(&s, &ended, "", b"x").assert_status(409, "after eof=1");
    post_input(&s, "AAAAAAAAAAAAAAAA", "", b"x").assert_status(404, "unknown job");
    for id in [none, ended] {
        job_delete(&s, &id).assert_status(202, "DELETE");
    }
}

/// §10.2: while more than 64 KiB posted earlier is unread by the command
/// (in the server's queue or in the pipe), a post is `503` with
/// `Retry-After: 1` and none of its body is queued: to a command that does
/// not read yet, the first two 64 KiB posts are taken (0, then 64 KiB
/// unread before them) and the third is refused (128 KiB unread), whatever
/// the pipe's size. Once the command reads, posts are taken again, and the
/// output is every accepted body in order without the refused one.
#[test]
fn backpressure_is_503_and_the_refused_body_is_not_queued() {
    let s = Server::start(&[]);
    let id = job_start_id(&s, "sh -c 'sleep 1.5; exec cat'", "&stdin=1");
    let mut want = Vec::new();
    let mut refused = None;
    for (i, letter) in (b'a'..=b'j').enumerate() {
        let body = vec![letter; 64 * 1024];
        let r = post_input(&s, &id, "", &body);
        match r.status {
            204 => want.extend_from_slice(&body),
            503 => {
                assert_eq!(r.header("retry-after"), Some("1"), "{}", r.dump());
                refused = Some(letter);
                break;
            }
            _ => panic!("post {i}: expected 204 or 503:\n{}", r.dump()),
        }
    }
    let refused = refused.expect("a 503 within 640 KiB posted to a command that does not read");
    assert_eq!(
        (refused as char, want.len()),
        ('c', 128 * 1024),
        "the third post is the first refused, after 128 KiB taken"
    );
    // The command reads after its sleep: a post is taken again.
    let last = vec![b'Z'; 1000];
    let mut taken = false;
    for _ in 0..50 {
        let r = post_input(&s, &id, "?eof=1", &last);
        if r.status == 204 {
            taken = true;
            break;
        }
        r.assert_status(503, "while the command has not read");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(taken, "the post was still refused after 10 s");
    want.extend_from_slice(&last);
    let (out, _, end) = job_output(&s, &id);
    assert_eq!(end, End::code(0));
    assert_eq!(out.len(), want.len(), "bytes out");
    assert!(
        out.as_bytes() == want.as_slice(),
        "the output is the accepted bodies in order"
    );
    assert!(
        !out.contains(refused as char),
        "the refused body ({}) is not in the output",
        refused as char
    );
}

/// §5, §10.2: a body over 64 KiB is `413`, by `Content-Length` (at once) or
/// chunked (as it comes); exactly 64 KiB is taken; a malformed chunk is
/// `400`; `eof` other than 0 or 1 is `400`. Nothing refused is queued.
#[test]
fn oversized_and_malformed_bodies_are_refused() {
    let s = Server::start(&[]);
    let id = job_start_id(&s, "cat", "&stdin=1");
    let big = vec![b'x'; 64 * 1024 + 1];
    let r = s.request(&input_request(&s, &id, "", &big, false));
    r.assert_status(413, "Content-Length over 64 KiB");
    let r = s.request(&input_request(&s, &id, "", &big, true));
    r.assert_status(413, "chunked over 64 KiB");
    let mut bad = s.req(
        "POST",
        &format!("/jobs/{id}/input"),
        &[("Transfer-Encoding", "chunked")],
    );
    bad.extend_from_slice(b"zz\r\nhello\r\n0\r\n\r\n");
    s.request(&bad).assert_status(400, "a bad chunk size");
    post_input(&s, &id, "?eof=2", b"x").assert_status(400, "eof=2");
    let exact = vec![b'y'; 64 * 1024];
    post_input(&s, &id, "?eof=1", &exact).assert_status(204, "exactly 64 KiB");
    let (out, _, end) = job_output(&s, &id);
    assert_eq!(end, End::code(0));
    assert!(
        out.len() == exact.len() && out.bytes().all(|b| b == b'y'),
        "only the accepted body came out ({} bytes)",
        out.len()
    );
}

/// §10.2 on a terminal: Python's `input()` reads a line posted to its
/// terminal (echoed, as a terminal does); the terminal's end-of-file ends
/// `cat`, after a partial line too.
#[test]
fn input_on_a_terminal_reaches_python_and_eof_ends_cat() {
    let s = Server::start(&[]);
    let id = job_start_id(
        &s,
        "python3 -c 'name = input(\"name? \")\nprint(\"hello,\", name)'",
        "&pty=1",
    );
    assert_eq!(job_info(&s, &id)["stdin"], "open", "a job on a terminal has input");
    post_input(&s, &id, "", b"bob\n").assert_status(204, "a line");
    let (out, err, end) = job_output(&s, &id);
    assert_eq!(end, End::code(0));
    assert!(format!("{err}{out}").contains("name? "), "the prompt: {out:?} {err:?}");
    assert!(out.ends_with("bob\nhello, bob\n"), "the echo, then the answer: {out:?}");

    for (body, want) in [(&b"line\n"[..], "line\nline\n"), (b"partial", "partialpartial")] {
        let id = job_start_id(&s, "cat", "&pty=1");
        post_input(&s, &id, "?eof=1", body).assert_status(204, "eof=1");
        let (out, _, end) = job_output(&s, &id);
        assert_eq!(
            end,
            End::code(0),
            "cat ended by the terminal's end-of-file after {body:?}"
        );
        assert_eq!(out, want, "the echo and cat's copy");
    }
}
