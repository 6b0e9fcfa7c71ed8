//! POSIX word splitting of `/run` command lines (`ssecommander::argv::split`),
//! reported as `Throughput::Bytes` of command line.
//!
//! - `argv/typical`: what people type into the page: a program, a few flags,
//!   one quoted pattern, paths.
//! - `argv/quote_heavy`: single and double quotes, escaped quotes, backslash
//!   escapes, `'\''` joins, empty words, a line continuation.
//!
//! Run: `cargo bench --bench argv`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ssecommander::argv::split;

const TYPICAL: &str = "grep -rn --color=never -e \"fn main\" src/ tests/ benches/";

const QUOTE_HEAVY: &str = r#"sh -c 'for f in "$@"; do printf "%s\t%s\n" "$f" "$(wc -c < "$f")"; done' _ "a file with spaces.txt" 'it'\''s "quoted"' C:\\Users\\me\ \(copy\) "say \"hi\" \\ \$HOME \`x\`" '' "" mixed'single'"double"bare \
 --flag="a b"=c 'tab	inside' ünïcödé\ wörd"#;

fn words(c: &mut Criterion) {
    let mut group = c.benchmark_group("argv");
    for (name, line, count) in [("typical", TYPICAL, 8), ("quote_heavy", QUOTE_HEAVY, 14)] {
        let got = split(line).expect("the bench lines are valid");
        assert_eq!(got.len(), count, "{name}: {got:?}");
        group.throughput(Throughput::Bytes(line.len() as u64));
        group.bench_function(name, |b| b.iter(|| split(black_box(line)).map(|w| w.len())));
    }
    group.finish();
}

fn short() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = short();
    targets = words
}
criterion_main!(benches);
