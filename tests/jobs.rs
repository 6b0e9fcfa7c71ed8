//! Jobs (CONTRACT §7, the decisions in notes/jobs-api.md): start, list,
//! watch late, several viewers, byte-exact resume, gaps, pacing, DELETE,
//! keeping and forgetting, shutdown, --max-procs, memory, CORS. Every test
//! drives the real binary over raw sockets.
//!
//! `pacing_slow_viewer_blocks_child_then_is_dropped_after_30s` takes about
//! 35 s by design (the contract's 30 s); the others take a few seconds each.
mod common;

use common::*;
use serde_json::json;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn id_of(job: &serde_json::Value) -> String {
    job["id"].as_str().expect("checked: id is a string").to_owned()
}

/// The output of `seq 1 n`.
fn seq_text(from: u64, to: u64) -> String {
    (from..=to).map(|i| format!("{}\n", i)).collect()
}

/// A job JSON's `exit` as an [`End`]-like JSON value, for messages.
fn exit_of(job: &serde_json::Value) -> serde_json::Value {
    job["exit"].clone()
}

// ---------------------------------------------------------------------------
// 1. POST /jobs
// ---------------------------------------------------------------------------

/// §7.1: 201, `Location: /jobs/ID`, application/json, every field of §7.2
/// (running, a live pid running our argv, no end yet, 0 viewers); the id is
/// 16 base64url chars; `Content-Length: 0` is accepted.
#[test]
fn post_creates_a_running_job() {
    let s = Server::start(&[]);
    let m = sleep_marker();
    let _g = MarkerGuard(vec![m.clone()]);
    let before = now_ms();
    let r = job_post(&s, &format!("sleep {}", m));
    r.assert_status(201, "POST /jobs");
    let job = job_json_of(&r);
    let id = id_of(&job);
    assert!(is_job_id(&id, None), "job id {:?} is not 16 base64url chars", id);
    assert_eq!(
        r.header("location"),
        Some(format!("/jobs/{}", id).as_str()),
        "{}",
        r.raw_head
    );
    assert_eq!(job["argv"], json!(["sleep", m]), "{}", job);
    assert_eq!(job["state"], "running", "{}", job);
    assert_eq!(job["ended_ms"], serde_json::Value::Null, "{}", job);
    assert_eq!(job["exit"], serde_json::Value::Null, "{}", job);
    assert_eq!(job["viewers"], 0, "{}", job);
    assert_eq!(job["events"], 0, "{}", job);
    assert_eq!(job["bytes"], 0, "{}", job);
    let started = job["started_ms"].as_u64().unwrap();
    assert!(
        started + 50 >= before && started <= now_ms() + 50,
        "started_ms {} not between the request ({}) and now",
        started,
        before
    );
    let pid = job["pid"].as_u64().unwrap() as u32;
    // The 201 may come before the child's exec completes.
    let ours = poll_until(Duration::from_secs(2), || cmdline(pid).is_some_and(|c| c.contains(&m)));
    assert!(ours, "pid {} is not our sleep: {:?}", pid, cmdline(pid));

    // Content-Length: 0 is no body.
    let m2 = sleep_marker();
    let _g2 = MarkerGuard(vec![m2.clone()]);
    let r = s.request(&s.req(
        "POST",
        &format!("/jobs?command={}", pct(&format!("sleep {}", m2))),
        &[("Content-Length", "0")],
    ));
    r.assert_status(201, "POST /jobs with Content-Length: 0");
    let id2 = id_of(&job_json_of(&r));
    assert!(
        is_job_id(&id2, None) && id2 != id,
        "second id {:?} (first {:?})",
        id2,
        id
    );
}

/// §7.5, jobs-api: `--instance NAME` → ids `NAME-` + 16 base64url chars,
/// usable in Location and GET.
#[test]
fn instance_prefixes_job_ids() {
    let s = Server::start(&["--instance", "east_1"]);
    let job = job_start(&s, "echo hi");
    let id = id_of(&job);
    assert!(
        is_job_id(&id, Some("east_1")),
        "id {:?} is not east_1-<16 base64url>",
        id
    );
    let again = job_info(&s, &id);
    assert_eq!(again["id"], id.as_str());
    let run = job_watch(&s, &id, "", &[], 1);
    assert_eq!(run.stdout(), "hi\n");
    assert_eq!(run.end(), End::code(0));
}

/// §5, §7.1: a body → 413; bad commands → 400; none of them makes a job.
#[test]
fn post_refusals_make_no_job() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let mut req = s.req("POST", "/jobs?command=echo%20x", &[("Content-Length", "5")]);
    req.extend_from_slice(b"hello");
    c.send(&req);
    c.read_response().assert_status(413, "POST /jobs with a body");

    for (what, q) in [
        ("empty command", "command="),
        ("no command parameter", "x=1"),
        ("unbalanced quote", "command=%27abc"),
        ("empty first word", "command=%27%27%20x"),
        ("NUL byte", "command=echo%00x"),
    ] {
        let r = s.request(&s.req("POST", &format!("/jobs?{}", q), &[]));
        r.assert_status(400, &format!("POST /jobs, {}", what));
    }
    // §4: the token is required on every jobs route; §2: wrong method → 405 + Allow.
    for (m, t) in [
        ("POST", "/jobs?command=echo%20x"),
        ("GET", "/jobs"),
        ("GET", "/jobs/AAAAAAAAAAAAAAAA"),
        ("GET", "/jobs/AAAAAAAAAAAAAAAA/events"),
        ("DELETE", "/jobs/AAAAAAAAAAAAAAAA"),
    ] {
        s.request(&s.req_noauth(m, t, &[]))
            .assert_status(401, &format!("{} {} without a token", m, t));
    }
    for (m, t) in [("PUT", "/jobs"), ("DELETE", "/jobs")] {
        let r = s.request(&s.req(m, t, &[("Content-Length", "0")]));
        r.assert_status(405, &format!("{} {}", m, t));
        assert!(r.header("allow").is_some_and(|a| a.contains("POST")), "{}", r.raw_head);
    }
    let jobs = job_list(&s);
    assert!(jobs.is_empty(), "refused POSTs made jobs: {:?}", jobs);
}

