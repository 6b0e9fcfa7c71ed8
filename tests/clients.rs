//! Jobs (contract §7) through third-party SSE clients, as users will consume
//! them: the npm `eventsource` package on Node.js and Python's `httpx-sse`
//! (on `httpx`). Each starts a job with `POST /jobs`, reads
//! `/jobs/ID/events` to its end, and must get every stdout line once, in
//! order, and the `exit` event. `eventsource` also resumes by itself after a
//! proxy cuts its first connection mid-stream (it sends `Last-Event-ID`, the
//! server goes on from the next event); `httpx-sse` resumes by hand with the
//! header.
//!
//! The same two clients read contract v4 §11's multiplexed stream
//! (`/jobs/events`) of two jobs through a proxy that cuts every connection
//! after 5000 bytes, resume each time with the last global number, and must
//! rebuild each job's output byte for byte.
//!
//! The npm package is installed into `target/clients-node` on first use
//! (`npm install`, a pinned version). `httpx` and `httpx-sse` come from pip
//! (`.ci/run` installs them). Without Node/npm or the Python packages a test
//! prints `SKIPPED` and passes, unless `CI=true`, where it fails.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `eventsource` release pinned for Node.js 20 (4.x wants Node 20 too;
/// 3.0.7 also runs on 18, which some machines still have).
const EVENTSOURCE: &str = "eventsource@3.0.7";
/// Bound for one client run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// The job every client watches: 300 numbered lines, paced so a cut lands mid-run.
const COMMAND: &str = "for i in $(seq 1 300); do echo line-$i; sleep 0.005; done";

/// `eventsource` on Node.js reads a job to its `exit` event.
#[test]
fn node_eventsource_reads_a_job_to_its_end() {
    let Some(dir) = node_client() else { return };
    let server = common::Server::start(&["--shell"]);
    let id = start_job(&server);
    let url = format!("{}{}", server.base, events_target(&server, &id));
    let report = run_client(Command::new("node").arg(dir.join("client.js")).arg(&url));
    check_report(&report, "eventsource");
    assert_eq!(
        report["errors"],
        Value::from(0),
        "no error event on a clean stream: {report}"
    );
}

/// `eventsource` on Node.js, through a proxy that cuts its first connection
/// after a few KiB: it reconnects by itself with `Last-Event-ID`, and the
/// lines still arrive once each, in order.
#[test]
fn node_eventsource_resumes_after_a_cut() {
    let Some(dir) = node_client() else { return };
    let server = common::Server::start(&["--shell"]);
    let id = start_job(&server);
    let proxy = CuttingProxy::start(server.addr, Cut::First(3000));
    let url = format!("http://127.0.0.1:{}{}", proxy.port, events_target(&server, &id));
    let report = run_client(Command::new("node").arg(dir.join("client.js")).arg(&url));
    check_report(&report, "eventsource after a cut");
    let heads = proxy.requests();
    assert!(heads.len() >= 2, "eventsource did not reconnect: {heads:?}");
    let resumed = heads[1].to_ascii_lowercase();
    assert!(
        resumed.contains("\r\nlast-event-id: "),
        "the reconnect carries Last-Event-ID: {}",
        heads[1]
    );
}

/// `httpx-sse` reads a job to its end; a second connection with
/// `Last-Event-ID` after a cut picks up exactly where the first stopped.
#[test]
fn python_httpx_sse_reads_and_resumes_a_job() {
    let Some(script) = python_client() else { return };
    let server = common::Server::start(&["--shell"]);
    let id = start_job(&server);
    let url = format!("{}{}", server.base, events_target(&server, &id));
    let report = run_client(Command::new("python3").arg(&script).arg(&url).arg("0"));
    check_report(&report, "httpx-sse");

    let id = start_job(&server);
    let url = format!("{}{}", server.base, events_target(&server, &id));
    let report = run_client(Command::new("python3").arg(&script).arg(&url).arg("50"));
    check_report(&report, "httpx-sse with a resume");
    assert_eq!(report["connections"], Value::from(2), "{report}");
}

