//! End-to-end benchmark: the real `ssecommander` server against a floor
//! measured in the same run.
//!
//! # What it runs
//!
//! It builds nothing: it runs the release binary `target/release/ssecommander`
//! (or the path in env `SSECOMMANDER_BIN`), so run `cargo build --release`
//! first. One server is started for the whole run with
//! `--listen 127.0.0.1:0 --no-auth --max-procs 20000 --max-conns 20000`
//! (address read from its stdout URL line, log on stderr into
//! `target/bench-data/e2e-server.log`), and stopped at the end by PID
//! (SIGTERM, SIGKILL after 5 s). Children are only ever signalled by PID.
//!
//! The **floor** is a relay written here, in the spirit of
//! `shared/bench/relay.c --sse`: accept one connection at a time on
//! 127.0.0.1:0, discard the request head, answer a close-delimited SSE head,
//! spawn the fixed command, copy its pipe to the socket through one 64 KiB
//! buffer, each read framed as one event with a `data:` line per complete
//! line. A second floor (`relay-json`) frames each read as one
//! `{"type":"stdout","out":"…"}` event escaped by a plain byte loop, like
//! `relay.c --json`. No HTTP parsing, no exit event, nothing else.
//!
//! The client is here too: std `TcpStream` (a mio loop for W4), the head
//! parsed by `httparse`, the body de-chunked, SSE parsed the WHATWG way (CR,
//! LF, CRLF, `data:` lines joined, one leading space dropped), JSON `out`
//! strings decoded (escapes and `\u` surrogates), payload bytes counted and
//! checked against what the command wrote.
//!
//! # Workloads
//!
//! - `w1`: `cat` of 256 MiB of 100-byte lines and of 64 KiB lines (generated
//!   once into `target/bench-data/`, the same bytes as
//!   `shared/bench/gen-data.py`): payload MB/s (MB = 10^6 B) for `format=json`
//!   and `format=raw`, relay-sse and relay-json; every byte checked; server
//!   CPU (its own, not `cat`'s: cores, and seconds per GB of payload) and
//!   peak RSS. REPS repetitions, order rotated.
//! - `w2`: an emitter (this binary, `e2e --emit INTERVAL_US SECS COUNT_FILE`,
//!   one `write(2)` of `<CLOCK_MONOTONIC ns>\n` per line) at 1000 µs and 50 µs
//!   for 3 s: per-line latency (arrival stamped with CLOCK_MONOTONIC right
//!   after the `read` that completed the line) p50/p99/max, lines
//!   received/sent, lines split across events (must be 0), vs the relay.
//! - `w3`: 2000 × `true` at concurrency 1 and 16, a new connection per request
//!   and keep-alive: req/s and per-request latency, vs the relay (C=1, new
//!   connection: it serves one connection at a time).
//! - `w4`: 1000 streams of an emitter at 100 ms for 10 s, all held at once by
//!   one mio loop: lines received vs sent, streams that ended with `exit`,
//!   time until the last response head, server peak RSS (VmRSS every 200 ms)
//!   and CPU (utime+stime per wall second).
//! - `idle`: server RSS 0.5 s after start, and over 2 s idle the CPU time and
//!   context switches (should be 0: nothing to wake for); measured again
//!   right after the other workloads and again 16 s later (past the 10 s
//!   head/idle and 15 s heartbeat deadlines of the last requests), with the
//!   fd count and leftover children.
//!
//! # Running
//!
//! ```text
//! cargo build --release
//! cargo bench --bench e2e                    # everything (~3 min)
//! cargo bench --bench e2e -- w1 w3           # some workloads
//! cargo bench --bench e2e -- --quick         # smoke run: small sizes, 1 rep
//! cargo bench --bench e2e -- --reps 5 w2
//! ```
//!
//! Progress goes to stderr (`[e2e  12.3s] w1 …`), the markdown table to
//! stdout at the end. Client, server and child share the machine's cores, so
//! every figure is the whole system's: compare within one run, quote medians
//! and ratios. Every loop is bounded in time and count.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: e2e [--quick] [--reps N] [w1|w2|w3|w4|idle]...
  runs target/release/ssecommander (or $SSECOMMANDER_BIN) against an in-process relay floor;
  no workload named = all of them";

const WORKLOADS: [&str; 5] = ["idle", "w1", "w2", "w3", "w4"];

/// How big each workload is; `--quick` shrinks everything for a smoke run.
struct Plan {
    quick: bool,
    reps: usize,
    workloads: Vec<&'static str>,
    /// Lines of the 100-byte and the 64 KiB W1 files.
    w1_lines100: usize,
    w1_lines64k: usize,
    w2_secs: f64,
    w3_requests: usize,
    w4_streams: usize,
    w4_secs: u32,
    idle_secs: f64,
}

impl Plan {
    fn parse(args: &[String]) -> Result<Plan, String> {
        let mut quick = false;
        let mut reps = None;
        let mut workloads = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--quick" => quick = true,
                // cargo bench passes --bench to harness = false targets.
                "--bench" => {}
                "--reps" => {
                    let n = it
                        .next()
                        .and_then(|v| v.parse::<usize>().ok())
                        .filter(|&n| (1..=20).contains(&n));
                    reps = Some(n.ok_or("--reps takes a number from 1 to 20")?);
                }
                "-h" | "--help" => return Err(USAGE.to_owned()),
                name => match WORKLOADS.iter().find(|w| **w == name) {
                    Some(w) => workloads.push(*w),
                    None => return Err(format!("unknown argument {name:?}\n{USAGE}")),
                },
            }
        }
        if workloads.is_empty() {
            workloads = WORKLOADS.to_vec();
        }
        Ok(if quick {
            Plan {
                quick,
                reps: reps.unwrap_or(1),
                workloads,
                w1_lines100: 167_772,
                w1_lines64k: 256,
                w2_secs: 1.0,
                w3_requests: 200,
                w4_streams: 100,
                w4_secs: 3,
                idle_secs: 1.0,
            }
        } else {
            Plan {
                quick,
                reps: reps.unwrap_or(3),
                workloads,
                w1_lines100: 2_684_354,
                w1_lines64k: 4_096,
                w2_secs: 3.0,
                w3_requests: 2000,
                w4_streams: 1000,
                w4_secs: 10,
                idle_secs: 2.0,
            }
        })
    }

    fn wants(&self, name: &str) -> bool {
        self.workloads.contains(&name)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--emit") {
        std::process::exit(emit(&args[1..]));
    }
    let plan = match Plan::parse(&args) {
        Ok(plan) => plan,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    if let Err(msg) = run(plan) {
        eprintln!("e2e: {msg}");
        std::process::exit(1);
    }
}