/// §7.1: a program that cannot start → 201 with state `failed`, pid null;
/// its stream is the retry line then `err` with id 1, and nothing else.
/// Same for a program refused by --allow.
#[test]
fn missing_program_makes_a_failed_job() {
    let s = Server::start(&["--allow", "echo", "--allow", "/no/such/dir/prog-x1"]);
    for cmd in ["/no/such/dir/prog-x1 a", "sleep 1"] {
        let r = job_post(&s, cmd);
        r.assert_status(201, &format!("POST /jobs {:?}", cmd));
        let job = job_json_of(&r);
        assert_eq!(job["state"], "failed", "{:?}: {}", cmd, job);
        assert!(job["pid"].is_null(), "{}", job);
        let id = id_of(&job);
        let run = job_watch(&s, &id, "", &[], 1);
        assert_eq!(run.events.len(), 1, "{:?}: only `err`:\n{}", cmd, run.resp.body_str());
        assert_eq!(run.events[0].event, "err");
        assert_eq!(run.events[0].id, 1);
        assert!(matches!(run.end(), End::Err(ref m) if !m.is_empty()), "{:?}", run.end());
        let after = job_info(&s, &id);
        assert_eq!(after["state"], "failed", "{}", after);
        assert_eq!(after["events"], 1, "{}", after);
    }
}

// ---------------------------------------------------------------------------
// 2. GET /jobs, GET /jobs/ID, unknown ids
// ---------------------------------------------------------------------------

/// §7.2: the list is newest first with running and finished jobs; one job by
/// id; unknown id → 404 for GET, events and DELETE.
#[test]
fn list_newest_first_and_unknown_404() {
    let s = Server::start(&[]);
    let m = sleep_marker();
    let _g = MarkerGuard(vec![m.clone()]);
    let a = id_of(&job_start(&s, "echo first"));
    job_wait_ended(&s, &a, Duration::from_secs(5));
    let b = id_of(&job_start(&s, &format!("sleep {}", m)));
    // Sixteen pipelined POSTs: several start in the same millisecond, and the
    // list must still be newest first.
    let mut conn = s.connect();
    let mut newer = Vec::new();
    let mut pipelined = Vec::new();
    for i in 0..16 {
        pipelined.extend(s.req("POST", &format!("/jobs?command=echo%20more{}", i), &[]));
    }
    conn.send(&pipelined);
    for _ in 0..16 {
        let r = conn.read_response();
        r.assert_status(201, "POST on a kept-alive connection");
        newer.push(id_of(&job_json_of(&r)));
    }
    let c = newer[15].clone();
    let jobs = job_list(&s);
    let ids: Vec<&str> = jobs.iter().map(|j| j["id"].as_str().unwrap()).collect();
    let mut want: Vec<&str> = newer.iter().rev().map(String::as_str).collect();
    want.extend([b.as_str(), a.as_str()]);
    let started: Vec<u64> = jobs.iter().map(|j| j["started_ms"].as_u64().unwrap()).collect();
    assert_eq!(ids, want, "newest first (started_ms {:?})", started);
    assert_eq!(ids[0], c);
    let one = job_info(&s, &b);
    assert_eq!(one["id"], b.as_str());
    assert_eq!(one["argv"], json!(["sleep", m]));
    assert_eq!(one["state"], "running");
    let first = job_info(&s, &a);
    assert_eq!(first["state"], "exited", "{}", first);
    assert_eq!(first["exit"], json!({"type": "exit", "code": 0}), "{}", first);
    assert_eq!(first["bytes"], 6, "`first\\n` is 6 bytes: {}", first);

    for unknown in ["AAAAAAAAAAAAAAAA", "nope", "x-AAAAAAAAAAAAAAAA"] {
        job_get(&s, unknown).assert_status(404, &format!("GET /jobs/{}", unknown));
        job_delete(&s, unknown).assert_status(404, &format!("DELETE /jobs/{}", unknown));
        s.get(&format!("/jobs/{}/events", unknown))
            .assert_status(404, &format!("GET /jobs/{}/events", unknown));
    }
}

// ---------------------------------------------------------------------------
// 3. Late joiner
// ---------------------------------------------------------------------------

/// §7.3: a viewer joining after the job exited gets `retry`, every event
/// from id 1, the whole output and `exit` 0; the chunked stream ends and the
/// connection then serves another request.
#[test]
fn late_joiner_gets_everything_and_connection_is_reusable() {
    let s = Server::start(&[]);
    let id = id_of(&job_start(&s, "seq 1 1000"));
    let job = job_wait_ended(&s, &id, Duration::from_secs(5));
    let want = seq_text(1, 1000);
    assert_eq!(job["state"], "exited", "{}", job);
    assert_eq!(exit_of(&job), json!({"type": "exit", "code": 0}));
    assert_eq!(job["bytes"], want.len() as u64, "{}", job);

    let mut c = s.connect();
    c.send(&job_events_req(&s, &id, "", &[]));
    let head = job_stream_head(&mut c);
    assert_eq!(
        head.framing,
        Framing::Chunked,
        "HTTP/1.1 stream is chunked:\n{}",
        head.raw_head
    );
    let run = job_read_stream(&mut c, head, 1);
    assert_eq!(run.events[0].id, 1, "events from id 1");
    assert!(run.gaps().is_empty(), "no gap with the default --job-log");
    assert_eq!(run.stdout(), want);
    assert_eq!(run.end(), End::code(0));
    assert_eq!(
        run.events.len() as u64,
        job["events"].as_u64().unwrap(),
        "`events` of the JSON counts the stream's events: {}",
        job
    );
    assert!(!run.resp.says_close(), "{}", run.resp.raw_head);

    // The same connection serves the next request.
    c.send(&s.req("GET", &format!("/jobs/{}", id), &[]));
    let r = c.read_response();
    r.assert_status(200, "GET on the connection after the stream");
    let after = job_json_of(&r);
    assert_eq!(after["viewers"], 0, "the finished viewer is detached: {}", after);
}

/// §7.3: `format=raw` is per viewer: a raw viewer of the same job gets the
/// same ids for the same events, the text as data lines.
#[test]
fn raw_viewer_same_ids_as_json_viewer() {
    let s = Server::start(&[]);
    let id = id_of(&job_start(&s, "seq 1 1000"));
    job_wait_ended(&s, &id, Duration::from_secs(5));
    let j = job_watch(&s, &id, "", &[], 1);
    let r = job_watch(&s, &id, "?format=raw", &[], 1);
    let ids = |run: &JobRun| run.events.iter().map(|e| (e.id, e.event.clone())).collect::<Vec<_>>();
    assert_eq!(ids(&j), ids(&r), "json and raw viewers: same ids and names");
    let lines: Vec<String> = r
        .events
        .iter()
        .filter(|e| e.event == "stdout")
        .flat_map(|e| e.data_lines.clone())
        .collect();
    let want: Vec<String> = (1..=1000).map(|i| i.to_string()).collect();
    assert_eq!(lines, want);
    assert_eq!(r.end(), End::code(0));
}

