use super::*;

fn encode(format: Format, text: &[u8]) -> String {
    let mut enc = Encoder::new(format);
    let frame = enc.output(Stream::Stdout, text);
    String::from_utf8(frame.to_vec(text, false)).expect("frames are UTF-8")
}

#[test]
fn short_copies_append_every_run_whole() {
    // Every run of a 300-byte text up to 200 bytes long, from every start:
    // lengths through three 64-byte blocks and each tail size, runs whose
    // window reaches past the text's end (the block copy then), each onto a
    // vector that already holds bytes and followed by a second run, which
    // must land right after the first (over the bytes read past it).
    let text: Vec<u8> = (0..300u32).map(|i| (i * 37 % 251) as u8).collect();
    for len in 0..=200 {
        for start in 0..=text.len() - len {
            let end = start + len;
            let mut want = b"head".to_vec();
            want.extend_from_slice(&text[start..end]);
            want.extend_from_slice(&text[..3]);
            let mut got = b"head".to_vec();
            frame::push_run(&mut got, &text, start, end);
            frame::push_run(&mut got, &text, 0, 3);
            assert_eq!(got, want, "push_run, {start}..{end}");
            // The musl-only copies, checked on every build.
            let mut got = b"head".to_vec();
            frame::push_window(&mut got, &text, start, end);
            frame::push_window(&mut got, &text, 0, 3);
            assert_eq!(got, want, "push_window, {start}..{end}");
            if start == 0 {
                let mut got = b"head".to_vec();
                frame::push_blocks(&mut got, &text[start..end]);
                frame::push_blocks(&mut got, &text[..3]);
                assert_eq!(got, want, "push_blocks, length {len}");
            }
        }
    }
}

#[test]
fn json_seed_case() {
    assert_eq!(
        encode(Format::Json, b"hello\n"),
        "id: 1\nevent: stdout\ndata: {\"type\":\"stdout\",\"out\":\"hello\\n\"}\n\n"
    );
}

#[test]
fn json_escapes_controls_quotes_and_invalid_bytes() {
    let text = b"a\"b\\c\td\re\x01f\x1f\x7f\xffg\xe2\x82\xac\n";
    let got = encode(Format::Json, text);
    let data = got.lines().nth(2).expect("data line");
    let want = "data: {\"type\":\"stdout\",\"out\":\"a\\\"b\\\\c\\td\\re\\u0001f\\u001f\u{7f}\u{FFFD}g€\\n\"}";
    assert_eq!(data, want);
}

#[test]
fn json_long_runs_cross_words() {
    let text = b"0123456789abcdefghij\"klmnopqrstuvwxyz0123456789\n";
    let got = encode(Format::Json, text);
    assert!(got.contains("0123456789abcdefghij\\\"klmnopqrstuvwxyz0123456789\\n"));
}

