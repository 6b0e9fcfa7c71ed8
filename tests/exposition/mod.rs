//! A strict parser of the Prometheus text exposition format 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>), so that
//! tests/metrics.rs checks every scrape with nothing installed. It refuses
//! what the format forbids rather than guessing:
//!
//! - the text must end with a line feed; no CR, no other control character;
//! - `# HELP NAME TEXT` (escapes `\\` and `\n` only) and
//!   `# TYPE NAME counter|gauge|histogram|summary|untyped`, each at most once
//!   per name, and a TYPE before the first sample of its family; other `#`
//!   lines are comments;
//! - a sample is `NAME[{LABEL="VALUE",…}] VALUE [TIMESTAMP]`: names
//!   `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`
//!   (not `__name__`, none twice), label values with the escapes `\\`,
//!   `\"` and `\n` only, a value that is a decimal float, `NaN`, `+Inf` or
//!   `-Inf`, a timestamp that is an integer of milliseconds;
//! - a family's lines come together: once another family has begun, an
//!   earlier one may not come back; no series (name and label set) twice;
//! - a histogram's `_bucket` samples carry `le`, a summary's plain samples
//!   `quantile`.

use std::collections::{BTreeMap, BTreeSet};

/// One metric family: its type (`untyped` without a TYPE line), its HELP
/// text (unescaped) and its samples in order.
#[derive(Debug, Default)]
pub struct Family {
    pub kind: String,
    pub help: Option<String>,
    pub samples: Vec<Sample>,
}

#[derive(Debug)]
pub struct Sample {
    pub name: String,
    /// Label pairs in the order written, values unescaped.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp: Option<i64>,
}

impl Sample {
    /// `name{a="x",b="y"}` with the labels sorted by name (just `name`
    /// without labels): one key per series.
    pub fn series(&self) -> String {
        if self.labels.is_empty() {
            return self.name.clone();
        }
        let mut labels: Vec<_> = self.labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        labels.sort();
        format!("{}{{{}}}", self.name, labels.join(","))
    }
}

/// Families by name (the name of their TYPE/HELP lines, or of their samples).
pub type Families = BTreeMap<String, Family>;

const KINDS: [&str; 5] = ["counter", "gauge", "histogram", "summary", "untyped"];

/// Parses a whole scrape; the error names the line (1-based) and what is wrong.
pub fn parse(text: &str) -> Result<Families, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the last line does not end with a line feed".into());
    }
    let mut state = State::default();
    for (n, line) in text.split_terminator('\n').enumerate() {
        state.line(line).map_err(|e| format!("line {}: {e}: {line:?}", n + 1))?;
    }
    Ok(state.families)
}

#[derive(Default)]
struct State {
    families: Families,
    /// The family whose lines are being read; families left behind are closed.
    current: Option<String>,
    closed: BTreeSet<String>,
    series: BTreeSet<String>,
}

impl State {
    fn line(&mut self, line: &str) -> Result<(), String> {
        if let Some(c) = line.chars().find(|c| c.is_control() && *c != '\t') {
            return Err(format!("control character {c:?}"));
        }
        let rest = line.trim_start_matches(is_blank);
        if rest.is_empty() {
            return Ok(());
        }
        match rest.strip_prefix('#') {
            Some(comment) => self.comment(comment),
            None => self.sample(rest),
        }
    }