/// §7.3, §3.5: a quiet job's viewer gets `: ping` every --heartbeat.
#[test]
fn heartbeat_on_job_stream() {
    let s = Server::start(&["--heartbeat", "1"]);
    let id = id_of(&job_start(&s, "sh -c 'sleep 2.5; echo ok'"));
    let run = job_watch(&s, &id, "", &[], 1);
    let pings = run
        .items
        .iter()
        .filter(|i| matches!(i, JobItem::Comment(c) if c == " ping"))
        .count();
    assert!(
        pings >= 1,
        "no `: ping` in 2.5 s with --heartbeat 1:\n{}",
        run.resp.body_str()
    );
    assert_eq!(run.stdout(), "ok\n");
    assert_eq!(run.end(), End::code(0));
}

// ---------------------------------------------------------------------------
// 4. Two viewers
// ---------------------------------------------------------------------------

/// §7.3: two viewers attached to a running job get byte-identical bodies
/// (same ids for the same events); `viewers` counts them.
#[test]
fn two_viewers_get_identical_bytes() {
    let s = Server::start(&[]);
    let job = job_start(&s, "sh -c 'for i in $(seq 1 200); do echo line $i; sleep 0.005; done'");
    let id = id_of(&job);
    let mut conns = Vec::new();
    let mut heads = Vec::new();
    for _ in 0..2 {
        let mut c = s.connect();
        c.send(&job_events_req(&s, &id, "", &[]));
        heads.push(job_stream_head(&mut c));
        conns.push(c);
    }
    let mut seen = serde_json::Value::Null;
    let two = poll_until(Duration::from_secs(2), || {
        seen = job_info(&s, &id);
        seen["viewers"] == 2
    });
    assert!(
        two || seen["state"] != "running",
        "viewers never 2 while running: {}",
        seen
    );
    let mut handles = Vec::new();
    for (mut c, head) in conns.into_iter().zip(heads) {
        handles.push(thread::spawn(move || job_read_stream(&mut c, head, 1)));
    }
    let runs: Vec<JobRun> = handles.into_iter().map(|h| h.join().expect("viewer thread")).collect();
    let want: String = (1..=200).map(|i| format!("line {}\n", i)).collect();
    for r in &runs {
        assert_eq!(r.stdout(), want);
        assert_eq!(r.end(), End::code(0));
    }
    assert!(
        runs[0].resp.body == runs[1].resp.body,
        "the two viewers' bodies differ:\n--- 1 ---\n{}\n--- 2 ---\n{}",
        runs[0].resp.body_str(),
        runs[1].resp.body_str()
    );
}

// ---------------------------------------------------------------------------
// 5. Byte-exact resume
// ---------------------------------------------------------------------------

/// What the viewers of one job have taken so far, over all connections.
#[derive(Default)]
struct Taken {
    hash: Fnv,
    len: u64,
    /// The id of the last complete event.
    last_id: u64,
    gaps: Vec<(u64, u64)>,
    end: Option<End>,
    connections: u32,
}

/// Watches job `id` from `taken.last_id + 1` (resuming with the header or
/// the query parameter), adding complete events to `taken`; drops the
/// connection once `cut_after` decoded bytes have arrived on it (mid-event,
/// most likely). Returns true when the stream ended with `exit`/`err`.
fn watch_part(s: &Server, id: &str, taken: &mut Taken, by_query: bool, cut_after: Option<u64>) -> bool {
    let mut c = s.connect();
    let (query, header);
    let mut extra: Vec<(&str, &str)> = Vec::new();
    if taken.last_id > 0 && by_query {
        query = format!("?last-event-id={}", taken.last_id);
    } else {
        query = String::new();
    }
    if taken.last_id > 0 && !by_query {
        header = taken.last_id.to_string();
        extra.push(("Last-Event-ID", &header));
    }
    c.send(&job_events_req(s, id, &query, &extra));
    let head = job_stream_head(&mut c);
    taken.connections += 1;
    let mut p = JobSse::new(taken.last_id + 1);
    let mut got = 0u64;
    let mut first = true;
    let body = c.read_body_with(&head, |piece, at| {
        got += piece.len() as u64;
        for item in p.feed(piece, at) {
            if first {
                assert!(
                    matches!(item, JobItem::Retry(1000)),
                    "stream must begin with retry: {:?}",
                    item
                );
                first = false;
                continue;
            }
            let JobItem::Event(e) = item else { continue };
            assert!(taken.end.is_none(), "event after the end: {:?}", e);
            match e.event.as_str() {
                "stdout" => {
                    let o = out_text(&e);
                    taken.hash.update(o.as_bytes());
                    taken.len += o.len() as u64;
                }
                "gap" => taken.gaps.push(gap_of(&e)),
                "exit" | "err" => taken.end = Some(end_of(&e)),
                other => panic!("unexpected {} event: {}", other, e.data),
            }
            taken.last_id = e.id;
        }
        cut_after.is_none_or(|n| got < n)
    });
    if body.done {
        p.finish();
        assert!(taken.end.is_some(), "stream ended without exit/err");
    }
    drop(c);
    taken.end.is_some()
}

/// Cuts a stream of `cmd` at each of `cuts` (decoded bytes into one
/// connection) and resumes at once; checks the joined output against
/// `want_len`/`want_hash`, no gap, ids each once in order, exit 0.
fn resume_exact(s: &Server, cmd: &str, by_query: bool, cuts: &[u64], want_len: u64, want_hash: u64) {
    let id = id_of(&job_start(s, cmd));
    let mut taken = Taken::default();
    let mut ended = false;
    for &cut in cuts {
        ended = watch_part(s, &id, &mut taken, by_query, Some(cut));
        if ended {
            break;
        }
    }
    if !ended {
        watch_part(s, &id, &mut taken, by_query, None);
    }
    eprintln!(
        "resume {}: {} connections, last id {}, {} bytes",
        cmd, taken.connections, taken.last_id, taken.len
    );
    assert!(taken.gaps.is_empty(), "resume gave gaps {:?}", taken.gaps);
    assert!(
        taken.connections as usize > cuts.len(),
        "the stream ended before every cut ({} connections)",
        taken.connections
    );
    assert_eq!(taken.end, Some(End::code(0)));
    assert_eq!(taken.len, want_len, "output length after resumes");
    assert_eq!(taken.hash.0, want_hash, "output hash after resumes");
    let job = job_info(s, &id);
    assert_eq!(
        job["events"], taken.last_id,
        "the last id is the job's last event: {}",
        job
    );
    assert_eq!(job["bytes"], want_len, "{}", job);
}

/// §7.3 resume, 100 MiB: three cuts mid-stream, each resumed at once with
/// `Last-Event-ID`; the joined stdout hashes equal to the file, every id
/// once and in order, no gap (--job-log 256M so nothing is forgotten).
#[test]
fn resume_with_header_is_byte_exact_100mib() {
    let big = big_file();
    let s = Server::start(&["--job-log", "256M"]);
    let cmd = format!("sh -c 'sleep 0.2; exec cat {}'", big.path.display());
    let mib = 1 << 20;
    resume_exact(&s, &cmd, false, &[20 * mib, 30 * mib, 30 * mib], big.len, big.hash);
}

