//! The chapter's exercises. Each test is `#[ignore]`d so that the step's
//! own suite stays green; run them with
//!
//! ```text
//! cargo test -p step03-retries --test exercises -- --ignored
//! ```
//!
//! and make them pass, in any order: each is independent of the others.
//! `cargo xtask exercises` checks that each one fails on the step as
//! shipped and with each wrong solution in `exercises/`, and passes with
//! its reference solution, alone or with the others.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::rpc::client::{CallError, CallOptions, Client, ClientConfig};
use common::rpc::protocol::RpcError;
use common::rpc::service;
use common::rpc::service::ServiceCalls;
use common::spawn_server_offering;
use serde_json::json;
use testkit::{FakeServer, Reply};

fn idempotent() -> CallOptions {
    CallOptions {
        idempotent: true,
        ..CallOptions::default()
    }
}

// ANCHOR: retry_budget
/// Exercise 1 (required): a retry budget. A client may retry 10 times to
/// start with, earns one more retry for every 5 calls it makes, and never
/// saves up more than 10. A retry the budget cannot pay for is not made,
/// and the call fails with its last error.
#[test]
#[ignore]
fn retries_are_capped_by_a_budget() {
    // A method that is always unavailable, and counts the requests it gets.
    let requests = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&requests);
    let mut methods = service::methods();
    methods.register("down", move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        Err(RpcError::new("unavailable", "down for maintenance"))
    });
    // The default policy (4 attempts a call), without waiting the pauses.
    let config = ClientConfig {
        sleep: Arc::new(|_| {}),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(spawn_server_offering(methods), config).unwrap();
    // Makes `calls` calls to `down`; returns how many retries they made.
    let retries = |calls: u64| {
        let before = requests.load(Ordering::SeqCst);
        for _ in 0..calls {
            let result = client.call_with("down", json!(null), &idempotent());
            assert!(matches!(result, Err(CallError::Server(e)) if e.code == "unavailable"));
        }
        requests.load(Ordering::SeqCst) - before - calls
    };

    // Without a budget, 100 calls make 3 retries each: 300. With it, the
    // 10 it starts with and at most the 20 that 100 calls earn; and at
    // least the 10, for a budget must not forbid all retries.
    let spent = retries(100);
    assert!((10..=30).contains(&spent), "{spent} retries in 100 calls");

    // Calls that succeed earn too, here 100 on a clone of the client: the
    // budget is the client's, shared by every clone. They would earn 20
    // retries, but the budget holds at most 10; so 10 more calls to `down`
    // may retry those 10 and the 2 they earn themselves, and no more.
    let clone = client.clone();
    for _ in 0..100 {
        assert_eq!(clone.add(1.0, 2.0).unwrap(), 3.0);
    }
    let refilled = retries(10);
    assert!(
        (10..=12).contains(&refilled),
        "{refilled} retries in 10 calls, after 100 calls that succeeded"
    );
}
// ANCHOR_END: retry_budget

// ANCHOR: retry_after
/// Exercise 2: a server that answers `unavailable` may say when to come
/// back, as `details.retry_after_ms`. The client then waits that long
/// before its next attempt instead of its own backoff, but never past the
/// call's deadline.
#[test]
#[ignore]
fn a_retry_after_hint_sets_the_pause() {
    // Busy twice, with a hint each time, then fine.
    let calls = AtomicU64::new(0);
    let mut methods = service::methods();
    methods.register("busy_twice", move |_| {
        let retry_after_ms = match calls.fetch_add(1, Ordering::SeqCst) {
            // An hour: longer than the call's deadline.
            0 => 3_600_000,
            // Shorter than the client's own backoff.
            1 => 1,
            _ => return Ok(json!("done")),
        };
        Err(RpcError {
            details: json!({ "retry_after_ms": retry_after_ms }),
            ..RpcError::new("unavailable", "busy, come back later")
        })
    });
    // Records the pauses instead of waiting them out. At this draw the
    // client's own backoff would pause 25 ms, then 50 ms.
    let pauses = Arc::new(Mutex::new(Vec::new()));
    let recorder = Arc::clone(&pauses);
    let timeout = Duration::from_secs(60);
    let config = ClientConfig {
        default_timeout: timeout,
        sleep: Arc::new(move |pause| recorder.lock().unwrap().push(pause)),
        uniform: Arc::new(|| 0.5),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(spawn_server_offering(methods), config).unwrap();
    let answer = client.call_with("busy_twice", json!(null), &idempotent());
    assert_eq!(answer.unwrap(), "done");

    let pauses = pauses.lock().unwrap().clone();
    assert_eq!(pauses.len(), 2, "{pauses:?}");
    // The hour is cut short at the deadline: what is left of the minute,
    // which is more than any backoff (at most 1 s).
    assert!(
        pauses[0] <= timeout && pauses[0] > Duration::from_secs(1),
        "{pauses:?}"
    );
    // The millisecond is taken as it is, although the backoff is longer.
    assert_eq!(pauses[1], Duration::from_millis(1), "{pauses:?}");
}
// ANCHOR_END: retry_after

// ANCHOR: sleep_deadline
/// Exercise 3: `Client::sleep(ms)` asks the server to take `ms` on
/// purpose, so its deadline is the client's default plus `ms`. Other
/// calls keep the default.
#[test]
#[ignore]
fn sleep_gets_a_deadline_that_fits_it() {
    // A fake server that answers every call at once with its `ms`, and
    // shows the test each request, with the deadline it carries: the
    // client sends the time left as `meta.timeout_ms`.
    let server = FakeServer::start(|request| {
        let result = &request["params"]["ms"];
        vec![Reply::Json(
            json!({"id": request["id"], "ok": true, "result": result}),
        )]
    });
    let default_ms = 20_000;
    let config = ClientConfig {
        default_timeout: Duration::from_millis(default_ms),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(server.addr(), config).unwrap();
    // All of the deadline is left when the request is sent, or on a slow
    // machine a little less: up to 5 s less, in case it is very slow.
    let time_left = |server: &FakeServer| {
        let sent = server.request_json()["meta"]["timeout_ms"].as_u64();
        sent.expect("a timeout_ms")
    };
    for ms in [10_000, 1_000] {
        assert_eq!(client.sleep(ms).unwrap(), ms);
        let deadline = default_ms + ms;
        let sent = time_left(&server);
        assert!(
            sent <= deadline && sent > deadline - 5_000,
            "sleep({ms}) sent {sent} ms, not the default and {ms}: {deadline}"
        );
    }
    let params = json!({"ms": 10_000});
    client
        .call_with("sleep", params, &CallOptions::default())
        .unwrap();
    let sent = time_left(&server);
    assert!(
        sent <= default_ms && sent > default_ms - 5_000,
        "a plain call sent {sent} ms, not the default: {default_ms}"
    );
}
// ANCHOR_END: sleep_deadline
