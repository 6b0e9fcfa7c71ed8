//! Request-head parsing (`ssecommander::http::request::parse`), reported as
//! `Throughput::Bytes` of head.
//!
//! - `head/chromium_eventsource`: the head Chromium sends for
//!   `new EventSource("/run?command=…")` from the built-in page: Host, Accept:
//!   text/event-stream, Cache-Control, User-Agent, client hints, Cookie
//!   carrying the token, Referer… (~1 KiB, 17 headers).
//! - `head/curl`: `curl -N` (4 headers): the cheap end.
//! - `head/chromium_partial`: the same Chromium head cut before its blank
//!   line, i.e. the `Partial` answer a head split across reads gets.
//!
//! Run: `cargo bench --bench head`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ssecommander::http::request::{parse, Parsed};

const CHROMIUM: &[u8] = b"GET /run?command=tail%20-n%20200%20-f%20%2Fvar%2Flog%2Fsyslog&format=json HTTP/1.1\r\n\
Host: 127.0.0.1:3000\r\n\
Connection: keep-alive\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n\
Accept: text/event-stream\r\n\
sec-ch-ua: \"Google Chrome\";v=\"131\", \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
Sec-Fetch-Site: same-origin\r\n\
Sec-Fetch-Mode: cors\r\n\
Sec-Fetch-Dest: empty\r\n\
Referer: http://127.0.0.1:3000/\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-GB,en-US;q=0.9,en;q=0.8,fr;q=0.7\r\n\
Cookie: _ga=GA1.1.1234567890.1700000000; theme=dark; ssecommander_token=q3Jk0vX9bYtQ2mN8rL5wZA; _ga_XYZ=GS1.1.1700000000.3.1.1700000100.0.0.0\r\n\
Pragma: no-cache\r\n\
\r\n";

const CURL: &[u8] = b"GET /run?command=echo%20hello HTTP/1.1\r\n\
Host: 127.0.0.1:3000\r\n\
User-Agent: curl/8.11.0\r\n\
Accept: */*\r\n\
Authorization: Bearer q3Jk0vX9bYtQ2mN8rL5wZA\r\n\
\r\n";

fn complete(head: &[u8]) -> usize {
    match parse(head) {
        // The owned `Head` is built and dropped here, as the server does.
        Ok(Parsed::Complete(head, len)) => {
            black_box(head);
            len
        }
        other => panic!("the bench head must parse completely, got {other:?}"),
    }
}

fn heads(c: &mut Criterion) {
    let mut group = c.benchmark_group("head");
    for (name, head) in [("chromium_eventsource", CHROMIUM), ("curl", CURL)] {
        assert_eq!(complete(head), head.len(), "{name}: the whole buffer is the head");
        group.throughput(Throughput::Bytes(head.len() as u64));
        group.bench_function(name, |b| b.iter(|| complete(black_box(head))));
    }
    let partial = &CHROMIUM[..CHROMIUM.len() - 2];
    assert_eq!(parse(partial), Ok(Parsed::Partial));
    group.throughput(Throughput::Bytes(partial.len() as u64));
    group.bench_function("chromium_partial", |b| {
        b.iter(|| matches!(parse(black_box(partial)), Ok(Parsed::Partial)))
    });
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
    targets = heads
}
criterion_main!(benches);
