//! The result of a bench run, as a table for people or one JSON object for
//! scripts, and the progress line.

use std::fmt::Write;

use super::args::Plan;
use super::run::{Outcome, Progress};
use super::stats::Histogram;

/// MB as the referee counts it: 10^6 bytes.
const MB: f64 = 1e6;

fn per_second(count: f64, outcome: &Outcome) -> f64 {
    let secs = outcome.elapsed.as_secs_f64();
    if secs > 0.0 {
        count / secs
    } else {
        0.0
    }
}

/// The progress line (without line end).
pub fn progress_line(p: &Progress) -> String {
    format!(
        "{:6.1} s  streams {}/{} open  events {}  payload {:.1} MB  failed {}",
        p.elapsed.as_secs_f64(),
        p.open,
        p.streams,
        p.events,
        p.payload_bytes as f64 / MB,
        p.failed
    )
}

fn ms(ns: Option<u64>) -> String {
    ns.map_or_else(|| "-".to_owned(), |ns| format!("{:.2} ms", ns as f64 / 1e6))
}

fn us(ns: Option<u64>) -> String {
    ns.map_or_else(|| "-".to_owned(), |ns| format!("{:.0} µs", ns as f64 / 1e3))
}

/// The table `ssecommander bench` prints.
pub fn table(plan: &Plan, outcome: &Outcome) -> String {
    let t = &outcome.totals;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ssecommander bench: {} stream(s) of `{}` against {} ({})",
        plan.streams,
        plan.command,
        plan.url.redacted(),
        outcome.addr
    );
    let _ = writeln!(
        out,
        "streams      {} completed, {} cut at the deadline ({:.1} s), {} failed",
        t.completed,
        t.cut,
        plan.duration.as_secs_f64(),
        t.failed()
    );
    let _ = writeln!(out, "elapsed      {:.3} s", outcome.elapsed.as_secs_f64());
    let _ = writeln!(
        out,
        "events       {} ({:.1}/s); {} output, {} comments",
        t.events,
        per_second(t.events as f64, outcome),
        t.output_events,
        t.comments
    );
    let _ = writeln!(
        out,
        "payload      {:.3} MB ({:.3} MB/s), {} lines; wire {:.3} MB",
        t.payload_bytes as f64 / MB,
        per_second(t.payload_bytes as f64, outcome) / MB,
        t.lines,
        t.wire_bytes as f64 / MB
    );
    let _ = writeln!(
        out,
        "first byte   p50 {}   p99 {}",
        ms(t.first_byte.quantile(0.5)),
        ms(t.first_byte.quantile(0.99))
    );
    if t.latency.count() > 0 {
        let _ = writeln!(
            out,
            "latency      p50 {}   p99 {}   ({} timestamped lines)",
            us(t.latency.quantile(0.5)),
            us(t.latency.quantile(0.99)),
            t.latency.count()
        );
    } else {
        let _ = writeln!(
            out,
            "latency      - (no line was a CLOCK_MONOTONIC nanosecond timestamp)"
        );
    }
    let errors = if t.failures.is_empty() {
        "none".to_owned()
    } else {
        t.failures
            .iter()
            .map(|(why, n)| format!("{}: {n}", why.class()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "errors       {errors}");
    out
}

/// `s` as a JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.3}"),
        _ => "null".to_owned(),
    }
}

fn quantiles(h: &Histogram, unit: f64) -> String {
    format!(
        "{{\"count\":{},\"p50\":{},\"p99\":{}}}",
        h.count(),
        json_num(h.quantile(0.5).map(|v| v as f64 / unit)),
        json_num(h.quantile(0.99).map(|v| v as f64 / unit))
    )
}

/// The one JSON object of `--json`.
pub fn json(plan: &Plan, outcome: &Outcome) -> String {
    let t = &outcome.totals;
    let errors = t
        .failures
        .iter()
        .map(|(why, n)| format!("{}:{n}", json_str(&why.class())))
        .collect::<Vec<_>>()
        .join(",");
    let fields = [
        ("url", json_str(&plan.url.redacted())),
        ("addr", json_str(&outcome.addr.to_string())),
        ("command", json_str(&plan.command)),
        ("format", plan.format.as_deref().map_or("null".to_owned(), json_str)),
        ("streams", plan.streams.to_string()),
        ("duration_s", json_num(Some(plan.duration.as_secs_f64()))),
        ("elapsed_s", json_num(Some(outcome.elapsed.as_secs_f64()))),
        ("completed", t.completed.to_string()),
        ("cut", t.cut.to_string()),
        ("failed", t.failed().to_string()),
        ("events", t.events.to_string()),
        ("output_events", t.output_events.to_string()),
        ("comments", t.comments.to_string()),
        ("events_per_s", json_num(Some(per_second(t.events as f64, outcome)))),
        ("payload_bytes", t.payload_bytes.to_string()),
        (
            "payload_MBps",
            json_num(Some(per_second(t.payload_bytes as f64, outcome) / MB)),
        ),
        ("lines", t.lines.to_string()),
        ("wire_bytes", t.wire_bytes.to_string()),
        ("first_byte_ms", quantiles(&t.first_byte, 1e6)),
        ("latency_us", quantiles(&t.latency, 1e3)),
        ("future_stamps", t.future_stamps.to_string()),
        ("unfinished_events", t.unfinished_events.to_string()),
        ("errors", format!("{{{errors}}}")),
    ];
    let body = fields
        .iter()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect::<Vec<_>>()
        .join(",");
    format!("{{{body}}}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\u000a\\u0001é\"");
        assert_eq!(json_num(Some(f64::NAN)), "null");
    }
}
