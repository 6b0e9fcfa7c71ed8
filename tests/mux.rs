//! Contract v4 §11: one stream for many jobs, `GET /jobs/events[?ids=…]`,
//! over the real binary and raw sockets, read with the crate's own SSE
//! parser (`client::SseParser`), checked against each job's own
//! `/jobs/ID/events` stream.

mod common;

use common::*;
use serde_json::Value;
use ssecommander::client;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One event of a multiplexed stream, as a client sees it.
#[derive(Debug, Clone)]
struct MuxEvent {
    name: String,
    /// Its own `id:` line, if it had one.
    id: Option<u64>,
    data: Value,
}

/// Feeds a stream's body to the crate's SSE parser, event by event.
struct Reader {
    parser: client::SseParser,
    events: Vec<MuxEvent>,
    body: Vec<u8>,
}

impl Reader {
    fn new() -> Reader {
        Reader {
            parser: client::SseParser::new(),
            events: Vec::new(),
            body: Vec::new(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.body.extend_from_slice(bytes);
        let events = &mut self.events;
        self.parser
            .feed(bytes, &mut |item| {
                if let client::Item::Event(e) = item {
                    let text = String::from_utf8(e.data.to_vec()).expect("UTF-8 data");
                    let data: Value =
                        serde_json::from_str(&text).unwrap_or_else(|err| panic!("data is not JSON ({err}): {text}"));
                    let id = e.has_id.then(|| {
                        std::str::from_utf8(e.last_event_id)
                            .expect("ascii id")
                            .parse::<u64>()
                            .expect("a decimal id")
                    });
                    events.push(MuxEvent {
                        name: String::from_utf8_lossy(e.name).into_owned(),
                        id,
                        data,
                    });
                }
            })
            .expect("parses");
    }

    /// True once an `exit` (or `err`) of `job` arrived.
    fn ended(&self, job: &str) -> bool {
        self.events
            .iter()
            .any(|e| (e.name == "exit" || e.name == "err") && e.data["job"] == job)
    }
}

fn req_mux(s: &Server, query: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    s.req("GET", &format!("/jobs/events{query}"), extra)
}

/// A whole multiplexed stream that ends by itself (with `ids`): head
/// checked as §3.1, begins with `retry: 1000`.
fn mux_watch(s: &Server, query: &str, extra: &[(&str, &str)]) -> (Response, Reader) {
    let mut c = s.connect();
    c.send(&req_mux(s, query, extra));
    let head = c.read_head();
    assert_eq!(head.status, 200, "{}", head.raw_head);
    check_stream_head(&head);
    let mut reader = Reader::new();
    c.read_body_with(&head, |piece, _| {
        reader.feed(piece);
        true
    });
    assert_eq!(reader.parser.finish(), client::End::Clean, "ends between events");
    assert!(
        reader.body.starts_with(b"retry: 1000\n\n"),
        "{}",
        String::from_utf8_lossy(&reader.body)
    );
    (head, reader)
}

fn check_stream_head(head: &Response) {
    assert_eq!(
        head.header("content-type"),
        Some("text/event-stream"),
        "{}",
        head.raw_head
    );
    assert_eq!(head.header("cache-control"), Some("no-cache"), "{}", head.raw_head);
    assert_eq!(head.header("x-accel-buffering"), Some("no"), "{}", head.raw_head);
    assert_eq!(head.framing, Framing::Chunked, "{}", head.raw_head);
}

/// The status of a `/jobs/events` request that is refused or empty.
fn mux_status(s: &Server, query: &str, extra: &[(&str, &str)]) -> Response {
    s.request(&req_mux(s, query, extra))
}

/// A job's own stream: each event's name and JSON, by id.
fn own_events(s: &Server, id: &str) -> Vec<(u64, String, Value)> {
    let mut c = s.connect();
    c.send(&job_events_req(s, id, "", &[]));
    let r = c.read_response();
    r.assert_status(200, "own stream");
    let mut parser = client::SseParser::new();
    let mut out = Vec::new();
    parser
        .feed(&r.body, &mut |item| {
            if let client::Item::Event(e) = item {
                let id = std::str::from_utf8(e.last_event_id)
                    .expect("ascii")
                    .parse()
                    .expect("id");
                let data = serde_json::from_slice(e.data).expect("JSON");
                out.push((id, String::from_utf8_lossy(e.name).into_owned(), data));
            }
        })
        .expect("parses");
    out
}

/// The events of `job` on a multiplexed stream, as its own stream has them:
/// `(seq, name, data without job and seq)`.
fn of_job(events: &[MuxEvent], job: &str) -> Vec<(u64, String, Value)> {
    events
        .iter()
        .filter(|e| e.name != "job" && e.data["job"] == job)
        .map(|e| {
            let mut data = e.data.clone();
            let object = data.as_object_mut().expect("object");
            object.remove("job");
            let seq = object.remove("seq").and_then(|v| v.as_u64()).expect("seq");
            (seq, e.name.clone(), data)
        })
        .collect()
}

/// §11.2 on any stream: global ids strictly increase; `job` events have no
/// id and come exactly once, before their job's first event.
fn check_order(events: &[MuxEvent]) {
    let mut last = 0;
    let mut announced: Vec<String> = Vec::new();
    for e in events {
        if e.name == "job" {
            assert_eq!(e.id, None, "a job event has no id line: {e:?}");
            assert_eq!(e.data["type"], "job");
            let job = e.data["id"].as_str().expect("id").to_owned();
            assert!(!announced.contains(&job), "job announced twice: {job}");
            announced.push(job);
            continue;
        }
        let id = e.id.unwrap_or_else(|| panic!("event without id: {e:?}"));
        assert!(id > last, "global ids increase: {last} then {id}");
        last = id;
        let job = e.data["job"].as_str().unwrap_or_else(|| panic!("no job: {e:?}"));
        assert!(announced.iter().any(|a| a == job), "event before its job event: {e:?}");
        assert_eq!(e.data["type"], if e.name == "err" { "error" } else { e.name.as_str() });
    }
}

fn two_counting_jobs(s: &Server, lines: u32) -> (String, String) {
    let a = job_start(
        s,
        &format!("sh -c 'for i in $(seq 1 {lines}); do echo a$i; sleep 0.01; done'"),
    )["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let b = job_start(
        s,
        &format!("sh -c 'for i in $(seq 1 {lines}); do echo b$i; echo e$i >&2; sleep 0.013; done'"),
    )["id"]
        .as_str()
        .expect("id")
        .to_owned();
    (a, b)
}

/// §11.1–11.2: two jobs writing numbered lines at once, watched live on one
/// stream: global ids strictly increase, each job's `seq`, names and text
/// are exactly those of its own stream, `job` events carry no id, and the
/// stream ends after both exits (the connection kept alive).
#[test]
fn two_jobs_interleaved_match_their_own_streams() {
    let s = Server::start(&[]);
    let (a, b) = two_counting_jobs(&s, 40);
    let (head, reader) = mux_watch(&s, &format!("?ids={a},{b}"), &[]);
    assert!(!head.says_close(), "{}", head.raw_head);
    check_order(&reader.events);
    let names: Vec<&str> = reader.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names.iter().filter(|n| **n == "job").count(), 2);
    assert_eq!(names.iter().filter(|n| **n == "exit").count(), 2, "{names:?}");
    let last = reader.events.last().expect("events");
    assert_eq!(last.name, "exit", "the stream ends after the last exit");
    for job in [&a, &b] {
        let own = own_events(&s, job);
        assert_eq!(of_job(&reader.events, job), own, "job {job} as on its own stream");
    }
    // Both jobs wrote while the stream was open: their events interleave.
    let jobs: Vec<&Value> = reader
        .events
        .iter()
        .filter(|e| e.name == "stdout")
        .map(|e| &e.data["job"])
        .collect();
    let switches = jobs.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(switches >= 4, "the jobs' events interleave ({switches} switches)");
}

fn nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos() as u64
}