fn run(plan: Plan) -> Result<(), String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = match std::env::var_os("SSECOMMANDER_BIN") {
        Some(path) => PathBuf::from(path),
        None => root.join("target/release/ssecommander"),
    };
    if !bin.is_file() {
        return Err(format!(
            "no server binary at {}: run `cargo build --release` first (or set SSECOMMANDER_BIN)",
            bin.display()
        ));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this bench's own path: {e}"))?;
    let data = root.join("target/bench-data");
    fs::create_dir_all(&data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    raise_nofile_limit();

    let mut bench = Bench {
        plan,
        clock: Instant::now(),
        rows: Vec::new(),
        exe,
        data,
    };
    bench.say("setup", &format!("server {}", bin.display()));
    let log = bench.data.join("e2e-server.log");
    let mut server = Server::start(&bin, &log)?;
    bench.say("setup", &format!("server pid {} on {}", server.pid, server.addr));
    let fds_at_start = fd_count(server.pid);

    if bench.plan.wants("idle") {
        bench.idle(&server, "fresh");
    }
    let w1_files = if bench.plan.wants("w1") {
        Some(bench.w1_files()?)
    } else {
        None
    };
    if let Some(files) = &w1_files {
        bench.w1(&server, files);
    }
    if bench.plan.wants("w2") {
        bench.w2(&server);
    }
    if bench.plan.wants("w3") {
        bench.w3(&server);
    }
    if bench.plan.wants("w4") {
        bench.w4(&server);
    }
    if bench.plan.wants("idle") && bench.plan.workloads.len() > 1 {
        let ended = Instant::now();
        bench.idle(&server, "right after the workloads");
        if !bench.plan.quick {
            // Past every per-request deadline (head/idle 10 s, heartbeat
            // 15 s): whatever still wakes the server now wakes it forever.
            thread::sleep(Duration::from_secs(16).saturating_sub(ended.elapsed()));
            bench.idle(&server, "16 s after the workloads");
        }
    }
    bench.after(&server, fds_at_start);
    let stopped = server.stop();
    bench.say("shutdown", &stopped);
    bench.row("shutdown", "SIGTERM → exit", stopped, "", "", "");
    bench.print_table(&bin);
    Ok(())
}

// ---------------------------------------------------------------------------
// The report

struct Row {
    workload: String,
    measure: String,
    ours: String,
    floor: String,
    ratio: String,
    notes: String,
}

struct Bench {
    plan: Plan,
    clock: Instant,
    rows: Vec<Row>,
    exe: PathBuf,
    data: PathBuf,
}

impl Bench {
    fn say(&self, workload: &str, what: &str) {
        eprintln!("[e2e {:>6.1}s] {workload}: {what}", self.clock.elapsed().as_secs_f64());
    }

    fn row(&mut self, workload: &str, measure: &str, ours: String, floor: &str, ratio: &str, notes: &str) {
        self.rows.push(Row {
            workload: workload.to_owned(),
            measure: measure.to_owned(),
            ours,
            floor: floor.to_owned(),
            ratio: ratio.to_owned(),
            notes: notes.to_owned(),
        });
    }

    fn print_table(&self, bin: &Path) {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n## ssecommander end-to-end ({}{} rep{}, {} s total)\n",
            if self.plan.quick { "--quick, " } else { "" },
            self.plan.reps,
            if self.plan.reps == 1 { "" } else { "s, medians" },
            self.clock.elapsed().as_secs()
        );
        let _ = writeln!(out, "server: `{}`; floor: in-process relay (one connection at a time, no HTTP parsing, no exit event); MB = 10^6 B\n", bin.display());
        let _ = writeln!(
            out,
            "| workload | measure | ssecommander | floor (relay) | ratio | notes |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                r.workload, r.measure, r.ours, r.floor, r.ratio, r.notes
            );
        }
        print!("{out}");
        let _ = io::stdout().flush();
    }

    fn target(&self, command: &str, format: Option<&str>) -> String {
        let mut t = format!("/run?command={}", query_encode(command));
        if let Some(f) = format {
            t.push_str("&format=");
            t.push_str(f);
        }
        t
    }

    fn emitter_argv(&self, interval_us: u64, secs: f64, count_file: &Path) -> Vec<String> {
        vec![
            self.exe.display().to_string(),
            "--emit".to_owned(),
            interval_us.to_string(),
            secs.to_string(),
            count_file.display().to_string(),
        ]
    }

    // -----------------------------------------------------------------------
    // idle

    fn idle(&mut self, server: &Server, when: &str) {
        let secs = self.plan.idle_secs;
        if when == "fresh" {
            let settle = Duration::from_millis(500).saturating_sub(server.started.elapsed());
            thread::sleep(settle);
            let rss = rss_kb(server.pid).unwrap_or(0);
            self.say("idle", &format!("RSS 0.5 s after start: {rss} kB"));
            self.row(
                "idle",
                "RSS 0.5 s after start",
                format!("{:.1} MiB", rss as f64 / 1024.0),
                "",
                "",
                "",
            );
        } else {
            // Let the kernel and the server finish reaping before looking.
            thread::sleep(Duration::from_millis(500));
        }
        self.say("idle", &format!("{when}: watching {secs} s of idleness"));
        let before = ProcSnap::take(server.pid);
        thread::sleep(Duration::from_secs_f64(secs));
        let after = ProcSnap::take(server.pid);
        match (before, after) {
            (Some(b), Some(a)) => {
                let ticks = a.ticks - b.ticks;
                let vol = a.voluntary - b.voluntary;
                let invol = a.involuntary - b.involuntary;
                let measure = format!("wake-ups over {secs} s idle ({when})");
                let cpu_us = a.cpu_ns.saturating_sub(b.cpu_ns) / 1000;
                let ours = format!("{vol} voluntary + {invol} involuntary switches, CPU {cpu_us} µs ({ticks} ticks)");
                let notes = format!("RSS {:.1} MiB, {} threads", a.rss_kb as f64 / 1024.0, a.threads);
                self.say("idle", &format!("{ours}; {notes}"));
                self.row("idle", &measure, ours, "0 expected", "", &notes);
            }
            _ => self.row("idle", "wake-ups", "server not readable in /proc".into(), "", "", ""),
        }
    }

    /// Leaks and leftovers once the workloads are over.
    fn after(&mut self, server: &Server, fds_at_start: Option<usize>) {
        thread::sleep(Duration::from_millis(300));
        let kids = children(server.pid);
        let fds = fd_count(server.pid);
        let alive = server.alive();
        let fmt = |n: Option<usize>| n.map_or("?".to_owned(), |n| n.to_string());
        let ours = format!(
            "alive: {alive}; fds {} → {}; children left: {}",
            fmt(fds_at_start),
            fmt(fds),
            kids.len()
        );
        self.say("after", &ours);
        self.row("after", "server state", ours, "", "", "");
    }

    // -----------------------------------------------------------------------
    // W1

    fn w1_files(&self) -> Result<[W1File; 2], String> {
        let suffix = if self.plan.quick { "-quick" } else { "" };
        let a = W1File::ensure(
            &self.data,
            &format!("lines100{suffix}.txt"),
            100,
            self.plan.w1_lines100,
            "100-B lines",
        )?;
        let b = W1File::ensure(
            &self.data,
            &format!("lines64k{suffix}.txt"),
            65_536,
            self.plan.w1_lines64k,
            "64-KiB lines",
        )?;
        // Read each file once so the first repetition does not measure the disk.
        for file in [&a, &b] {
            let warmed = File::open(&file.path).and_then(|mut f| io::copy(&mut f, &mut io::sink()));
            if let Err(e) = warmed {
                return Err(format!("cannot read {}: {e}", file.path.display()));
            }
        }
        Ok([a, b])
    }

    fn w1(&mut self, server: &Server, files: &[W1File; 2]) {
        const KINDS: [&str; 4] = ["json", "raw", "relay-sse", "relay-json"];
        for file in files {
            let command = format!("cat {}", file.path.display());
            let argv: Vec<String> = vec!["cat".into(), file.path.display().to_string()];
            let mut runs: HashMap<&str, Vec<W1Run>> = HashMap::new();
            for rep in 0..self.plan.reps {
                for k in 0..KINDS.len() {
                    let kind = KINDS[(k + rep) % KINDS.len()];
                    self.say(
                        "w1",
                        &format!("{} rep {}/{}: {kind} …", file.label, rep + 1, self.plan.reps),
                    );
                    let run = match kind {
                        "json" | "raw" => {
                            let target = self.target(&command, Some(kind));
                            w1_run(server.addr, &target, Some(server.pid), file)
                        }
                        _ => {
                            let mode = if kind == "relay-sse" {
                                RelayMode::Sse
                            } else {
                                RelayMode::Json
                            };
                            match Relay::start(argv.clone(), mode) {
                                Ok(relay) => {
                                    let r = w1_run(relay.addr, "/", None, file);
                                    relay.stop();
                                    r
                                }
                                Err(e) => W1Run::failed(format!("relay: {e}")),
                            }
                        }
                    };
                    self.say(
                        "w1",
                        &format!("{} rep {}: {kind}: {}", file.label, rep + 1, run.summary()),
                    );
                    runs.entry(kind).or_default().push(run);
                }
            }
            let floor = median_of(&runs["relay-sse"], |r| r.ok().then_some(r.mbps()));
            let floor_json = median_of(&runs["relay-json"], |r| r.ok().then_some(r.mbps()));
            for kind in ["json", "raw"] {
                let rs = &runs[kind];
                let mbps = median_of(rs, |r| r.ok().then_some(r.mbps()));
                let complete = rs.iter().filter(|r| r.ok()).count();
                let cpu = median_of(rs, |r| r.cpu_cores);
                let cpu_gb = median_of(rs, |r| r.ok().then(|| r.cpu_per_gb()).flatten());
                let rss = rs.iter().filter_map(|r| r.peak_rss_kb).max();
                let per_rep: Vec<String> = rs
                    .iter()
                    .map(|r| {
                        if r.ok() {
                            format!("{:.0}", r.mbps())
                        } else {
                            "✗".into()
                        }
                    })
                    .collect();
                let mut notes = format!(
                    "per rep {}; complete {complete}/{}; server CPU {} cores, {} s per GB, peak RSS {}",
                    per_rep.join(" / "),
                    rs.len(),
                    fmt_opt(cpu, 2),
                    fmt_opt(cpu_gb, 3),
                    rss.map_or("?".into(), |kb| format!("{:.1} MiB", kb as f64 / 1024.0)),
                );
                if kind == "json" {
                    let _ = write!(
                        notes,
                        "; relay-json {} MB/s → {}",
                        fmt_opt(floor_json, 0),
                        ratio(mbps, floor_json)
                    );
                }
                let extra: Vec<String> = rs.iter().filter_map(|r| r.error.clone()).collect();
                if !extra.is_empty() {
                    let _ = write!(notes, "; errors: {}", extra.join(", "));
                }
                let wire = median_of(rs, |r| r.ok().then_some(r.wire_mbps()));
                let _ = write!(notes, "; wire {} MB/s", fmt_opt(wire, 0));
                self.row(
                    &format!(
                        "W1 `cat` {:.0} MiB of {}",
                        file.size as f64 / f64::from(1 << 20),
                        file.label
                    ),
                    &format!("format={kind}: payload MB/s"),
                    fmt_opt(mbps, 0),
                    &format!("{} (relay-sse)", fmt_opt(floor, 0)),
                    &ratio(mbps, floor),
                    &notes,
                );
            }
        }
    }

    // -----------------------------------------------------------------------
    // W2

    fn w2(&mut self, server: &Server) {
        const KINDS: [&str; 3] = ["json", "raw", "relay-sse"];
        let secs = self.plan.w2_secs;
        for interval_us in [1000u64, 50] {
            let mut runs: HashMap<&str, Vec<LatRun>> = HashMap::new();
            for rep in 0..self.plan.reps {
                for k in 0..KINDS.len() {
                    let kind = KINDS[(k + rep) % KINDS.len()];
                    self.say(
                        "w2",
                        &format!(
                            "{interval_us} µs × {secs} s rep {}/{}: {kind} …",
                            rep + 1,
                            self.plan.reps
                        ),
                    );
                    let count_file = self.data.join(format!("w2-{kind}-{interval_us}.count"));
                    let _ = fs::remove_file(&count_file);
                    let argv = self.emitter_argv(interval_us, secs, &count_file);
                    let limit = Duration::from_secs_f64(secs + 20.0);
                    let run = if kind == "relay-sse" {
                        match Relay::start(argv, RelayMode::Sse) {
                            Ok(relay) => {
                                let r = lat_run(relay.addr, "/", limit, &count_file);
                                relay.stop();
                                r
                            }
                            Err(e) => LatRun::failed(format!("relay: {e}")),
                        }
                    } else {
                        let target = self.target(&argv.join(" "), Some(kind));
                        lat_run(server.addr, &target, limit, &count_file)
                    };
                    self.say(
                        "w2",
                        &format!("{interval_us} µs rep {}: {kind}: {}", rep + 1, run.summary()),
                    );
                    runs.entry(kind).or_default().push(run);
                }
            }
            let floor = &runs["relay-sse"];
            let f50 = median_of(floor, |r| r.pct(50.0));
            let f99 = median_of(floor, |r| r.pct(99.0));
            let fmax = median_of(floor, |r| r.pct(100.0));
            for kind in ["json", "raw"] {
                let rs = &runs[kind];
                let p50 = median_of(rs, |r| r.pct(50.0));
                let p99 = median_of(rs, |r| r.pct(99.0));
                let pmax = median_of(rs, |r| r.pct(100.0));
                let lines: Vec<String> = rs
                    .iter()
                    .map(|r| format!("{}/{}", r.lines, r.sent.map_or("?".into(), |s| s.to_string())))
                    .collect();
                let events: Vec<String> = rs.iter().map(|r| r.events.to_string()).collect();
                let split: Vec<String> = rs.iter().map(|r| (r.split + r.bad).to_string()).collect();
                let p50s: Vec<String> = rs.iter().map(|r| fmt_opt(r.pct(50.0), 0)).collect();
                let mut notes = format!(
                    "p50 per rep {}; lines recv/sent {}; events {}; lines split across events {}",
                    p50s.join(" / "),
                    lines.join(", "),
                    events.join(", "),
                    split.join(", ")
                );
                let floor_lines: Vec<String> = floor
                    .iter()
                    .map(|r| format!("{}/{}", r.lines, r.sent.map_or("?".into(), |s| s.to_string())))
                    .collect();
                let _ = write!(notes, "; relay lines {}", floor_lines.join(", "));
                let errors: Vec<String> = rs.iter().chain(floor.iter()).filter_map(|r| r.error.clone()).collect();
                if !errors.is_empty() {
                    let _ = write!(notes, "; errors: {}", errors.join(", "));
                }
                self.row(
                    &format!("W2 a line every {interval_us} µs, {secs} s"),
                    &format!("format={kind}: latency p50 / p99 / max µs"),
                    format!("{} / {} / {}", fmt_opt(p50, 0), fmt_opt(p99, 0), fmt_opt(pmax, 0)),
                    &format!("{} / {} / {}", fmt_opt(f50, 0), fmt_opt(f99, 0), fmt_opt(fmax, 0)),
                    &format!("p50 {}", ratio(p50, f50)),
                    &notes,
                );
            }
        }
    }

    // -----------------------------------------------------------------------
    // W3

    fn w3(&mut self, server: &Server) {
        let n = self.plan.w3_requests;
        let target = self.target("true", None);
        let limit = Duration::from_secs(120);
        let mut floor_runs = Vec::new();
        let mut runs: Vec<(usize, bool, Vec<Load>)> = vec![
            (1, false, vec![]),
            (16, false, vec![]),
            (1, true, vec![]),
            (16, true, vec![]),
        ];
        for rep in 0..self.plan.reps {
            for k in 0..=runs.len() {
                let slot = (k + rep) % (runs.len() + 1);
                if slot == runs.len() {
                    self.say(
                        "w3",
                        &format!("{n} × true rep {}/{}: relay C=1 new conn …", rep + 1, self.plan.reps),
                    );
                    let load = match Relay::start(vec!["true".into()], RelayMode::Sse) {
                        Ok(relay) => {
                            let l = load(relay.addr, "/", n, 1, false, false, limit);
                            relay.stop();
                            l
                        }
                        Err(e) => Load::failed(format!("relay: {e}")),
                    };
                    self.say("w3", &format!("rep {}: relay: {}", rep + 1, load.summary()));
                    floor_runs.push(load);
                } else {
                    let (c, ka, ref mut list) = runs[slot];
                    let what = format!("C={c} {}", if ka { "keep-alive" } else { "new conn" });
                    self.say(
                        "w3",
                        &format!("{n} × true rep {}/{}: {what} …", rep + 1, self.plan.reps),
                    );
                    let sampler = Sampler::start(server.pid);
                    let mut l = load(server.addr, &target, n, c, ka, true, limit);
                    l.cpu_cores = sampler.finish().cpu_cores;
                    self.say("w3", &format!("rep {}: {what}: {}", rep + 1, l.summary()));
                    list.push(l);
                }
            }
        }
        let floor = median_of(&floor_runs, Load::rate);
        let floor_txt = format!(
            "{} (C=1 new conn; p50 {} ms)",
            fmt_opt(floor, 0),
            fmt_opt(median_of(&floor_runs, |l| l.pct(50.0)), 2)
        );
        for (c, ka, list) in &runs {
            let rate = median_of(list, Load::rate);
            let p50 = median_of(list, |l| l.pct(50.0));
            let p99 = median_of(list, |l| l.pct(99.0));
            let per: Vec<String> = list.iter().map(|l| fmt_opt(l.rate(), 0)).collect();
            let failed: usize = list.iter().map(|l| l.failed).sum();
            let cpu = median_of(list, |l| l.cpu_cores);
            let mut notes = format!(
                "per rep {}; latency p50 / p99 {} / {} ms; server CPU {} cores; failed {failed}",
                per.join(" / "),
                fmt_opt(p50, 2),
                fmt_opt(p99, 2),
                fmt_opt(cpu, 2)
            );
            if let Some(e) = list.iter().find_map(|l| l.first_error.clone()) {
                let _ = write!(notes, " (first: {e})");
            }
            self.row(
                &format!(
                    "W3 {n} × `true`, C={c}, {}",
                    if *ka { "keep-alive" } else { "new connection" }
                ),
                "req/s",
                fmt_opt(rate, 0),
                &floor_txt,
                &ratio(rate, floor),
                &notes,
            );
        }
    }

    // -----------------------------------------------------------------------
    // W4

    fn w4(&mut self, server: &Server) {
        let n = self.plan.w4_streams;
        let secs = self.plan.w4_secs;
        let dir = self.data.join("w4");
        let _ = fs::remove_dir_all(&dir);
        if let Err(e) = fs::create_dir_all(&dir) {
            self.row(
                "W4",
                "hold",
                format!("cannot create {}: {e}", dir.display()),
                "",
                "",
                "",
            );
            return;
        }
        let targets: Vec<String> = (0..n)
            .map(|i| {
                let argv = self.emitter_argv(100_000, secs as f64, &dir.join(format!("{i}.count")));
                self.target(&argv.join(" "), None)
            })
            .collect();
        self.say("w4", &format!("{n} streams × 10 lines/s for {secs} s …"));
        let sampler = Sampler::start(server.pid);
        let result = hold(server.addr, &targets, Duration::from_secs(secs as u64 + 30), &|what| {
            self.say("w4", what)
        });
        let usage = sampler.finish();
        let sent: u64 = (0..n)
            .filter_map(|i| fs::read_to_string(dir.join(format!("{i}.count"))).ok())
            .filter_map(|s| s.trim().parse::<u64>().ok())
            .sum();
        let counted = (0..n).filter(|i| dir.join(format!("{i}.count")).exists()).count();
        let summary = format!(
            "lines {}/{sent} ({counted} emitters reported), exit events {}/{n}, last head {:.2} s (p50 {:.0} ms), errors {:?}",
            result.lines,
            result.exits,
            result.head_ms_max / 1000.0,
            result.head_ms_p50,
            result.errors
        );
        self.say("w4", &summary);
        let measure = format!("{n} streams × 10 lines/s × {secs} s: lines received / sent");
        self.row(
            "W4 hold",
            &measure,
            format!("{} / {sent}", result.lines),
            "",
            "",
            &format!(
                "streams ended with exit {}/{n}; head p50 {:.0} ms, last {:.2} s; errors {:?}",
                result.exits,
                result.head_ms_p50,
                result.head_ms_max / 1000.0,
                result.errors
            ),
        );
        self.row(
            "W4 hold",
            "server peak RSS / CPU (cores)",
            format!(
                "{} / {}",
                usage
                    .peak_rss_kb
                    .map_or("?".into(), |kb| format!("{:.1} MiB", kb as f64 / 1024.0)),
                fmt_opt(usage.cpu_cores, 3)
            ),
            "",
            "",
            &format!(
                "wall {:.1} s; {:.0} lines/s received",
                usage.wall_s,
                result.lines as f64 / (secs as f64)
            ),
        );
    }
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) => format!("{v:.decimals$}"),
        None => "–".to_owned(),
    }
}