/// The same with `?last-event-id=N` (5 MiB of the file, whole lines).
#[test]
fn resume_with_query_is_byte_exact_5mib() {
    let big = big_file();
    let mut f = std::fs::File::open(&big.path).unwrap();
    let mut buf = vec![0u8; 5 << 20];
    f.read_exact(&mut buf).unwrap();
    let n = buf.iter().rposition(|&b| b == b'\n').unwrap() + 1;
    let mut h = Fnv::default();
    h.update(&buf[..n]);
    let s = Server::start(&["--job-log", "64M"]);
    let cmd = format!("sh -c 'sleep 0.2; exec head -c {} {}'", n, big.path.display());
    resume_exact(&s, &cmd, true, &[1 << 20, 2 << 20], n as u64, h.0);
}

// ---------------------------------------------------------------------------
// 6. Resume at the end, bad Last-Event-ID
// ---------------------------------------------------------------------------

/// §7.3: resume with the last id after the end → 204 (connection kept);
/// Last-Event-ID E-1 → just the exit; header wins over the query;
/// not a number, or beyond the last id produced → 400.
#[test]
fn resume_edges_204_and_400() {
    let s = Server::start(&[]);
    let id = id_of(&job_start(&s, "seq 1 3"));
    let job = job_wait_ended(&s, &id, Duration::from_secs(5));
    let e = job["events"].as_u64().unwrap();
    assert!(e >= 2, "at least one stdout and the exit: {}", job);

    let mut c = s.connect();
    let last = e.to_string();
    c.send(&job_events_req(&s, &id, "", &[("Last-Event-ID", &last)]));
    let r = c.read_response();
    r.assert_status(204, "Last-Event-ID = last id of an ended job");
    assert!(r.body.is_empty(), "204 has no body");
    c.send(&s.req("GET", "/healthz", &[]));
    c.read_response().assert_status(200, "the connection after the 204");

    let prev = (e - 1).to_string();
    let run = job_watch(&s, &id, "", &[("Last-Event-ID", &prev)], e);
    assert_eq!(run.events.len(), 1, "only the exit:\n{}", run.resp.body_str());
    assert_eq!(run.end(), End::code(0));
    let run = job_watch(&s, &id, &format!("?last-event-id={}", e - 1), &[], e);
    assert_eq!(run.events.len(), 1, "only the exit (query):\n{}", run.resp.body_str());
    // Header wins over the query.
    let run = job_watch(&s, &id, "?last-event-id=0", &[("Last-Event-ID", &prev)], e);
    assert_eq!(run.events.len(), 1, "the header wins:\n{}", run.resp.body_str());
    let run = job_watch(&s, &id, "", &[("Last-Event-ID", "0")], 1);
    assert_eq!(run.stdout(), "1\n2\n3\n");

    let beyond = (e + 1).to_string();
    for (what, query, hdr) in [
        ("header abc", "", Some("abc")),
        ("header -1", "", Some("-1")),
        ("header beyond the last id", "", Some(beyond.as_str())),
        ("query abc", "?last-event-id=abc", None),
        ("query beyond", &*format!("?last-event-id={}", e + 1), None),
    ] {
        let extra: Vec<(&str, &str)> = hdr.map(|h| ("Last-Event-ID", h)).into_iter().collect();
        let r = s.request(&job_events_req(&s, &id, query, &extra));
        r.assert_status(400, &format!("Last-Event-ID {}", what));
    }

    // A running job with no event yet: 1 is beyond what it produced; 0 is fine.
    let m = sleep_marker();
    let _g = MarkerGuard(vec![m.clone()]);
    let sid = id_of(&job_start(&s, &format!("sleep {}", m)));
    s.request(&job_events_req(&s, &sid, "", &[("Last-Event-ID", "1")]))
        .assert_status(400, "Last-Event-ID 1 on a job with no event yet");
    let mut c = s.connect();
    c.send(&job_events_req(&s, &sid, "", &[("Last-Event-ID", "0")]));
    job_stream_head(&mut c);
}

// ---------------------------------------------------------------------------
// 7. Gaps
// ---------------------------------------------------------------------------

/// §7.3 gaps: `--job-log 1K`, `seq 1 100000` with no viewer: watching from
/// the start begins with `gap` from 1 to T (id T), then T+1… to the exit,
/// the held text a suffix of the output; resuming after 5 gives a gap from 6.
#[test]
fn gap_announced_when_log_forgot() {
    let s = Server::start(&["--job-log", "1K"]);
    let id = id_of(&job_start(&s, "seq 1 100000"));
    let job = job_wait_ended(&s, &id, Duration::from_secs(10));
    assert_eq!(exit_of(&job), json!({"type": "exit", "code": 0}));
    let want = seq_text(1, 100_000);
    assert_eq!(job["bytes"], want.len() as u64, "{}", job);
    let last = job["events"].as_u64().unwrap();

    let run = job_watch(&s, &id, "", &[], 1);
    let first = &run.events[0];
    assert_eq!(
        first.event,
        "gap",
        "first event must be a gap:\n{}",
        run.resp.body_str()
    );
    let (from, to) = gap_of(first);
    assert_eq!(from, 1);
    assert_eq!(first.id, to);
    assert!(to < last, "the exit is held: gap to {} of {} events", to, last);
    assert_eq!(run.events[1].id, to + 1);
    assert_eq!(run.events.last().unwrap().id, last, "held events run to the exit");
    assert_eq!(run.end(), End::code(0));
    let held = run.stdout();
    assert!(
        want.ends_with(&held),
        "held text is not the end of the output: {:?}",
        held
    );
    assert!(held.len() <= 1024, "--job-log 1K held {} bytes of text", held.len());

    let resumed = job_watch(&s, &id, "", &[("Last-Event-ID", "5")], 6);
    assert_eq!(resumed.events[0].event, "gap", "{}", resumed.resp.body_str());
    assert_eq!(gap_of(&resumed.events[0]), (6, to), "gap after resuming at 5");
    assert!(
        resumed.resp.body == run.resp.body[..].replacen(b"\"from\":1,", b"\"from\":6,"),
        "a resume inside the gap gets the same held events:\n{}\n---\n{}",
        resumed.resp.body_str(),
        run.resp.body_str()
    );
}

/// `replacen` for byte strings (for comparing two gap streams).
trait Replace {
    fn replacen(&self, a: &[u8], b: &[u8]) -> Vec<u8>;
}

