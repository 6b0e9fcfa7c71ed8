//! The command line (contract §1): what was typed, checked, into a [`Config`].

use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

/// The usage text of `--help`.
pub const HELP: &str = "\
ssecommander: runs a command sent over HTTP and streams its output as Server-Sent Events

Usage: ssecommander [OPTIONS]
       ssecommander bench [--streams N] [--duration SECS] [--command CMD]
                          [--format json|raw] [--json] URL
                          (load client; see ssecommander bench --help)

Options:
  -l, --listen ADDR:PORT   address to listen on [default: 127.0.0.1:3000]; port 0 picks one
      --token TOKEN        secret every request must carry [default: random, new at each
                           start]; also read from env SSECOMMANDER_TOKEN. Visible in ps:
                           prefer --token-file
      --token-file PATH    read the token from the first line of PATH (kept out of ps
                           and of the environment)
      --no-auth            accept requests without a token (prints a warning)
      --allow PROGRAM      only these programs may run (repeatable): a bare name matches
                           argv[0] as given, an absolute path the resolved executable
      --shell              run the command line with /bin/sh -c instead of splitting it
      --pty                run commands on a pseudo-terminal unless a request says pty=0
      --max-procs N        children running at once [default: 64]; past it 503
      --max-conns N        open client connections [default: 1024]; past it 503
      --timeout SECS       wall-clock limit per command [default: 0 = none]
      --kill-grace SECS    SIGTERM-to-SIGKILL delay when a command is stopped [default: 2]
      --heartbeat SECS     comment line after this long without output [default: 15];
                           0 = none, else at least 0.1
      --cors-origin ORIGIN value of Access-Control-Allow-Origin (* for any)
      --allow-host NAME    a Host name requests may carry besides the listen address,
                           localhost and loopback addresses (repeatable; * for any)
      --cwd DIR            working directory of commands [default: the server's]
      --job-log BYTES      per job, the events kept for late joiners and resumes
                           [default: 256K]; suffixes K and M
      --keep SECS          how long a finished job stays readable [default: 600]
      --keep-jobs N        finished jobs kept at most, oldest forgotten first [default: 32]
      --instance NAME      prefix of every job id (NAME-...), for a proxy in front of
                           several instances; letters, digits and _
  -h, --help               print this help
  -V, --version            print the version

Routes: GET / (page), GET /run?command=CMD[&format=json|raw][&pty=1&cols=C&rows=R] (SSE),
GET /healthz, POST /jobs?command=CMD[&pty=1][&stdin=1], GET /jobs, GET /jobs/ID,
GET /jobs/ID/events, DELETE /jobs/ID, POST /jobs/ID/input|signal|resize,
GET /jobs/events[?ids=ID,...] (many jobs on one stream), GET /metrics.
Logging: RUST_LOG (default info), to stderr.
";

/// Everything the server needs to know, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The token requests must carry; `None` under `--no-auth`.
    pub token: Option<String>,
    /// Programs allowed to run; empty allows any.
    pub allow: Vec<String>,
    /// Run the line with `/bin/sh -c`.
    pub shell: bool,
    /// `--pty`: commands run on a terminal unless a request says `pty=0`.
    pub pty: bool,
    /// Children running at once.
    pub max_procs: usize,
    /// Client connections open at once.
    pub max_conns: usize,
    /// Wall-clock limit per command.
    pub timeout: Option<Duration>,
    /// SIGTERM-to-SIGKILL delay.
    pub kill_grace: Duration,
    /// Quiet time before a heartbeat comment; `None` disables it.
    pub heartbeat: Option<Duration>,
    /// `Access-Control-Allow-Origin` value.
    pub cors_origin: Option<String>,
    /// Extra `Host` names accepted (`*` for any).
    pub allow_hosts: Vec<String>,
    /// Working directory of commands.
    pub cwd: Option<PathBuf>,
    /// Per job, the bytes of events kept for late joiners and resumes.
    pub job_log: usize,
    /// How long a finished job stays readable.
    pub keep: Duration,
    /// Finished jobs kept at most.
    pub keep_jobs: usize,
    /// Prefix of every job id.
    pub instance: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            token: None,
            allow: Vec::new(),
            shell: false,
            pty: false,
            max_procs: 64,
            max_conns: 1024,
            timeout: None,
            kill_grace: Duration::from_secs(2),
            heartbeat: Some(Duration::from_secs(15)),
            cors_origin: None,
            allow_hosts: Vec::new(),
            cwd: None,
            job_log: 256 * 1024,
            keep: Duration::from_secs(600),
            keep_jobs: 32,
            instance: None,
        }
    }
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Run the server; the token is still to be drawn when `needs_token`.
    Serve {
        /// The configuration.
        config: Box<Config>,
        /// `--no-auth` was not given and no token was: draw a random one.
        needs_token: bool,
    },
    /// Print the help text.
    Help,
    /// Print the version.
    Version,
}

