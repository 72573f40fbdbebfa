//! `step01-client`: run the step's demo against a server, or load it.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use step01_basic::client::{CallError, Client};
use step01_basic::load;
use step01_basic::service::ServiceCalls;

#[derive(Parser)]
#[command(about)]
struct Args {
    /// Address of the server (a host name works too: localhost:4000).
    #[arg(long, default_value = "127.0.0.1:4000", global = true)]
    addr: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Call `add` and `divide`, including the error case (the default).
    Demo,
    /// Call `add` in a loop and print one `RESULT` line.
    Bench {
        /// Calls in flight at once; in this step, one connection each.
        #[arg(long, default_value_t = 1)]
        inflight: usize,
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let addr = args
        .addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .with_context(|| format!("cannot resolve {}", args.addr))?;
    match args.command.unwrap_or(Command::Demo) {
        Command::Demo => demo(addr),
        Command::Bench { inflight, secs } => {
            let duration = Duration::try_from_secs_f64(secs).context("--secs")?;
            println!("{}", load::run(addr, inflight, duration)?);
            Ok(())
        }
    }
}

// ANCHOR: demo
/// Prints a transcript of a few calls; fails if any answer is wrong.
fn demo(addr: SocketAddr) -> anyhow::Result<()> {
    let mut client = Client::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    println!("connected to {addr}");

    let sum = client.add(5.0, 3.0)?;
    println!("add(5, 3) = {sum}");
    let quotient = client.divide(10.0, 4.0)?;
    println!("divide(10, 4) = {quotient}");
    if sum != 8.0 || quotient != 2.5 {
        bail!("wrong answers: add gave {sum}, divide gave {quotient}");
    }

    // The error comes back as an answer, and the connection still works.
    match client.divide(10.0, 0.0) {
        Err(CallError::Server(message)) => println!("divide(10, 0) -> error: {message}"),
        other => bail!("divide(10, 0) should be a server error, got {other:?}"),
    }
    let sum = client.add(1.0, 1.0)?;
    println!("add(1, 1) = {sum} (same connection, after the error)");
    Ok(())
}
// ANCHOR_END: demo
