//! The `ssecommander` binary: flags, bind, print the URL line, run the loop.

use std::io::Write;
use std::process::ExitCode;

use log::{info, warn};
use ssecommander::cli::{self, Command};
use ssecommander::{auth, child, server, sys};

#[cfg(feature = "bench")]
fn bench(args: impl Iterator<Item = std::ffi::OsString>) -> u8 {
    ssecommander::bench::main(args)
}

/// A build without the load client (`--no-default-features`) says so
/// rather than taking `bench` for a bad flag.
#[cfg(not(feature = "bench"))]
fn bench(_args: impl Iterator<Item = std::ffi::OsString>) -> u8 {
    eprintln!("ssecommander: bench: this build has no load client (built without the cargo feature `bench`); run it from another machine");
    2
}

fn main() -> ExitCode {
    // `ssecommander bench …` is the load client (contract §9): it starts no
    // server, so none of the server's start-up below applies to it.
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_some_and(|first| first == "bench") {
        args.next();
        return ExitCode::from(bench(args));
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("ssecommander: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("ssecommander: {message}");
            ExitCode::from(1)
        }
    }
}

/// Why the binary stops with an error: bad start-up (exit 2, contract §1) or
/// a failure of the loop itself (exit 1).
enum Failure {
    Usage(String),
    Runtime(String),
}

fn run() -> Result<(), Failure> {
    // Before anything opens a descriptor or reads the token: what our parent
    // leaked to us must not reach our commands (a socket-activation listener
    // is kept open, then taken and made close-on-exec itself), and our
    // commands must not read our environment or memory (contract §4).
    // Descriptors 0, 1 and 2 open (on /dev/null where our parent closed
    // one): the spawn path places a child's stdio there for the moment of
    // the clone, which needs none of our own pipes or sockets to sit there.
    let stdio = sys::open_closed_stdio();
    let activated = activated_sockets();
    let keep_end = sys::LISTEN_FDS_START + if activated == 1 { 1 } else { 0 };
    let cloexec = sys::cloexec_inherited(sys::LISTEN_FDS_START..keep_end);
    let inherited = (activated == 1).then(|| sys::take_activated_listener(sys::LISTEN_FDS_START));
    let non_dumpable = sys::set_non_dumpable();
    let args = std::env::args_os().skip(1);
    let (mut config, needs_token) = match cli::parse(args, std::env::var_os(child::TOKEN_ENV)) {
        Ok(Command::Serve { config, needs_token }) => (*config, needs_token),
        Ok(Command::Help) => {
            print!("{}", cli::HELP);
            return Ok(());
        }
        Ok(Command::Version) => {
            println!("ssecommander {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        Err(err) => return Err(Failure::Usage(err.to_string())),
    };
    // Sound only while one thread runs, which is now (the logger starts none).
    // The kernel still shows the variable in /proc/PID/environ, which
    // non-dumpable guards; this keeps it from any spawn that forgets it.
    std::env::remove_var(child::TOKEN_ENV);
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(err) = cloexec {
        warn!("cannot mark inherited descriptors close-on-exec; commands may inherit them: {err}");
    }
    if let Err(err) = stdio {
        warn!("cannot open /dev/null on a closed descriptor 0, 1 or 2: {err}");
    }
    if let Err(err) = non_dumpable {
        warn!("cannot make the process non-dumpable; commands may read its environment: {err}");
    }
    if let Some(token) = config.token.as_deref().filter(|t| t.len() < cli::SHORT_TOKEN) {
        warn!(
            "the token is {} characters long: one that short can be guessed; use {} characters or more \
             (or leave the token out for a random one)",
            token.len(),
            cli::SHORT_TOKEN
        );
    }
    if needs_token {
        let token = auth::random_token().map_err(|err| Failure::Usage(format!("cannot draw a random token: {err}")))?;
        config.token = Some(token);
    }
    match sys::raise_nofile_limit() {
        Ok(limit) => log::debug!("open-file limit: {limit}"),
        Err(err) => warn!("cannot raise the open-file limit: {err}"),
    }
    let listener = match inherited {
        Some(taken) => mio::net::TcpListener::from_std(
            taken
                .map_err(|err| Failure::Usage(format!("cannot serve the socket passed by socket activation: {err}")))?,
        ),
        None if activated > 1 => {
            return Err(Failure::Usage(format!(
                "socket activation passed {activated} sockets; ssecommander serves exactly one"
            )))
        }
        None => mio::net::TcpListener::bind(config.listen).map_err(|err| {
            Failure::Usage(format!(
                "cannot listen on {}: {}",
                config.listen,
                describe_bind_error(&err)
            ))
        })?,
    };
    let local = listener
        .local_addr()
        .map_err(|err| Failure::Usage(format!("cannot read the listening address: {err}")))?;
    config.listen = local;
    if config.token.is_none() {
        warn!("--no-auth: anyone who can reach {local} can run commands as this user");
    }
    let url_line = url_line(&config);
    // Build the loop first: it installs the SIGINT/SIGTERM handlers, and a
    // script may send SIGTERM as soon as it has read the URL line.
    let mut server = server::Server::new(listener, config)
        .map_err(|err| Failure::Runtime(format!("cannot start the event loop: {err}")))?;
    print_line(&url_line);
    info!("listening on {local}");
    server
        .run()
        .map_err(|err| Failure::Runtime(format!("event loop failed: {err}")))
}

/// How many sockets systemd socket activation passed us (`sd_listen_fds`),
/// and unsets its variables, meant for this process alone, so no command
/// sees them. Sound only while one thread runs.
fn activated_sockets() -> u32 {
    let var = |name| std::env::var(name).ok();
    let count = sys::listen_fds(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        std::process::id(),
    );
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    count
}

/// The one stdout line scripts read the address from (contract §1).
fn url_line(config: &cli::Config) -> String {
    let mut line = format!("ssecommander listening on http://{}/", config.listen);
    if let Some(token) = &config.token {
        line.push_str("?token=");
        line.push_str(token);
    }
    line
}

fn print_line(line: &str) {
    let mut stdout = std::io::stdout().lock();
    // A closed stdout must not kill the server: scripts may read one line and go.
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

fn describe_bind_error(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::AddrInUse => "address already in use".to_owned(),
        std::io::ErrorKind::AddrNotAvailable => "address not available on this machine".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied (ports below 1024 need privileges)".to_owned(),
        _ => err.to_string().to_lowercase(),
    }
}
