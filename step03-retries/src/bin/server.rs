//! `step03-server`: serve `add`, `divide`, `sleep` and `flaky` until killed.

use std::io::{self, Write};
use std::net::TcpListener;

use anyhow::Context;
use clap::Parser;
use step03_retries::server::{self, ServerConfig};
use step03_retries::service;

#[derive(Parser)]
#[command(about)]
struct Args {
    /// Address to listen on. Port 0 lets the OS pick a free one.
    #[arg(long, default_value = "127.0.0.1:4000")]
    addr: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener =
        TcpListener::bind(&args.addr).with_context(|| format!("cannot listen on {}", args.addr))?;
    // The tour (and you) read the real address here, port 0 resolved. It
    // is news, not work: a stdout that is gone must not stop the server.
    let _ = writeln!(io::stdout(), "listening on {}", listener.local_addr()?);
    server::run(listener, service::methods(), ServerConfig::default())?;
    Ok(())
}