impl Replace for [u8] {
    fn replacen(&self, a: &[u8], b: &[u8]) -> Vec<u8> {
        match self.windows(a.len()).position(|w| w == a) {
            Some(i) => [&self[..i], b, &self[i + a.len()..]].concat(),
            None => self.to_vec(),
        }
    }
}

// ---------------------------------------------------------------------------
// 8. Pacing (slow: ~35 s)
// ---------------------------------------------------------------------------

/// §7.3 pace, SLOW (~35 s by design): a viewer with a 4 KiB receive buffer
/// stops reading a 100 MiB `cat`: the child stops writing (it waits on the
/// full pipe); after about 30 s the viewer is dropped (`viewers` 0, its
/// socket closes without the end of the chunked stream); then the job runs
/// freely to exit 0 and the viewer can resume from its last id.
#[test]
fn pacing_slow_viewer_blocks_child_then_is_dropped_after_30s() {
    let big = big_file();
    let s = Server::start(&[]);
    let cmd = format!("sh -c 'sleep 0.3; exec cat {}'", big.path.display());
    let job = job_start(&s, &cmd);
    let id = id_of(&job);
    let pid = job["pid"].as_u64().unwrap() as u32;
    let mut c = Conn::connect_small_rcvbuf(s.addr, 4096);
    c.send(&job_events_req(&s, &id, "", &[]));
    let head = job_stream_head(&mut c);
    // Take a little (so the stream flows), then stop reading.
    let mut p = JobSse::new(1);
    let mut last_id = 0;
    let mut got = 0u64;
    c.read_body_with(&head, |piece, at| {
        got += piece.len() as u64;
        for item in p.feed(piece, at) {
            if let JobItem::Event(e) = item {
                assert!(e.event == "stdout" || e.event == "gap", "{:?}", e);
                last_id = e.id;
            }
        }
        got < 512 * 1024
    });
    let stopped = Instant::now();
    assert!(last_id > 0, "no complete event in the first 512 KiB");

    // The child stops writing: wchar stays the same for 2 s.
    let mut prev = io_wchar(pid).unwrap_or(0);
    let mut same_since = Instant::now();
    let still = poll_until(Duration::from_secs(15), || {
        thread::sleep(Duration::from_millis(200));
        let now = io_wchar(pid).unwrap_or(0);
        if now != prev {
            prev = now;
            same_since = Instant::now();
        }
        same_since.elapsed() >= Duration::from_secs(2)
    });
    let blocked_at = prev;
    assert!(
        still && blocked_at < big.len / 2,
        "cat did not stop writing behind a stopped viewer (wchar {} of {}, state {:?}, wchan {:?})",
        blocked_at,
        big.len,
        state(pid),
        wchan(pid)
    );
    assert_eq!(
        state(pid),
        Some('S'),
        "cat sleeps on the full pipe (wchan {:?})",
        wchan(pid)
    );

    // Dropped after about 30 s without taking anything.
    let mut seen = serde_json::Value::Null;
    let mut wchar_while_attached = blocked_at;
    let dropped = poll_until(Duration::from_secs(50), || {
        thread::sleep(Duration::from_millis(250));
        let w = io_wchar(pid).unwrap_or(0);
        seen = job_info(&s, &id);
        if seen["viewers"] == 1 {
            wchar_while_attached = w;
        }
        seen["viewers"] == 0
    });
    let after = stopped.elapsed();
    eprintln!(
        "pacing: cat blocked at wchar {} (state {:?}, wchan {:?}); viewer dropped after {:?}",
        blocked_at,
        state(pid),
        wchan(pid),
        after
    );
    assert!(dropped, "the stalled viewer was never dropped: {}", seen);
    assert!(
        after >= Duration::from_secs(25) && after <= Duration::from_secs(45),
        "stalled viewer dropped after {:?}, not about 30 s",
        after
    );
    assert!(
        wchar_while_attached <= blocked_at + 256 * 1024,
        "cat wrote {} more bytes while the stalled viewer was attached",
        wchar_while_attached - blocked_at
    );

    // The client sees the connection close, without the chunked terminator.
    let mut tail = Vec::new();
    let mut buf = vec![0u8; 65536];
    c.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for _ in 0..100_000 {
        match c.stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 256 * 1024 {
                    tail.drain(..tail.len() - 4096);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the dropped viewer's socket did not close: {}", e),
        }
    }
    assert!(
        !tail.ends_with(b"0\r\n\r\n"),
        "a dropped viewer's stream must not look complete"
    );

    // Unpaced now: the job runs to its end; the viewer can resume.
    let done = job_wait_ended(&s, &id, Duration::from_secs(30));
    assert_eq!(exit_of(&done), json!({"type": "exit", "code": 0}));
    assert_eq!(done["bytes"], big.len, "{}", done);
    let resumed = job_watch(&s, &id, "", &[("Last-Event-ID", &last_id.to_string())], last_id + 1);
    assert_eq!(resumed.end(), End::code(0));
}

// ---------------------------------------------------------------------------
// 9. DELETE
// ---------------------------------------------------------------------------

/// §7.4: DELETE a running job → 202 with its JSON; the attached viewer gets
/// `exit` code null signal 15; GET shows exited; DELETE again → 204; then 404.
#[test]
fn delete_running_then_finished() {
    let s = Server::start(&[]);
    let (_g, id, pid, mut c, head) = watched_sleep_job(&s);

    let r = job_delete(&s, &id);
    r.assert_status(202, "DELETE a running job");
    let j = job_json_of(&r);
    assert_eq!(j["id"], id.as_str(), "{}", j);

    let run = job_read_stream(&mut c, head, 1);
    assert_eq!(run.end(), End::signal(15), "viewer's exit:\n{}", run.resp.body_str());
    assert_eq!(run.events.len(), 1, "{}", run.resp.body_str());
    wait_until(Duration::from_secs(5), "the sleep to be gone", || !is_alive(pid));

    let after = job_wait_ended(&s, &id, Duration::from_secs(5));
    assert_eq!(after["state"], "exited", "{}", after);
    assert_eq!(after["exit"], json!({"type": "exit", "code": null, "signal": 15}));

    let r = job_delete(&s, &id);
    r.assert_status(204, "DELETE a finished job");
    assert!(r.body.is_empty());
    job_get(&s, &id).assert_status(404, "GET after DELETE of a finished job");
    s.get(&format!("/jobs/{}/events", id))
        .assert_status(404, "events after DELETE of a finished job");
    job_delete(&s, &id).assert_status(404, "DELETE again");
}

// ---------------------------------------------------------------------------
// 10. --keep, --keep-jobs
// ---------------------------------------------------------------------------