fn ratio(ours: Option<f64>, floor: Option<f64>) -> String {
    match (ours, floor) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".to_owned(),
    }
}

fn median_of<T>(items: &[T], f: impl Fn(&T) -> Option<f64>) -> Option<f64> {
    let mut v: Vec<f64> = items.iter().filter_map(f).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// `p`-th percentile of sorted values (nearest rank); 100 is the maximum.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    Some(sorted[rank.min(sorted.len() - 1)])
}

// ---------------------------------------------------------------------------
// W1: throughput of one long stream

struct W1File {
    path: PathBuf,
    label: &'static str,
    size: u64,
    /// Bytes that are not LF: what every format must deliver exactly.
    text_bytes: u64,
    lines: u64,
}

const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:-_=+()[]{}<>!?#%&*/|~^";

impl W1File {
    /// The file `shared/bench/gen-data.py` writes (64 variants of printable
    /// ASCII, each line prefixed with its number), made once.
    fn ensure(dir: &Path, name: &str, line_len: usize, count: usize, label: &'static str) -> Result<W1File, String> {
        let path = dir.join(name);
        let size = (line_len * count) as u64;
        let file = W1File {
            path: path.clone(),
            label,
            size,
            text_bytes: ((line_len - 1) * count) as u64,
            lines: count as u64,
        };
        if fs::metadata(&path).map(|m| m.len()).ok() == Some(size) {
            return Ok(file);
        }
        eprintln!("[e2e] generating {} ({size} B) …", path.display());
        let text = |n: usize, seed: usize| {
            let mut out = Vec::with_capacity(n + ALPHA.len());
            let mut i = seed;
            while out.len() < n {
                let r = i % ALPHA.len();
                out.extend_from_slice(&ALPHA[r..]);
                out.extend_from_slice(&ALPHA[..r]);
                i += 7;
            }
            out.truncate(n);
            out
        };
        let body = line_len - 1;
        let variants: Vec<Vec<u8>> = (0..64).map(|s| text(body, s)).collect();
        let tmp = path.with_extension("tmp");
        let write = || -> io::Result<()> {
            let mut f = BufWriter::with_capacity(1 << 22, File::create(&tmp)?);
            for i in 0..count {
                let num = format!("{i:09} ");
                f.write_all(num.as_bytes())?;
                f.write_all(&variants[i % 64][num.len()..])?;
                f.write_all(b"\n")?;
            }
            f.flush()?;
            drop(f);
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(file)
    }
}

#[derive(Default)]
struct W1Run {
    wall_s: f64,
    payload: u64,
    text: u64,
    lines: u64,
    events: u64,
    wire: u64,
    complete: bool,
    error: Option<String>,
    cpu_cores: Option<f64>,
    peak_rss_kb: Option<u64>,
    size: u64,
    /// Bytes other than LF the file holds.
    expect_text: u64,
}

impl W1Run {
    fn failed(error: String) -> W1Run {
        W1Run {
            error: Some(error),
            ..W1Run::default()
        }
    }

