//! `step04-client`: run the step's demo against a server, or load it.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use step04_errors::client::{CallError, CallOptions, Client, ClientConfig};
use step04_errors::load;
use step04_errors::protocol::ErrorCode;
use step04_errors::service::ServiceCalls;

#[derive(Parser)]
#[command(about)]
struct Args {
    /// Address of the server (a host name works too: localhost:4000).
    #[arg(long, default_value = "127.0.0.1:4000", global = true)]
    addr: String,
    /// The token the server requires, sent with every request.
    #[arg(long, global = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Call `add` and `divide`, a slow and a fast call at once, flaky calls
    /// with and without retries, and one call for each error code (the
    /// default).
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
        Command::Demo => demo(addr, args.token),
        Command::Bench { inflight, secs } => {
            let duration = Duration::try_from_secs_f64(secs).context("--secs")?;
            println!("{}", load::run(addr, inflight, duration, args.token)?);
            Ok(())
        }
    }
}

/// Prints a transcript of a few calls; fails if any answer is wrong, or
/// if the fast call does not overtake the slow one.
fn demo(addr: SocketAddr, token: Option<String>) -> anyhow::Result<()> {
    let config = ClientConfig {
        token: token.clone(),
        ..ClientConfig::default()
    };
    let client =
        Client::connect_with(addr, config).with_context(|| format!("cannot connect to {addr}"))?;
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
    let quotient = client.divide(10.0, 0.0);
    expect_error("divide(10, 0)", quotient, ErrorCode::BadRequest)?;
    let sum = client.add(1.0, 1.0)?;
    println!("add(1, 1) = {sum} (same connection, after the error)");
    retries_and_deadlines(&client)?;
    more_error_codes(&client, addr, token.is_some())
}

/// This step's part of the demo; fails if a call is retried that must not
/// be, or is not retried that should be, or outlives its deadline.
fn retries_and_deadlines(client: &Client) -> anyhow::Result<()> {
    // `flaky` counts calls per key, on the server: a key no earlier run
    // used makes the counts start from 0 however often the demo runs.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let key = |name: &str| format!("demo-{}-{nanos}-{name}", process::id());

    // Idempotent: each `SERVER_BUSY` is tried again, after a pause.
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
    let once = client.call("flaky", json!({ "key": key("once"), "failures": 1 }));
    let call = "flaky(failures: 1), not idempotent, so not sent again";
    expect_error(call, once, ErrorCode::ServerBusy)?;

    // A deadline shorter than the work: the call gives up at it, and the
    // connection goes on working.
    let short = CallOptions {
        timeout: Some(Duration::from_millis(100)),
        ..CallOptions::default()
    };
    let slow = client.call_with("sleep", json!({ "ms": 500 }), &short);
    expect_error("sleep(500) with a 100ms deadline", slow, ErrorCode::Timeout)?;
    let sum = client.add(2.0, 3.0)?;
    println!("add(2, 3) = {sum} (same connection, after the timeout)");
    Ok(())
}

// ANCHOR: demo_errors
/// The error codes the rest of the demo does not show; fails if a call
/// gets another answer.
fn more_error_codes(client: &Client, addr: SocketAddr, with_token: bool) -> anyhow::Result<()> {
    let product = client.call("multiply", json!({ "a": 2, "b": 3 }));
    expect_error("multiply(2, 3)", product, ErrorCode::MethodNotFound)?;
    // `explode` panics on the server, which answers and serves on.
    let exploded = client.call("explode", Value::Null);
    expect_error("explode()", exploded, ErrorCode::Internal)?;
    let sum = client.add(3.0, 4.0)?;
    println!("add(3, 4) = {sum} (same connection, after the panic)");

    // A second client, with a token that is not the server's. A server
    // started without `--token` would let it in.
    if !with_token {
        println!("no --token given, so no UNAUTHORIZED call (start both with --token)");
        return Ok(());
    }
    let config = ClientConfig {
        token: Some("wrong-token".to_string()),
        ..ClientConfig::default()
    };
    let intruder = Client::connect_with(addr, config)?;
    let call = "add(1, 2) with a wrong token";
    expect_error(call, intruder.add(1.0, 2.0), ErrorCode::Unauthorized)
}

/// Prints `call -> CODE: message [details]` for a call that had to fail
/// with `code`; fails if it did not. The client's own deadline passing is
/// `TIMEOUT` too: it is the deadline the server keeps, noticed first.
fn expect_error<T: fmt::Debug>(
    call: &str,
    result: Result<T, CallError>,
    code: ErrorCode,
) -> anyhow::Result<()> {
    let (got, message, details) = match result {
        Err(CallError::Server(error)) => (error.code, error.message, error.details),
        Err(e @ CallError::Timeout) => (ErrorCode::Timeout, e.to_string(), Value::Null),
        other => bail!("{call} should fail with {code}, got {other:?}"),
    };
    if got != code {
        bail!("{call} should fail with {code}, got {got}: {message}");
    }
    let details = (!details.is_null()).then(|| format!(" {details}"));
    println!("{call} -> {got}: {message}{}", details.unwrap_or_default());
    Ok(())
}
// ANCHOR_END: demo_errors
