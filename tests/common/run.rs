//! Payloads and runs: an event's JSON, how a stream ended, one `/run`
//! read to its end.

use std::time::Instant;

use super::*;

/// Parses an event's data as JSON.
pub fn json(ev: &Event) -> serde_json::Value {
    serde_json::from_str(&ev.data)
        .unwrap_or_else(|e| panic!("event {} ({}) data is not JSON ({}): {:?}", ev.id, ev.event, e, ev.data))
}

/// The `out` text of a json `stdout`/`stderr`/`err` event, checking that the
/// object is exactly `{"type":T,"out":S}` with T matching the event name.
pub fn out_text(ev: &Event) -> String {
    let v = json(ev);
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("event data is not an object: {:?}", ev.data));
    let want_type = if ev.event == "err" { "error" } else { ev.event.as_str() };
    assert_eq!(
        obj.get("type").and_then(|t| t.as_str()),
        Some(want_type),
        "wrong type in {:?}",
        ev.data
    );
    assert_eq!(obj.len(), 2, "unexpected keys in {:?}", ev.data);
    obj.get("out")
        .and_then(|o| o.as_str())
        .unwrap_or_else(|| panic!("no string out in {:?}", ev.data))
        .to_owned()
}

/// How a stream ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    Exit {
        code: Option<i64>,
        signal: Option<i64>,
        timed_out: bool,
    },
    /// An `err` event with its message.
    Err(String),
}

impl End {
    pub fn code(code: i64) -> End {
        End::Exit {
            code: Some(code),
            signal: None,
            timed_out: false,
        }
    }
    pub fn signal(sig: i64) -> End {
        End::Exit {
            code: None,
            signal: Some(sig),
            timed_out: false,
        }
    }
}

/// Decodes an `exit` or `err` event strictly (§3.2, WIRE.md).
pub fn end_of(ev: &Event) -> End {
    match ev.event.as_str() {
        "err" => End::Err(out_text(ev)),
        "exit" => {
            let v = json(ev);
            let obj = v
                .as_object()
                .unwrap_or_else(|| panic!("exit data is not an object: {:?}", ev.data));
            assert_eq!(
                obj.get("type").and_then(|t| t.as_str()),
                Some("exit"),
                "wrong type in {:?}",
                ev.data
            );
            for k in obj.keys() {
                assert!(
                    ["type", "code", "signal", "timed_out"].contains(&k.as_str()),
                    "unexpected key {:?} in {:?}",
                    k,
                    ev.data
                );
            }
            let code = match obj.get("code") {
                Some(serde_json::Value::Null) => None,
                Some(c) => Some(
                    c.as_i64()
                        .unwrap_or_else(|| panic!("code not an integer in {:?}", ev.data)),
                ),
                None => panic!("exit without code in {:?}", ev.data),
            };
            let signal = obj.get("signal").map(|s| {
                s.as_i64()
                    .unwrap_or_else(|| panic!("signal not a number in {:?}", ev.data))
            });
            assert!(
                code.is_some() != signal.is_some(),
                "exit must have a code or (code null and) a signal: {:?}",
                ev.data
            );
            let timed_out = match obj.get("timed_out") {
                None => false,
                Some(serde_json::Value::Bool(true)) => true,
                Some(other) => panic!("timed_out present but not true: {:?} in {:?}", other, ev.data),
            };
            End::Exit {
                code,
                signal,
                timed_out,
            }
        }
        other => panic!("not an end event: {}", other),
    }
}

/// One complete `/run` stream.
#[derive(Debug)]
pub struct Run {
    pub resp: Response,
    pub items: Vec<Item>,
    pub events: Vec<Event>,
    pub end: End,
    /// When the request was sent.
    pub t0: Instant,
}