    fn ok(&self) -> bool {
        self.complete && self.error.is_none()
    }

    /// Payload MB/s: the file's bytes (all of them arrived) per wall second.
    fn mbps(&self) -> f64 {
        self.size as f64 / 1e6 / self.wall_s
    }

    /// The server's own CPU seconds per GB (10^9 B) of payload: what a
    /// small box has left for everything else, whatever the wall time.
    fn cpu_per_gb(&self) -> Option<f64> {
        self.cpu_cores.map(|c| c * self.wall_s / (self.size as f64 / 1e9))
    }

    fn wire_mbps(&self) -> f64 {
        self.wire as f64 / 1e6 / self.wall_s
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "{:.3} s, {:.0} MB/s payload, {:.0} MB/s wire, {} events, text {}/{} B, {} lines",
            self.wall_s,
            self.mbps(),
            self.wire_mbps(),
            self.events,
            self.text,
            self.expect_text,
            self.lines
        );
        if let (Some(c), Some(gb)) = (self.cpu_cores, self.cpu_per_gb()) {
            let _ = write!(s, ", server CPU {c:.2} ({gb:.3} s/GB)");
        }
        if let Some(kb) = self.peak_rss_kb {
            let _ = write!(s, ", peak RSS {kb} kB");
        }
        if !self.complete {
            s.push_str(", INCOMPLETE");
        }
        if let Some(e) = &self.error {
            let _ = write!(s, ", error: {e}");
        }
        s
    }
}

fn w1_run(addr: SocketAddr, target: &str, server_pid: Option<i32>, file: &W1File) -> W1Run {
    let mut run = W1Run {
        size: file.size,
        expect_text: file.text_bytes,
        ..W1Run::default()
    };
    let mut out = Vec::with_capacity(1 << 17);
    let mut exit = None;
    let mut error = None;
    let sampler = server_pid.map(Sampler::start);
    let result = get(addr, target, Duration::from_secs(120), &mut |_, name, data| {
        out.clear();
        match decode_event(name, data, &mut out) {
            Ok(Ev::Output) => {
                run.events += 1;
                run.payload += out.len() as u64;
                let lf = memchr::memchr_iter(b'\n', &out).count() as u64;
                run.lines += lf;
                run.text += out.len() as u64 - lf;
            }
            Ok(Ev::Exit(code)) => exit = Some(code),
            Ok(Ev::Error) => error = Some(format!("err event: {}", String::from_utf8_lossy(data))),
            Ok(Ev::Other) => {}
            Err(e) => error = error.take().or(Some(e)),
        }
    });
    if let Some(s) = sampler {
        let usage = s.finish();
        run.cpu_cores = usage.cpu_cores;
        run.peak_rss_kb = usage.peak_rss_kb;
    }
    match result {
        Ok((resp, wall)) => {
            run.wall_s = wall.as_secs_f64();
            run.wire = resp.wire_bytes;
            if resp.status != 200 {
                error = Some(format!("status {}", resp.status));
            }
        }
        Err(e) => error = Some(e),
    }
    if server_pid.is_some() && exit != Some(Some(0)) && error.is_none() {
        error = Some(format!("exit event {exit:?}"));
    }
    run.complete = run.text == file.text_bytes;
    if run.complete && run.lines < file.lines {
        error = error.or(Some(format!("{} line ends missing", file.lines - run.lines)));
    }
    run.error = error;
    run
}

// ---------------------------------------------------------------------------
// W2: latency of single lines