/// §11.3: resuming after a global number G (by header and by
/// `?last-event-id=`) sends each job's events numbered above G, nothing
/// twice and nothing skipped; every job ended at or before G: `204`; a
/// number past the last one given: `400`.
#[test]
fn resume_after_a_global_number() {
    let s = Server::start(&[]);
    let (a, b) = two_counting_jobs(&s, 20);
    job_wait_ended(&s, &a, Duration::from_secs(10));
    job_wait_ended(&s, &b, Duration::from_secs(10));
    let query = format!("?ids={a},{b}");
    let (_, full) = mux_watch(&s, &query, &[]);
    check_order(&full.events);
    let numbered: Vec<&MuxEvent> = full.events.iter().filter(|e| e.id.is_some()).collect();
    assert!(numbered.len() >= 62, "{} events", numbered.len());
    let pick = |seed: u64| numbered[(seed as usize) % (numbered.len() - 1)].id.expect("id");
    for (round, g) in [pick(nanos()), pick(nanos() / 7 + 3), numbered[0].id.expect("id")]
        .into_iter()
        .enumerate()
    {
        let want: Vec<&MuxEvent> = numbered.iter().copied().filter(|e| e.id > Some(g)).collect();
        let g_text = g.to_string();
        let (_, by_header) = mux_watch(&s, &query, &[("Last-Event-ID", &g_text)]);
        let (_, by_query) = mux_watch(&s, &format!("{query}&last-event-id={g}"), &[]);
        for (how, got) in [("header", &by_header), ("query", &by_query)] {
            check_order(&got.events);
            let got: Vec<(Option<u64>, &Value)> = got
                .events
                .iter()
                .filter(|e| e.name != "job")
                .map(|e| (e.id, &e.data))
                .collect();
            let want: Vec<(Option<u64>, &Value)> = want.iter().map(|e| (e.id, &e.data)).collect();
            assert_eq!(got, want, "round {round}: resume after {g} by {how}");
        }
    }
    let last = numbered.last().and_then(|e| e.id).expect("id");
    let r = mux_status(&s, &query, &[("Last-Event-ID", &last.to_string())]);
    r.assert_status(204, "both jobs ended at or before G");
    let r = mux_status(&s, &format!("{query}&last-event-id={last}"), &[]);
    r.assert_status(204, "the same by query");
    // One job ended before G, the other after: only the other is sent.
    let a_last = full
        .events
        .iter()
        .rev()
        .find(|e| e.data["job"] == a.as_str() && e.id.is_some())
        .and_then(|e| e.id)
        .expect("a's last");
    if a_last < last {
        let (_, rest) = mux_watch(&s, &query, &[("Last-Event-ID", &a_last.to_string())]);
        assert!(rest
            .events
            .iter()
            .all(|e| e.data["job"] != a.as_str() && e.data["id"] != a.as_str()));
        assert!(rest.ended(&b));
    }
    let r = mux_status(&s, &query, &[("Last-Event-ID", &(last + 1_000_000).to_string())]);
    r.assert_status(400, "a number this server never gave");
}

