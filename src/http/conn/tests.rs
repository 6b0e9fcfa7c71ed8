//! The connection over a real loopback TCP pair, driven by hand: the
//! test plays the server (carrying out actions, moving the clock).

use super::*;
use crate::eventlog::EventLog;
use crate::sse::{Exit, Stream as Pipe};
use std::net::{TcpListener, TcpStream as StdStream};

struct Pair {
    conn: Conn,
    client: StdStream,
    timers: Timers,
    buf: Vec<u8>,
    t0: Instant,
}

fn pair() -> Pair {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = StdStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (sock, peer) = listener.accept().expect("accept");
    sock.set_nonblocking(true).expect("nonblocking");
    client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut timers = Timers::default();
    let t0 = Instant::now();
    let conn = Conn::new(TcpStream::from_std(sock), peer, 7, true, None, t0, &mut timers);
    Pair {
        conn,
        client,
        timers,
        buf: vec![0; 64 * 1024],
        t0,
    }
}

impl Pair {
    fn advance(&mut self, after: Duration) -> Action {
        // No poll here: say the socket may have something, as an event
        // would; and that it may be shut, so reads go on to the end.
        self.conn.on_event(Readiness {
            readable: true,
            read_closed: true,
            writable: true,
            error: false,
        });
        self.conn.advance(&mut self.buf, self.t0 + after, &mut self.timers)
    }

    /// Advances until the action is not `Wait` (the kernel may take a
    /// moment to move bytes across loopback), at most 2 s.
    fn next_action(&mut self) -> Action {
        for _ in 0..200 {
            match self.advance(Duration::ZERO) {
                Action::Wait => std::thread::sleep(Duration::from_millis(10)),
                action => return action,
            }
        }
        Action::Wait
    }

    fn send(&mut self, bytes: &[u8]) {
        self.client.write_all(bytes).expect("client write");
    }

    /// Reads exactly `n` bytes as the client.
    fn read(&mut self, n: usize) -> String {
        let mut got = vec![0; n];
        self.client.read_exact(&mut got).expect("client read");
        String::from_utf8(got).expect("utf-8")
    }

    fn read_to_end(&mut self) -> String {
        let mut got = Vec::new();
        self.client.read_to_end(&mut got).expect("client read");
        String::from_utf8(got).expect("utf-8")
    }
}

fn route(action: Action) -> Head {
    match action {
        Action::Route(head) => head,
        other => panic!("expected a head, got {other:?}"),
    }
}

const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

fn ok() -> Reply {
    Reply::text(200, "OK", "hi")
}

