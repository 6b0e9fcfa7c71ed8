//! W2: per-line latency of an emitter's lines.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ssecommander::harness::server::Server;

use crate::http::{decode_event, get, Ev};
use crate::relay::{Relay, RelayMode};
use crate::report::{fmt_opt, median_of, percentile, ratio};
use crate::sample::now_ns;
use crate::Bench;

impl Bench {
    pub(crate) fn w2(&mut self, server: &Server) {
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
}

#[derive(Default)]
pub(crate) struct LatRun {
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
    pub(crate) fn failed(error: String) -> LatRun {
        LatRun {
            error: Some(error),
            ..LatRun::default()
        }
    }

    pub(crate) fn pct(&self, p: f64) -> Option<f64> {
        percentile(&self.lat_us, p)
    }

    pub(crate) fn summary(&self) -> String {
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

pub(crate) fn lat_run(addr: SocketAddr, target: &str, limit: Duration, count_file: &Path) -> LatRun {
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