/// §11.3 gaps: with a tiny `--job-log`, a job that printed while nobody
/// watched starts with a `gap` on the stream: `from` 1, `to` as on its own
/// stream, its id the global number of the last missed event (below the
/// next event's), then the held events exactly as on its own stream.
#[test]
fn gaps_with_a_tiny_job_log() {
    let s = Server::start(&["--job-log", "1K"]);
    let a = job_start(&s, "seq 1 3000")["id"].as_str().expect("id").to_owned();
    let b = job_start(&s, "seq 1 10")["id"].as_str().expect("id").to_owned();
    job_wait_ended(&s, &a, Duration::from_secs(10));
    job_wait_ended(&s, &b, Duration::from_secs(10));
    let (_, reader) = mux_watch(&s, &format!("?ids={a},{b}"), &[]);
    check_order(&reader.events);
    let own = own_events(&s, &a);
    assert_eq!(own[0].1, "gap", "own stream starts with a gap");
    let on_mux = of_job(&reader.events, &a);
    assert_eq!(on_mux, own, "the gap and held events as on its own stream");
    assert_eq!(on_mux[0].2["from"], 1);
    let events: Vec<&MuxEvent> = reader.events.iter().filter(|e| e.data["job"] == a.as_str()).collect();
    assert_eq!(events[0].name, "gap");
    assert!(
        events[0].id < events[1].id,
        "the gap's number is below the next event's"
    );
    assert!(
        of_job(&reader.events, &b).iter().all(|(_, name, _)| name != "gap"),
        "b kept all"
    );
    // Resuming inside a's gap still announces what is missing.
    let g = events[0].id.expect("id") - 1;
    let (_, resumed) = mux_watch(&s, &format!("?ids={a}"), &[("Last-Event-ID", &g.to_string())]);
    let again = of_job(&resumed.events, &a);
    assert_eq!(again[0].1, "gap", "{again:?}");
    assert_eq!(again[0].2["to"], on_mux[0].2["to"]);
    assert_eq!(&again[1..], &on_mux[1..], "then the held events");
}