#[derive(Default)]
struct LatRun {
    lat_us: Vec<f64>,
    lines: u64,
    sent: Option<u64>,
    events: u64,
    /// Lines whose bytes came in more than one event.
    split: u64,
    /// Lines that are not a plausible stamp (raw format: a split shows so).
    bad: u64,
    error: Option<String>,
}

impl LatRun {
    fn failed(error: String) -> LatRun {
        LatRun {
            error: Some(error),
            ..LatRun::default()
        }
    }

    fn pct(&self, p: f64) -> Option<f64> {
        percentile(&self.lat_us, p)
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "lines {}/{}, events {}, split {}, bad {}, p50/p99/max {} / {} / {} µs",
            self.lines,
            self.sent.map_or("?".into(), |s| s.to_string()),
            self.events,
            self.split,
            self.bad,
            fmt_opt(self.pct(50.0), 0),
            fmt_opt(self.pct(99.0), 0),
            fmt_opt(self.pct(100.0), 0)
        );
        if let Some(e) = &self.error {
            let _ = write!(s, ", error: {e}");
        }
        s
    }
}

fn lat_run(addr: SocketAddr, target: &str, limit: Duration, count_file: &Path) -> LatRun {
    let mut run = LatRun::default();
    let start_ns = now_ns();
    let mut out = Vec::with_capacity(4096);
    let mut line: Vec<u8> = Vec::with_capacity(64);
    let mut error = None;
    let result = get(addr, target, limit, &mut |arrival, name, data| {
        out.clear();
        match decode_event(name, data, &mut out) {
            Ok(Ev::Output) => {
                run.events += 1;
                let mut carried = !line.is_empty();
                let mut rest = &out[..];
                while let Some(i) = memchr::memchr(b'\n', rest) {
                    line.extend_from_slice(&rest[..i]);
                    rest = &rest[i + 1..];
                    run.lines += 1;
                    if carried {
                        run.split += 1;
                        carried = false;
                    }
                    let stamp = std::str::from_utf8(&line).ok().and_then(|s| s.parse::<i64>().ok());
                    match stamp {
                        Some(ns) if ns >= start_ns && ns <= arrival => run.lat_us.push((arrival - ns) as f64 / 1000.0),
                        _ => run.bad += 1,
                    }
                    line.clear();
                }
                line.extend_from_slice(rest);
            }
            Ok(Ev::Error) => error = Some(format!("err event: {}", String::from_utf8_lossy(data))),
            Ok(_) => {}
            Err(e) => error = error.take().or(Some(e)),
        }
    });
    if let Err(e) = result {
        error = error.or(Some(e));
    }
    if !line.is_empty() {
        run.bad += 1;
    }
    run.lat_us.sort_by(f64::total_cmp);
    run.sent = fs::read_to_string(count_file).ok().and_then(|s| s.trim().parse().ok());
    run.error = error;
    run
}

// ---------------------------------------------------------------------------
// W3: request rate

#[derive(Default)]
struct Load {
    wall_s: f64,
    /// The server's own CPU per wall second during the run.
    cpu_cores: Option<f64>,
    ok: usize,
    failed: usize,
    first_error: Option<String>,
    lat_ms: Vec<f64>,
}

impl Load {
    fn failed(error: String) -> Load {
        Load {
            first_error: Some(error),
            failed: 1,
            ..Load::default()
        }
    }

    fn rate(&self) -> Option<f64> {
        (self.ok > 0 && self.wall_s > 0.0).then(|| self.ok as f64 / self.wall_s)
    }

    fn pct(&self, p: f64) -> Option<f64> {
        percentile(&self.lat_ms, p)
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "{} ok, {} failed in {:.2} s: {} req/s, p50 {} ms, p99 {} ms",
            self.ok,
            self.failed,
            self.wall_s,
            fmt_opt(self.rate(), 0),
            fmt_opt(self.pct(50.0), 2),
            fmt_opt(self.pct(99.0), 2)
        );
        if let Some(c) = self.cpu_cores {
            let _ = write!(s, ", server CPU {c:.2}");
        }
        if let Some(e) = &self.first_error {
            let _ = write!(s, ", first error: {e}");
        }
        s
    }
}

/// `n` requests to `target` from `c` threads; `keepalive` reuses each
/// thread's connection while the server allows it; `need_exit` requires an
/// `exit` event with code 0 (the relay sends none).
fn load(addr: SocketAddr, target: &str, n: usize, c: usize, keepalive: bool, need_exit: bool, limit: Duration) -> Load {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + limit;
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{}\r\n",
        if keepalive { "" } else { "Connection: close\r\n" }
    );
    let threads: Vec<JoinHandle<Load>> = (0..c)
        .map(|_| {
            let next = Arc::clone(&next);
            let request = request.clone();
            thread::spawn(move || {
                let mut mine = Load::default();
                let mut conn: Option<TcpStream> = None;
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    if next.fetch_add(1, Ordering::Relaxed) >= n || Instant::now() > deadline {
                        break;
                    }
                    let t = Instant::now();
                    let fail = |mine: &mut Load, e: String| {
                        mine.failed += 1;
                        mine.first_error.get_or_insert(e);
                    };
                    let mut sock = match conn.take() {
                        Some(s) => s,
                        None => match connect(addr) {
                            Ok(s) => s,
                            Err(e) => {
                                fail(&mut mine, format!("connect: {e}"));
                                continue;
                            }
                        },
                    };
                    let mut exit = None;
                    let result = exchange(
                        &mut sock,
                        request.as_bytes(),
                        deadline,
                        &mut buf,
                        &mut |_, name, data| {
                            let mut out = Vec::new();
                            if let Ok(Ev::Exit(code)) = decode_event(name, data, &mut out) {
                                exit = Some(code);
                            }
                        },
                    );
                    match result {
                        Ok(resp) if resp.status == 200 && (!need_exit || exit == Some(Some(0))) => {
                            mine.ok += 1;
                            mine.lat_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                            if keepalive && !resp.close {
                                conn = Some(sock);
                            }
                        }
                        Ok(resp) => fail(&mut mine, format!("status {}, exit {exit:?}", resp.status)),
                        Err(e) => fail(&mut mine, e),
                    }
                }
                mine
            })
        })
        .collect();
    let mut total = Load::default();
    for t in threads {
        match t.join() {
            Ok(l) => {
                total.ok += l.ok;
                total.failed += l.failed;
                total.lat_ms.extend(l.lat_ms);
                if total.first_error.is_none() {
                    total.first_error = l.first_error;
                }
            }
            Err(_) => {
                total.failed += 1;
                total.first_error.get_or_insert("client thread panicked".into());
            }
        }
    }
    total.wall_s = start.elapsed().as_secs_f64();
    total.lat_ms.sort_by(f64::total_cmp);
    total
}

// ---------------------------------------------------------------------------
// W4: many streams held at once, one mio loop

#[derive(Debug, Default)]
struct HoldResult {
    lines: u64,
    exits: usize,
    head_ms_p50: f64,
    head_ms_max: f64,
    errors: HashMap<&'static str, usize>,
}

struct Held {
    sock: Option<mio::net::TcpStream>,
    request: Vec<u8>,
    written: usize,
    resp: Response,
    head_ms: Option<f64>,
    lines: u64,
    exit: bool,
    finished: bool,
}

