//! `idle`: RSS after start, wake-ups and CPU over idle seconds, and what is
//! left (fds, children) once the workloads are over.

use std::thread;
use std::time::Duration;

use ssecommander::harness::procfs::{self, fd_count, rss_kib as rss_kb};
use ssecommander::harness::server::Server;

use crate::sample::ProcSnap;
use crate::Bench;

impl Bench {
    pub(crate) fn idle(&mut self, server: &Server, when: &str) {
        let secs = self.plan.idle_secs;
        if when == "fresh" {
            let settle = Duration::from_millis(500).saturating_sub(server.started().elapsed());
            thread::sleep(settle);
            let rss = rss_kb(server.pid()).unwrap_or(0);
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
        let before = ProcSnap::take(server.pid());
        thread::sleep(Duration::from_secs_f64(secs));
        let after = ProcSnap::take(server.pid());
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
    pub(crate) fn after(&mut self, server: &Server, fds_at_start: Option<usize>) {
        thread::sleep(Duration::from_millis(300));
        let kids = procfs::children_of(server.pid());
        let fds = fd_count(server.pid());
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
}
