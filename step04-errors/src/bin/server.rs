//! `step04-server`: serve `add`, `divide`, `sleep`, `flaky` and `explode`
//! until killed.

use std::io::{self, Write};
use std::net::TcpListener;

use anyhow::Context;
use clap::Parser;
use step04_errors::server::{self, ServerConfig};
use step04_errors::service;

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
}

/// Refuses an empty `--token`, which would match a request without one:
/// `--token "$UNSET_VARIABLE"` would serve everyone, and say nothing.
fn non_empty(token: &str) -> Result<String, &'static str> {
    if token.is_empty() {
        return Err("the token is empty, and would let in a request without one");
    }
    Ok(token.to_string())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener =
        TcpListener::bind(&args.addr).with_context(|| format!("cannot listen on {}", args.addr))?;
    // The tour (and you) read the real address here, port 0 resolved. It
    // is news, not work: a stdout that is gone must not stop the server.
    let _ = writeln!(io::stdout(), "listening on {}", listener.local_addr()?);
    let mut methods = service::methods();
    if let Some(token) = args.token {
        methods.require_token(token);
    }
    server::run(listener, methods, ServerConfig::default())?;
    Ok(())
}