/// Bytes of response the proxy passes on each connection of a multiplexed
/// stream before it cuts it.
const MUX_CUT: usize = 5000;
/// Lines each job of the multiplexed tests writes.
const MUX_LINES: u32 = 100;

/// `eventsource` on Node.js reads one multiplexed stream of two jobs
/// (`/jobs/events?ids=A,B`, contract §11) through a proxy that cuts every
/// connection after 5000 bytes: it resumes by itself with the last global
/// number each time, and each job's stdout and stderr come out byte-equal
/// to what the job wrote, with its events 1, 2, 3… once each.
#[test]
fn node_eventsource_rebuilds_two_jobs_from_a_cut_multiplexed_stream() {
    let Some(dir) = node_client() else { return };
    rebuild_two_jobs_through_a_cutting_proxy(Command::new("node").arg(dir.join("mux.js")), "eventsource");
}

/// The same with Python's `httpx-sse`, resuming by hand with the header
/// after each cut.
#[test]
fn python_httpx_sse_rebuilds_two_jobs_from_a_cut_multiplexed_stream() {
    let Some(dir) = python_client().and_then(|s| s.parent().map(PathBuf::from)) else {
        return;
    };
    rebuild_two_jobs_through_a_cutting_proxy(Command::new("python3").arg(dir.join("mux.py")), "httpx-sse");
}

/// Two jobs started, then `client` (its script given, the stream's URL and
/// the number of jobs still to add) reads their multiplexed stream through
/// a proxy cutting every [`MUX_CUT`] bytes; its report is checked.
fn rebuild_two_jobs_through_a_cutting_proxy(client: &mut Command, name: &str) {
    let server = common::Server::start(&["--shell"]);
    let jobs = MuxJob::two();
    let ids: Vec<String> = jobs.iter().map(|job| job.start(&server)).collect();
    let proxy = CuttingProxy::start(server.addr, Cut::Every(MUX_CUT));
    let url = proxy.url(&mux_target(&server, Some(&ids)));
    let report = run_client(client.arg(&url).arg("2"));
    check_mux_report(&report, &jobs, &ids, &proxy, name);
}

/// Both clients on the all-jobs feed (`/jobs/events`, no `ids`), each
/// through its own cutting proxy, at once: a job running when they connect
/// and one started only once both are connected are rebuilt exactly.
#[test]
fn both_clients_rebuild_the_all_jobs_feed_with_a_job_started_later() {
    let node = node_client();
    let python = python_client().and_then(|s| s.parent().map(PathBuf::from));
    if node.is_none() && python.is_none() {
        return;
    }
    let server = common::Server::start(&["--shell"]);
    let jobs = MuxJob::two();
    let first = jobs[0].start(&server);
    let target = mux_target(&server, None);
    let mut clients = Vec::new();
    if let Some(dir) = node {
        let proxy = CuttingProxy::start(server.addr, Cut::Every(MUX_CUT));
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("mux.js")).arg(proxy.url(&target)).arg("2");
        clients.push(("eventsource", proxy, cmd));
    }
    if let Some(dir) = python {
        let proxy = CuttingProxy::start(server.addr, Cut::Every(MUX_CUT));
        let mut cmd = Command::new("python3");
        cmd.arg(dir.join("mux.py")).arg(proxy.url(&target)).arg("2");
        clients.push(("httpx-sse", proxy, cmd));
    }
    let running: Vec<_> = clients
        .into_iter()
        .map(|(name, proxy, mut cmd)| (name, proxy, std::thread::spawn(move || run_client(&mut cmd))))
        .collect();
    let connected = common::poll_until(Duration::from_secs(20), || {
        running.iter().all(|(_, proxy, _)| !proxy.requests().is_empty())
    });
    assert!(connected, "every client connected within 20 s");
    let later = jobs[1].start(&server);
    let ids = [first, later];
    for (name, proxy, client) in running {
        let report = client.join().expect("the client thread");
        check_mux_report(&report, &jobs, &ids, &proxy, name);
    }
}