fn hold(addr: SocketAddr, targets: &[String], limit: Duration, say: &dyn Fn(&str)) -> HoldResult {
    use mio::{Events, Interest, Poll, Token};
    let mut result = HoldResult::default();
    let mut poll = match Poll::new() {
        Ok(p) => p,
        Err(_) => {
            result.errors.insert("poll", 1);
            return result;
        }
    };
    let start = Instant::now();
    let mut conns: Vec<Held> = Vec::with_capacity(targets.len());
    for (i, target) in targets.iter().enumerate() {
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n").into_bytes();
        let mut held = Held {
            sock: None,
            request,
            written: 0,
            resp: Response::new(),
            head_ms: None,
            lines: 0,
            exit: false,
            finished: false,
        };
        match mio::net::TcpStream::connect(addr) {
            Ok(mut s) => {
                if poll
                    .registry()
                    .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)
                    .is_ok()
                {
                    held.sock = Some(s);
                } else {
                    *result.errors.entry("register failed").or_default() += 1;
                    held.finished = true;
                }
            }
            Err(_) => {
                *result.errors.entry("connect failed").or_default() += 1;
                held.finished = true;
            }
        }
        conns.push(held);
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(4096);
    let mut open = conns.iter().filter(|c| !c.finished).count();
    let mut last_say = Instant::now();
    while open > 0 && start.elapsed() < limit {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(200))) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            *result.errors.entry("poll failed").or_default() += 1;
            break;
        }
        for ev in events.iter() {
            let Some(c) = conns.get_mut(ev.token().0) else { continue };
            if c.finished {
                continue;
            }
            let Some(sock) = c.sock.as_mut() else { continue };
            let mut err: Option<&'static str> = None;
            if ev.is_writable() && c.written < c.request.len() {
                match sock.write(&c.request[c.written..]) {
                    Ok(n) => c.written += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::NotConnected => {}
                    Err(_) => err = Some("connect failed"),
                }
            }
            if err.is_none() && (ev.is_readable() || ev.is_read_closed()) {
                loop {
                    match sock.read(&mut buf) {
                        Ok(0) => {
                            let Held { resp, lines, exit, .. } = c;
                            let _ = resp.eof(&mut |name, data| count_hold_event(name, data, &mut out, lines, exit));
                            err = Some(if !c.resp.head_done() {
                                "closed before head"
                            } else {
                                "closed mid-body"
                            });
                            break;
                        }
                        Ok(n) => {
                            let Held { resp, lines, exit, .. } = c;
                            let fed = resp.feed(&buf[..n], &mut |name, data| {
                                count_hold_event(name, data, &mut out, lines, exit)
                            });
                            if c.head_ms.is_none() && c.resp.head_done() {
                                c.head_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
                            }
                            if fed.is_err() {
                                err = Some("bad response");
                                break;
                            }
                            if c.resp.done {
                                break;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => {
                            err = Some(if c.written == 0 { "connect failed" } else { "read error" });
                            break;
                        }
                    }
                }
            }
            if err.is_some() || c.resp.done {
                if let Some(e) = err {
                    *result.errors.entry(e).or_default() += 1;
                } else if !c.exit {
                    *result.errors.entry("ended without exit").or_default() += 1;
                }
                if let Some(mut s) = c.sock.take() {
                    let _ = poll.registry().deregister(&mut s);
                }
                c.finished = true;
                open -= 1;
            }
        }
        if last_say.elapsed() >= Duration::from_secs(2) {
            last_say = Instant::now();
            let heads = conns.iter().filter(|c| c.head_ms.is_some()).count();
            let lines: u64 = conns.iter().map(|c| c.lines).sum();
            say(&format!(
                "{:.1} s: {heads}/{} heads, {lines} lines, {open} open",
                start.elapsed().as_secs_f64(),
                conns.len()
            ));
        }
    }
    let unfinished = conns.iter().filter(|c| !c.finished).count();
    if unfinished > 0 {
        result.errors.insert("unfinished at the deadline", unfinished);
    }
    result.lines = conns.iter().map(|c| c.lines).sum();
    result.exits = conns.iter().filter(|c| c.exit).count();
    let mut heads: Vec<f64> = conns.iter().filter_map(|c| c.head_ms).collect();
    heads.sort_by(f64::total_cmp);
    result.head_ms_p50 = percentile(&heads, 50.0).unwrap_or(f64::NAN);
    result.head_ms_max = percentile(&heads, 100.0).unwrap_or(f64::NAN);
    result
}

fn count_hold_event(name: &[u8], data: &[u8], out: &mut Vec<u8>, lines: &mut u64, exit: &mut bool) {
    out.clear();
    match decode_event(name, data, out) {
        Ok(Ev::Output) => *lines += memchr::memchr_iter(b'\n', out).count() as u64,
        Ok(Ev::Exit(_)) => *exit = true,
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// The HTTP / SSE client

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(sock)
}

/// Called per SSE event with the CLOCK_MONOTONIC ns of the read that
/// completed it, the event name and its data.
type OnEvent<'a> = &'a mut dyn FnMut(i64, &[u8], &[u8]);

/// One GET on a new connection, read to the end of the response.
fn get(addr: SocketAddr, target: &str, limit: Duration, on_event: OnEvent<'_>) -> Result<(Response, Duration), String> {
    let start = Instant::now();
    let mut sock = connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    );
    let mut buf = vec![0u8; 256 * 1024];
    let resp = exchange(&mut sock, request.as_bytes(), start + limit, &mut buf, on_event)?;
    Ok((resp, start.elapsed()))
}