/// A command line that cannot be used, with the flag at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError(String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (see --help)", self.0)
    }
}

impl std::error::Error for CliError {}

impl From<lexopt::Error> for CliError {
    fn from(err: lexopt::Error) -> CliError {
        CliError(err.to_string())
    }
}

fn bad(flag: &str, value: &str, why: &str) -> CliError {
    CliError(format!("invalid value '{value}' for {flag}: {why}"))
}

fn text(flag: &str, value: OsString) -> Result<String, CliError> {
    value
        .into_string()
        .map_err(|v| bad(flag, &v.to_string_lossy(), "not valid UTF-8"))
}

fn count(flag: &str, value: OsString) -> Result<usize, CliError> {
    let value = text(flag, value)?;
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(bad(flag, &value, "expected a whole number of at least 1")),
    }
}

fn whole(flag: &str, value: OsString) -> Result<usize, CliError> {
    let value = text(flag, value)?;
    value
        .parse::<usize>()
        .map_err(|_| bad(flag, &value, "expected a whole number"))
}

/// A size in bytes, with an optional `K` or `M` suffix (powers of 1024), at
/// most 1 GiB.
fn bytes(flag: &str, value: OsString) -> Result<usize, CliError> {
    let value = text(flag, value)?;
    let (digits, unit) = match value.strip_suffix(['K', 'k']) {
        Some(digits) => (digits, 1024),
        None => match value.strip_suffix(['M', 'm']) {
            Some(digits) => (digits, 1024 * 1024),
            None => (value.as_str(), 1),
        },
    };
    match digits.parse::<usize>().ok().and_then(|n| n.checked_mul(unit)) {
        Some(n) if n <= 1 << 30 => Ok(n),
        _ => Err(bad(
            flag,
            &value,
            "expected bytes, like 262144, 256K or 4M (at most 1024M)",
        )),
    }
}

/// An `--instance` name: it starts every job id, and a proxy routes on it.
fn instance(name: String) -> Result<String, CliError> {
    let ok = !name.is_empty() && name.len() <= 32 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(name)
    } else {
        Err(bad("--instance", &name, "use 1 to 32 of A-Z a-z 0-9 _"))
    }
}

fn seconds(flag: &str, value: OsString) -> Result<Duration, CliError> {
    let value = text(flag, value)?;
    match value.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..=1e9).contains(&secs) => Ok(Duration::from_secs_f64(secs)),
        _ => Err(bad(flag, &value, "expected seconds, like 2 or 0.5")),
    }
}

/// The shortest `--heartbeat` but 0 (off): a ping every few milliseconds to
/// every quiet stream would cost more than the streams.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

fn heartbeat(value: OsString) -> Result<Option<Duration>, CliError> {
    let shown = value.to_string_lossy().into_owned();
    let every = seconds("--heartbeat", value)?;
    if every.is_zero() {
        return Ok(None);
    }
    if every < MIN_HEARTBEAT {
        return Err(bad(
            "--heartbeat",
            &shown,
            "below 0.1 s: use 0.1 or more, or 0 to turn heartbeats off",
        ));
    }
    Ok(Some(every))
}

/// A token the user chose that is shorter than this gets a warning at start:
/// it could be guessed (the random one has 32 characters).
pub const SHORT_TOKEN: usize = 16;

