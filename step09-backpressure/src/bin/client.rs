//! `step09-client`: run the step's demo against a server, or load it.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use step09_backpressure::client::{
    CallError, CallOptions, Client, ClientConfig, DEFAULT_PING_INTERVAL, DEFAULT_PING_TIMEOUT,
};
use step09_backpressure::load;
use step09_backpressure::logging::{self, LogFormat};
use step09_backpressure::protocol::ErrorCode;
use step09_backpressure::service::ServiceCalls;
use tokio::task::JoinSet;

#[derive(Parser)]
#[command(about)]
struct Args {
    /// Address of the server (a host name works too: localhost:4000).
    #[arg(long, default_value = "127.0.0.1:4000", global = true)]
    addr: String,
    /// The token the server requires, sent with every request.
    #[arg(long, global = true)]
    token: Option<String>,
    /// How to write the log to stderr (`RUST_LOG=step09=debug` for the
    /// client's reconnects, retries and pings).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Call `add` and `divide`, a slow and a fast call at once, flaky calls
    /// with and without retries, one call for each error code, and 10,000
    /// calls at once on one connection (the default).
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
    /// Flood the server with `hash` calls, none retried, and print one
    /// `RESULT` line: the goodput, and how many were shed or timed out.
    Flood {
        /// Calls in flight at once, all on one connection.
        #[arg(long, default_value_t = 640)]
        inflight: usize,
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Rounds of hashing per call: the work each call asks for.
        #[arg(long, default_value_t = 100_000)]
        rounds: u32,
        /// Each call's deadline, in seconds.
        #[arg(long, default_value_t = 0.25)]
        deadline: f64,
    },
    /// Make one call and print its result, e.g. `call sleep '{"ms":5000}'`:
    /// a call in flight while you stop the server with Ctrl-C.
    Call {
        /// The method's name.
        method: String,
        /// Its params, as JSON.
        #[arg(default_value = "null")]
        params: String,
        /// Ping a server silent this many seconds while the call waits.
        #[arg(long, default_value_t = DEFAULT_PING_INTERVAL.as_secs_f64())]
        ping_interval: f64,
        /// Give the server up if nothing comes this many seconds after a ping.
        #[arg(long, default_value_t = DEFAULT_PING_TIMEOUT.as_secs_f64())]
        ping_timeout: f64,
    },
    /// Ask the server for its numbers (`stats`) and print them as a table.
    Stats,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _log = logging::init(args.log_format)?;
    let addr = args
        .addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .with_context(|| format!("cannot resolve {}", args.addr))?;
    match args.command.unwrap_or(Command::Demo) {
        Command::Demo => demo(addr, args.token).await,
        Command::Bench { inflight, secs } => {
            let duration = Duration::try_from_secs_f64(secs).context("--secs")?;
            println!("{}", load::run(addr, inflight, duration, args.token).await?);
            Ok(())
        }
        Command::Flood {
            inflight,
            secs,
            rounds,
            deadline,
        } => {
            let duration = Duration::try_from_secs_f64(secs).context("--secs")?;
            let deadline = Duration::try_from_secs_f64(deadline).context("--deadline")?;
            let params = json!({ "text": "flood", "rounds": rounds });
            let work = ("hash", params, deadline);
            println!(
                "{}",
                load::flood(addr, inflight, duration, work, args.token).await?
            );
            Ok(())
        }
        Command::Call {
            method,
            params,
            ping_interval,
            ping_timeout,
        } => {
            let params = serde_json::from_str(&params).context("params must be JSON")?;
            let config = ClientConfig {
                token: args.token,
                ping_interval: Duration::try_from_secs_f64(ping_interval)
                    .context("--ping-interval")?,
                ping_timeout: Duration::try_from_secs_f64(ping_timeout)
                    .context("--ping-timeout")?,
                ..ClientConfig::default()
            };
            let client = (Client::connect_with(addr, config).await)
                .with_context(|| format!("cannot connect to {addr}"))?;
            println!("{}", client.call(&method, params).await?);
            Ok(())
        }
        Command::Stats => {
            let config = ClientConfig {
                token: args.token,
                ..ClientConfig::default()
            };
            let client = (Client::connect_with(addr, config).await)
                .with_context(|| format!("cannot connect to {addr}"))?;
            let stats = client.call("stats", Value::Null).await?;
            let (open, in_flight) = (&stats["connections_open"], &stats["calls_in_flight"]);
            println!("connections open: {open}; calls in flight: {in_flight} (this one too)");
            print_stats(&stats);
            Ok(())
        }
    }
}