/// Sends `request` and reads its response to the end (chunked end, length,
/// or EOF for a close-delimited body).
fn exchange(
    sock: &mut TcpStream,
    request: &[u8],
    deadline: Instant,
    buf: &mut [u8],
    on_event: OnEvent<'_>,
) -> Result<Response, String> {
    sock.write_all(request).map_err(|e| format!("write request: {e}"))?;
    let mut resp = Response::new();
    while !resp.done {
        if Instant::now() > deadline {
            return Err("response not over by the deadline".into());
        }
        match sock.read(buf) {
            Ok(0) => {
                let stamp = now_ns();
                resp.eof(&mut |name, data| on_event(stamp, name, data))?;
                break;
            }
            Ok(n) => {
                let stamp = now_ns();
                resp.feed(&buf[..n], &mut |name, data| on_event(stamp, name, data))?;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Ok(resp)
}

enum Body {
    Chunked,
    Length(u64),
    Close,
}

#[derive(Clone, Copy)]
enum Chunk {
    Size,
    Data(u64),
    /// Bytes of the CRLF after a chunk's data seen so far.
    DataEnd(u8),
    /// In the trailer section; true when the current line has content.
    Trailer(bool),
}

/// One HTTP/1.1 response read incrementally: head, body framing, SSE.
struct Response {
    head: Vec<u8>,
    status: u16,
    /// The server will close the connection after this response.
    close: bool,
    body: Option<Body>,
    chunk: Chunk,
    size_line: Vec<u8>,
    done: bool,
    wire_bytes: u64,
    sse: Sse,
}

impl Response {
    fn new() -> Response {
        Response {
            head: Vec::new(),
            status: 0,
            close: false,
            body: None,
            chunk: Chunk::Size,
            size_line: Vec::new(),
            done: false,
            wire_bytes: 0,
            sse: Sse::default(),
        }
    }

    fn head_done(&self) -> bool {
        self.body.is_some()
    }

    fn feed(&mut self, bytes: &[u8], on_event: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), String> {
        self.wire_bytes += bytes.len() as u64;
        let mut bytes = bytes;
        if self.body.is_none() {
            let old = self.head.len();
            self.head.extend_from_slice(bytes);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut headers);
            let n = match parsed.parse(&self.head) {
                Ok(httparse::Status::Partial) if self.head.len() > 16 * 1024 => {
                    return Err("response head over 16 KiB".into())
                }
                Ok(httparse::Status::Partial) => return Ok(()),
                Ok(httparse::Status::Complete(n)) => n,
                Err(e) => return Err(format!("bad response head: {e}")),
            };
            let mut body = Body::Close;
            let mut length = None;
            let mut close = parsed.version == Some(0);
            for h in parsed.headers.iter() {
                let value = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                if h.name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked") {
                    body = Body::Chunked;
                } else if h.name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<u64>().ok();
                } else if h.name.eq_ignore_ascii_case("connection") {
                    close = value.split(',').any(|t| t.trim() == "close");
                }
            }
            self.status = parsed.code.unwrap_or(0);
            if let (Body::Close, Some(len)) = (&body, length) {
                body = Body::Length(len);
            }
            if matches!(body, Body::Close) {
                close = true;
            }
            if self.status == 204 || self.status == 304 {
                body = Body::Length(0);
            }
            self.close = close;
            if let Body::Length(0) = body {
                self.done = true;
            }
            self.body = Some(body);
            self.head = Vec::new();
            bytes = &bytes[n - old..];
        }
        match self.body {
            Some(Body::Chunked) => self.feed_chunked(bytes, on_event),
            Some(Body::Length(ref mut left)) => {
                let take = (*left).min(bytes.len() as u64) as usize;
                *left -= take as u64;
                if *left == 0 {
                    self.done = true;
                }
                self.sse.feed(&bytes[..take], on_event);
                if self.done {
                    self.sse.end(on_event);
                }
                Ok(())
            }
            Some(Body::Close) => {
                self.sse.feed(bytes, on_event);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn feed_chunked(&mut self, mut bytes: &[u8], on_event: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), String> {
        while !bytes.is_empty() && !self.done {
            match self.chunk {
                Chunk::Size => match memchr::memchr(b'\n', bytes) {
                    None => {
                        self.size_line.extend_from_slice(bytes);
                        if self.size_line.len() > 1024 {
                            return Err("chunk size line over 1 KiB".into());
                        }
                        bytes = &[];
                    }
                    Some(i) => {
                        self.size_line.extend_from_slice(&bytes[..i]);
                        bytes = &bytes[i + 1..];
                        let line = String::from_utf8_lossy(&self.size_line).into_owned();
                        let hex = line.split(';').next().unwrap_or("").trim();
                        let size = u64::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size line {line:?}"))?;
                        self.size_line.clear();
                        self.chunk = if size == 0 {
                            Chunk::Trailer(false)
                        } else {
                            Chunk::Data(size)
                        };
                    }
                },
                Chunk::Data(left) => {
                    let take = left.min(bytes.len() as u64) as usize;
                    self.sse.feed(&bytes[..take], on_event);
                    bytes = &bytes[take..];
                    let left = left - take as u64;
                    self.chunk = if left == 0 {
                        Chunk::DataEnd(0)
                    } else {
                        Chunk::Data(left)
                    };
                }
                Chunk::DataEnd(seen) => {
                    if bytes[0] != b"\r\n"[seen as usize] {
                        return Err("chunk data not followed by CRLF".into());
                    }
                    bytes = &bytes[1..];
                    self.chunk = if seen == 1 { Chunk::Size } else { Chunk::DataEnd(1) };
                }
                Chunk::Trailer(content) => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    match b {
                        b'\n' if !content => {
                            self.done = true;
                            self.sse.end(on_event);
                        }
                        b'\n' => self.chunk = Chunk::Trailer(false),
                        b'\r' => {}
                        _ => self.chunk = Chunk::Trailer(true),
                    }
                }
            }
        }
        Ok(())
    }

    /// The connection was closed by the server.
    fn eof(&mut self, on_event: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        match self.body {
            Some(Body::Close) => {
                self.done = true;
                self.sse.end(on_event);
                Ok(())
            }
            Some(_) => Err("connection closed mid-body".into()),
            None => Err("connection closed before the response head".into()),
        }
    }
}

/// An incremental WHATWG event-stream parser.
#[derive(Default)]
struct Sse {
    /// The unfinished line carried over from the previous feed.
    line: Vec<u8>,
    /// The last feed ended with CR: a leading LF belongs to it.
    skip_lf: bool,
    data: Vec<u8>,
    has_data: bool,
    event: Vec<u8>,
}

impl Sse {
    fn feed(&mut self, mut bytes: &[u8], on_event: &mut dyn FnMut(&[u8], &[u8])) {
        if bytes.is_empty() {
            return;
        }
        if self.skip_lf {
            self.skip_lf = false;
            if bytes[0] == b'\n' {
                bytes = &bytes[1..];
            }
        }
        while let Some(i) = memchr::memchr2(b'\r', b'\n', bytes) {
            if self.line.is_empty() {
                self.line_done(&bytes[..i], on_event);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&bytes[..i]);
                self.line_done(&line, on_event);
                line.clear();
                self.line = line;
            }
            let cr = bytes[i] == b'\r';
            bytes = &bytes[i + 1..];
            if cr {
                match bytes.first() {
                    None => self.skip_lf = true,
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                }
            }
        }
        self.line.extend_from_slice(bytes);
    }

    /// The body ended: an unfinished event is dropped, as the spec says.
    fn end(&mut self, _on_event: &mut dyn FnMut(&[u8], &[u8])) {
        self.line.clear();
        self.data.clear();
        self.has_data = false;
    }

    fn line_done(&mut self, line: &[u8], on_event: &mut dyn FnMut(&[u8], &[u8])) {
        if line.is_empty() {
            if self.has_data {
                on_event(&self.event, &self.data);
            }
            self.data.clear();
            self.event.clear();
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            _ => {}
        }
    }
}

enum Ev {
    /// Child output, appended to `out`.
    Output,
    /// `exit`, with its code (`None` for a signal).
    Exit(Option<i64>),
    /// `err`: the command could not start.
    Error,
    Other,
}

/// What one event means; output text (JSON `out` decoded, or raw data lines
/// with their line end) is appended to `out`.
fn decode_event(name: &[u8], data: &[u8], out: &mut Vec<u8>) -> Result<Ev, String> {
    match name {
        b"exit" => {
            let at = memchr::memmem::find(data, b"\"code\":").ok_or("exit event without code")?;
            let rest = &data[at + 7..];
            let end = rest
                .iter()
                .position(|&b| !(b == b'-' || b.is_ascii_digit()))
                .unwrap_or(rest.len());
            Ok(Ev::Exit(
                std::str::from_utf8(&rest[..end]).ok().and_then(|s| s.parse().ok()),
            ))
        }
        b"err" => Ok(Ev::Error),
        b"stdout" | b"stderr" | b"" | b"message" => {
            if data.starts_with(b"{\"type\":") {
                json_out(data, out)?;
            } else {
                out.extend_from_slice(data);
                out.push(b'\n');
            }
            Ok(Ev::Output)
        }
        _ => Ok(Ev::Other),
    }
}

/// Decodes the `"out"` string of a JSON event into `out`.
fn json_out(data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let start = memchr::memmem::find(data, b"\"out\":\"").ok_or("JSON event without out")? + 7;
    let mut i = start;
    loop {
        let j = i + memchr::memchr2(b'"', b'\\', &data[i..]).ok_or("unterminated JSON string")?;
        out.extend_from_slice(&data[i..j]);
        if data[j] == b'"' {
            return Ok(());
        }
        let esc = *data.get(j + 1).ok_or("JSON escape at the end")?;
        i = j + 2;
        let simple = match esc {
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'u' => None,
            other => return Err(format!("bad JSON escape \\{}", other as char)),
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        let hex4 = |at: usize| -> Result<u32, String> {
            let h = data.get(at..at + 4).ok_or("short \\u escape")?;
            u32::from_str_radix(std::str::from_utf8(h).map_err(|_| "bad \\u escape")?, 16)
                .map_err(|_| "bad \\u escape".to_owned())
        };
        let mut cp = hex4(i)?;
        i += 4;
        if (0xD800..0xDC00).contains(&cp) && data.get(i..i + 2) == Some(b"\\u") {
            let low = hex4(i + 2)?;
            if (0xDC00..0xE000).contains(&low) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                i += 6;
            }
        }
        let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
        let mut utf8 = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
    }
}

fn query_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The floor: a pipe → socket relay

#[derive(Clone, Copy)]
enum RelayMode {
    /// One event per read, a `data:` line per complete line (`relay.c --sse`).
    Sse,
    /// One `{"type":"stdout","out":"…"}` event per read (`relay.c --json`).
    Json,
}

struct Relay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Relay {
    fn start(argv: Vec<String>, mode: RelayMode) -> io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(sock) = conn {
                    let _ = relay_one(sock, &argv, mode);
                }
            }
        });
        Ok(Relay { addr, stop, thread })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        let _ = self.thread.join();
    }
}

fn relay_one(mut sock: TcpStream, argv: &[String], mode: RelayMode) -> io::Result<()> {
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = [0u8; 8192];
    let mut got = 0;
    while got < head.len() {
        let n = sock.read(&mut head[got..])?;
        if n == 0 {
            return Ok(());
        }
        got += n;
        if memchr::memmem::find(&head[..got], b"\r\n\r\n").is_some() {
            break;
        }
    }
    sock.set_nodelay(true)?;
    sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")?;
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut pipe = child.stdout.take().expect("stdout is piped");
    let mut buf = vec![0u8; 64 * 1024];
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024 * 8);
    let mut have = 0;
    let copied = (|| -> io::Result<()> {
        loop {
            let n = match pipe.read(&mut buf[have..]) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let eof = n == 0;
            have += n;
            out.clear();
            let mut used = relay_frame(mode, &buf[..have], eof, &mut out);
            if used == 0 && have == buf.len() {
                // One line over 64 KiB: flush it as it is.
                used = relay_frame(mode, &buf[..have], true, &mut out);
            }
            if !out.is_empty() {
                sock.write_all(&out)?;
            }
            buf.copy_within(used..have, 0);
            have -= used;
            if eof {
                return Ok(());
            }
        }
    })();
    drop(pipe);
    // Our own child, by PID; it has normally exited already.
    let _ = child.kill();
    let _ = child.wait();
    copied
}

/// Frames `buf` as one event into `out`; returns the bytes consumed
/// (complete lines, or everything at EOF).
fn relay_frame(mode: RelayMode, buf: &[u8], at_eof: bool, out: &mut Vec<u8>) -> usize {
    let used = if at_eof {
        buf.len()
    } else {
        memchr::memrchr(b'\n', buf).map_or(0, |i| i + 1)
    };
    if used == 0 {
        return 0;
    }
    match mode {
        RelayMode::Sse => {
            let mut rest = &buf[..used];
            while !rest.is_empty() {
                let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&rest[..end]);
                out.push(b'\n');
                rest = &rest[(end + 1).min(rest.len())..];
            }
            out.push(b'\n');
        }
        RelayMode::Json => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"data: {\"type\":\"stdout\",\"out\":\"");
            let text = &buf[..used];
            let mut run = 0;
            for (i, &b) in text.iter().enumerate() {
                if b >= 0x20 && b != b'"' && b != b'\\' {
                    continue;
                }
                out.extend_from_slice(&text[run..i]);
                run = i + 1;
                match b {
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    _ => out.extend_from_slice(&[
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[(b >> 4) as usize],
                        HEX[(b & 15) as usize],
                    ]),
                }
            }
            out.extend_from_slice(&text[run..]);
            out.extend_from_slice(b"\"}\n\n");
        }
    }
    used
}