/// §11.1: without `ids`, the stream carries every job: those kept now and
/// one started while it is open; it stays open after their exits. The
/// gauge `multiplexed_streams_open` counts it.
#[test]
fn all_jobs_feed_sees_a_job_started_later() {
    let s = Server::start(&[]);
    let old = job_start(&s, "echo old")["id"].as_str().expect("id").to_owned();
    job_wait_ended(&s, &old, Duration::from_secs(5));
    let mut c = s.connect();
    c.send(&req_mux(&s, "", &[]));
    let head = c.read_head();
    assert_eq!(head.status, 200, "{}", head.raw_head);
    check_stream_head(&head);
    let mut body = c.body(&head);
    let mut reader = Reader::new();
    let mut read_until = |reader: &mut Reader, c: &mut Conn, what: &str, done: &dyn Fn(&Reader) -> bool| {
        let t0 = Instant::now();
        while !done(reader) {
            assert!(t0.elapsed() < Duration::from_secs(10), "waited 10 s for {what}");
            match c.read_body_some(&mut body, 65536) {
                Some((piece, _)) => reader.feed(&piece),
                None => panic!("the all-jobs stream ended while waiting for {what}"),
            }
        }
    };
    read_until(&mut reader, &mut c, "the kept job", &|r| r.ended(&old));
    let metrics = s.get("/metrics");
    metrics.assert_status(200, "metrics");
    let text = metrics.body_str();
    assert!(
        text.lines().any(|l| l == "ssecommander_multiplexed_streams_open 1"),
        "gauge counts the stream:\n{text}"
    );
    assert!(text.contains("# TYPE ssecommander_multiplexed_streams_open gauge"));
    let new = job_start(&s, "sh -c 'echo new; echo more'")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    read_until(&mut reader, &mut c, "the new job", &|r| r.ended(&new));
    check_order(&reader.events);
    assert_eq!(of_job(&reader.events, &new), own_events(&s, &new));
    assert_eq!(of_job(&reader.events, &old), own_events(&s, &old));
    // Still open: a third job comes through too.
    let third = job_start(&s, "echo third")["id"].as_str().expect("id").to_owned();
    read_until(&mut reader, &mut c, "the third job", &|r| r.ended(&third));
    drop(c);
    let gone = poll_until(Duration::from_secs(5), || {
        s.get("/metrics")
            .body_str()
            .lines()
            .any(|l| l == "ssecommander_multiplexed_streams_open 0")
    });
    assert!(gone, "the gauge goes back to 0 when the client leaves");
}

/// §11.1 refusals: `ids` empty or over 64 jobs, a malformed id, `format=raw`
/// and a bad `Last-Event-ID` are `400`; an unknown job `404`; another
/// method `405`; no token `401`.
#[test]
fn refusals() {
    let s = Server::start(&[]);
    let a = job_start(&s, "echo a")["id"].as_str().expect("id").to_owned();
    for query in [
        "?ids=",
        "?ids=,",
        "?ids=a%20b",
        "?format=raw",
        &format!("?ids={a}&format=raw"),
    ] {
        mux_status(&s, query, &[]).assert_status(400, query);
    }
    let many: Vec<String> = (0..65).map(|i| format!("{a}{i}")).collect();
    mux_status(&s, &format!("?ids={}", many.join(",")), &[]).assert_status(400, "65 ids");
    let sixty_four: Vec<String> = (0..63).map(|i| format!("x{i}")).chain([a.clone()]).collect();
    mux_status(&s, &format!("?ids={}", sixty_four.join(",")), &[]).assert_status(404, "64 ids, 63 unknown");
    mux_status(&s, "?ids=AAAAAAAAAAAAAAAA", &[]).assert_status(404, "unknown job");
    mux_status(&s, &format!("?ids={a},AAAAAAAAAAAAAAAA"), &[]).assert_status(404, "one unknown job");
    mux_status(&s, &format!("?ids={a}"), &[("Last-Event-ID", "x")]).assert_status(400, "bad Last-Event-ID");
    let r = s.request(&s.req("POST", "/jobs/events", &[]));
    r.assert_status(405, "POST");
    assert_eq!(r.header("allow"), Some("GET"));
    s.request(&s.req_noauth("GET", "/jobs/events", &[]))
        .assert_status(401, "no token");
    // A forgotten job is unknown too.
    job_wait_ended(&s, &a, Duration::from_secs(5));
    job_delete(&s, &a).assert_status(204, "forget");
    mux_status(&s, &format!("?ids={a}"), &[]).assert_status(404, "forgotten job");
}

