//! W1: payload throughput of one long stream (`cat` of a big file), every
//! byte checked.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ssecommander::harness::server::Server;

use crate::http::{decode_event, get, Ev};
use crate::relay::{Relay, RelayMode};
use crate::report::{fmt_opt, median_of, ratio};
use crate::sample::Sampler;
use crate::Bench;

impl Bench {
    pub(crate) fn w1_files(&self) -> Result<[W1File; 2], String> {
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

    pub(crate) fn w1(&mut self, server: &Server, files: &[W1File; 2]) {
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
                            w1_run(server.addr, &target, Some(server.pid()), file)
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
}

pub(crate) struct W1File {
    path: PathBuf,
    label: &'static str,
    size: u64,
    /// Bytes that are not LF: what every format must deliver exactly.
    text_bytes: u64,
    lines: u64,
}

pub(crate) const ALPHA: &[u8] =
    b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:-_=+()[]{}<>!?#%&*/|~^";

impl W1File {
    /// The file `shared/bench/gen-data.py` writes (64 variants of printable
    /// ASCII, each line prefixed with its number), made once.
    pub(crate) fn ensure(
        dir: &Path,
        name: &str,
        line_len: usize,
        count: usize,
        label: &'static str,
    ) -> Result<W1File, String> {
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
pub(crate) struct W1Run {
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
    pub(crate) fn failed(error: String) -> W1Run {
        W1Run {
            error: Some(error),
            ..W1Run::default()
        }
    }

    pub(crate) fn ok(&self) -> bool {
        self.complete && self.error.is_none()
    }

    /// Payload MB/s: the file's bytes (all of them arrived) per wall second.
    pub(crate) fn mbps(&self) -> f64 {
        self.size as f64 / 1e6 / self.wall_s
    }

    /// The server's own CPU seconds per GB (10^9 B) of payload: what a
    /// small box has left for everything else, whatever the wall time.
    pub(crate) fn cpu_per_gb(&self) -> Option<f64> {
        self.cpu_cores.map(|c| c * self.wall_s / (self.size as f64 / 1e9))
    }

    pub(crate) fn wire_mbps(&self) -> f64 {
        self.wire as f64 / 1e6 / self.wall_s
    }

    pub(crate) fn summary(&self) -> String {
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

pub(crate) fn w1_run(addr: SocketAddr, target: &str, server_pid: Option<u32>, file: &W1File) -> W1Run {
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