fn ok_bytes(close: bool) -> String {
    let mut out = Vec::new();
    let mut reply = ok();
    reply.close = close;
    reply.write_to(&mut out, 1, false);
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn keep_alive_then_pipelined_heads_in_order() {
    let mut p = pair();
    assert!(matches!(p.advance(Duration::ZERO), Action::Wait));
    p.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = route(p.next_action());
    assert_eq!(head.target, "/a");
    p.conn.reply(&ok(), 1, false, "", p.t0);
    // The second head was read with the first: routed without an event.
    let head = route(p.conn.advance(&mut p.buf, p.t0, &mut p.timers));
    assert_eq!(head.target, "/b");
    p.conn.reply(&ok(), 1, false, "", p.t0);
    assert!(matches!(p.advance(Duration::ZERO), Action::Wait));
    let one = ok_bytes(false);
    assert_eq!(p.read(2 * one.len()), one.repeat(2));
    assert!(p.conn.is_idle());
    // Idle between requests: closed silently after IDLE_TIMEOUT, and
    // not before.
    let early = p.t0 + IDLE_TIMEOUT / 2;
    assert!(matches!(
        p.conn.on_deadline(&mut p.buf, early, &mut p.timers),
        Action::Wait
    ));
    let late = p.t0 + IDLE_TIMEOUT;
    assert!(matches!(
        p.conn.on_deadline(&mut p.buf, late, &mut p.timers),
        Action::Close
    ));
}

#[test]
fn closing_reply_shuts_our_side_then_lingers_until_the_client_closes() {
    let mut p = pair();
    p.send(GET);
    route(p.next_action());
    p.conn.reply(&ok().closing(), 1, false, "", p.t0);
    assert!(matches!(p.advance(Duration::ZERO), Action::Wait));
    assert!(p.conn.is_idle(), "lingering");
    // Our FIN ends the client's read after the whole reply.
    assert_eq!(p.read_to_end(), ok_bytes(true));
    // Bytes the client still sends are read and dropped, not reset.
    p.send(b"more junk");
    assert!(matches!(p.advance(Duration::ZERO), Action::Wait));
    p.client.shutdown(Shutdown::Write).expect("shutdown");
    assert!(matches!(p.next_action(), Action::Close));
}

#[test]
fn linger_ends_at_its_deadline() {
    let mut p = pair();
    p.send(GET);
    route(p.next_action());
    p.conn.reply(&ok().closing(), 1, false, "", p.t0);
    assert!(matches!(p.advance(Duration::ZERO), Action::Wait));
    let end = p.t0 + LINGER;
    assert!(matches!(
        p.conn.on_deadline(&mut p.buf, end, &mut p.timers),
        Action::Close
    ));
}

#[test]
fn a_head_that_never_completes_is_refused_with_408() {
    let mut p = pair();
    p.send(b"GET /a HTTP/1.1\r\nHo");
    assert!(matches!(p.advance(Duration::ZERO), Action::Wait));
    let late = p.t0 + HEAD_TIMEOUT;
    let action = p.conn.on_deadline(&mut p.buf, late, &mut p.timers);
    let Action::Reject(err) = action else {
        panic!("expected a refusal, got {action:?}");
    };
    assert_eq!(p.conn.reject(err, late), 408);
    assert!(matches!(p.advance(Duration::ZERO), Action::Wait));
    assert!(p.read_to_end().starts_with("HTTP/1.1 408 Request Timeout\r\n"));
}

#[test]
fn a_head_cut_by_the_clients_fin_is_a_400() {
    let mut p = pair();
    p.send(b"GET /a HTTP/1.1\r\nHo");
    p.client.shutdown(Shutdown::Write).expect("shutdown");
    let action = p.next_action();
    assert!(matches!(action, Action::Reject(HttpError::BadRequest(_))), "{action:?}");
}

#[test]
fn run_stream_is_chunked_and_kept_alive_after_its_last_chunk() {
    let mut p = pair();
    p.send(GET);
    let head = route(p.next_action());
    p.conn.begin_run(&head, &[], 3, None, p.t0, &mut p.timers);
    assert!(p.conn.is_streaming());
    assert_eq!(p.conn.source(), Some(Source::Run(3)));
    assert!(matches!(p.advance(Duration::ZERO), Action::Pull(Source::Run(3))));
    let mut encoder = Encoder::new(Format::Raw);
    let text = b"hello\n";
    let frame = encoder.output(Pipe::Stdout, text);
    let frame_bytes = frame.to_vec(text, true);
    assert!(p.conn.send(frame, text, p.t0));
    p.conn.end_stream(p.t0);
    assert_eq!(p.conn.source(), None);
    assert!(matches!(p.advance(Duration::ZERO), Action::Wait));
    assert!(p.conn.is_idle(), "kept alive after the stream");
    let mut head_bytes = Vec::new();
    write_stream_head(&mut head_bytes, true, false, &[]);
    let head_text = String::from_utf8(head_bytes).expect("utf-8");
    let frame = String::from_utf8(frame_bytes).expect("utf-8");
    let want = format!("{head_text}{frame}0\r\n\r\n");
    assert_eq!(p.read(want.len()), want);
    assert!(frame.contains("data: hello"), "{frame}");
    assert_eq!(p.conn.counts().events.iter().sum::<u64>(), 1);
}

#[test]
fn fin_during_a_stream_is_probed_with_a_ping_then_every_second() {
    let mut p = pair();
    p.send(b"GET /a HTTP/1.0\r\n\r\n");
    let head = route(p.next_action());
    p.conn.begin_run(&head, &[], 0, None, p.t0, &mut p.timers);
    let mut head_bytes = Vec::new();
    write_stream_head(&mut head_bytes, false, true, &[]);
    assert_eq!(p.read(head_bytes.len()).as_bytes(), &head_bytes[..]);
    p.client.shutdown(Shutdown::Write).expect("half-close");
    // The FIN is answered at once with a ping, and the stream goes on.
    assert!(matches!(p.next_action(), Action::Pull(Source::Run(0))));
    assert_eq!(p.read(HEARTBEAT.len()).as_bytes(), HEARTBEAT);
    // Without --heartbeat, the probe still comes every FIN_PROBE.
    let later = p.t0 + FIN_PROBE;
    assert!(matches!(p.conn.on_heartbeat(later, &mut p.timers), Action::Wait));
    assert_eq!(p.read(HEARTBEAT.len()).as_bytes(), HEARTBEAT);
    // The client is really gone: the next write fails and it closes.
    drop(p.client);
    let mut closed = false;
    for i in 2..50 {
        let at = p.t0 + FIN_PROBE * i;
        if matches!(p.conn.on_heartbeat(at, &mut p.timers), Action::Close) {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(closed, "a reset ends the stream");
}

#[test]
fn heartbeat_only_after_a_quiet_interval() {
    let mut p = pair();
    p.send(b"GET /a HTTP/1.0\r\n\r\n");
    let head = route(p.next_action());
    let every = Duration::from_secs(5);
    p.conn.begin_run(&head, &[], 0, Some(every), p.t0, &mut p.timers);
    let mut head_bytes = Vec::new();
    write_stream_head(&mut head_bytes, false, true, &[]);
    p.read(head_bytes.len());
    let deadline = p.conn.deadline_mut(TimerKey::Heartbeat(7)).and_then(|d| d.at());
    assert_eq!(deadline, Some(p.t0 + every));
    assert!(matches!(p.conn.on_heartbeat(p.t0 + every, &mut p.timers), Action::Wait));
    assert_eq!(p.read(HEARTBEAT.len()).as_bytes(), HEARTBEAT);
}

#[test]
fn a_full_socket_queues_and_stops_pulling_until_it_has_room() {
    let mut p = pair();
    p.send(b"GET /a HTTP/1.0\r\n\r\n");
    let head = route(p.next_action());
    p.conn.begin_run(&head, &[], 0, None, p.t0, &mut p.timers);
    let mut encoder = Encoder::new(Format::Raw);
    let text = vec![b'x'; 60 * 1024];
    let mut text = text;
    text.push(b'\n');
    let mut frames = 0;
    while p.conn.send(encoder.output(Pipe::Stdout, &text), &text, p.t0) {
        frames += 1;
        assert!(frames < 10_000, "the socket never filled");
    }
    assert!(p.conn.pending_len() > 0);
    assert!(!p.conn.has_room());
    assert!(
        matches!(p.advance(Duration::ZERO), Action::Wait),
        "no pull while queued"
    );
    assert_eq!(p.conn.counts().pauses, 1);
    // The client reads everything; the queue drains and pulling resumes.
    let mut sink = vec![0; 1 << 20];
    let mut pulled = false;
    for _ in 0..500 {
        let _ = p.client.read(&mut sink);
        if matches!(p.advance(Duration::ZERO), Action::Pull(_)) {
            pulled = true;
            break;
        }
    }
    assert!(pulled);
    assert_eq!(p.conn.pending_len(), 0);
}

fn exit0() -> Exit {
    Exit {
        code: Some(0),
        signal: None,
        timed_out: false,
    }
}

#[test]
fn a_viewer_pulls_from_the_log_resumes_after_an_id_and_ends_at_exit() {
    let mut p = pair();
    p.send(b"GET /jobs/x/events?format=raw HTTP/1.0\r\n\r\n");
    let head = route(p.next_action());
    let mut log = EventLog::new(1 << 20);
    for id in 1..=3 {
        assert!(log.push_output(id, Pipe::Stdout, format!("line {id}\n").as_bytes()));
    }
    p.conn.begin_watch(
        &head,
        true,
        &[],
        5,
        &log,
        Format::Raw,
        Some(1),
        None,
        p.t0,
        &mut p.timers,
    );
    assert_eq!(p.conn.cursor(), Some(2));
    assert!(matches!(p.advance(Duration::ZERO), Action::Pull(Source::Watch(5))));
    let pulled = p.conn.pull(&log, p.t0, &mut p.timers);
    assert_eq!(
        pulled,
        Pulled {
            sent: 2,
            caught_up: true,
            ended: false
        }
    );
    assert!(log.push(4, Logged::Exit(exit0())));
    let pulled = p.conn.pull(&log, p.t0, &mut p.timers);
    assert_eq!(
        pulled,
        Pulled {
            sent: 1,
            caught_up: true,
            ended: true
        }
    );
    assert_eq!(p.conn.source(), None);
    assert!(matches!(p.advance(Duration::ZERO), Action::Wait));
    let body = p.read_to_end();
    assert!(body.contains("retry: 1000\n\n"), "{body}");
    assert!(!body.contains("line 1"), "resumed after event 1: {body}");
    assert!(
        body.contains("id: 2\n") && body.contains("line 2") && body.contains("line 3"),
        "{body}"
    );
    assert!(body.contains("event: exit"), "{body}");
}

#[test]
fn a_viewer_whose_events_are_gone_gets_a_gap() {
    let mut p = pair();
    p.send(b"GET /jobs/x/events HTTP/1.0\r\n\r\n");
    let head = route(p.next_action());
    let mut log = EventLog::new(0);
    for id in 1..=3 {
        assert!(log.push_output(id, Pipe::Stdout, b"x\n"));
    }
    log.trim(4);
    assert_eq!(log.first_held(), Some(3));
    p.conn
        .begin_watch(&head, true, &[], 0, &log, Format::Json, None, None, p.t0, &mut p.timers);
    assert_eq!(p.conn.cursor(), Some(3));
    let mut got = String::new();
    let mut chunk = [0u8; 4096];
    while !got.contains("\"gap\"") {
        let n = p.client.read(&mut chunk).expect("read");
        assert!(n > 0, "ended without a gap: {got}");
        got.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    assert!(got.contains("\"from\":1,\"to\":2"), "{got}");
}

#[test]
fn a_viewer_behind_a_running_job_is_let_go_after_taking_nothing() {
    let mut p = pair();
    p.send(b"GET /jobs/x/events HTTP/1.0\r\n\r\n");
    let head = route(p.next_action());
    let mut log = EventLog::new(1 << 30);
    let big = vec![b'y'; 60 * 1024];
    let mut id = 1;
    p.conn
        .begin_watch(&head, true, &[], 0, &log, Format::Raw, None, None, p.t0, &mut p.timers);
    // The client never reads: fill its socket.
    loop {
        assert!(log.push_output(id, Pipe::Stdout, &big));
        id += 1;
        let pulled = p.conn.pull(&log, p.t0, &mut p.timers);
        if !pulled.caught_up {
            break;
        }
        assert!(id < 10_000, "the socket never filled");
    }
    let stall = TimerKey::Conn(7);
    assert_eq!(
        p.conn.deadline_mut(stall).and_then(|d| d.at()),
        Some(p.t0 + VIEWER_STALL)
    );
    let early = p.t0 + VIEWER_STALL / 2;
    assert!(matches!(
        p.conn.on_deadline(&mut p.buf, early, &mut p.timers),
        Action::Wait
    ));
    let late = p.t0 + VIEWER_STALL;
    assert!(matches!(
        p.conn.on_deadline(&mut p.buf, late, &mut p.timers),
        Action::Close
    ));
    assert_eq!(p.conn.source(), Some(Source::Watch(0)), "the server detaches it");
}

#[test]
fn chunk_lines_are_the_length_in_hex() {
    for len in [
        0,
        1,
        9,
        10,
        15,
        16,
        255,
        256,
        4095,
        4096,
        32 * 1024,
        1 << 31,
        usize::MAX,
    ] {
        let (line, n) = chunk_line(len);
        assert_eq!(&line[..n], format!("{len:x}\r\n").as_bytes(), "{len}");
    }
}