/// §11.4: a viewer on this stream paces each running job it carries: while
/// it reads nothing, a fast job's output stops growing far short of its end
/// (no viewer, the same command ends in well under a second); once it
/// reads, every byte arrives, in order, and the stream ends with the exit.
/// (Its first read is 64 KiB: an event too large for the stream's batch.)
#[test]
fn a_multiplexed_viewer_paces_its_jobs() {
    let s = Server::start(&[]);
    let lines = 2_000_000u64;
    let mut c = Conn::connect_small_rcvbuf(s.addr, 16 * 1024);
    // The sleep lets the viewer attach before the first line.
    let paced = job_start(&s, &format!("sh -c 'sleep 0.5; seq 1 {lines}'"))["id"]
        .as_str()
        .expect("id")
        .to_owned();
    c.send(&req_mux(&s, &format!("?ids={paced}"), &[]));
    let bytes_of = |s: &Server| job_info(s, &paced)["bytes"].as_u64().expect("bytes");
    let mut last = 0;
    let stalled = poll_until(Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(300));
        let now = bytes_of(&s);
        let same = now == last && now > 0;
        last = now;
        same
    });
    let total: u64 = (1..=lines).map(|n| n.to_string().len() as u64 + 1).sum();
    assert!(stalled, "the job's output stops growing while its viewer reads nothing");
    assert!(last < total / 2, "held back at {last} of {total} bytes");
    assert_eq!(job_info(&s, &paced)["state"], "running");
    let head = c.read_head();
    assert_eq!(head.status, 200, "{}", head.raw_head);
    let mut reader = Reader::new();
    let mut text = String::new();
    c.read_body_with(&head, |piece, _| {
        reader.feed(piece);
        reader.body.clear();
        for e in reader.events.drain(..) {
            match e.name.as_str() {
                "stdout" => text.push_str(e.data["out"].as_str().expect("out")),
                "exit" => text.push_str("<exit>"),
                _ => {}
            }
        }
        true
    });
    assert_eq!(text.len() as u64, total + "<exit>".len() as u64, "every byte arrives");
    assert!(text.starts_with("1\n2\n3\n") && text.ends_with(&format!("\n{lines}\n<exit>")));
}