#[test]
fn raw_lines_and_line_ends() {
    assert_eq!(
        encode(Format::Raw, b"a\nb\r\nc\rd\n"),
        "id: 1\nevent: stdout\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    );
    assert_eq!(
        encode(Format::Raw, b"a\n\nb\n"),
        "id: 1\nevent: stdout\ndata: a\ndata: \ndata: b\n\n"
    );
    assert_eq!(encode(Format::Raw, b"\n"), "id: 1\nevent: stdout\ndata: \n\n");
    assert_eq!(
        encode(Format::Raw, b"x\xffy\n"),
        "id: 1\nevent: stdout\ndata: x\u{FFFD}y\n\n"
    );
}

#[test]
fn raw_crlf_split_across_events() {
    let mut enc = Encoder::new(Format::Raw);
    let first = enc.output(Stream::Stdout, b"a\r").to_vec(b"a\r", false);
    assert_eq!(first, b"id: 1\nevent: stdout\ndata: a\n\n");
    assert!(enc.output(Stream::Stdout, b"\n").is_empty());
    let third = enc.output(Stream::Stdout, b"\nb\n").to_vec(b"\nb\n", false);
    assert_eq!(third, b"id: 2\nevent: stdout\ndata: \ndata: b\n\n");
}

#[test]
fn exit_and_error_events() {
    let mut enc = Encoder::new(Format::Json);
    let exit = Exit {
        code: None,
        signal: Some(9),
        timed_out: true,
    };
    assert_eq!(
        enc.exit(&exit).to_vec(b"", false),
        b"id: 1\nevent: exit\ndata: {\"type\":\"exit\",\"code\":null,\"signal\":9,\"timed_out\":true}\n\n"
    );
    let err = enc.error("cannot run \"x\"").to_vec(b"", false);
    assert_eq!(
        err,
        b"id: 2\nevent: err\ndata: {\"type\":\"error\",\"out\":\"cannot run \\\"x\\\"\"}\n\n"
    );
}

#[test]
fn chunk_framing_wraps_the_frame() {
    let mut enc = Encoder::new(Format::Json);
    let exit = Exit {
        code: Some(0),
        signal: None,
        timed_out: false,
    };
    let frame = enc.exit(&exit);
    let body = frame.to_vec(b"", false);
    let chunked = frame.to_vec(b"", true);
    let mut want = format!("{:x}\r\n", body.len()).into_bytes();
    want.extend_from_slice(&body);
    want.extend_from_slice(b"\r\n");
    assert_eq!(chunked, want);
}

#[test]
fn gathered_slices_are_the_parts() {
    // Short and long lines, escapes (scratch and text pieces alternate),
    // raw and json, chunked or not: `gather` gives what `parts` gives.
    let long = "x".repeat(3000);
    let texts: Vec<Vec<u8>> = vec![
        b"one line\n".to_vec(),
        format!("{long}\t{long}\"{long}\n").into_bytes(),
        format!("a\nb\r\n{long}\n").into_bytes(),
        b"\n".to_vec(),
    ];
    for format in [Format::Json, Format::Raw] {
        let mut enc = Encoder::new(format);
        for text in &texts {
            let frame = enc.output(Stream::Stdout, text);
            for chunked in [false, true] {
                let want: Vec<&[u8]> = frame.parts(text, chunked).collect();
                let mut out = [std::io::IoSlice::new(&[]); 64];
                let count = frame.gather(text, chunked, &mut out).expect("64 slices are enough");
                let got: Vec<&[u8]> = out[..count].iter().map(|slice| &**slice).collect();
                assert_eq!(got, want, "{format:?} chunked {chunked}");
                let mut few = [std::io::IoSlice::new(&[]); 1];
                if want.len() > 1 {
                    assert_eq!(frame.gather(text, chunked, &mut few), None);
                }
            }
        }
    }
}

#[test]
fn empty_frame_is_no_bytes_even_chunked() {
    // Found by fuzz/chunked: the chunk's CRLF tail was still written.
    let mut enc = Encoder::new(Format::Raw);
    let _ = enc.output(Stream::Stdout, b"a\r");
    let frame = enc.output(Stream::Stdout, b"\n");
    assert!(frame.is_empty());
    assert_eq!(frame.to_vec(b"\n", true), b"");
    assert_eq!(frame.parts(b"\n", true).count(), 0);
}

#[test]
fn char_boundary_keeps_unfinished_characters() {
    assert_eq!(char_boundary(b"ab"), 2);
    assert_eq!(char_boundary(b"a\xe2\x82"), 1);
    assert_eq!(char_boundary(b"a\xe2\x82\xac"), 4);
    assert_eq!(char_boundary(b"a\xf0\x9f\x98"), 1);
    assert_eq!(char_boundary(b"a\xff"), 2);
    assert_eq!(char_boundary(b"\x80\x80\x80"), 3);
}

#[test]
fn pipe_text_holds_partial_lines() {
    let mut enc = Encoder::new(Format::Json);
    let mut pipe = PipeText::new(Stream::Stdout);
    let mut events = Vec::new();
    let mut emit = |f: &Frame, t: &[u8]| {
        events.push(String::from_utf8(f.to_vec(t, false)).unwrap_or_default());
        true
    };
    pipe.feed(&mut enc, b"one\ntw", &mut emit);
    pipe.feed(&mut enc, b"o\xe2\x82", &mut emit);
    pipe.flush(&mut enc, &mut emit);
    pipe.feed(&mut enc, b"\xac\n", &mut emit);
    pipe.finish(&mut enc, &mut emit);
    let outs: Vec<&str> = events.iter().map(|e| e.lines().nth(2).unwrap_or("")).collect();
    assert_eq!(
        outs,
        [
            "data: {\"type\":\"stdout\",\"out\":\"one\\n\"}",
            "data: {\"type\":\"stdout\",\"out\":\"two\"}",
            "data: {\"type\":\"stdout\",\"out\":\"€\\n\"}",
        ]
    );
}

/// Escape-heavy text goes out in events within MAX_FRAME; when the sink
/// stops taking them, the rest waits in the backlog and nothing is lost.
#[test]
fn escape_heavy_text_is_sliced_and_backlogged() {
    let mut enc = Encoder::new(Format::Json);
    let mut pipe = PipeText::new(Stream::Stdout);
    let mut text = vec![0u8; 100_000];
    text.push(b'\n');
    let mut frames: Vec<(usize, String)> = Vec::new();
    let mut take = 2;
    let mut emit = |f: &Frame, t: &[u8]| {
        frames.push((f.len(), String::from_utf8(f.to_vec(t, false)).unwrap_or_default()));
        take -= 1;
        take > 0
    };
    pipe.feed(&mut enc, &text, &mut emit);
    assert_eq!(frames.len(), 2, "the sink stopped after two events");
    assert!(pipe.has_backlog());
    let mut emit_all = |f: &Frame, t: &[u8]| {
        frames.push((f.len(), String::from_utf8(f.to_vec(t, false)).unwrap_or_default()));
        true
    };
    assert!(pipe.drain(&mut enc, &mut emit_all));
    assert!(frames.iter().all(|(len, _)| *len <= MAX_FRAME));
    let escapes: usize = frames.iter().map(|(_, f)| f.matches("\\u0000").count()).sum();
    assert_eq!(escapes, 100_000, "every NUL byte arrives once");
    assert!(frames.last().is_some_and(|(_, f)| f.contains("\\n\"}")));
    let ids: Vec<&str> = frames.iter().filter_map(|(_, f)| f.lines().next()).collect();
    let expected: Vec<String> = (1..=frames.len()).map(|i| format!("id: {i}")).collect();
    assert_eq!(ids, expected, "ids stay consecutive across the undone encoding");
}

/// Plain text, a 64 KiB read of it, stays one event.
#[test]
fn plain_text_is_one_event() {
    let mut enc = Encoder::new(Format::Json);
    let mut pipe = PipeText::new(Stream::Stdout);
    let line = [b"x".repeat(99), b"\n".to_vec()].concat();
    let text = line.repeat(655);
    let mut count = 0;
    pipe.feed(&mut enc, &text, &mut |_, _| {
        count += 1;
        true
    });
    assert_eq!(count, 1);
}

/// Events (id, stream, text) a pipe cuts from `reads`, and each JSON
/// frame's length (exact, or the measuring encoder's bound).
fn cut(reads: &[Vec<u8>], measuring: bool) -> Vec<(u64, Option<Stream>, Vec<u8>, usize)> {
    let mut enc = Encoder::new(Format::Json);
    enc.set_measuring(measuring);
    let mut pipe = PipeText::new(Stream::Stdout);
    let mut events = Vec::new();
    let mut emit = |f: &Frame, t: &[u8]| {
        events.push((f.id(), f.stream(), t.to_vec(), f.len()));
        true
    };
    for read in reads {
        pipe.feed(&mut enc, read, &mut emit);
    }
    pipe.finish(&mut enc, &mut emit);
    events
}

/// A measuring encoder cuts the same events with the same ids as a full
/// one, plain or escape-heavy, ASCII or not, and its lengths are bounds.
#[test]
fn measuring_cuts_like_encoding() {
    let mut rng = crate::test_rng::Rng(0x5eed_cafe);
    let alphabets: [&[u8]; 4] = [
        b"abcdefghij klmnop\n",
        b"\x00\x01\"\\\n\tab",
        b"a\xe2\x82\xac\xff\x80\n",
        b"xyz\x1b\r\n",
    ];
    for case in 0..40 {
        let alphabet = alphabets[case % alphabets.len()];
        let reads: Vec<Vec<u8>> = (0..1 + rng.below(4))
            .map(|_| {
                let len = [10, 5000, 20_000, 70_000][rng.below(4)];
                (0..len).map(|_| alphabet[rng.below(alphabet.len())]).collect()
            })
            .collect();
        let full = cut(&reads, false);
        let measured = cut(&reads, true);
        assert_eq!(full.len(), measured.len(), "case {case}");
        for (f, m) in full.iter().zip(&measured) {
            assert_eq!((f.0, f.1, &f.2), (m.0, m.1, &m.2), "case {case}");
            assert!(m.3 >= f.3, "case {case}: bound {} < length {}", m.3, f.3);
        }
    }
    // A measured frame has no bytes to write.
    let mut enc = Encoder::new(Format::Json);
    enc.set_measuring(true);
    let frame = enc.output(Stream::Stdout, b"hi\n");
    assert_eq!(frame.to_vec(b"hi\n", true), b"");
    assert_eq!((frame.id(), frame.stream()), (1, Some(Stream::Stdout)));
}

/// A tagged event (contract §11.2): `id:` is the global number, the JSON
/// gets the job and its own id after its type; the tag is used once.
#[test]
fn tagged_events_carry_job_seq_and_the_global_id() {
    let mut enc = Encoder::new(Format::Json);
    enc.tag_next(&JobTag::new("ab-C_d"), 3, 917);
    let text = b"hi\n";
    let out = String::from_utf8(enc.output(Stream::Stderr, text).to_vec(text, false)).expect("utf-8");
    assert_eq!(
        out,
        "id: 917\nevent: stderr\ndata: {\"type\":\"stderr\",\"job\":\"ab-C_d\",\"seq\":3,\"out\":\"hi\\n\"}\n\n"
    );
    enc.tag_next(&JobTag::new("x"), 4, 920);
    let exit = Exit {
        code: None,
        signal: Some(9),
        timed_out: false,
    };
    let out = String::from_utf8(enc.exit(&exit).to_vec(b"", false)).expect("utf-8");
    assert_eq!(
        out,
        format!(
            "id: 920\nevent: exit\ndata: {{\"type\":\"exit\",\"job\":\"x\",\"seq\":4,{}\n\n",
            &exit.json()["{\"type\":\"exit\",".len()..]
        )
    );
    enc.tag_next(&JobTag::new("x"), 5, 930);
    let out = String::from_utf8(enc.gap(1, 5).to_vec(b"", false)).expect("utf-8");
    assert_eq!(
        out,
        "id: 930\nevent: gap\ndata: {\"type\":\"gap\",\"job\":\"x\",\"seq\":5,\"from\":1,\"to\":5}\n\n"
    );
    enc.tag_next(&JobTag::new("x"), 1, 931);
    let out = String::from_utf8(enc.error("no such file").to_vec(b"", false)).expect("utf-8");
    assert!(out.starts_with("id: 931\nevent: err\ndata: {\"type\":\"error\",\"job\":\"x\",\"seq\":1,\"out\":\"no such"));
    // Untagged again: the plain event of §3.2.
    let out = String::from_utf8(enc.output(Stream::Stdout, text).to_vec(text, false)).expect("utf-8");
    assert!(out.contains("data: {\"type\":\"stdout\",\"out\":"), "{out}");
}

/// `output_tagged` is `tag_next` then `output`, byte for byte, and leaves
/// no tag behind.
#[test]
fn output_tagged_is_tag_next_then_output() {
    let job = JobTag::new("ab-C_d");
    let text = "héllo \"x\"\u{7}\n".repeat(100);
    let text = text.as_bytes();
    for (seq, global) in [(1, 1), (9, 10), (99, 123_456), (u64::MAX, u64::MAX)] {
        let mut a = Encoder::new(Format::Json);
        let mut b = Encoder::new(Format::Json);
        a.tag_next(&job, seq, global);
        let want = a.output(Stream::Stdout, text).to_vec(text, true);
        let got = b
            .output_tagged(Stream::Stdout, text, &job, seq, global)
            .to_vec(text, true);
        assert_eq!(got, want, "{seq} {global}");
        let untagged = b.output(Stream::Stderr, b"x").to_vec(b"x", false);
        assert!(
            untagged.starts_with(b"id: 1\n"),
            "{}",
            String::from_utf8_lossy(&untagged)
        );
    }
}

/// As above, for ids whose tag is shorter than its block, fills it, or
/// is longer (`--instance` names), on either stream.
#[test]
fn output_tagged_is_tag_next_then_output_whatever_the_id() {
    let text = b"line-of-output-7\n";
    // The tag is 15 bytes and the id: 49 fills the 64-byte block.
    for len in [1, 16, 48, 49, 50, 200] {
        let job = JobTag::new(&"i".repeat(len));
        for stream in [Stream::Stdout, Stream::Stderr] {
            let mut a = Encoder::new(Format::Json);
            let mut b = Encoder::new(Format::Json);
            a.tag_next(&job, 12_345, 9_876_543);
            let want = a.output(stream, text).to_vec(text, true);
            let got = b
                .output_tagged(stream, text, &job, 12_345, 9_876_543)
                .to_vec(text, true);
            assert_eq!(got, want, "{len} {stream:?}");
        }
    }
}

/// A job's tag is made once, its id escaped as JSON.
#[test]
fn a_job_tag_escapes_its_id_once() {
    let tag = |id: &str| {
        let mut out = b"x".to_vec();
        JobTag::new(id).push_to(&mut out);
        out
    };
    assert_eq!(tag("a-b_C"), br#"x"job":"a-b_C","seq":"#);
    assert_eq!(tag("a\"b\\"), br#"x"job":"a\"b\\","seq":"#);
    let long = "l".repeat(100);
    assert_eq!(tag(&long), format!(r#"x"job":"{long}","seq":"#).as_bytes());
}
