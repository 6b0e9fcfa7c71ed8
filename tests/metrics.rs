//! `GET /metrics` (contract §8): scraped from the real binary, read by a
//! strict parser of the text exposition format 0.0.4 (`exposition/`, in
//! this crate, so the tests need nothing installed), and where they are
//! present by two more real Prometheus parsers: Debian's
//! `promtool check metrics` and Python `prometheus_client`'s text parser,
//! which must agree with ours. Outside CI a missing one is a `SKIPPED` line;
//! under `CI=true` (`.ci/run` installs both) it fails the test. Each scrape
//! is taken before and after a known load, and each counter must have moved
//! by exactly what the load did, as the clients saw it.

mod common;
mod exposition;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use ssecommander::harness::outside;

/// Every family the contract lists, with its type.
const FAMILIES: [(&str, &str); 13] = [
    ("connections_open", "gauge"),
    ("streams_open", "gauge"),
    ("jobs_running", "gauge"),
    ("jobs_kept", "gauge"),
    ("commands_started_total", "counter"),
    ("commands_failed_to_start_total", "counter"),
    ("commands_stopped_total", "counter"),
    ("events_sent_total", "counter"),
    ("bytes_sent_total", "counter"),
    ("requests_total", "counter"),
    ("slow_reader_pauses_total", "counter"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_open_fds", "gauge"),
];

const EVENT_NAMES: [&str; 5] = ["stdout", "stderr", "err", "exit", "gap"];

/// Reads a scrape with Python's `prometheus_client` parser: family → type,
/// and series (`name{label="v"}`) → value.
const PARSE_PY: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families, samples = {}, {}
for f in text_string_to_metric_families(sys.stdin.read()):
    families[f.name] = {"type": f.type, "help": f.documentation}
    for s in f.samples:
        labels = ",".join('%s="%s"' % kv for kv in sorted(s.labels.items()))
        samples[s.name + ("{" + labels + "}" if labels else "")] = s.value
print(json.dumps({"families": families, "samples": samples}))
"#;

/// One exchange on its own connection, read to the server's close.
struct Exchange {
    status: u16,
    /// Every byte the server wrote (head, body, framing).
    raw: Vec<u8>,
}

impl Exchange {
    /// Every byte read to the close, its status taken from its head.
    fn new(raw: Vec<u8>) -> Exchange {
        Exchange {
            status: split_head(&raw).0.status,
            raw,
        }
    }

    fn body(&self) -> &[u8] {
        split_head(&self.raw).2
    }

    /// `event: NAME` lines of an SSE body (the JSON format keeps line
    /// breaks of the output escaped, so these are the events' own).
    fn events(&self, name: &str) -> u64 {
        let needle = format!("\nevent: {name}\n");
        count(&self.raw, needle.as_bytes())
    }
}

fn count(hay: &[u8], needle: &[u8]) -> u64 {
    hay.windows(needle.len()).filter(|w| *w == needle).count() as u64
}

/// Sends `request` and reads until the server closes; every request here
/// says `Connection: close`, so the close ends the response.
fn exchange(server: &Server, request: &[u8]) -> Exchange {
    let mut sock = TcpStream::connect(server.addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    sock.write_all(request).expect("send the request");
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("read to the close: {e}; got {:?}", String::from_utf8_lossy(&raw)));
    Exchange::new(raw)
}

fn close() -> (&'static str, &'static str) {
    ("Connection", "close")
}

/// A scrape, checked by every parser at hand.
struct Scrape {
    /// Family name (as in its TYPE line) → (type, HELP text).
    families: BTreeMap<String, (String, String)>,
    /// Series (`name{label="v"}`) → value.
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    fn get(&self, series: &str) -> u64 {
        let full = format!("ssecommander_{series}");
        let value = *self
            .samples
            .get(&full)
            .unwrap_or_else(|| panic!("no series {full} in the scrape: {:?}", self.samples.keys()));
        assert!(value >= 0.0 && value.fract() == 0.0, "{full} = {value}");
        value as u64
    }
}

/// Our strict parser always; `promtool` and `prometheus_client` where present
/// (required under `CI=true`), the latter giving the same families and series.
fn parse(text: &str) -> Scrape {
    let families = exposition::parse(text).unwrap_or_else(|e| panic!("not text format 0.0.4: {e}\n{text}"));
    let mut scrape = Scrape {
        families: BTreeMap::new(),
        samples: BTreeMap::new(),
    };
    for (name, family) in &families {
        assert!(
            family.samples.iter().all(|s| s.timestamp.is_none()),
            "{name}: no timestamps"
        );
        let help = family.help.clone().unwrap_or_default();
        scrape.families.insert(name.clone(), (family.kind.clone(), help));
        for sample in &family.samples {
            scrape.samples.insert(sample.series(), sample.value);
        }
    }
    promtool_check(text);
    if let Some(theirs) = prometheus_client_parse(text) {
        // prometheus_client names a counter's family without `_total`.
        let ours: BTreeMap<String, (String, String)> = scrape
            .families
            .iter()
            .map(|(name, (kind, help))| {
                let key = match kind.as_str() {
                    "counter" => name.strip_suffix("_total").unwrap_or(name),
                    _ => name,
                };
                (key.to_owned(), (kind.clone(), help.clone()))
            })
            .collect();
        assert_eq!(ours, theirs.families, "prometheus_client reads other families");
        assert_eq!(scrape.samples, theirs.samples, "prometheus_client reads other series");
    }
    scrape
}

/// Python `prometheus_client`'s reading of the scrape; `None` (SKIPPED) when
/// python3 or the module is missing outside CI.
fn prometheus_client_parse(text: &str) -> Option<Scrape> {
    let found = outside::runs("python3", &["-c", "import prometheus_client"]);
    if !outside::available(found, "python3 with prometheus_client", "pip install prometheus_client") {
        return None;
    }
    let mut child = Command::new("python3")
        .args(["-c", PARSE_PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse the scrape: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the parser's JSON");
    let families = parsed["families"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let kind = v["type"].as_str().unwrap().to_owned();
            (k.clone(), (kind, v["help"].as_str().unwrap().to_owned()))
        })
        .collect();
    let samples = parsed["samples"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
        .collect();
    Some(Scrape { families, samples })
}

/// `promtool check metrics`: the format and Prometheus' naming lints, where
/// promtool is installed (SKIPPED outside CI when it is not).
fn promtool_check(text: &str) {
    if !outside::available(
        outside::runs("promtool", &["--version"]),
        "promtool",
        "apt-get install prometheus",
    ) {
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics refused the scrape: {said}\n{text}"
    );
}

/// Scrapes `/metrics` (token in the header), returning the parsed scrape
/// and the exchange (its bytes and status count in the next scrape).
fn scrape(server: &Server) -> (Scrape, Exchange) {
    let ex = exchange(server, &server.req("GET", "/metrics", &[close()]));
    assert_eq!(ex.status, 200, "{}", String::from_utf8_lossy(&ex.raw));
    let (_, head, _) = split_head(&ex.raw);
    assert!(
        head.contains("\r\nContent-Type: text/plain; version=0.0.4\r\n"),
        "contract §8 content type: {head}"
    );
    let text = String::from_utf8(ex.body().to_vec()).expect("a UTF-8 scrape");
    (parse(&text), ex)
}

/// What the load did, as its clients saw it.
#[derive(Default)]
struct Seen {
    bytes: u64,
    statuses: BTreeMap<u16, u64>,
    events: BTreeMap<&'static str, u64>,
}

impl Seen {
    fn add(&mut self, ex: &Exchange) {
        self.bytes += ex.raw.len() as u64;
        *self.statuses.entry(ex.status).or_default() += 1;
        for name in EVENT_NAMES {
            *self.events.entry(name).or_default() += ex.events(name);
        }
    }
}

fn json_field(ex: &Exchange, field: &str) -> String {
    let v: serde_json::Value = serde_json::from_slice(ex.body()).expect("a JSON body");
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
        .to_owned()
}

#[test]
fn every_counter_moves_by_exactly_what_a_mixed_load_did() {
    let server = Server::start(&["--timeout", "3"]);
    let (before, first) = scrape(&server);
    for (family, kind) in FAMILIES {
        let name = format!("ssecommander_{family}");
        let (got, help) = before
            .families
            .get(&name)
            .unwrap_or_else(|| panic!("no family {name}: {:?}", before.families.keys()));
        assert_eq!(got, kind, "{name}");
        assert!(!help.is_empty(), "{name} has no HELP");
    }
    for reason in ["client_gone", "timeout", "deleted", "shutdown"] {
        before.get(&format!("commands_stopped_total{{reason=\"{reason}\"}}"));
    }
    for name in EVENT_NAMES {
        before.get(&format!("events_sent_total{{event=\"{name}\"}}"));
    }
    let mut seen = Seen::default();
    seen.add(&first);
    let baseline = server.settled_fd_count();

    // A command stopped by --timeout, running while the rest happens.
    let timed = {
        let req = server.req("GET", &format!("/run?command={}", pct("sleep 30")), &[close()]);
        let srv_addr = server.addr;
        thread::spawn(move || {
            let mut sock = TcpStream::connect(srv_addr).expect("connect");
            sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            sock.write_all(&req).unwrap();
            let mut raw = Vec::new();
            sock.read_to_end(&mut raw).unwrap();
            Exchange::new(raw)
        })
    };
    // Commands that run to their end: JSON and raw, stdout and stderr.
    for target in [
        format!("/run?command={}", pct("echo hello")),
        format!(
            "/run?command={}&format=raw",
            pct("sh -c 'echo out; echo err >&2; echo two'")
        ),
    ] {
        let ex = exchange(&server, &server.req("GET", &target, &[close()]));
        assert_eq!(ex.status, 200);
        seen.add(&ex);
    }
    // A program that cannot start: an `err` event.
    let missing = format!("/run?command={}", pct("/nonexistent/metrics-test-prog"));
    let ex = exchange(&server, &server.req("GET", &missing, &[close()]));
    assert_eq!(ex.events("err"), 1, "{}", String::from_utf8_lossy(&ex.raw));
    seen.add(&ex);
    // A client that leaves during its stream: it reads the head, then closes.
    // The server's FIN probe (contract §3.6) is one heartbeat chunk, written
    // to the socket before the client's reset comes back: it counts as sent.
    let marker = sleep_marker();
    let _guard = MarkerGuard(vec![marker.clone()]);
    {
        let mut c = server.connect();
        c.send(&server.req(
            "GET",
            &format!("/run?command={}", pct(&format!("sleep 30 {marker}"))),
            &[close()],
        ));
        let head = c.read_head();
        assert_eq!(head.status, 200);
        assert!(c.pending().is_empty(), "nothing but the head came");
        seen.add(&Exchange {
            status: 200,
            raw: head.raw_head.into_bytes(),
        });
        c.close();
    }
    seen.bytes += b"8\r\n: ping\n\n\r\n".len() as u64;
    // Jobs: one deleted while running, one read to its end, one that fails.
    let started = exchange(
        &server,
        &server.req("POST", &format!("/jobs?command={}", pct("sleep 30")), &[close()]),
    );
    assert_eq!(started.status, 201);
    seen.add(&started);
    let id = json_field(&started, "id");
    let deleted = exchange(&server, &server.req("DELETE", &format!("/jobs/{id}"), &[close()]));
    assert_eq!(deleted.status, 202);
    seen.add(&deleted);
    let echo = exchange(
        &server,
        &server.req("POST", &format!("/jobs?command={}", pct("echo job")), &[close()]),
    );
    seen.add(&echo);
    let watched = exchange(
        &server,
        &server.req("GET", &format!("/jobs/{}/events", json_field(&echo, "id")), &[close()]),
    );
    assert_eq!(watched.status, 200);
    assert_eq!((watched.events("stdout"), watched.events("exit")), (1, 1));
    seen.add(&watched);
    let failed = exchange(
        &server,
        &server.req(
            "POST",
            &format!("/jobs?command={}", pct("/nonexistent/metrics-job")),
            &[close()],
        ),
    );
    assert_eq!(json_field(&failed, "state"), "failed");
    seen.add(&failed);
    // Refusals: 400 from the route and from the parser, 401, 404, 405.
    let refusals: Vec<(Vec<u8>, u16)> = vec![
        (server.req("GET", "/run", &[close()]), 400),
        (b"NONSENSE\r\n\r\n".to_vec(), 400),
        (server.req_noauth("GET", "/metrics", &[close()]), 401),
        (server.req_noauth("GET", "/run?command=ls", &[close()]), 401),
        (server.req("GET", "/nope", &[close()]), 404),
        (server.req("GET", "/jobs/unknownjob", &[close()]), 404),
        (server.req("POST", "/metrics", &[close()]), 405),
    ];
    for (request, status) in refusals {
        let ex = exchange(&server, &request);
        assert_eq!(ex.status, status, "{}", String::from_utf8_lossy(&ex.raw));
        seen.add(&ex);
    }
    // HEAD: the scrape's head alone.
    let head = exchange(&server, &server.req("HEAD", "/metrics", &[close()]));
    assert_eq!(head.status, 200);
    assert!(head.body().is_empty(), "HEAD has no body");
    seen.add(&head);
    let timed = timed.join().expect("the timed-out stream");
    assert!(
        String::from_utf8_lossy(&timed.raw).contains("\"timed_out\":true"),
        "{}",
        String::from_utf8_lossy(&timed.raw)
    );
    seen.add(&timed);

    // Idle again: no child, and every connection closed (the descriptor
    // count back where it was between the requests).
    server.wait_no_children(Duration::from_secs(10));
    server.wait_fds_back_to(baseline, Duration::from_secs(10));
    let (after, _) = scrape(&server);
    print_excerpt(&before, &after);

    let delta = |series: &str| {
        let (b, a) = (before.get(series), after.get(series));
        assert!(a >= b, "{series} went down: {b} → {a}");
        a - b
    };
    assert_eq!(delta("commands_started_total"), 6, "echo, sh, 2 × sleep /run, 2 jobs");
    assert_eq!(delta("commands_failed_to_start_total"), 2);
    for (reason, n) in [("client_gone", 1), ("timeout", 1), ("deleted", 1), ("shutdown", 0)] {
        assert_eq!(
            delta(&format!("commands_stopped_total{{reason=\"{reason}\"}}")),
            n,
            "{reason}"
        );
    }
    for name in EVENT_NAMES {
        assert_eq!(
            delta(&format!("events_sent_total{{event=\"{name}\"}}")),
            seen.events[name],
            "events named {name}"
        );
    }
    assert_eq!(delta("bytes_sent_total"), seen.bytes, "every byte the clients read");
    for (status, n) in &seen.statuses {
        assert_eq!(
            delta(&format!("requests_total{{status=\"{status}\"}}")),
            *n,
            "status {status}"
        );
    }
    for (series, value) in &after.samples {
        if let Some(status) = series.strip_prefix("ssecommander_requests_total{status=\"") {
            let status: u16 = status.trim_end_matches("\"}").parse().unwrap();
            if !seen.statuses.contains_key(&status) {
                assert_eq!(
                    *value as u64,
                    before.get(&series["ssecommander_".len()..]),
                    "status {status}"
                );
            }
        }
    }
    assert_eq!(delta("slow_reader_pauses_total"), 0, "every client read at once");
    // Every counter only grows (contract §8).
    for (series, value) in &before.samples {
        if series.contains("_total") {
            assert!(after.samples[series] >= *value, "{series} went down");
        }
    }
    // Gauges back at rest: the scrape's own connection, no stream, no
    // running command; the three finished jobs kept.
    assert_eq!(after.get("connections_open"), 1);
    assert_eq!(after.get("streams_open"), 0);
    assert_eq!(after.get("jobs_running"), 0);
    assert_eq!(after.get("jobs_kept"), 3);
    assert!(after.get("process_resident_memory_bytes") > 1024 * 1024);
    let fds = after.get("process_open_fds");
    assert!((4..64).contains(&fds), "open fds {fds}");
}

fn print_excerpt(before: &Scrape, after: &Scrape) {
    println!("series: before → after");
    for (series, value) in &after.samples {
        let was = before.samples.get(series).copied().unwrap_or(0.0);
        if was != *value {
            println!("  {series}: {was} → {value}");
        }
    }
}

#[test]
fn metrics_need_the_token_and_answer_head() {
    let server = Server::start(&[]);
    for request in [
        server.req_noauth("GET", "/metrics", &[close()]),
        server.req_noauth("GET", "/metrics?token=wrong", &[close()]),
        server.req_noauth("HEAD", "/metrics", &[close()]),
    ] {
        let ex = exchange(&server, &request);
        assert_eq!(ex.status, 401, "{}", String::from_utf8_lossy(&ex.raw));
        assert!(!String::from_utf8_lossy(&ex.raw).contains("ssecommander_"));
    }
    let token = server.token.clone().expect("a token");
    let ex = exchange(
        &server,
        &server.req_noauth("GET", &format!("/metrics?token={token}"), &[close()]),
    );
    assert_eq!(ex.status, 200);
    parse(std::str::from_utf8(ex.body()).unwrap());
    // A cross-site page cannot read it even with the token in its URL.
    let ex = exchange(
        &server,
        &server.req_noauth(
            "GET",
            &format!("/metrics?token={token}"),
            &[("Sec-Fetch-Site", "cross-site"), close()],
        ),
    );
    assert_eq!(ex.status, 403);
    let head = exchange(&server, &server.req("HEAD", "/metrics", &[close()]));
    assert_eq!(head.status, 200);
    assert!(head.body().is_empty());
    let length: usize = String::from_utf8_lossy(&head.raw)
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: ").map(|v| v.trim().parse().unwrap()))
        .expect("Content-Length");
    assert!(length > 1000, "HEAD tells the scrape's length: {length}");
}

#[test]
fn a_reader_that_lags_is_counted_as_a_pause_and_every_byte_still_counts() {
    let server = Server::start(&[]);
    let (before, first) = scrape(&server);
    let mut c = Conn::connect_small_rcvbuf(server.addr, 4096);
    c.send(&server.req(
        "GET",
        &format!("/run?command={}&format=raw", pct("seq 1 400000")),
        &[close()],
    ));
    // Read nothing while the socket fills.
    thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let mut raw = Vec::new();
    c.stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.stream.read_to_end(&mut raw).expect("read the stream to its end");
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(count(&raw, b"\nevent: exit\n"), 1);
    server.wait_no_children(Duration::from_secs(10));
    thread::sleep(Duration::from_millis(200));
    let (after, _) = scrape(&server);
    let delta = |s: &str| after.get(s) - before.get(s);
    assert!(
        delta("slow_reader_pauses_total") >= 1,
        "a full socket paused the stream"
    );
    assert_eq!(delta("bytes_sent_total"), (first.raw.len() + raw.len()) as u64);
    assert_eq!(
        delta("events_sent_total{event=\"stdout\"}"),
        count(&raw, b"\nevent: stdout\n")
    );
}

/// The in-crate parser is strict: it reads a text using every part of the
/// format, and refuses each thing the format forbids (so a scrape that
/// passes it is 0.0.4 even where promtool is not installed).
#[test]
fn the_exposition_parser_refuses_what_the_format_forbids() {
    let good = "# a comment\n\
        # HELP a_total Things, with a \\\\ and a \\n.\n\
        # TYPE a_total counter\n\
        a_total{kind=\"x\\\"y\",z=\"\"} 3\n\
        a_total{kind=\"w\",} 4 1700000000000\n\
        \n\
        # TYPE h histogram\n\
        h_bucket{le=\"0.5\"} 1\n\
        h_bucket{le=\"+Inf\"} 2\n\
        h_sum 0.75e0\n\
        h_count 2\n\
        loose:name -Inf\n\
        g NaN\n";
    let families = exposition::parse(good).unwrap_or_else(|e| panic!("{e}"));
    let a = &families["a_total"];
    assert_eq!(
        (a.kind.as_str(), a.help.as_deref()),
        ("counter", Some("Things, with a \\ and a \n."))
    );
    assert_eq!(a.samples[0].labels[0], ("kind".to_owned(), "x\"y".to_owned()));
    assert_eq!(a.samples[1].timestamp, Some(1_700_000_000_000));
    assert_eq!(families["h"].samples.len(), 4);
    assert_eq!(families["loose:name"].kind, "untyped");
    assert!(families["g"].samples[0].value.is_nan());

    for (bad, why) in [
        ("a 1", "no final line feed"),
        ("a 1\r\n", "CR line end"),
        ("a one\n", "value not a number"),
        ("a inf\n", "Rust's spelling of infinity"),
        ("a 1.2.3\n", "two points"),
        ("a 1 2.5\n", "fractional timestamp"),
        ("a 1 2 3\n", "text after the sample"),
        ("a{b=\"c\"}1\n", "no blank before the value"),
        ("1a 1\n", "name starting with a digit"),
        ("a-b 1\n", "dash in a name"),
        ("a{b:c=\"d\"} 1\n", "colon in a label name"),
        ("a{b=c} 1\n", "unquoted label value"),
        ("a{b=\"c} 1\n", "unterminated label value"),
        ("a{b=\"\\t\"} 1\n", "unknown escape in a label value"),
        ("a{b=\"1\",b=\"2\"} 1\n", "label twice"),
        ("a{__name__=\"x\"} 1\n", "reserved label"),
        ("a{b=\"1\" c=\"2\"} 1\n", "labels without a comma"),
        ("a 1\na 2\n", "series twice"),
        ("# TYPE a counter\n# TYPE a gauge\na 1\n", "second TYPE"),
        ("# HELP a x\n# HELP a y\na 1\n", "second HELP"),
        ("# HELP a \\t\na 1\n", "unknown escape in HELP"),
        ("# TYPE a countr\na 1\n", "unknown type"),
        ("# TYPE a counter extra\na 1\n", "text after the type"),
        ("a 1\n# TYPE a counter\n", "TYPE after samples"),
        ("a{x=\"1\"} 1\nb 1\na{x=\"2\"} 1\n", "family interleaved"),
        ("# TYPE h histogram\nh_bucket 1\n", "bucket without le"),
        ("# TYPE s summary\ns 1\n", "summary sample without quantile"),
    ] {
        assert!(exposition::parse(bad).is_err(), "accepted ({why}): {bad:?}");
    }
}