/// §11.3 from far back: a client had a job's first events, left, and the
/// job then made (and the log forgot) more events than a log keeps the
/// numbers of one by one. Resuming after the last number it had, the `gap`
/// starts right after the last event it had, not at event 1 (it had
/// those: claiming them again would be a lie), and ends where the job's own
/// stream says; then the held events, exactly as on the job's own stream.
#[test]
fn a_gap_from_far_back_starts_after_the_last_event_had() {
    let s = Server::start(&["--job-log", "1K"]);
    let go = marker_path("mux-far-back");
    // Five events the client reads, then (once it left) 600 events, one per
    // write: far more than a log keeps the numbers of one by one.
    let job = job_start(
        &s,
        &format!(
            "sh -c 'for i in 1 2 3 4 5; do echo $i; sleep 0.05; done; \
             while [ ! -e {go} ]; do sleep 0.02; done; \
             for i in $(seq 6 605); do echo $i; sleep 0.002; done'",
            go = go.str()
        ),
    )["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut c = s.connect();
    c.send(&req_mux(&s, &format!("?ids={job}"), &[]));
    let head = c.read_head();
    assert_eq!(head.status, 200, "{}", head.raw_head);
    let mut body = c.body(&head);
    let mut reader = Reader::new();
    let had_five = |r: &Reader| r.events.iter().any(|e| e.data["out"] == "5\n");
    let t0 = Instant::now();
    while !had_five(&reader) {
        assert!(t0.elapsed() < Duration::from_secs(10), "waited 10 s for line 5");
        let (piece, _) = c.read_body_some(&mut body, 65536).expect("the stream goes on");
        reader.feed(&piece);
    }
    drop(c);
    let last_had = reader.events.iter().rev().find(|e| e.id.is_some()).expect("an event");
    let g = last_had.id.expect("id");
    let seq_had = last_had.data["seq"].as_u64().expect("seq");
    std::fs::write(go.path(), b"").expect("marker");
    job_wait_ended(&s, &job, Duration::from_secs(30));
    let own = own_events(&s, &job);
    assert_eq!(own[0].1, "gap", "own stream starts with a gap: {:?}", own[0]);
    let own_to = own[0].2["to"].as_u64().expect("to");
    assert!(
        own_to > seq_had + 300,
        "the log forgot more than 300 events after the client left (to {own_to})"
    );
    let (_, resumed) = mux_watch(&s, &format!("?ids={job}"), &[("Last-Event-ID", &g.to_string())]);
    check_order(&resumed.events);
    let got = of_job(&resumed.events, &job);
    assert_eq!(got[0].1, "gap", "{:?}", got[0]);
    assert_eq!(
        (got[0].2["from"].as_u64(), got[0].2["to"].as_u64()),
        (Some(seq_had + 1), Some(own_to)),
        "the gap starts right after event {seq_had}, the last the client had"
    );
    assert_eq!(&got[1..], &own[1..], "then the held events as on the job's own stream");
}

/// §11.4, the 30 s rule, SLOW (~32 s by design): a viewer of a stream of
/// many jobs that takes nothing while a job it includes waits on it (a
/// 4 KiB receive buffer, never read) holds the job back, and is
/// disconnected after about 30 s: `viewers` drops to 0, its socket closes
/// without the end of the chunked stream, the job then runs freely to its
/// end, and a new stream of the job still ends with its `exit`.
#[test]
fn a_multiplexed_viewer_that_takes_nothing_is_dropped_after_30s() {
    let s = Server::start(&[]);
    let lines = 3_000_000u64;
    let total: u64 = (1..=lines).map(|n| n.to_string().len() as u64 + 1).sum();
    // The sleep lets the viewer attach before the first line.
    let job = job_start(&s, &format!("sh -c 'sleep 0.5; seq 1 {lines}'"))["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut c = Conn::connect_small_rcvbuf(s.addr, 4096);
    c.send(&req_mux(&s, &format!("?ids={job}"), &[]));
    let attached = poll_until(Duration::from_secs(10), || job_info(&s, &job)["viewers"] == 1);
    assert!(attached, "the viewer attached: {}", job_info(&s, &job));
    let since = Instant::now();
    let mut seen = Value::Null;
    let dropped = poll_until(Duration::from_secs(50), || {
        std::thread::sleep(Duration::from_millis(250));
        seen = job_info(&s, &job);
        if seen["viewers"] == 1 {
            assert_eq!(seen["state"], "running", "held back while the viewer is attached");
            assert!(seen["bytes"].as_u64().expect("bytes") < total / 2, "paced: {seen}");
        }
        seen["viewers"] == 0
    });
    let after = since.elapsed();
    assert!(dropped, "the viewer that took nothing was never dropped: {seen}");
    assert!(
        after >= Duration::from_secs(28) && after <= Duration::from_secs(45),
        "dropped after {after:?}, not about 30 s"
    );
    // The client sees its connection close, without the chunked end.
    c.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut tail = Vec::new();
    let mut buf = vec![0u8; 65536];
    for _ in 0..100_000 {
        match std::io::Read::read(&mut c.stream, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                let keep = tail.len().saturating_sub(4096);
                tail.drain(..keep);
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the dropped viewer's socket did not close: {e}"),
        }
    }
    assert!(
        !tail.ends_with(b"0\r\n\r\n"),
        "a dropped viewer's stream must not look complete"
    );
    // Unpaced now: the job runs to its end, and can be watched again.
    let done = job_wait_ended(&s, &job, Duration::from_secs(30));
    assert_eq!(done["bytes"], total, "{done}");
    let (_, again) = mux_watch(&s, &format!("?ids={job}"), &[]);
    let own = of_job(&again.events, &job);
    let last = own.last().expect("an event");
    assert_eq!(
        (last.1.as_str(), &last.2["code"]),
        ("exit", &Value::from(0)),
        "{last:?}"
    );
}
