//! What the server costs while a workload runs: CPU time and RSS, read from
//! /proc through `ssecommander::harness::procfs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ssecommander::harness::procfs::{self, cpu_ticks, rss_kib as rss_kb, status_fields};

/// CLOCK_MONOTONIC in ns: the emitter's clock, so stamps compare across processes.
pub(crate) fn now_ns() -> i64 {
    ssecommander::sys::monotonic_ns() as i64
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
fn cpu_ns(pid: u32) -> Option<u64> {
    procfs::schedstat_ns(pid).or_else(|| cpu_ticks(pid).map(|t| (t as f64 * 1e9 / clk_tck()) as u64))
}

pub(crate) struct ProcSnap {
    pub(crate) ticks: u64,
    pub(crate) cpu_ns: u64,
    pub(crate) voluntary: u64,
    pub(crate) involuntary: u64,
    pub(crate) rss_kb: u64,
    pub(crate) threads: u64,
}

impl ProcSnap {
    pub(crate) fn take(pid: u32) -> Option<ProcSnap> {
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

pub(crate) struct Usage {
    pub(crate) peak_rss_kb: Option<u64>,
    pub(crate) cpu_cores: Option<f64>,
    pub(crate) wall_s: f64,
}

/// Samples a process's RSS every 200 ms; CPU is measured from start to finish.
pub(crate) struct Sampler {
    pid: u32,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Option<u64>>,
    cpu_ns: Option<u64>,
    start: Instant,
}

impl Sampler {
    pub(crate) fn start(pid: u32) -> Sampler {
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

    pub(crate) fn finish(self) -> Usage {
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