/// §7.4: `--keep 1`: a finished job is readable right after it ends and gone
/// (404) 1–4 s after its end.
#[test]
fn keep_secs_forgets_finished_jobs() {
    let s = Server::start(&["--keep", "1"]);
    let id = id_of(&job_start(&s, "echo kept"));
    let job = job_wait_ended(&s, &id, Duration::from_secs(5));
    let ended = job["ended_ms"].as_u64().unwrap();
    let mut status = 0;
    let gone = poll_until(Duration::from_secs(6), || {
        thread::sleep(Duration::from_millis(40));
        status = job_get(&s, &id).status;
        status == 404
    });
    let after = now_ms().saturating_sub(ended);
    assert!(gone, "still {} 6 s after the end with --keep 1", status);
    assert!(
        (900..=4000).contains(&after),
        "forgotten {} ms after its end with --keep 1",
        after
    );
    assert!(job_list(&s).is_empty());
}

/// §7.4: `--keep-jobs 2`: after three jobs finish (in order), the oldest is
/// gone and the two newest are listed, newest first.
#[test]
fn keep_jobs_forgets_oldest_finished() {
    let s = Server::start(&["--keep-jobs", "2"]);
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = id_of(&job_start(&s, &format!("echo {}", i)));
        job_wait_ended(&s, &id, Duration::from_secs(5));
        ids.push(id);
    }
    job_get(&s, &ids[0]).assert_status(404, "the oldest of 3 with --keep-jobs 2");
    let listed: Vec<String> = job_list(&s).iter().map(id_of).collect();
    assert_eq!(listed, [ids[2].clone(), ids[1].clone()]);
    assert_eq!(job_watch(&s, &ids[1], "", &[], 1).stdout(), "1\n");
}

// ---------------------------------------------------------------------------
// 11. Shutdown
// ---------------------------------------------------------------------------

/// §6: SIGTERM with a running job and a viewer: the viewer gets `exit`
/// (signal 15), the server exits 0 within --kill-grace + 1 s, the command is gone.
#[test]
fn shutdown_stops_jobs_and_tells_viewers() {
    let mut s = Server::start(&["--kill-grace", "1"]);
    let (guard, _id, pid, mut c, head) = watched_sleep_job(&s);
    let t0 = Instant::now();
    s.signal(libc::SIGTERM);
    let run = job_read_stream(&mut c, head, 1);
    assert_eq!(run.end(), End::signal(15), "{}", run.resp.body_str());
    let status = s.wait_exit(Duration::from_secs(3));
    let took = t0.elapsed();
    assert!(status.is_some_and(|st| st.success()), "server exit status {:?}", status);
    assert!(
        took <= Duration::from_millis(2300),
        "shutdown took {:?} (kill-grace 1)",
        took
    );
    assert!(!is_alive(pid), "the job's command outlived the server");
    assert!(live_marked(&guard.0[0]).is_empty());
}

// ---------------------------------------------------------------------------
// 12. --max-procs
// ---------------------------------------------------------------------------

/// §1, §7.1: jobs count toward `--max-procs`: with 2 running, a third POST
/// and a /run → 503 + Retry-After, and no job is made; after one is
/// deleted, a POST works again.
#[test]
fn max_procs_counts_jobs() {
    let s = Server::start(&["--max-procs", "2"]);
    let (m1, m2, m3) = (sleep_marker(), sleep_marker(), sleep_marker());
    let _g = MarkerGuard(vec![m1.clone(), m2.clone(), m3.clone()]);
    let a = id_of(&job_start(&s, &format!("sleep {}", m1)));
    job_start(&s, &format!("sleep {}", m2));
    for (what, r) in [
        ("third POST /jobs", job_post(&s, &format!("sleep {}", m3))),
        ("/run with 2 jobs running", s.get("/run?command=echo%20x")),
    ] {
        r.assert_status(503, what);
        let ra = r
            .header("retry-after")
            .unwrap_or_else(|| panic!("{}: no Retry-After:\n{}", what, r.raw_head));
        assert!(
            ra.parse::<u32>().is_ok_and(|n| n >= 1),
            "{}: Retry-After {:?}",
            what,
            ra
        );
    }
    assert_eq!(job_list(&s).len(), 2, "the refused POST made no job");
    assert!(live_marked(&m3).is_empty());

    job_delete(&s, &a).assert_status(202, "DELETE a running job");
    job_wait_ended(&s, &a, Duration::from_secs(5));
    let mut last = 0;
    let ok = poll_until(Duration::from_secs(5), || {
        let r = job_post(&s, &format!("sleep {}", m3));
        last = r.status;
        r.status == 201
    });
    assert!(ok, "POST after a slot freed: {}", last);
}

// ---------------------------------------------------------------------------
// 13. Leaving viewers do not stop a job
// ---------------------------------------------------------------------------

/// §7: unlike /run, a job's only viewer leaving does not stop it: it exits 0
/// later and a new viewer sees its output and exit.
#[test]
fn job_outlives_its_only_viewer() {
    let s = Server::start(&[]);
    let id = id_of(&job_start(&s, "sh -c 'sleep 1; echo done'"));
    let mut c = s.connect();
    c.send(&job_events_req(&s, &id, "", &[]));
    job_stream_head(&mut c);
    c.close();
    thread::sleep(Duration::from_millis(300));
    let mid = job_info(&s, &id);
    assert_eq!(mid["state"], "running", "the job stopped with its viewer: {}", mid);
    let done = job_wait_ended(&s, &id, Duration::from_secs(5));
    assert_eq!(exit_of(&done), json!({"type": "exit", "code": 0}), "{}", done);
    let run = job_watch(&s, &id, "", &[], 1);
    assert_eq!(run.stdout(), "done\n");
    assert_eq!(run.end(), End::code(0));
}

// ---------------------------------------------------------------------------
// 14. Memory
// ---------------------------------------------------------------------------

