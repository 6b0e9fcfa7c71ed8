//! `ssecommander bench` flags (contract §9) → a checked [`Plan`].

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use crate::client::Url;

/// The usage text of `ssecommander bench --help`.
pub const HELP: &str = "\
ssecommander bench: load-test a server that streams commands as SSE (/run?command=)

Usage: ssecommander bench [OPTIONS] URL

Opens N streams of CMD at once against URL (http:// only; the request goes to
URL's path + run, e.g. http://127.0.0.1:3000/?token=T -> /run?command=CMD&token=T;
URL's query rides on every request) and reads them until each ends or the
duration is up. Progress on stderr; the result on stdout.

Options:
      --streams N        streams opened at once [default: 1; at most 10000]
      --duration SECS    stop after this long, cutting open streams [default: 10;
                         at most 3600]; the run ends earlier when every stream has ended
      --command CMD      the command each stream runs [default: seq 1 1000000]
      --format json|raw  adds format=json|raw to the query [default: none, the
                         server's default]
      --json             print one JSON object instead of the table
  -h, --help             print this help

Per-event latency is measured when the command prints CLOCK_MONOTONIC
nanosecond timestamps, one per line (same machine): arrival minus timestamp.
Exit status: 0 when every stream ended or was cut without error, 1 when some
failed (or none could connect), 2 on a bad flag or URL.
";

/// Most streams one run may open: a descriptor each, and a server's default
/// `--max-conns` is 1024.
pub const MAX_STREAMS: usize = 10_000;

/// Longest run.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// The command when `--command` is not given: portable (POSIX `seq` is in
/// coreutils and busybox), finite (6.9 MB of output), and checkable.
pub const DEFAULT_COMMAND: &str = "seq 1 1000000";

/// A checked bench run.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Where to send the requests.
    pub url: Url,
    /// Streams opened at once.
    pub streams: usize,
    /// When to stop.
    pub duration: Duration,
    /// The command each stream runs.
    pub command: String,
    /// `format=` added to the query, when asked.
    pub format: Option<String>,
    /// Print JSON instead of the table.
    pub json: bool,
}

/// What the bench command line asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Run this plan.
    Run(Box<Plan>),
    /// Print [`HELP`].
    Help,
}

/// A bench command line that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgsError(pub String);

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bench: {} (see ssecommander bench --help)", self.0)
    }
}

impl From<lexopt::Error> for ArgsError {
    fn from(err: lexopt::Error) -> ArgsError {
        ArgsError(err.to_string())
    }
}

fn text(flag: &str, value: OsString) -> Result<String, ArgsError> {
    value.into_string().map_err(|v| {
        ArgsError(format!(
            "invalid value '{}' for {flag}: not valid UTF-8",
            v.to_string_lossy()
        ))
    })
}

fn streams(value: String) -> Result<usize, ArgsError> {
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_STREAMS).contains(&n) => Ok(n),
        _ => Err(ArgsError(format!(
            "invalid value '{value}' for --streams: expected a whole number from 1 to {MAX_STREAMS}"
        ))),
    }
}

fn duration(value: String) -> Result<Duration, ArgsError> {
    match value.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= MAX_DURATION.as_secs_f64() => Ok(Duration::from_secs_f64(secs)),
        _ => Err(ArgsError(format!(
            "invalid value '{value}' for --duration: expected seconds, more than 0 and at most 3600"
        ))),
    }
}

/// Parses the arguments after `bench`.
pub fn parse<I>(args: I) -> Result<Parsed, ArgsError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let (mut n, mut secs, mut command, mut format, mut json, mut url) = (
        1,
        Duration::from_secs(10),
        DEFAULT_COMMAND.to_owned(),
        None,
        false,
        None,
    );
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Long("streams") => n = streams(text("--streams", parser.value()?)?)?,
            Long("duration") => secs = duration(text("--duration", parser.value()?)?)?,
            Long("command") => {
                command = text("--command", parser.value()?)?;
                if command.trim().is_empty() || command.contains('\0') {
                    return Err(ArgsError("--command needs a command line".into()));
                }
            }
            Long("format") => {
                let value = text("--format", parser.value()?)?;
                if value != "json" && value != "raw" {
                    return Err(ArgsError(format!(
                        "invalid value '{value}' for --format: expected json or raw"
                    )));
                }
                format = Some(value);
            }
            Long("json") => json = true,
            Value(value) if url.is_none() => {
                let value = text("URL", value)?;
                url = Some(Url::parse(&value).map_err(|err| ArgsError(err.to_string()))?);
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    let url = url.ok_or_else(|| ArgsError("missing URL, like http://127.0.0.1:3000/?token=T".into()))?;
    Ok(Parsed::Run(Box::new(Plan {
        url,
        streams: n,
        duration: secs,
        command,
        format,
        json,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> Plan {
        match parse(args.iter().copied()) {
            Ok(Parsed::Run(plan)) => *plan,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn defaults_and_every_flag() {
        let p = plan(&["http://127.0.0.1:1/"]);
        assert_eq!(
            (p.streams, p.duration, p.command.as_str(), p.format, p.json),
            (1, Duration::from_secs(10), DEFAULT_COMMAND, None, false)
        );
        let p = plan(&[
            "--streams",
            "5",
            "--duration=0.5",
            "--command",
            "cat x",
            "--format",
            "raw",
            "--json",
            "http://h:2/",
        ]);
        assert_eq!(
            (p.streams, p.duration.as_millis(), p.command.as_str()),
            (5, 500, "cat x")
        );
        assert_eq!((p.format.as_deref(), p.json, p.url.port()), (Some("raw"), true, 2));
        assert_eq!(parse(["-h"]), Ok(Parsed::Help));
    }

    #[test]
    fn bad_flags_say_which() {
        for (args, says) in [
            (&["--streams", "0", "http://h/"][..], "--streams"),
            (&["--streams", "10001", "http://h/"], "--streams"),
            (&["--duration", "0", "http://h/"], "--duration"),
            (&["--duration", "nan", "http://h/"], "--duration"),
            (&["--format", "xml", "http://h/"], "--format"),
            (&["--command", " ", "http://h/"], "--command"),
            (&["--bogus", "http://h/"], "--bogus"),
            (&[], "missing URL"),
            (&["https://h/"], "https"),
            (&["http://a/", "http://b/"], "unexpected"),
        ] {
            let err = parse(args.iter().copied()).unwrap_err().to_string();
            assert!(err.contains(says), "{args:?}: {err}");
        }
    }
}