// ---------------------------------------------------------------- helpers

/// `POST /jobs?command=COMMAND`: 201 and the job's id.
fn start_job(server: &common::Server) -> String {
    let reply = server.request(&server.req(
        "POST",
        &format!("/jobs?command={}", common::pct(COMMAND)),
        &[("Content-Length", "0")],
    ));
    reply.assert_status(201, "POST /jobs");
    let job: Value = serde_json::from_slice(&reply.body).expect("the job JSON");
    job["id"].as_str().expect("an id").to_owned()
}

/// The events URL path, with the token as a query parameter (EventSource
/// clients cannot always set headers).
fn events_target(server: &common::Server, id: &str) -> String {
    let token = server
        .token
        .as_deref()
        .map(|t| format!("&token={t}"))
        .unwrap_or_default();
    format!("/jobs/{id}/events?format=json{token}")
}

/// A job of the multiplexed tests: its command and exactly what it writes.
struct MuxJob {
    command: String,
    stdout: String,
    stderr: String,
}

impl MuxJob {
    /// One job writing quotes, a backslash, a tab and two- and three-byte
    /// characters (all escaped or kept in JSON); one writing stdout and
    /// stderr in turn.
    fn two() -> [MuxJob; 2] {
        let n = MUX_LINES;
        [
            MuxJob {
                command: format!(
                    r#"for i in $(seq 1 {n}); do printf 'a %d "q" b\\s\tt \303\251 \342\234\223\n' $i; sleep 0.005; done"#
                ),
                stdout: (1..=n).map(|i| format!("a {i} \"q\" b\\s\tt é ✓\n")).collect(),
                stderr: String::new(),
            },
            MuxJob {
                command: format!("for i in $(seq 1 {n}); do echo b-$i; echo b-err-$i >&2; sleep 0.007; done"),
                stdout: (1..=n).map(|i| format!("b-{i}\n")).collect(),
                stderr: (1..=n).map(|i| format!("b-err-{i}\n")).collect(),
            },
        ]
    }

    /// `POST /jobs`: its id.
    fn start(&self, server: &common::Server) -> String {
        let reply = server.request(&server.req(
            "POST",
            &format!("/jobs?command={}", common::pct(&self.command)),
            &[("Content-Length", "0")],
        ));
        reply.assert_status(201, "POST /jobs");
        let job: Value = serde_json::from_slice(&reply.body).expect("the job JSON");
        job["id"].as_str().expect("an id").to_owned()
    }
}

/// `/jobs/events` (with `ids` when given), the token as a query parameter.
fn mux_target(server: &common::Server, ids: Option<&[String]>) -> String {
    let mut query: Vec<String> = ids.map(|ids| format!("ids={}", ids.join(","))).into_iter().collect();
    query.extend(server.token.as_deref().map(|t| format!("token={t}")));
    if query.is_empty() {
        "/jobs/events".to_owned()
    } else {
        format!("/jobs/events?{}", query.join("&"))
    }
}