/// Prints the answer of `stats` as a table: a row per method called, with
/// its calls by code and its latency percentiles.
fn print_stats(stats: &Value) {
    let empty = serde_json::Map::new();
    let methods = stats["methods"].as_object().unwrap_or(&empty);
    println!(
        "{:<8} {:>6}  {:<28} {:>9} {:>9} {:>9} {:>9}",
        "method", "calls", "codes", "p50", "p90", "p99", "max"
    );
    for (name, method) in methods {
        let codes = method["codes"].as_object().unwrap_or(&empty);
        let codes: Vec<String> = codes
            .iter()
            .map(|(code, n)| format!("{code} {n}"))
            .collect();
        let latency = |quantile: &str| {
            let micros = method["latency_us"][quantile].as_u64().unwrap_or_default();
            format!("{:?}", Duration::from_micros(micros))
        };
        println!(
            "{name:<8} {:>6}  {:<28} {:>9} {:>9} {:>9} {:>9}",
            method["calls"].as_u64().unwrap_or_default(),
            codes.join(", "),
            latency("p50"),
            latency("p90"),
            latency("p99"),
            latency("max"),
        );
    }
}

/// Prints a transcript of a few calls; fails if any answer is wrong, or
/// if the fast call does not overtake the slow one.
async fn demo(addr: SocketAddr, token: Option<String>) -> anyhow::Result<()> {
    let config = ClientConfig {
        token: token.clone(),
        ..ClientConfig::default()
    };
    let client = (Client::connect_with(addr, config).await)
        .with_context(|| format!("cannot connect to {addr}"))?;
    println!("connected to {addr}");

    let sum = client.add(5.0, 3.0).await?;
    println!("add(5, 3) = {sum}");
    let quotient = client.divide(10.0, 4.0).await?;
    println!("divide(10, 4) = {quotient}");
    if sum != 8.0 || quotient != 2.5 {
        bail!("wrong answers: add gave {sum}, divide gave {quotient}");
    }

    // A slow call and a fast one at once, as two tasks, on this one
    // connection. `join_next` hands back each task's answer as it finishes,
    // so the lines below come out in the order the answers came back.
    println!("sleep(300) and add(2, 2) sent at once, on this one connection:");
    let mut calls = JoinSet::new();
    let slow = client.clone();
    calls.spawn(async move {
        (
            "sleep(300)",
            300.0,
            slow.sleep(300).await.map(|ms| ms as f64),
        )
    });
    let fast = client.clone();
    calls.spawn(async move { ("add(2, 2)", 4.0, fast.add(2.0, 2.0).await) });
    let mut order = Vec::new();
    while let Some(finished) = calls.join_next().await {
        let (call, expected, answer) = finished?;
        let answer = answer?;
        println!("  answer {}: {call} = {answer}", order.len() + 1);
        if answer != expected {
            bail!("{call} should be {expected}, got {answer}");
        }
        order.push(call);
    }
    if order != ["add(2, 2)", "sleep(300)"] {
        bail!("the fast call should have been answered first: {order:?}");
    }

    // The error comes back as an answer, and the connection still works.
    let quotient = client.divide(10.0, 0.0).await;
    expect_error("divide(10, 0)", quotient, ErrorCode::BadRequest)?;
    let sum = client.add(1.0, 1.0).await?;
    println!("add(1, 1) = {sum} (same connection, after the error)");
    retries_and_deadlines(&client).await?;
    more_error_codes(&client, addr, token.is_some()).await?;
    many_calls_at_once(&client, addr, token.clone()).await?;
    observability(&client).await?;
    flood(&client, addr, token).await
}

/// This step's part of the demo: ten times as many slow calls at once as
/// the server runs, from a client that does not retry. The excess is shed
/// at once; every call admitted succeeds; `health` answers meanwhile.
async fn flood(client: &Client, addr: SocketAddr, token: Option<String>) -> anyhow::Result<()> {
    let stats = client.call("stats", Value::Null).await?;
    let handlers = stats["max_handlers"].as_u64().unwrap_or(u64::MAX) as usize;
    if handlers > 100 {
        println!(
            "the server runs {handlers} calls at once: start it with --max-handlers 64 for a flood"
        );
        return Ok(());
    }
    // One call each, all at once (a flood of no duration), none tried
    // again; and none times out, its deadline far off.
    let calls = 10 * handlers;
    let work = ("sleep", json!({ "ms": 1000 }), Duration::from_secs(5));
    let report = load::flood(addr, calls, Duration::ZERO, work, token).await?;
    let (ran, shed) = (report.ran.calls(), report.shed);
    println!(
        "{calls} sleep(1000) at once against {handlers} handlers: {ran} ran, \
         {shed} shed with SERVER_BUSY"
    );
    if ran != handlers || shed != calls - handlers {
        bail!("{handlers} should have run and the rest been shed");
    }
    Ok(())
}

