//! `step03-client`: run the step's demo against a server, or load it.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::json;
use step03_retries::client::{CallError, CallOptions, Client};
use step03_retries::load;
use step03_retries::service::ServiceCalls;

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
    /// Call `add` and `divide`, including the error case, a slow and a fast
    /// call at once, flaky calls with and without retries, and a deadline
    /// (the default).
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

    // The error comes back as an answer, and the connection still works.
    match client.divide(10.0, 0.0) {
        Err(CallError::Server(error)) => {
            println!("divide(10, 0) -> error {}: {}", error.code, error.message)
        }
        other => bail!("divide(10, 0) should be a server error, got {other:?}"),
    }
    let sum = client.add(1.0, 1.0)?;
    println!("add(1, 1) = {sum} (same connection, after the error)");
    retries_and_deadlines(&client)
}

// ANCHOR: demo_retries
/// This step's part of the demo; fails if a call is retried that must not
/// be, or is not retried that should be, or outlives its deadline.
fn retries_and_deadlines(client: &Client) -> anyhow::Result<()> {
    // `flaky` counts calls per key, on the server: a key no earlier run
    // used makes the counts start from 0 however often the demo runs.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let key = |name: &str| format!("demo-{}-{nanos}-{name}", process::id());

    // Idempotent: each `unavailable` is tried again, after a pause.
    let idempotent = CallOptions {
        idempotent: true,
        ..CallOptions::default()
    };
    let params = json!({ "key": key("idempotent"), "failures": 2 });
    let calls = client.call_with("flaky", params, &idempotent)?;
    println!("flaky(failures: 2), idempotent = {calls} (the server saw {calls} attempts)");
    if calls != 3 {
        bail!("the idempotent call should have taken 3 attempts, took {calls}");
    }

    // Not idempotent: the request reached the method, so it is not sent
    // again, although a second attempt would have succeeded.
    match client.call("flaky", json!({ "key": key("once"), "failures": 1 })) {
        Err(CallError::Server(error)) if error.code == "unavailable" => println!(
            "flaky(failures: 1), not idempotent -> error {}: {} (not sent again)",
            error.code, error.message
        ),
        other => bail!("a call that is not idempotent was retried: {other:?}"),
    }

    // A deadline shorter than the work: the call gives up at it, and the
    // connection goes on working.
    let short = CallOptions {
        timeout: Some(Duration::from_millis(100)),
        ..CallOptions::default()
    };
    match client.call_with("sleep", json!({ "ms": 500 }), &short) {
        Err(CallError::Timeout) => println!("sleep(500) with a 100ms deadline -> timeout"),
        other => bail!("sleep(500) should have timed out after 100ms, got {other:?}"),
    }
    let sum = client.add(2.0, 3.0)?;
    println!("add(2, 3) = {sum} (same connection, after the timeout)");
    Ok(())
}
// ANCHOR_END: demo_retries