impl Run {
    /// Checks the head of §3.1 and the event order of §3.2, then decodes.
    pub fn from_response(resp: Response, t0: Instant) -> Run {
        assert_eq!(resp.status, 200, "/run: expected 200, got:\n{}", resp.dump());
        check_stream_head(&resp);
        let items = parse_sse(&resp.body, resp.end_at);
        Run::from_parts(resp, items, t0)
    }

    /// From a response whose body was already parsed into `items`.
    pub fn from_parts(resp: Response, items: Vec<Item>, t0: Instant) -> Run {
        let events = events_of(&items);
        let end = check_events(&events, &resp);
        Run {
            resp,
            items,
            events,
            end,
            t0,
        }
    }

    /// The first event called `kind`.
    pub fn first(&self, kind: &str) -> Option<&Event> {
        self.events.iter().find(|e| e.event == kind)
    }

    /// The end event (`exit` or `err`).
    pub fn last(&self) -> &Event {
        self.events.last().expect("checked: a stream has an end event")
    }

    /// Concatenated `out` of the json `stdout` events.
    pub fn stdout(&self) -> String {
        self.events
            .iter()
            .filter(|e| e.event == "stdout")
            .map(out_text)
            .collect()
    }

    pub fn stderr(&self) -> String {
        self.events
            .iter()
            .filter(|e| e.event == "stderr")
            .map(out_text)
            .collect()
    }

    /// For format=raw: the data lines of all `kind` events, in order.
    pub fn raw_lines(&self, kind: &str) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e.event == kind)
            .flat_map(|e| e.data_lines.clone())
            .collect()
    }

    /// For format=raw: the payload (data lines joined by `\n`, plus the implied final `\n` per event).
    pub fn raw_text(&self, kind: &str) -> String {
        self.events
            .iter()
            .filter(|e| e.event == kind)
            .map(|e| format!("{}\n", e.data))
            .collect()
    }

    /// The comment lines (text after `:`).
    pub fn comments(&self) -> Vec<(String, Instant)> {
        self.items
            .iter()
            .filter_map(|i| {
                if let Item::Comment(c, t) = i {
                    Some((c.clone(), *t))
                } else {
                    None
                }
            })
            .collect()
    }

    pub fn assert_end(&self, want: End) {
        assert_eq!(
            self.end,
            want,
            "unexpected end of stream; body:\n{}",
            self.resp.body_str()
        );
    }
}

/// §3.1: the head of a `/run` stream.
pub fn check_stream_head(resp: &Response) {
    let h = |n: &str| resp.header(n).map(str::to_owned);
    assert_eq!(
        h("content-type").as_deref(),
        Some("text/event-stream"),
        "Content-Type (§3.1) in:\n{}",
        resp.raw_head
    );
    assert_eq!(
        h("cache-control").as_deref(),
        Some("no-cache"),
        "Cache-Control (§3.1) in:\n{}",
        resp.raw_head
    );
    assert_eq!(
        h("x-accel-buffering").as_deref(),
        Some("no"),
        "X-Accel-Buffering (§3.1) in:\n{}",
        resp.raw_head
    );
}

/// §3.2: exactly one end event (`exit` or `err`), last; only output events
/// before it; `err` only as the sole event. Returns how it ended.
pub fn check_events(events: &[Event], resp: &Response) -> End {
    let last = events
        .last()
        .unwrap_or_else(|| panic!("stream has no events; body:\n{}", resp.body_str()));
    assert!(
        last.event == "exit" || last.event == "err",
        "last event is {:?}, not exit/err; body:\n{}",
        last.event,
        resp.body_str()
    );
    for e in &events[..events.len() - 1] {
        assert!(
            e.event == "stdout" || e.event == "stderr",
            "event {:?} before the end event; body:\n{}",
            e.event,
            resp.body_str()
        );
    }
    end_of(last)
}

/// Runs `command` on `server`: (events, how it ended).
pub fn run(server: &Server, command: &str) -> (Vec<Event>, End) {
    let r = server.run(command);
    (r.events, r.end)
}
