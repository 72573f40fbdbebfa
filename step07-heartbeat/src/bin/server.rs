//! `step07-server`: serve `add`, `divide`, `sleep`, `flaky`, `explode` and
//! `hash` until Ctrl-C or SIGTERM, then drain and exit.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use step07_heartbeat::server::{self, Limits, ServerConfig};
use step07_heartbeat::service;
use step07_heartbeat::shutdown::StopSignals;
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
    let drain_timeout = Duration::try_from_secs_f64(args.drain_timeout)
        .context("--drain-timeout must be a number of seconds, 0 or more")?;
    let idle_timeout = Duration::try_from_secs_f64(args.idle_timeout)
        .context("--idle-timeout must be a number of seconds, 0 or more")?;
    // Before listening: a signal that comes as soon as we listen is caught.
    let mut signals = StopSignals::install().context("cannot handle signals")?;
    let listener = (TcpListener::bind(&args.addr).await)
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    server::log_panics();
    // The tour (and you) read the real address here, port 0 resolved. It
    // is news, not work: a stdout that is gone must not stop the server.
    let _ = writeln!(io::stdout(), "listening on {}", listener.local_addr()?);
    let mut methods = service::methods();
    if let Some(token) = args.token {
        methods.require_token(token);
    }
    let mut config = ServerConfig::default();
    config.limits.max_connections = args.max_connections;
    config.drain_timeout = drain_timeout;
    config.idle_timeout = idle_timeout;
    let shutdown = async {
        let name = signals.recv().await;
        server::log(format_args!("{name}: shutting down"));
    };
    let served = server::run(listener, methods, config, shutdown).await;
    // The log thread dies with the process: let it write the last lines.
    server::flush_log(Duration::from_secs(1));
    Ok(served?)
}
