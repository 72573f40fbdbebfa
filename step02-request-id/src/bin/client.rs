//! `step02-client`: run the step's demo against a server, or load it.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use step02_request_id::client::{CallError, Client};
use step02_request_id::load;
use step02_request_id::service::ServiceCalls;

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
    /// Call `add` and `divide`, including the error case, and a slow and a
    /// fast call at once (the default).
    Demo,
    /// Call `add` in a loop and print one `RESULT` line.
    Bench {
        /// Calls in flight at once, all on one connection.
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

/// Prints a transcript of a few calls; fails if any answer is wrong, or
/// if the fast call does not overtake the slow one.
fn demo(addr: SocketAddr) -> anyhow::Result<()> {
    let client = Client::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    println!("connected to {addr}");

    let sum = client.add(5.0, 3.0)?;
    println!("add(5, 3) = {sum}");
    let quotient = client.divide(10.0, 4.0)?;
    println!("divide(10, 4) = {quotient}");
    if sum != 8.0 || quotient != 2.5 {
        bail!("wrong answers: add gave {sum}, divide gave {quotient}");
    }

    // ANCHOR: overtake
    // A slow call and a fast one at once, from two threads, on this one
    // connection. Each thread reports its answer the moment it has it, so
    // the lines below come out in the order the answers came back.
    println!("sleep(300) and add(2, 2) sent at once, on this one connection:");
    let (done, answers) = mpsc::channel();
    let order = thread::scope(|s| {
        let (client, slow_done) = (&client, done.clone());
        s.spawn(move || {
            slow_done.send(("sleep(300)", 300.0, client.sleep(300).map(|ms| ms as f64)))
        });
        s.spawn(move || done.send(("add(2, 2)", 4.0, client.add(2.0, 2.0))));
        let mut order = Vec::new();
        for (call, expected, answer) in answers {
            let answer = answer?;
            println!("  answer {}: {call} = {answer}", order.len() + 1);
            if answer != expected {
                bail!("{call} should be {expected}, got {answer}");
            }
            order.push(call);
        }
        anyhow::Ok(order)
    })?;
    if order != ["add(2, 2)", "sleep(300)"] {
        bail!("the fast call should have been answered first: {order:?}");
    }
    // ANCHOR_END: overtake

    // The error comes back as an answer, and the connection still works.
    match client.divide(10.0, 0.0) {
        Err(CallError::Server(error)) => {
            println!("divide(10, 0) -> error {}: {}", error.code, error.message)
        }
        other => bail!("divide(10, 0) should be a server error, got {other:?}"),
    }
    let sum = client.add(1.0, 1.0)?;
    println!("add(1, 1) = {sum} (same connection, after the error)");
    Ok(())
}
