//! The report: progress lines on stderr, the markdown table on stdout, and
//! the statistics its cells are made of.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

use crate::Bench;

pub(crate) struct Row {
    workload: String,
    measure: String,
    ours: String,
    floor: String,
    ratio: String,
    notes: String,
}

impl Bench {
    pub(crate) fn say(&self, workload: &str, what: &str) {
        eprintln!("[e2e {:>6.1}s] {workload}: {what}", self.clock.elapsed().as_secs_f64());
    }

    pub(crate) fn row(&mut self, workload: &str, measure: &str, ours: String, floor: &str, ratio: &str, notes: &str) {
        self.rows.push(Row {
            workload: workload.to_owned(),
            measure: measure.to_owned(),
            ours,
            floor: floor.to_owned(),
            ratio: ratio.to_owned(),
            notes: notes.to_owned(),
        });
    }

    pub(crate) fn print_table(&self, bin: &Path) {
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
}

pub(crate) fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) => format!("{v:.decimals$}"),
        None => "–".to_owned(),
    }
}

pub(crate) fn ratio(ours: Option<f64>, floor: Option<f64>) -> String {
    match (ours, floor) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".to_owned(),
    }
}

pub(crate) fn median_of<T>(items: &[T], f: impl Fn(&T) -> Option<f64>) -> Option<f64> {
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
pub(crate) fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    Some(sorted[rank.min(sorted.len() - 1)])
}