/// A multiplexed client's report, `{"jobs": {ID: {"stdout", "stderr",
/// "seqs", "exit", "gaps"}}, "ids": [...], "connections": N}`: each job
/// rebuilt byte for byte with its events once each, global ids strictly
/// increasing over every connection, and every reconnect (the proxy cut the
/// stream several times) carrying the last global number the client had.
fn check_mux_report(report: &Value, jobs: &[MuxJob], ids: &[String], proxy: &CuttingProxy, what: &str) {
    for (job, id) in jobs.iter().zip(ids) {
        let got = &report["jobs"][id.as_str()];
        assert!(got.is_object(), "{what}: job {id} seen: {report}");
        assert_eq!(
            got["stdout"].as_str(),
            Some(job.stdout.as_str()),
            "{what}: job {id}'s stdout"
        );
        assert_eq!(
            got["stderr"].as_str(),
            Some(job.stderr.as_str()),
            "{what}: job {id}'s stderr"
        );
        assert_eq!(got["gaps"], Value::from(0), "{what}: nothing lost: {got}");
        assert_eq!(got["exit"]["code"], Value::from(0), "{what}: {got}");
        let seqs: Vec<u64> = got["seqs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .collect();
        let want: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, want, "{what}: job {id}'s events once each, in order");
    }
    let globals: Vec<u64> = report["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    assert!(
        globals.windows(2).all(|w| w[0] < w[1]),
        "{what}: global ids increase over every connection: {globals:?}"
    );
    let heads = proxy.requests();
    eprintln!("{what}: {} events over {} connections", globals.len(), heads.len());
    assert!(
        heads.len() >= 4,
        "{what}: the proxy cut the stream several times ({} connections)",
        heads.len()
    );
    for head in &heads[1..] {
        let resumed = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("last-event-id: ")
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("{what}: a reconnect without Last-Event-ID:\n{head}"));
        let g: u64 = resumed
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{what}: Last-Event-ID {resumed}"));
        assert!(globals.contains(&g), "{what}: resumed after {g}, a number it had");
    }
}