// ---------------------------------------------------------------------------
// The server under test

struct Server {
    child: Child,
    _stdout: ChildStdout,
    pid: i32,
    addr: SocketAddr,
    started: Instant,
    stopped: bool,
}

impl Server {
    fn start(bin: &Path, log: &Path) -> Result<Server, String> {
        let log_file = File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let mut cmd = Command::new(bin);
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--no-auth",
            "--max-procs",
            "20000",
            "--max-conns",
            "20000",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and writes no
        // memory; it makes the server get SIGTERM if this bench dies first.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let res = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send((res, reader.into_inner()));
        });
        let pid = child.id() as i32;
        let fail = |mut child: Child, msg: String| {
            // SAFETY: kill() takes a pid we spawned and a signal number.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = child.wait();
            Err(format!("{msg}; server log: {}", log.display()))
        };
        let (line, stdout) = match rx.recv_timeout(Duration::from_secs(5)) {
            Ok((Ok(line), stdout)) => (line, stdout),
            Ok((Err(e), _)) => return fail(child, format!("reading the server's stdout: {e}")),
            Err(_) => return fail(child, "the server printed no URL line within 5 s".into()),
        };
        let addr = line
            .trim()
            .strip_prefix("ssecommander listening on http://")
            .and_then(|rest| rest.split('/').next())
            .and_then(|hostport| hostport.parse::<SocketAddr>().ok());
        match addr {
            Some(addr) => Ok(Server {
                child,
                _stdout: stdout,
                pid,
                addr,
                started,
                stopped: false,
            }),
            None => fail(child, format!("unexpected URL line {line:?}")),
        }
    }

    fn alive(&self) -> bool {
        // SAFETY: signal 0 only checks that the pid exists.
        unsafe { libc::kill(self.pid, 0) == 0 }
    }

    /// SIGTERM, then SIGKILL after 5 s; says how it went.
    fn stop(&mut self) -> String {
        self.stopped = true;
        let t = Instant::now();
        // SAFETY: kill() takes the pid we spawned and a signal number.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        while t.elapsed() < Duration::from_secs(5) {
            match self.child.try_wait() {
                Ok(Some(status)) => return format!("{status} after {} ms", t.elapsed().as_millis()),
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(e) => return format!("wait failed: {e}"),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        "still running 5 s after SIGTERM: killed".into()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.stopped {
            self.stop();
        }
    }
}

// ---------------------------------------------------------------------------
// /proc and the clock

fn now_ns() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec that we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU time of the process itself in ns: from `/proc/PID/schedstat` (ns
/// resolution), else utime + stime (clock-tick resolution).
fn cpu_ns(pid: i32) -> Option<u64> {
    let precise = fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
    precise.or_else(|| cpu_ticks(pid).map(|t| (t as f64 * 1e9 / clk_tck()) as u64))
}

/// utime + stime of the process itself, in clock ticks.
fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the line; the first after ')' is field 3.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn status_fields(pid: i32) -> Option<HashMap<String, u64>> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(
        status
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.to_owned(), v.split_whitespace().next()?.parse().ok()?))
            })
            .collect(),
    )
}

fn rss_kb(pid: i32) -> Option<u64> {
    status_fields(pid)?.get("VmRSS").copied()
}

fn fd_count(pid: i32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

fn children(pid: i32) -> Vec<i32> {
    let mut kids = Vec::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("children")) {
                kids.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    kids
}

struct ProcSnap {
    ticks: u64,
    cpu_ns: u64,
    voluntary: u64,
    involuntary: u64,
    rss_kb: u64,
    threads: u64,
}

impl ProcSnap {
    fn take(pid: i32) -> Option<ProcSnap> {
        let st = status_fields(pid)?;
        Some(ProcSnap {
            ticks: cpu_ticks(pid)?,
            cpu_ns: cpu_ns(pid)?,
            voluntary: *st.get("voluntary_ctxt_switches")?,
            involuntary: *st.get("nonvoluntary_ctxt_switches")?,
            rss_kb: *st.get("VmRSS")?,
            threads: *st.get("Threads")?,
        })
    }
}

struct Usage {
    peak_rss_kb: Option<u64>,
    cpu_cores: Option<f64>,
    wall_s: f64,
}

/// Samples a process's RSS every 200 ms; CPU is measured from start to finish.
struct Sampler {
    pid: i32,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Option<u64>>,
    cpu_ns: Option<u64>,
    start: Instant,
}

impl Sampler {
    fn start(pid: i32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut peak = None;
            // Bounded: 1 hour of samples at most.
            for _ in 0..18_000 {
                if let Some(kb) = rss_kb(pid) {
                    peak = peak.max(Some(kb));
                }
                for _ in 0..20 {
                    if flag.load(Ordering::Relaxed) {
                        return peak;
                    }
                    thread::sleep(Duration::from_millis(10));
                }
            }
            peak
        });
        Sampler {
            pid,
            stop,
            thread,
            cpu_ns: cpu_ns(pid),
            start: Instant::now(),
        }
    }

    fn finish(self) -> Usage {
        let wall_s = self.start.elapsed().as_secs_f64();
        let cpu = cpu_ns(self.pid);
        let last = rss_kb(self.pid);
        self.stop.store(true, Ordering::Relaxed);
        let peak = self.thread.join().ok().flatten().max(last);
        let cpu_cores = match (self.cpu_ns, cpu) {
            (Some(a), Some(b)) if wall_s > 0.0 => Some((b - a) as f64 / 1e9 / wall_s),
            _ => None,
        };
        Usage {
            peak_rss_kb: peak,
            cpu_cores,
            wall_s,
        }
    }
}

fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one rlimit that we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

// ---------------------------------------------------------------------------
// The emitter (`e2e --emit INTERVAL_US SECS [COUNT_FILE]`)

/// Writes `<CLOCK_MONOTONIC ns>\n` every INTERVAL_US µs for SECS s, one
/// `write(2)` per line, on absolute deadlines (a late line goes at once and
/// the schedule goes on), like `shared/bench/emitter.c`; then writes the
/// number of lines to COUNT_FILE. Exit status 0, 1 on a write error.
fn emit(args: &[String]) -> i32 {
    let interval_us = args.first().and_then(|a| a.parse::<i64>().ok()).filter(|&v| v > 0);
    let secs = args
        .get(1)
        .and_then(|a| a.parse::<f64>().ok())
        .filter(|&v| v > 0.0 && v < 3600.0);
    let (Some(interval_us), Some(secs)) = (interval_us, secs) else {
        eprintln!("usage: e2e --emit INTERVAL_US SECS [COUNT_FILE]");
        return 2;
    };
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes integers and writes no memory.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
    let interval = interval_us * 1000;
    let start = now_ns();
    let end = start + (secs * 1e9) as i64;
    let mut next = start;
    let mut sent: u64 = 0;
    let mut status = 0;
    loop {
        let mut t = now_ns();
        if t >= end {
            break;
        }
        if t < next {
            let dl = libc::timespec {
                tv_sec: next / 1_000_000_000,
                tv_nsec: next % 1_000_000_000,
            };
            // SAFETY: clock_nanosleep reads one timespec we own; no remainder.
            while unsafe {
                libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &dl, std::ptr::null_mut())
            } == libc::EINTR
            {}
            t = now_ns();
        }
        let mut line = [0u8; 24];
        let mut cursor = io::Cursor::new(&mut line[..]);
        let _ = writeln!(cursor, "{t}");
        let len = cursor.position() as usize;
        let mut off = 0;
        while off < len {
            // SAFETY: write() reads `len - off` bytes of our stack buffer.
            let w = unsafe { libc::write(1, line[off..].as_ptr().cast(), len - off) };
            if w < 0 {
                if io::Error::last_os_error().kind() == ErrorKind::Interrupted {
                    continue;
                }
                status = 1;
                break;
            }
            off += w as usize;
        }
        if status != 0 {
            break;
        }
        sent += 1;
        next += interval;
    }
    if let Some(path) = args.get(2) {
        let _ = fs::write(path, format!("{sent}\n"));
    }
    status
}