/// §7.3: 200 noisy jobs (5 MB each) with no viewer, `--job-log 64K`: the
/// server's RSS grows at most 200 × 64 KiB + 8 MiB, while they run and after.
#[test]
fn memory_200_noisy_jobs_bounded_by_job_log() {
    let s = Server::start(&["--job-log", "64K", "--max-procs", "250", "--keep-jobs", "250"]);
    // Warm up: one job, listed and watched.
    let w = id_of(&job_start(&s, "echo warm"));
    job_wait_ended(&s, &w, Duration::from_secs(5));
    job_watch(&s, &w, "", &[], 1);
    job_delete(&s, &w).assert_status(204, "DELETE the warm-up job");
    thread::sleep(Duration::from_millis(200));
    let base = s.rss_kib();

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(base));
    let pid = s.pid();
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        thread::spawn(move || {
            for _ in 0..10_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Some(r) = rss_kib(pid) {
                    peak.fetch_max(r, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let n = 200;
    let size = 5_000_000u64;
    let cmd = format!("sh -c 'yes 0123456789abcdef | head -c {}'", size);
    let target = format!("/jobs?command={}", pct(&cmd));
    let mut c = s.connect();
    let mut ids = Vec::new();
    for _ in 0..n {
        c.send(&s.req("POST", &target, &[]));
        let r = c.read_response();
        r.assert_status(201, "POST noisy job");
        ids.push(id_of(&job_json_of(&r)));
    }
    let mut running = n;
    let all_done = poll_until(Duration::from_secs(60), || {
        thread::sleep(Duration::from_millis(100));
        running = job_list(&s).iter().filter(|j| j["state"] == "running").count();
        running == 0
    });
    let after = s.rss_kib();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert!(all_done, "{} of {} jobs still running after 60 s", running, n);
    let jobs = job_list(&s);
    assert_eq!(jobs.len(), n, "all {} kept (--keep-jobs 250)", n);
    for j in &jobs {
        assert_eq!(j["exit"], json!({"type": "exit", "code": 0}), "{}", j);
        assert_eq!(j["bytes"], size, "{}", j);
    }
    let limit = n as u64 * 64 + 8 * 1024;
    eprintln!(
        "memory: base {} KiB, peak {} KiB, after {} KiB, limit +{} KiB",
        base,
        peak.load(Ordering::Relaxed),
        after,
        limit
    );
    let peak = peak.load(Ordering::Relaxed).max(after);
    assert!(
        peak - base <= limit,
        "RSS grew {} KiB (base {} KiB, peak {} KiB, after {} KiB); limit {} KiB",
        peak - base,
        base,
        peak,
        after,
        limit
    );
    assert!(
        after - base.min(after) <= limit,
        "RSS after: {} KiB over base {}",
        after,
        base
    );
}

// ---------------------------------------------------------------------------
// 15. CORS preflight
// ---------------------------------------------------------------------------

/// §4, jobs-api: with --cors-origin, OPTIONS preflights to /jobs,
/// /jobs/ID and /jobs/ID/events → 204 without a token, methods GET, POST,
/// DELETE, headers Authorization and Last-Event-ID; a real POST from that
/// origin carries Access-Control-Allow-Origin.
#[test]
fn cors_preflight_for_jobs() {
    let s = Server::start(&["--cors-origin", "http://a.test"]);
    let id = id_of(&job_start(&s, "echo cors"));
    for (path, method) in [
        ("/jobs".to_owned(), "POST"),
        (format!("/jobs/{}", id), "DELETE"),
        (format!("/jobs/{}/events", id), "GET"),
    ] {
        let pre = s.request(&s.req_noauth(
            "OPTIONS",
            &path,
            &[
                ("Origin", "http://a.test"),
                ("Access-Control-Request-Method", method),
                ("Access-Control-Request-Headers", "authorization, last-event-id"),
            ],
        ));
        pre.assert_status(204, &format!("preflight OPTIONS {}", path));
        assert_eq!(
            pre.header("access-control-allow-origin"),
            Some("http://a.test"),
            "{}",
            pre.raw_head
        );
        let methods: Vec<&str> = pre
            .header("access-control-allow-methods")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .collect();
        for m in ["GET", "POST", "DELETE"] {
            assert!(
                methods.contains(&m),
                "{}: Allow-Methods lacks {}:\n{}",
                path,
                m,
                pre.raw_head
            );
        }
        let headers = pre
            .header("access-control-allow-headers")
            .unwrap_or("")
            .to_ascii_lowercase();
        assert!(headers.contains("last-event-id"), "{}:\n{}", path, pre.raw_head);
    }
    let r = s.request(&s.req("POST", "/jobs?command=echo%20x", &[("Origin", "http://a.test")]));
    r.assert_status(201, "POST /jobs from the allowed origin");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://a.test"),
        "{}",
        r.raw_head
    );
}

/// Regression (review): with a viewer attached, a command whose last,
/// unfinished line escapes to more than one event's worth (50,000 NUL bytes,
/// no newline) must still end with every byte and its `exit`: the job used
/// to be dropped with the rest of that line unsent, its record stuck
/// `running` and its viewers waiting forever.
#[test]
fn escape_heavy_last_line_still_ends_the_job() {
    let s = Server::start(&["--shell"]);
    let id = id_of(&job_start(&s, "sleep 1; head -c 50000 /dev/zero"));
    let run = job_watch(&s, &id, "", &[], 1);
    assert_eq!(run.end(), End::code(0), "{}", run.resp.body_str());
    let out = run.stdout();
    assert_eq!(out.len(), 50_000, "every NUL byte arrives");
    assert!(out.bytes().all(|b| b == 0));
    let job = job_wait_ended(&s, &id, Duration::from_secs(5));
    assert_eq!(job["state"], "exited", "{job}");
}

/// Regression (review): `--job-log 0` keeps nothing but the last event, and
/// that is the `exit`: a late viewer gets a gap, then the exit; a resume
/// from the exit's id gets 204 (it used to hang, the exit trimmed away).
#[test]
fn a_tiny_job_log_still_holds_the_exit() {
    let s = Server::start(&["--job-log", "0"]);
    let id = id_of(&job_start(&s, "seq 1 3"));
    let job = job_wait_ended(&s, &id, Duration::from_secs(5));
    let last = job["events"].as_u64().expect("events");
    let run = job_watch(&s, &id, "", &[], 1);
    assert_eq!(run.events[0].event, "gap", "{}", run.resp.body_str());
    assert_eq!(gap_of(&run.events[0]), (1, last - 1));
    assert_eq!(run.end(), End::code(0));
    let mut c = s.connect();
    c.send(&s.req(
        "GET",
        &format!("/jobs/{id}/events"),
        &[("Last-Event-ID", &last.to_string())],
    ));
    let resp = c.read_response();
    resp.assert_status(204, "resume after the end with a --job-log of 0");
}

/// A running `sleep` job (killed by its marker on drop) and one viewer
/// attached and counted: the guard, the job's id and pid, the viewer's
/// connection and its stream head.
fn watched_sleep_job(s: &Server) -> (MarkerGuard, String, u32, Conn, Response) {
    let m = sleep_marker();
    let guard = MarkerGuard(vec![m.clone()]);
    let job = job_start(s, &format!("sleep {}", m));
    let id = id_of(&job);
    let pid = job["pid"].as_u64().unwrap() as u32;
    let mut c = s.connect();
    c.send(&job_events_req(s, &id, "", &[]));
    let head = job_stream_head(&mut c);
    wait_until(Duration::from_secs(2), "the viewer to be counted", || {
        job_info(s, &id)["viewers"] == 1
    });
    (guard, id, pid, c, head)
}

// ---------------------------------------------------------------------------
// Revisits: a caught-up viewer wakes its job once, and only when it waits
// ---------------------------------------------------------------------------

/// CPU ticks (user + system) the process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("server's /proc stat");
    let after = &stat[stat.rfind(')').expect("stat has a command name") + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of stat(5), 12th and 13th here.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// A viewer that has every event of a running, quiet job costs nothing:
/// the loop sleeps in poll until the command writes again. (It used to
/// queue the job for a revisit each turn, spinning a core at 100 %.)
#[test]
fn caught_up_viewer_of_quiet_job_leaves_the_loop_idle() {
    let s = Server::start(&[]);
    let job = job_start(&s, "sh -c 'echo first; sleep 2; echo second'");
    let id = id_of(&job);
    let mut c = s.connect();
    c.send(&job_events_req(&s, &id, "", &[]));
    let head = job_stream_head(&mut c);
    let attached = poll_until(Duration::from_secs(2), || job_info(&s, &id)["viewers"] == 1);
    assert!(attached, "the viewer never showed: {}", job_info(&s, &id));
    // `first` is out and taken (the socket buffers it); the command sleeps.
    thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(s.pid());
    thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(s.pid()) - before;
    assert!(
        used <= 10,
        "server used {used} ticks in 1 s of a quiet job with one viewer"
    );
    let run = job_read_stream(&mut c, head, 1);
    assert_eq!(run.stdout(), "first\nsecond\n");
    assert_eq!(run.end(), End::code(0));
}

/// Several viewers of a command that writes as fast as it can: each gets
/// every byte, and the server's memory stays small (they pace the command;
/// revisits used to be queued once per viewer per turn, multiplying each
/// turn: memory grew about 100 MB/s until the OOM killer came).
#[test]
fn three_viewers_of_a_fast_job_every_byte_and_bounded_memory() {
    const LINES: u64 = 2_000_000;
    const MAX_RSS_KIB: u64 = 96 * 1024;
    let s = Server::start(&[]);
    let job = job_start(&s, &format!("sh -c 'sleep 0.5; seq 1 {LINES}'"));
    let id = id_of(&job);
    let mut handles = Vec::new();
    for _ in 0..3 {
        let mut c = s.connect();
        c.send(&job_events_req(&s, &id, "", &[]));
        let head = job_stream_head(&mut c);
        handles.push(thread::spawn(move || job_read_stream(&mut c, head, 1)));
    }
    let started = Instant::now();
    let mut peak = 0;
    while handles.iter().any(|h| !h.is_finished()) && started.elapsed() < Duration::from_secs(60) {
        peak = peak.max(s.rss_kib());
        assert!(peak <= MAX_RSS_KIB, "server RSS reached {peak} KiB with 3 viewers");
        thread::sleep(Duration::from_millis(20));
    }
    let want = seq_text(1, LINES);
    for h in handles {
        let run = h.join().expect("viewer thread");
        assert!(
            run.stdout() == want,
            "a viewer got {} bytes, not {}",
            run.stdout().len(),
            want.len()
        );
        assert_eq!(run.end(), End::code(0));
    }
    eprintln!("peak server RSS {peak} KiB");
}

// ---------------------------------------------------------------------------
// Issue 18.6: small ones
// ---------------------------------------------------------------------------

/// A `Last-Event-ID` (or `?last-event-id=`) that is not plain decimal
/// digits is `400`, a sign included: `+1` is not the number of an event.
#[test]
fn last_event_id_with_a_sign_or_blank_inside_is_400() {
    let s = Server::start(&[]);
    let id = id_of(&job_start(&s, "seq 1 3"));
    job_wait_ended(&s, &id, Duration::from_secs(10));
    for (what, query, hdr) in [
        ("header +1", "", Some("+1")),
        ("header +0", "", Some("+0")),
        ("header 1 1", "", Some("1 1")),
        ("header 1.0", "", Some("1.0")),
        ("query %2B1", "?last-event-id=%2B1", None),
        ("query empty", "?last-event-id=", None),
    ] {
        let extra: Vec<(&str, &str)> = hdr.map(|h| ("Last-Event-ID", h)).into_iter().collect();
        let r = s.request(&job_events_req(&s, &id, query, &extra));
        r.assert_status(400, &format!("Last-Event-ID {what}"));
    }
    // Plain digits still resume.
    let run = job_watch(&s, &id, "", &[("Last-Event-ID", "1")], 2);
    assert!(!run.events.is_empty(), "{}", run.resp.body_str());
}

/// One request on its own connection (`Connection: close`), read to the
/// close: the head and every byte after it.
fn exchange_raw(s: &Server, method: &str, target: &str) -> (String, Vec<u8>) {
    let mut c = s.connect();
    c.send(&s.req(method, target, &[("Connection", "close")]));
    let mut raw = Vec::new();
    c.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    c.stream.read_to_end(&mut raw).expect("read to the close");
    let (_, head, body) = split_head(&raw);
    (head, body.to_vec())
}

/// `HEAD /jobs` and `HEAD /jobs/ID` answer as `GET` without a body (the
/// same status and `Content-Length`), and a wrong method's `Allow` lists HEAD.
#[test]
fn head_of_jobs_and_of_a_job_answers_as_get_without_a_body() {
    let s = Server::start(&[]);
    let id = id_of(&job_start(&s, "true"));
    job_wait_ended(&s, &id, Duration::from_secs(10));
    for target in ["/jobs".to_owned(), format!("/jobs/{id}")] {
        let (get_head, get_body) = exchange_raw(&s, "GET", &target);
        let (head_head, head_body) = exchange_raw(&s, "HEAD", &target);
        assert!(get_head.starts_with("HTTP/1.1 200 "), "GET {target}: {get_head}");
        assert!(head_head.starts_with("HTTP/1.1 200 "), "HEAD {target}: {head_head}");
        assert!(head_body.is_empty(), "HEAD {target} sent a body: {head_body:?}");
        let length = format!("\r\nContent-Length: {}\r\n", get_body.len());
        assert!(
            head_head.contains(&length),
            "HEAD {target} tells GET's length {length:?}: {head_head}"
        );
        assert!(head_head.contains("Content-Type: application/json"), "{head_head}");
    }
    let (head, _) = exchange_raw(&s, "HEAD", "/jobs/unknownjob1234");
    assert!(head.starts_with("HTTP/1.1 404 "), "HEAD of an unknown job: {head}");
    for (target, allow) in [
        ("/jobs".to_owned(), "Allow: GET, HEAD, POST\r\n"),
        (format!("/jobs/{id}"), "Allow: GET, HEAD, DELETE\r\n"),
    ] {
        let (head, _) = exchange_raw(&s, "PUT", &target);
        assert!(head.starts_with("HTTP/1.1 405 "), "PUT {target}: {head}");
        assert!(head.contains(allow), "PUT {target}: {allow:?} in {head}");
    }
}