/// The client's report: `{"lines": [...], "ids": [...], "exit": {...},
/// "errors": N, "connections": N}` on its stdout.
fn run_client(cmd: &mut Command) -> Value {
    let (status, stdout, stderr) = run_bounded(cmd, CLIENT_TIMEOUT);
    assert!(status, "the client failed:\nstdout:\n{stdout}\nstderr:\n{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("client report {e}: {stdout}\n{stderr}"))
}

fn check_report(report: &Value, what: &str) {
    let want: Vec<Value> = (1..=300).map(|i| Value::from(format!("line-{i}"))).collect();
    let lines = report["lines"].as_array().cloned().unwrap_or_default();
    assert!(
        lines == want,
        "{what}: every line once, in order; got {} lines: {report}",
        lines.len()
    );
    let ids: Vec<u64> = report["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1) && ids.first() == Some(&1),
        "{what}: ids 1, 2, 3… with none twice: {ids:?}"
    );
    assert_eq!(report["exit"]["type"], Value::from("exit"), "{what}: {report}");
    assert_eq!(report["exit"]["code"], Value::from(0), "{what}: {report}");
}

/// Runs `cmd` with a time bound (killed by its PID after `limit`); success,
/// stdout and stderr.
fn run_bounded(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the client");
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let to = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let te = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (o, e) = (to.join().unwrap_or_default(), te.join().unwrap_or_default());
    match status {
        Some(s) => (s.success(), o, e),
        None => (false, o, format!("{e}\n(killed after {limit:?})")),
    }
}

/// Prints SKIPPED and gives `None` when a client is missing locally; in CI
/// (`CI=true`) a missing client fails the test.
fn missing(what: &str) -> Option<PathBuf> {
    ssecommander::harness::outside::skip(&format!("client test: {what}"));
    None
}

/// The Node client, with `eventsource` installed beside it once.
fn node_client() -> Option<PathBuf> {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if !ok(Command::new("node").arg("--version")) || !ok(Command::new("npm").arg("--version")) {
        return missing("node and npm not found: apt-get install nodejs npm");
    }
    let dir = common::target_dir().join("clients-node");
    std::fs::create_dir_all(&dir).expect("create target/clients-node");
    if !dir.join("node_modules/eventsource/package.json").exists() {
        std::fs::write(dir.join("package.json"), "{\"private\": true}\n").expect("write package.json");
        let (installed, out, err) = run_bounded(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--save-exact", EVENTSOURCE])
                .current_dir(&dir),
            Duration::from_secs(180),
        );
        if !installed {
            return missing(&format!("npm install {EVENTSOURCE} failed:\n{out}\n{err}"));
        }
    }
    std::fs::write(dir.join("client.js"), NODE_CLIENT).expect("write client.js");
    std::fs::write(dir.join("mux.js"), NODE_MUX).expect("write mux.js");
    Some(dir)
}

/// The Python client script, when `httpx` and `httpx_sse` import.
fn python_client() -> Option<PathBuf> {
    if !ok(Command::new("python3").args(["-c", "import httpx, httpx_sse"])) {
        return missing("python3 with httpx and httpx-sse not found: pip install httpx httpx-sse");
    }
    let dir = common::target_dir().join("clients-python");
    std::fs::create_dir_all(&dir).expect("create target/clients-python");
    let script = dir.join("client.py");
    std::fs::write(&script, PYTHON_CLIENT).expect("write client.py");
    std::fs::write(dir.join("mux.py"), PYTHON_MUX).expect("write mux.py");
    Some(script)
}

fn ok(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Reads the stream with the npm `eventsource` package until `exit` (or
/// `err`), then prints the report. Its own reconnects are counted as errors.
const NODE_CLIENT: &str = r#"
const { EventSource } = require("eventsource");
const report = { lines: [], ids: [], exit: null, errors: 0 };
let partial = "";
const es = new EventSource(process.argv[2]);
const timer = setTimeout(() => { console.error("timed out", JSON.stringify(report)); process.exit(3); }, 50000);
function done() { es.close(); clearTimeout(timer); console.log(JSON.stringify(report)); }
es.addEventListener("stdout", (e) => {
  report.ids.push(Number(e.lastEventId));
  const parts = (partial + JSON.parse(e.data).out).split("\n");
  partial = parts.pop();
  report.lines.push(...parts);
});
es.addEventListener("exit", (e) => { report.ids.push(Number(e.lastEventId)); report.exit = JSON.parse(e.data); done(); });
es.addEventListener("err", (e) => { report.exit = JSON.parse(e.data); done(); });
es.onerror = (e) => { report.errors += 1; console.error("error event", e && e.message); };
"#;

/// Reads the stream with `httpx-sse`; with a second argument N > 0, closes
/// the first connection after event N and resumes with `Last-Event-ID`.
const PYTHON_CLIENT: &str = r#"
import json, sys
import httpx
from httpx_sse import connect_sse

url, cut = sys.argv[1], int(sys.argv[2])
report = {"lines": [], "ids": [], "exit": None, "connections": 0}
partial = ""
last = None
with httpx.Client(timeout=30) as client:
    while report["exit"] is None and report["connections"] < 5:
        headers = {"Last-Event-ID": last} if last else {}
        report["connections"] += 1
        with connect_sse(client, "GET", url, headers=headers) as source:
            source.response.raise_for_status()
            for sse in source.iter_sse():
                if not sse.id:
                    continue  # the `retry: 1000` block carries no event
                last = sse.id
                if sse.event == "stdout":
                    report["ids"].append(int(sse.id))
                    parts = (partial + json.loads(sse.data)["out"]).split("\n")
                    partial = parts.pop()
                    report["lines"].extend(parts)
                elif sse.event in ("exit", "err"):
                    report["ids"].append(int(sse.id))
                    report["exit"] = json.loads(sse.data)
                    break
                if cut and report["connections"] == 1 and int(sse.id) >= cut:
                    break
print(json.dumps(report))
"#;

/// Which connections a [`CuttingProxy`] cuts, after how many bytes of
/// response.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// Only the first: a client must resume once.
    First(usize),
    /// Every one: a long stream arrives in pieces over many connections.
    Every(usize),
}

/// Connections a proxy takes before it stops accepting (a client stuck in
/// a reconnect loop ends instead of running forever).
const PROXY_CONNECTIONS: usize = 400;

/// Reads a multiplexed stream (contract §11) with the npm `eventsource`
/// package, reconnecting by itself after each cut, until N jobs (the second
/// argument) ended; prints each job's rebuilt output.
const NODE_MUX: &str = r#"
const { EventSource } = require("eventsource");
const ends = Number(process.argv[3]);
const report = { jobs: {}, ids: [], connections: 0, errors: 0, announced: 0 };
const job = (id) => (report.jobs[id] ??= { stdout: "", stderr: "", seqs: [], exit: null, gaps: 0 });
const es = new EventSource(process.argv[2]);
const timer = setTimeout(() => { console.error("timed out", JSON.stringify(report)); process.exit(3); }, 55000);
function check() {
  if (Object.values(report.jobs).filter((j) => j.exit).length < ends) return;
  es.close(); clearTimeout(timer); console.log(JSON.stringify(report));
}
es.onopen = () => { report.connections += 1; };
es.onerror = () => { report.errors += 1; };
es.addEventListener("job", () => { report.announced += 1; });
for (const name of ["stdout", "stderr", "gap", "exit", "err"]) {
  es.addEventListener(name, (e) => {
    const data = JSON.parse(e.data);
    report.ids.push(Number(e.lastEventId));
    const j = job(data.job);
    j.seqs.push(data.seq);
    if (name === "stdout" || name === "stderr") j[name] += data.out;
    else if (name === "gap") j.gaps += 1;
    else j.exit = data;
    check();
  });
}
"#;

/// The same with `httpx-sse`: after each cut it connects again with
/// `Last-Event-ID`, the last global number it had.
const PYTHON_MUX: &str = r#"
import json, sys
import httpx
from httpx_sse import connect_sse

url, ends = sys.argv[1], int(sys.argv[2])
report = {"jobs": {}, "ids": [], "connections": 0, "errors": 0, "announced": 0}
last = None

def job(i):
    return report["jobs"].setdefault(i, {"stdout": "", "stderr": "", "seqs": [], "exit": None, "gaps": 0})

def done():
    return sum(1 for j in report["jobs"].values() if j["exit"]) >= ends

with httpx.Client(timeout=30) as client:
    while not done() and report["connections"] < 300:
        headers = {"Last-Event-ID": last} if last else {}
        report["connections"] += 1
        try:
            with connect_sse(client, "GET", url, headers=headers) as source:
                source.response.raise_for_status()
                for sse in source.iter_sse():
                    if sse.event == "job":
                        report["announced"] += 1  # no id: line; sse.id is the previous one
                        continue
                    if not sse.data:
                        continue  # the `retry: 1000` block
                    data = json.loads(sse.data)
                    last = sse.id
                    report["ids"].append(int(sse.id))
                    j = job(data["job"])
                    j["seqs"].append(data["seq"])
                    if sse.event in ("stdout", "stderr"):
                        j[sse.event] += data["out"]
                    elif sse.event == "gap":
                        j["gaps"] += 1
                    else:
                        j["exit"] = data
                    if done():
                        break
        except httpx.TransportError:
            report["errors"] += 1
print(json.dumps(report))
"#;

/// A TCP proxy to the server that forwards everything, except that it cuts
/// connections as `cut` says. Keeps every request head it forwards.
struct CuttingProxy {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl CuttingProxy {
    fn start(upstream: std::net::SocketAddr, cut: Cut) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        let count = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for client in listener.incoming().take(PROXY_CONNECTIONS).flatten() {
                let n = count.fetch_add(1, Ordering::Relaxed);
                let seen = seen.clone();
                let limit = match cut {
                    Cut::First(bytes) if n == 0 => bytes,
                    Cut::First(_) => usize::MAX,
                    Cut::Every(bytes) => bytes,
                };
                std::thread::spawn(move || proxy_one(client, upstream, limit, &seen));
            }
        });
        CuttingProxy { port, heads }
    }

    /// The URL of `target` through the proxy.
    fn url(&self, target: &str) -> String {
        format!("http://127.0.0.1:{}{target}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.heads.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Forwards one client connection: the request head up, the response down
/// until `limit` bytes, then closes both sides.
fn proxy_one(mut client: TcpStream, upstream: std::net::SocketAddr, limit: usize, seen: &Mutex<Vec<String>>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    let _ = server.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(String::from_utf8_lossy(&head).into_owned());
    if server.write_all(&head).is_err() {
        return;
    }
    let mut sent = 0usize;
    while sent < limit {
        match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let n = n.min(limit - sent);
                if client.write_all(&buf[..n]).is_err() {
                    break;
                }
                sent += n;
            }
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}
