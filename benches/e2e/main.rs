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
//! (SIGTERM, SIGKILL after 5 s): the tests' guard,
//! `ssecommander::harness::server::Server`. Children are only ever signalled
//! by PID.
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
//! The client: std `TcpStream` (a mio loop for W4) here, the bytes read
//! through `ssecommander::client` — the head parsed by `httparse`, the body
//! de-chunked, SSE parsed the WHATWG way (CR, LF, CRLF, `data:` lines
//! joined, one leading space dropped), JSON `out` strings decoded (escapes
//! and `\u` surrogates) — payload bytes counted and checked against what the
//! command wrote.
//!
//! # Files
//!
//! `main.rs` (plan, run order, server), one file a workload (`w1.rs`,
//! `latency.rs` W2, `load.rs` W3, `hold.rs` W4, `idle.rs`), and their tools:
//! `http.rs` (a request, its response through the client), `relay.rs` (the
//! floor), `sample.rs` (CPU and RSS from /proc), `report.rs` (progress and
//! the table), `emit.rs` (the W2/W4 emitter).
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

mod emit;
mod hold;
mod http;
mod idle;
mod latency;
mod load;
mod relay;
mod report;
mod sample;
mod w1;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use ssecommander::harness::procfs::fd_count;
use ssecommander::harness::server::Server;
use ssecommander::http::query;

use emit::emit;
use report::Row;

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
    let _ = ssecommander::sys::raise_nofile_limit();

    let mut bench = Bench {
        plan,
        clock: Instant::now(),
        rows: Vec::new(),
        exe,
        data,
    };
    bench.say("setup", &format!("server {}", bin.display()));
    let log = bench.data.join("e2e-server.log");
    let mut server = start_server(&bin, log)?;
    bench.say("setup", &format!("server pid {} on {}", server.pid(), server.addr));
    let fds_at_start = fd_count(server.pid());

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
    let stopped = match server.stop() {
        s if s.killed => "still running 5 s after SIGTERM: killed".to_owned(),
        s => format!("{} after {} ms", s.status, s.took.as_millis()),
    };
    bench.say("shutdown", &stopped);
    bench.row("shutdown", "SIGTERM → exit", stopped, "", "", "");
    bench.print_table(&bin);
    Ok(())
}

struct Bench {
    plan: Plan,
    clock: Instant,
    rows: Vec<Row>,
    exe: PathBuf,
    data: PathBuf,
}

impl Bench {
    fn target(&self, command: &str, format: Option<&str>) -> String {
        let mut t = format!("/run?command={}", query::encode(command));
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
}

/// Starts the server under test for the whole run: `--no-auth` and limits
/// high enough for W4, its stderr into `log`.
fn start_server(bin: &Path, log: PathBuf) -> Result<Server, String> {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--no-auth",
        "--max-procs",
        "20000",
        "--max-conns",
        "20000",
    ]);
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and writes no
    // memory; it makes the server get SIGTERM if this bench dies first.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    Server::spawn(cmd, log)
}