/// This step's part of the demo: `health`, and the server's numbers for
/// every call above, as `stats` returns them.
async fn observability(client: &Client) -> anyhow::Result<()> {
    let health = client.call("health", Value::Null).await?;
    println!("health() = {health}");
    println!("stats(), the server's numbers for the calls above:");
    print_stats(&client.call("stats", Value::Null).await?);
    Ok(())
}

/// This step's part of the demo: 10,000 calls in flight at once on one
/// connection, each a task; fails if any answer is wrong.
async fn many_calls_at_once(
    client: &Client,
    addr: SocketAddr,
    token: Option<String>,
) -> anyhow::Result<()> {
    const CALLS: usize = 10_000;
    // The default bound on pending calls is 1,024; this demo wants more.
    let config = ClientConfig {
        max_pending: CALLS,
        token,
        ..ClientConfig::default()
    };
    let many = Client::connect_with(addr, config).await?;
    let start = Instant::now();
    let mut calls = JoinSet::new();
    for i in 0..CALLS {
        let many = many.clone();
        calls.spawn(async move { (i, many.add(i as f64, 1.0).await) });
    }
    while let Some(finished) = calls.join_next().await {
        let (i, sum) = finished?;
        let sum = sum?;
        if sum != i as f64 + 1.0 {
            bail!("add({i}, 1) should be {}, got {sum}", i + 1);
        }
    }
    let elapsed = start.elapsed();
    println!("{CALLS} add calls at once on one connection: all answered, in {elapsed:.0?}");

    // `hash` computes for a while on the server's blocking pool; meanwhile
    // the server's async threads answer everything else.
    let params = json!({ "text": "rpc-steps", "rounds": 5_000_000 });
    let hashed = client.call("hash", params);
    let (hashed, sum) = tokio::join!(hashed, client.add(1.0, 2.0));
    println!(
        "hash(rpc-steps, 5000000 rounds) = {} beside add(1, 2) = {}",
        hashed?.as_str().unwrap_or("?"),
        sum?
    );
    Ok(())
}

/// This step's part of the demo; fails if a call is retried that must not
/// be, or is not retried that should be, or outlives its deadline.
async fn retries_and_deadlines(client: &Client) -> anyhow::Result<()> {
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
    let calls = client.call_with("flaky", params, &idempotent).await?;
    println!("flaky(failures: 2), idempotent = {calls} (the server saw {calls} attempts)");
    if calls != 3 {
        bail!("the idempotent call should have taken 3 attempts, took {calls}");
    }

    // Not idempotent: the request reached the method, so it is not sent
    // again, although a second attempt would have succeeded.
    let params = json!({ "key": key("once"), "failures": 1 });
    let once = client.call("flaky", params).await;
    let call = "flaky(failures: 1), not idempotent, so not sent again";
    expect_error(call, once, ErrorCode::ServerBusy)?;

    // A deadline shorter than the work: the call gives up at it, and the
    // connection goes on working.
    let short = CallOptions {
        timeout: Some(Duration::from_millis(100)),
        ..CallOptions::default()
    };
    let slow = client
        .call_with("sleep", json!({ "ms": 500 }), &short)
        .await;
    expect_error("sleep(500) with a 100ms deadline", slow, ErrorCode::Timeout)?;
    let sum = client.add(2.0, 3.0).await?;
    println!("add(2, 3) = {sum} (same connection, after the timeout)");
    Ok(())
}

/// The error codes the rest of the demo does not show; fails if a call
/// gets another answer.
async fn more_error_codes(
    client: &Client,
    addr: SocketAddr,
    with_token: bool,
) -> anyhow::Result<()> {
    let product = client.call("multiply", json!({ "a": 2, "b": 3 })).await;
    expect_error("multiply(2, 3)", product, ErrorCode::MethodNotFound)?;
    // `explode` panics on the server, which answers and serves on.
    let exploded = client.call("explode", Value::Null).await;
    expect_error("explode()", exploded, ErrorCode::Internal)?;
    let sum = client.add(3.0, 4.0).await?;
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
    let intruder = Client::connect_with(addr, config).await?;
    let call = "add(1, 2) with a wrong token";
    expect_error(call, intruder.add(1.0, 2.0).await, ErrorCode::Unauthorized)
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
    // The server now stops a call at the same deadline as the client's
    // own timer: which of the two says so first varies from run to run.
    if got == ErrorCode::Timeout {
        println!("{call} -> {got}");
        return Ok(());
    }
    let details = (!details.is_null()).then(|| format!(" {details}"));
    println!("{call} -> {got}: {message}{}", details.unwrap_or_default());
    Ok(())
}
