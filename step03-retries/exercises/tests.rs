//! The chapter's exercises. Each test is `#[ignore]`d so that the step's
//! own suite stays green; run them with
//!
//! ```text
//! cargo test -p step03-retries --test exercises -- --ignored
//! ```
//!
//! and make them pass. `cargo xtask exercises` checks that each one fails
//! on the step as shipped and passes with the solution in `exercises/`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::rpc::client::{CallError, CallOptions, Client, ClientConfig};
use common::rpc::protocol::RpcError;
use common::rpc::service;
use common::rpc::service::ServiceCalls;
use common::{spawn_server, spawn_server_offering};
use serde_json::json;

fn idempotent() -> CallOptions {
    CallOptions {
        idempotent: true,
        ..CallOptions::default()
    }
}

// ANCHOR: retry_budget
/// Exercise 1 (required): a retry budget. Over its life a client may
/// retry 10 times, plus once for every 5 calls it makes; a retry the
/// budget cannot pay for is not made, and the call fails with its last
/// error.
#[test]
#[ignore]
fn retries_are_capped_by_a_budget() {
    // A method that is always unavailable, and counts the requests it gets.
    let requests = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&requests);
    let mut methods = service::methods();
    methods.register("down", move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
        Err(RpcError::new("unavailable", "down for maintenance"))
    });
    // The default policy (4 attempts a call), without waiting the pauses.
    let config = ClientConfig {
        sleep: Arc::new(|_| {}),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(spawn_server_offering(methods), config).unwrap();

    const CALLS: u64 = 100;
    for _ in 0..CALLS {
        let result = client.call_with("down", json!(null), &idempotent());
        assert!(matches!(result, Err(CallError::Server(e)) if e.code == "unavailable"));
    }
    // Without a budget, 4 attempts a call: 400 requests. With it, the 100
    // first attempts and at most 10 + 100 / 5 retries; and at least the 10
    // the budget starts with, for a budget must not forbid all retries.
    let requests = requests.load(Ordering::Relaxed);
    let allowed = CALLS + 10..=CALLS + 10 + CALLS / 5;
    assert!(allowed.contains(&requests), "{requests} requests");
}
// ANCHOR_END: retry_budget

// ANCHOR: retry_after
/// Exercise 2: a server that answers `unavailable` may say when to come
/// back, as `details.retry_after_ms`. The client then waits that long
/// before its next attempt instead of its own backoff.
#[test]
#[ignore]
fn a_retry_after_hint_sets_the_pause() {
    // Busy the first time, with a hint; fine the second.
    let calls = AtomicU64::new(0);
    let mut methods = service::methods();
    methods.register("busy_once", move |_| {
        if calls.fetch_add(1, Ordering::Relaxed) > 0 {
            return Ok(json!("done"));
        }
        Err(RpcError {
            details: json!({"retry_after_ms": 250}),
            ..RpcError::new("unavailable", "busy, come back in 250 ms")
        })
    });
    // Records the pauses instead of waiting; the client's own backoff
    // would pause for 0 ms.
    let pauses = Arc::new(Mutex::new(Vec::new()));
    let recorder = Arc::clone(&pauses);
    let config = ClientConfig {
        sleep: Arc::new(move |pause| recorder.lock().unwrap().push(pause)),
        uniform: Arc::new(|| 0.0),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(spawn_server_offering(methods), config).unwrap();
    let answer = client.call_with("busy_once", json!(null), &idempotent());
    assert_eq!(answer.unwrap(), "done");
    assert_eq!(*pauses.lock().unwrap(), [Duration::from_millis(250)]);
}
// ANCHOR_END: retry_after

// ANCHOR: sleep_deadline
/// Exercise 3: `Client::sleep(ms)` asks the server to take `ms` on
/// purpose, so its deadline is the client's default plus `ms`. Other
/// calls keep the default.
#[test]
#[ignore]
fn sleep_gets_a_deadline_that_fits_it() {
    let config = ClientConfig {
        default_timeout: Duration::from_millis(200),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(spawn_server(), config).unwrap();
    assert_eq!(client.sleep(300).unwrap(), 300);
    let params = json!({"ms": 300});
    let result = client.call_with("sleep", params, &CallOptions::default());
    assert!(matches!(result, Err(CallError::Timeout)), "{result:?}");
}
// ANCHOR_END: sleep_deadline