/// True for a token that can ride in a URL unchanged.
pub fn token_is_valid(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// The most of a token file read: a token is at most 256 bytes, and a line
/// ending; reading stops here, so a huge or endless file cannot stall start-up.
const TOKEN_FILE_MAX_BYTES: u64 = 1024;

/// The token from the first line of `path`, without its line ending (LF or
/// CRLF). Unreadable, empty first line or not a valid token: an error that
/// names the file but never shows its contents.
fn read_token_file(path: &std::path::Path) -> Result<String, CliError> {
    let shown = path.display();
    let cannot = |err: std::io::Error| CliError(format!("cannot read --token-file {shown}: {}", describe_io(&err)));
    // Opened non-blocking: on a FIFO no process writes, a blocking open
    // would wait for a writer forever; this one succeeds, and the read
    // finds the end at once (an empty file, below).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(cannot)?;
    let mut line = first_line(file).map_err(cannot)?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if line.is_empty() {
        return Err(CliError(format!(
            "--token-file {shown} is empty: its first line must hold the token"
        )));
    }
    let from = format!("--token-file {shown}");
    let token = String::from_utf8(line).map_err(|_| invalid_token(&from))?;
    check_token(token, &from)
}

/// How long a token file that has a writer may take to give its first
/// line (`--token-file <(…)`); past it, start-up fails rather than hangs.
const TOKEN_FILE_WAIT: Duration = Duration::from_secs(5);

/// The first line of a file opened non-blocking, at most
/// [`TOKEN_FILE_MAX_BYTES`]: read until a line feed, the end, or the limit;
/// a pipe with a writer that has not written yet is waited for, up to
/// [`TOKEN_FILE_WAIT`].
fn first_line(mut file: std::fs::File) -> std::io::Result<Vec<u8>> {
    let since = std::time::Instant::now();
    let mut line = Vec::new();
    let mut buf = [0u8; 256];
    while !line.contains(&b'\n') && (line.len() as u64) < TOKEN_FILE_MAX_BYTES {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => line.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                if since.elapsed() >= TOKEN_FILE_WAIT {
                    return Err(std::io::Error::other(
                        "nothing to read within 5 s (a pipe whose writer is silent)",
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(err) => return Err(err),
        }
    }
    if let Some(end) = line.iter().position(|&b| b == b'\n') {
        line.truncate(end + 1);
    }
    line.truncate(TOKEN_FILE_MAX_BYTES as usize);
    Ok(line)
}

fn describe_io(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => err.to_string().to_lowercase(),
    }
}

fn invalid_token(from: &str) -> CliError {
    CliError(format!(
        "invalid token from {from}: use 1 to 256 of A-Z a-z 0-9 - _ . ~"
    ))
}

fn check_token(token: String, from: &str) -> Result<String, CliError> {
    if token_is_valid(&token) {
        Ok(token)
    } else {
        Err(invalid_token(from))
    }
}

/// Parses `args` (without the program name). `env_token` is the value of
/// `SSECOMMANDER_TOKEN`, passed in so the parser reads no environment; it is
/// used only when neither `--token` nor `--token-file` is given. The one
/// file read is `--token-file`'s.
pub fn parse<I>(args: I, env_token: Option<OsString>) -> Result<Command, CliError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::prelude::*;
    let mut config = Config::default();
    let mut token = None;
    let mut token_file = None;
    let mut no_auth = false;
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Short('l') | Long("listen") => {
                let value = text("--listen", parser.value()?)?;
                config.listen = value
                    .parse()
                    .map_err(|_| bad("--listen", &value, "expected ADDR:PORT, like 127.0.0.1:3000 or [::1]:0"))?;
            }
            Long("token") => token = Some(check_token(text("--token", parser.value()?)?, "--token")?),
            Long("token-file") => token_file = Some(PathBuf::from(parser.value()?)),
            Long("no-auth") => no_auth = true,
            Long("allow") => {
                let program = text("--allow", parser.value()?)?;
                if program.is_empty() || (program.contains('/') && !program.starts_with('/')) {
                    return Err(bad("--allow", &program, "expected a bare name or an absolute path"));
                }
                config.allow.push(program);
            }
            Long("shell") => config.shell = true,
            Long("pty") => config.pty = true,
            Long("max-procs") => config.max_procs = count("--max-procs", parser.value()?)?,
            Long("max-conns") => config.max_conns = count("--max-conns", parser.value()?)?,
            Long("timeout") => {
                let limit = seconds("--timeout", parser.value()?)?;
                config.timeout = (!limit.is_zero()).then_some(limit);
            }
            Long("kill-grace") => config.kill_grace = seconds("--kill-grace", parser.value()?)?,
            Long("heartbeat") => config.heartbeat = heartbeat(parser.value()?)?,
            Long("cors-origin") => {
                let origin = text("--cors-origin", parser.value()?)?;
                if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                    return Err(bad(
                        "--cors-origin",
                        &origin,
                        "expected * or an origin like https://example.com",
                    ));
                }
                config.cors_origin = Some(origin.trim_end_matches('/').to_owned());
            }
            Long("allow-host") => {
                let host = text("--allow-host", parser.value()?)?;
                if host.is_empty() || host.contains(['/', ' ']) {
                    return Err(bad("--allow-host", &host, "expected a host name, or *"));
                }
                config.allow_hosts.push(host.to_ascii_lowercase());
            }
            Long("job-log") => config.job_log = bytes("--job-log", parser.value()?)?,
            Long("keep") => config.keep = seconds("--keep", parser.value()?)?,
            Long("keep-jobs") => config.keep_jobs = whole("--keep-jobs", parser.value()?)?,
            Long("instance") => config.instance = Some(instance(text("--instance", parser.value()?)?)?),
            Long("cwd") => {
                let dir = PathBuf::from(parser.value()?);
                if !dir.is_dir() {
                    return Err(bad("--cwd", &dir.to_string_lossy(), "not an existing directory"));
                }
                config.cwd = Some(dir);
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    if config.shell && !config.allow.is_empty() {
        return Err(CliError(
            "--allow and --shell cannot be combined: a shell line can run any program".into(),
        ));
    }
    if no_auth && token.is_some() {
        return Err(CliError("--no-auth and --token cannot be combined".into()));
    }
    if let Some(path) = token_file {
        if no_auth {
            return Err(CliError("--no-auth and --token-file cannot be combined".into()));
        }
        if token.is_some() {
            return Err(CliError("--token and --token-file cannot be combined: give one".into()));
        }
        token = Some(read_token_file(&path)?);
    }
    if !no_auth && token.is_none() {
        if let Some(value) = env_token.filter(|v| !v.is_empty()) {
            token = Some(check_token(text("SSECOMMANDER_TOKEN", value)?, "SSECOMMANDER_TOKEN")?);
        }
    }
    let needs_token = !no_auth && token.is_none();
    config.token = token;
    Ok(Command::Serve {
        config: Box::new(config),
        needs_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Config {
        match parse(args.iter().copied(), None) {
            Ok(Command::Serve { config, .. }) => *config,
            other => panic!("expected Serve for {args:?}, got {other:?}"),
        }
    }

    fn error(args: &[&str]) -> String {
        match parse(args.iter().copied(), None) {
            Err(err) => err.to_string(),
            other => panic!("expected an error for {args:?}, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        match parse(Vec::<String>::new(), None) {
            Ok(Command::Serve { config, needs_token }) => {
                assert_eq!(*config, Config::default());
                assert!(needs_token);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn job_options() {
        let c = serve(&[
            "--job-log",
            "4K",
            "--keep",
            "1.5",
            "--keep-jobs",
            "0",
            "--instance",
            "a_1",
        ]);
        assert_eq!(c.job_log, 4096);
        assert_eq!(c.keep, Duration::from_millis(1500));
        assert_eq!(c.keep_jobs, 0);
        assert_eq!(c.instance.as_deref(), Some("a_1"));
        assert_eq!(serve(&["--job-log", "2M"]).job_log, 2 << 20);
        assert_eq!(serve(&["--job-log", "100"]).job_log, 100);
        assert!(error(&["--job-log", "2G"]).contains("--job-log"));
        assert!(error(&["--job-log", "4096M"]).contains("--job-log"));
        assert!(error(&["--instance", "a-b"]).contains("--instance"));
        assert!(error(&["--instance", ""]).contains("--instance"));
        assert!(error(&["--keep-jobs", "x"]).contains("--keep-jobs"));
    }

    #[test]
    fn listen() {
        assert_eq!(serve(&["-l", "[::1]:0"]).listen, "[::1]:0".parse().unwrap());
        assert_eq!(serve(&["--listen=0.0.0.0:80"]).listen.port(), 80);
        assert!(error(&["--listen", "localhost"]).contains("--listen"));
    }

    #[test]
    fn token_sources() {
        assert_eq!(serve(&["--token", "abc"]).token.as_deref(), Some("abc"));
        let from_env = parse(Vec::<String>::new(), Some("envtok".into()));
        assert!(
            matches!(from_env, Ok(Command::Serve { config, needs_token: false }) if config.token.as_deref() == Some("envtok"))
        );
        let flag_wins = parse(["--token", "flag"], Some("envtok".into()));
        assert!(matches!(flag_wins, Ok(Command::Serve { config, .. }) if config.token.as_deref() == Some("flag")));
        assert!(error(&["--token", "a b"]).contains("invalid token"));
        assert!(error(&["--no-auth", "--token", "x"]).contains("cannot be combined"));
        let no_auth = parse(["--no-auth"], Some("envtok".into()));
        assert!(matches!(no_auth, Ok(Command::Serve { config, needs_token: false }) if config.token.is_none()));
    }

    /// A file under the system temp dir, removed at the end of the test.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(tag: &str, contents: &[u8]) -> TempFile {
            let path = std::env::temp_dir().join(format!("ssecommander-cli-{}-{tag}", std::process::id()));
            std::fs::write(&path, contents).expect("write temp file");
            TempFile(path)
        }

        fn arg(&self) -> &str {
            self.0.to_str().expect("temp path is UTF-8")
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn token_file() {
        for (tag, contents) in [
            ("lf", &b"file-tok\n"[..]),
            ("crlf", b"file-tok\r\nsecond line"),
            ("bare", b"file-tok"),
        ] {
            let file = TempFile::new(tag, contents);
            assert_eq!(
                serve(&["--token-file", file.arg()]).token.as_deref(),
                Some("file-tok"),
                "{tag}"
            );
            let file_wins = parse(["--token-file", file.arg()], Some("envtok".into()));
            assert!(
                matches!(file_wins, Ok(Command::Serve { config, needs_token: false }) if config.token.as_deref() == Some("file-tok"))
            );
            assert!(error(&["--token", "x", "--token-file", file.arg()]).contains("cannot be combined"));
            assert!(error(&["--token-file", file.arg(), "--no-auth"]).contains("cannot be combined"));
        }
        for (tag, contents) in [("empty", &b""[..]), ("blank", b"\nfile-tok\n"), ("crlf-only", b"\r\n")] {
            let file = TempFile::new(tag, contents);
            assert!(error(&["--token-file", file.arg()]).contains("is empty"), "{tag}");
        }
        let bad = TempFile::new("bad", b"has space\n");
        let message = error(&["--token-file", bad.arg()]);
        assert!(message.contains("invalid token from --token-file"), "{message}");
        assert!(!message.contains("has space"), "the file's contents leaked: {message}");
        let binary = TempFile::new("binary", b"\xff\xfe\n");
        assert!(error(&["--token-file", binary.arg()]).contains("invalid token"));
        assert!(error(&["--token-file", "/no/such/file/xyz"]).contains("cannot read --token-file /no/such/file/xyz"));
        assert!(error(&["--token-file", "/"]).contains("cannot read --token-file /"));
    }

    #[test]
    fn pty_is_off_unless_asked() {
        assert!(!serve(&[]).pty);
        assert!(serve(&["--pty"]).pty);
    }

    #[test]
    fn allow_and_shell() {
        assert_eq!(
            serve(&["--allow", "echo", "--allow", "/bin/ls"]).allow,
            ["echo", "/bin/ls"]
        );
        assert!(error(&["--allow", "bin/ls"]).contains("--allow"));
        assert!(serve(&["--shell"]).shell);
        assert!(error(&["--shell", "--allow", "echo"]).contains("cannot be combined"));
    }

    #[test]
    fn numbers_and_durations() {
        let c = serve(&[
            "--max-procs",
            "2",
            "--max-conns",
            "3",
            "--timeout",
            "1.5",
            "--kill-grace",
            "0",
            "--heartbeat",
            "0",
        ]);
        assert_eq!((c.max_procs, c.max_conns), (2, 3));
        assert_eq!(c.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(c.kill_grace, Duration::ZERO);
        assert_eq!(c.heartbeat, None);
        assert_eq!(serve(&["--timeout", "0"]).timeout, None);
        assert!(error(&["--max-procs", "0"]).contains("--max-procs"));
        assert!(error(&["--timeout", "-1"]).contains("--timeout"));
        assert!(error(&["--heartbeat", "soon"]).contains("--heartbeat"));
        assert!(error(&["--heartbeat", "1e-9"]).contains("below 0.1 s"));
        assert!(error(&["--heartbeat", "0.099"]).contains("below 0.1 s"));
        assert_eq!(serve(&["--heartbeat", "0.1"]).heartbeat, Some(MIN_HEARTBEAT));
    }

    #[test]
    fn origins_hosts_cwd() {
        assert_eq!(
            serve(&["--cors-origin", "http://a.test/"]).cors_origin.as_deref(),
            Some("http://a.test")
        );
        assert!(error(&["--cors-origin", "a.test"]).contains("--cors-origin"));
        assert_eq!(serve(&["--allow-host", "Box.LAN"]).allow_hosts, ["box.lan"]);
        assert_eq!(serve(&["--cwd", "/"]).cwd, Some(PathBuf::from("/")));
        assert!(error(&["--cwd", "/no/such/dir/xyz"]).contains("--cwd"));
    }

    #[test]
    fn help_version_unknown() {
        assert_eq!(parse(["-h"], None), Ok(Command::Help));
        assert_eq!(parse(["--version"], None), Ok(Command::Version));
        assert!(error(&["--frobnicate"]).contains("frobnicate"));
        assert!(error(&["--max-procs"]).contains("max-procs"));
    }
}
