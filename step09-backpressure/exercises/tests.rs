//! The chapter's exercises. Each test is `#[ignore]`d so that the step's
//! own suite stays green; run them with
//!
//! ```text
//! cargo test -p step09-backpressure --test exercises -- --ignored
//! ```
//!
//! and make them pass, in any order: each is independent of the others.
//! `cargo xtask exercises` checks that each one fails on the step as
//! shipped and with each wrong solution in `exercises/`, and passes with
//! its reference solution, alone or with the others.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::rpc::client::{CallError, CallOptions, Client, ClientConfig};
use common::rpc::server::{Limits, ServerConfig};
use common::rpc::service::{self, ServiceCalls};
use common::{next_frame, promptly, start_server_here};
use serde_json::{Value, json};
use testkit::frame;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A server on the test's runtime that runs at most `max_handlers` calls.
async fn start_server(max_handlers: usize) -> std::net::SocketAddr {
    let limits = Limits {
        max_handlers,
        ..Limits::default()
    };
    let config = ServerConfig {
        limits,
        ..ServerConfig::default()
    };
    start_server_here(service::methods(), config).await
}

/// Sends `body` as one frame.
async fn send(stream: &mut TcpStream, body: Value) {
    stream
        .write_all(&frame(body.to_string().as_bytes()))
        .await
        .unwrap();
}

/// Asks `method` on `stream` and returns the answer, which must come at once.
async fn ask(stream: &mut TcpStream, method: &str) -> Value {
    send(stream, json!({"id": 0, "method": method})).await;
    promptly(next_frame(stream)).await.unwrap()
}

// ANCHOR: overloaded
/// Exercise 1: `health` says `overloaded` while every handler is taken,
/// and `serving` while one is free.
#[tokio::test(start_paused = true)]
#[ignore]
async fn health_says_overloaded_while_every_handler_is_taken() {
    let addr = start_server(2).await;
    let mut watcher = TcpStream::connect(addr).await.unwrap();
    let status = |answer: Value| answer["result"]["status"].clone();
    assert_eq!(status(ask(&mut watcher, "health").await), "serving");
    let mut busy = TcpStream::connect(addr).await.unwrap();
    for (id, ms) in [(1, 1000), (2, 2000)] {
        send(
            &mut busy,
            json!({"id": id, "method": "sleep", "params": {"ms": ms}}),
        )
        .await;
        let running = |stats: Value| stats["result"]["handlers_running"].clone();
        while running(ask(&mut watcher, "stats").await) != id {
            tokio::task::yield_now().await;
        }
        let expected = if id == 2 { "overloaded" } else { "serving" };
        assert_eq!(status(ask(&mut watcher, "health").await), expected);
    }
    // One sleep over, a handler is free again.
    assert_eq!(next_frame(&mut busy).await.unwrap()["result"], 1000);
    assert_eq!(status(ask(&mut watcher, "health").await), "serving");
}
// ANCHOR_END: overloaded

// ANCHOR: hold_back
/// Exercise 2: once the server has shed one of its calls, a client sends
/// nothing more until the server's hint has passed, or the call's deadline
/// comes first: new calls wait too, and each shed moves the time later.
#[tokio::test(start_paused = true)]
#[ignore]
async fn a_shed_client_holds_every_call_until_the_hint_has_passed() {
    let addr = start_server(1).await;
    // Hold the one handler for 150 ms.
    let holder = Client::connect(addr).await.unwrap();
    let held = tokio::spawn(async move { holder.sleep(150).await });
    let mut watcher = TcpStream::connect(addr).await.unwrap();
    while ask(&mut watcher, "stats").await["result"]["handlers_running"] != 1 {
        tokio::task::yield_now().await;
    }
    // No jitter: each pause is the hint, 100 ms.
    let config = ClientConfig {
        uniform: Arc::new(|| 0.0),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(addr, config).await.unwrap();
    let start = Instant::now();
    let call = |a: f64, timeout: Option<Duration>| {
        let client = client.clone();
        tokio::spawn(async move {
            let options = CallOptions {
                timeout,
                ..CallOptions::default()
            };
            let answer = client.call_with("add", json!({"a": a, "b": a}), &options);
            (answer.await, start.elapsed())
        })
    };
    // Shed at 0 ms: the client holds every call back until 100 ms.
    let first = call(1.0, None);
    tokio::time::sleep(Duration::from_millis(10)).await;
    // This one goes at 100 ms, not at 10 ms, and is shed with the first
    // one's retry: now the client holds back until 200 ms.
    let second = call(2.0, None);
    // This one's deadline, at 60 ms, comes before the hint: it fails then,
    // unsent.
    let hurried = call(3.0, Some(Duration::from_millis(50)));
    // The handler is free from 150 ms, but a call made at 160 ms waits
    // for the latest hint, and goes at 200 ms with the other two.
    tokio::time::sleep_until(start + Duration::from_millis(160)).await;
    let last = call(4.0, None);
    for (call, sum) in [(first, 2.0), (second, 4.0), (last, 8.0)] {
        let (answer, at) = call.await.unwrap();
        assert_eq!(answer.unwrap(), sum);
        assert_eq!(at, Duration::from_millis(200));
    }
    let (answer, at) = hurried.await.unwrap();
    assert!(matches!(answer, Err(CallError::Timeout)), "{answer:?}");
    assert_eq!(at, Duration::from_millis(60));
    assert_eq!(held.await.unwrap().unwrap(), 150);
    let stats = ask(&mut watcher, "stats").await;
    let add = &stats["result"]["methods"]["add"]["codes"];
    // Shed at 0 ms (the first), at 100 ms (the first and the second); run
    // at 200 ms (those two and the last).
    assert_eq!(add, &json!({"OK": 3, "SERVER_BUSY": 3}), "{stats}");
}
// ANCHOR_END: hold_back
