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

use common::rpc::client::{Client, ClientConfig};
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
/// nothing more until the server's hint has passed: new calls wait too.
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
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.add(1.0, 1.0).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    // Shed at 0 ms, the client waits until 100 ms, the hint: this call
    // goes then, not at 10 ms, and is shed with the first one's retry.
    assert_eq!(client.add(2.0, 2.0).await.unwrap(), 4.0);
    assert_eq!(first.await.unwrap().unwrap(), 2.0);
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(held.await.unwrap().unwrap(), 150);
    let stats = ask(&mut watcher, "stats").await;
    let add = &stats["result"]["methods"]["add"]["codes"];
    // Shed at 0 ms (the first), at 100 ms (both); run at 200 ms (both).
    assert_eq!(add, &json!({"OK": 2, "SERVER_BUSY": 3}), "{stats}");
}
// ANCHOR_END: hold_back
