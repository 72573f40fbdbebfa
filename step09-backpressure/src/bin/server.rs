//! `step09-server`: serve `add`, `divide`, `sleep`, `flaky`, `explode` and
//! `hash`, and the built-in `health` and `stats`, until Ctrl-C or SIGTERM,
//! then drain and exit. Logs to stderr: `RUST_LOG` says what.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use step09_backpressure::logging::{self, LogFormat};
use step09_backpressure::server::{self, Limits, ServerConfig};
use step09_backpressure::service;
use step09_backpressure::shutdown::StopSignals;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(about)]
struct Args {
    /// Address to listen on. Port 0 lets the OS pick a free one.
    #[arg(long, default_value = "127.0.0.1:4000")]
    addr: String,
    /// Answer UNAUTHORIZED to any request without this token (sent in
    /// clear text: it keeps out mistakes, not eavesdroppers). Not empty.
    #[arg(long, value_parser = non_empty)]
    token: Option<String>,
    /// The most connections served at once; one more is closed at once.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// The most calls running at once, all connections together; one more
    /// is shed, answered SERVER_BUSY without running.
    #[arg(long, default_value_t = Limits::default().max_handlers)]
    max_handlers: usize,
    /// On Ctrl-C or SIGTERM, or when a connection is idle, how many
    /// seconds calls already read may take to finish before they are
    /// cancelled.
    #[arg(long, default_value_t = ServerConfig::default().drain_timeout.as_secs_f64())]
    drain_timeout: f64,
    /// How many seconds a connection may be idle (no request from its
    /// peer, no call running; pings do not count) before the server
    /// closes it.
    #[arg(long, default_value_t = ServerConfig::default().idle_timeout.as_secs_f64())]
    idle_timeout: f64,
    /// How to write the log to stderr: text for people, or one JSON object
    /// per line for programs. `RUST_LOG` picks what is written.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// Refuses an empty `--token`, which would match a request without one:
/// `--token "$UNSET_VARIABLE"` would serve everyone, and say nothing.
fn non_empty(token: &str) -> Result<String, &'static str> {
    if token.is_empty() {
        return Err("the token is empty, and would let in a request without one");
    }
    Ok(token.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Kept to the end of `main`: dropping it writes the last lines out.
    let _log = logging::init(args.log_format)?;
    let drain_timeout = Duration::try_from_secs_f64(args.drain_timeout)
        .context("--drain-timeout must be a number of seconds, 0 or more")?;
    let idle_timeout = Duration::try_from_secs_f64(args.idle_timeout)
        .context("--idle-timeout must be a number of seconds, 0 or more")?;
    // Before listening: a signal that comes as soon as we listen is caught.
    let mut signals = StopSignals::install().context("cannot handle signals")?;
    let listener = (TcpListener::bind(&args.addr).await)
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    // The tour (and you) read the real address here, port 0 resolved. It
    // is news, not work: a stdout that is gone must not stop the server.
    let _ = writeln!(io::stdout(), "listening on {}", listener.local_addr()?);
    let mut methods = service::methods();
    if let Some(token) = args.token {
        methods.require_token(token);
    }
    let mut config = ServerConfig::default();
    config.limits.max_connections = args.max_connections;
    config.limits.max_handlers = args.max_handlers;
    config.drain_timeout = drain_timeout;
    config.idle_timeout = idle_timeout;
    let shutdown = async {
        let name = signals.recv().await;
        tracing::info!("{name}: shutting down");
    };
    Ok(server::run(listener, methods, config, shutdown).await?)
}