    /// `# HELP …`, `# TYPE …`, or a comment (anything else after `#`).
    fn comment(&mut self, after_hash: &str) -> Result<(), String> {
        let mut cur = Cursor(after_hash);
        if !cur.blanks() {
            return Ok(());
        }
        let keyword = cur.word();
        if keyword != "HELP" && keyword != "TYPE" {
            return Ok(());
        }
        if !cur.blanks() {
            return Err(format!("{keyword} without a metric name"));
        }
        let name = cur.metric_name()?;
        let family = self.enter(&name)?;
        if keyword == "HELP" {
            if family.help.is_some() {
                return Err(format!("a second HELP for {name}"));
            }
            let text = if cur.blanks() { cur.0 } else { "" };
            if !cur.0.is_empty() && text.is_empty() {
                return Err("HELP name not followed by a blank".into());
            }
            family.help = Some(unescape(text, &['\\', 'n'])?);
            return Ok(());
        }
        if !family.kind.is_empty() {
            return Err(format!("a second TYPE for {name}"));
        }
        if !family.samples.is_empty() {
            return Err(format!("TYPE for {name} after its samples"));
        }
        if !cur.blanks() {
            return Err("TYPE without a type".into());
        }
        let kind = cur.word();
        if !KINDS.contains(&kind) {
            return Err(format!("unknown type {kind:?}"));
        }
        cur.blanks();
        if !cur.0.is_empty() {
            return Err(format!("text after the type: {:?}", cur.0));
        }
        family.kind = kind.to_owned();
        Ok(())
    }

    fn sample(&mut self, line: &str) -> Result<(), String> {
        let mut cur = Cursor(line);
        let name = cur.metric_name()?;
        let labels = if cur.0.starts_with('{') {
            cur.labels()?
        } else {
            Vec::new()
        };
        if !cur.blanks() {
            return Err("no blank before the value".into());
        }
        let value = parse_value(cur.word())?;
        let timestamp = if cur.blanks() && !cur.0.is_empty() {
            let word = cur.word();
            let ok = word.strip_prefix('-').unwrap_or(word);
            if ok.is_empty() || !ok.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("timestamp {word:?} is not an integer"));
            }
            Some(word.parse::<i64>().map_err(|e| format!("timestamp {word:?}: {e}"))?)
        } else {
            None
        };
        cur.blanks();
        if !cur.0.is_empty() {
            return Err(format!("text after the sample: {:?}", cur.0));
        }
        let family_name = self.family_of(&name);
        let family = self.enter(&family_name)?;
        if family.kind.is_empty() {
            family.kind = "untyped".into();
        }
        let label = |want: &str| labels.iter().any(|(k, _)| k == want);
        match family.kind.as_str() {
            "histogram" if name.ends_with("_bucket") && !label("le") => {
                return Err("a histogram bucket without le".into())
            }
            "summary" if name == family_name && !label("quantile") => {
                return Err("a summary sample without quantile".into())
            }
            _ => {}
        }
        let sample = Sample {
            name,
            labels,
            value,
            timestamp,
        };
        if !self.series.insert(sample.series()) {
            return Err(format!("series {} twice", sample.series()));
        }
        self.families
            .get_mut(&family_name)
            .expect("entered")
            .samples
            .push(sample);
        Ok(())
    }

    /// The family a sample belongs to: its own name when that has a TYPE
    /// (or HELP) line, else a histogram's or summary's base name for its
    /// `_bucket`/`_sum`/`_count` samples, else its own name.
    fn family_of(&self, name: &str) -> String {
        if self.families.contains_key(name) {
            return name.to_owned();
        }
        for (suffix, kinds) in [
            ("_bucket", &["histogram"][..]),
            ("_sum", &["histogram", "summary"][..]),
            ("_count", &["histogram", "summary"][..]),
        ] {
            if let Some(base) = name.strip_suffix(suffix) {
                if self
                    .families
                    .get(base)
                    .is_some_and(|f| kinds.contains(&f.kind.as_str()))
                {
                    return base.to_owned();
                }
            }
        }
        name.to_owned()
    }

    /// Makes `name` the current family: refused if it was left before.
    fn enter(&mut self, name: &str) -> Result<&mut Family, String> {
        if self.current.as_deref() != Some(name) {
            if self.closed.contains(name) {
                return Err(format!("family {name} comes back after another began"));
            }
            if let Some(left) = self.current.replace(name.to_owned()) {
                self.closed.insert(left);
            }
        }
        Ok(self.families.entry(name.to_owned()).or_default())
    }
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The unread rest of a line.
struct Cursor<'a>(&'a str);

impl<'a> Cursor<'a> {
    /// Skips blanks; true if there was at least one.
    fn blanks(&mut self) -> bool {
        let rest = self.0.trim_start_matches(is_blank);
        let skipped = rest.len() != self.0.len();
        self.0 = rest;
        skipped
    }

    /// Everything up to the next blank.
    fn word(&mut self) -> &'a str {
        let end = self.0.find(is_blank).unwrap_or(self.0.len());
        let (word, rest) = self.0.split_at(end);
        self.0 = rest;
        word
    }

    fn take_name(&mut self, first: impl Fn(u8) -> bool, more: impl Fn(u8) -> bool) -> Option<&'a str> {
        let bytes = self.0.as_bytes();
        if !bytes.first().is_some_and(|&b| first(b)) {
            return None;
        }
        let end = bytes.iter().position(|&b| !more(b)).unwrap_or(bytes.len());
        let (name, rest) = self.0.split_at(end);
        self.0 = rest;
        Some(name)
    }

    fn metric_name(&mut self) -> Result<String, String> {
        let first = |b: u8| b.is_ascii_alphabetic() || b == b'_' || b == b':';
        let more = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
        self.take_name(first, more)
            .map(str::to_owned)
            .ok_or_else(|| format!("not a metric name at {:?}", self.0))
    }

    /// `{name="value",…}` with an optional trailing comma and blanks
    /// between the tokens.
    fn labels(&mut self) -> Result<Vec<(String, String)>, String> {
        self.0 = &self.0[1..];
        let mut labels: Vec<(String, String)> = Vec::new();
        loop {
            self.blanks();
            if let Some(rest) = self.0.strip_prefix('}') {
                self.0 = rest;
                return Ok(labels);
            }
            let first = |b: u8| b.is_ascii_alphabetic() || b == b'_';
            let more = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
            let name = self
                .take_name(first, more)
                .ok_or_else(|| format!("not a label name at {:?}", self.0))?
                .to_owned();
            if name == "__name__" {
                return Err("the label name __name__ is reserved".into());
            }
            if labels.iter().any(|(k, _)| *k == name) {
                return Err(format!("label {name} twice"));
            }
            self.blanks();
            self.0 = self.0.strip_prefix('=').ok_or("no = after a label name")?;
            self.blanks();
            self.0 = self.0.strip_prefix('"').ok_or("a label value not in double quotes")?;
            let end = closing_quote(self.0).ok_or("an unterminated label value")?;
            let value = unescape(&self.0[..end], &['\\', '"', 'n'])?;
            self.0 = &self.0[end + 1..];
            labels.push((name, value));
            self.blanks();
            if let Some(rest) = self.0.strip_prefix(',') {
                self.0 = rest;
            } else if !self.0.starts_with('}') {
                return Err(format!("expected , or }} at {:?}", self.0));
            }
        }
    }
}

/// The index of the `"` that ends a label value (one not escaped).
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// Undoes `\\`, `\n` (and `\"` where allowed); any other escape is an error.
fn unescape(s: &str, allowed: &[char]) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(e) if allowed.contains(&e) => out.push(if e == 'n' { '\n' } else { e }),
            other => {
                return Err(format!(
                    "invalid escape \\{}",
                    other.map(String::from).unwrap_or_default()
                ))
            }
        }
    }
    Ok(out)
}

/// A sample value: `NaN`, `+Inf`, `-Inf`, or a decimal float (sign,
/// digits with at most one point, an optional exponent).
fn parse_value(word: &str) -> Result<f64, String> {
    match word {
        "NaN" => return Ok(f64::NAN),
        "+Inf" | "Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    let unsigned = word.strip_prefix(['+', '-']).unwrap_or(word);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mantissa_ok = digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    if !mantissa_ok || !exponent_ok {
        return Err(format!("value {word:?} is not a number"));
    }
    word.parse().map_err(|e| format!("value {word:?}: {e}"))
}
