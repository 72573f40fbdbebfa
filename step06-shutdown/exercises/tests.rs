//! The chapter's exercises. Each test is `#[ignore]`d so that the step's
//! own suite stays green; run them with
//!
//! ```text
//! cargo test -p step06-shutdown --test exercises -- --ignored
//! ```
//!
//! and make them pass, in any order: each is independent of the others.
//! `cargo xtask exercises` checks that each one fails on the step as
//! shipped and with each wrong solution in `exercises/`, and passes with
//! its reference solution, alone or with the others.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::rpc::client::{CallError, Client, ClientConfig, RetryPolicy};
use common::rpc::service::ServiceCalls;
use serde_json::json;
use testkit::{FakeServer, Reply, STUCK, connect, exchange, read_frame, receive, send, wait_until};

/// Sends `signal` (`-TERM`, `-INT`) to process `pid`, as `kill` does.
fn kill(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
    assert!(status.unwrap().success(), "kill {signal} {pid}");
}

// ANCHOR: second_signal
/// Exercise 1: the first Ctrl-C (or SIGTERM) drains; a second one, while the
/// drain goes on, stops the server at once, as an operator who will not
/// wait means, and it exits with a failure status, since it did not finish
/// what it had taken on.
#[test]
#[ignore]
fn a_second_signal_stops_the_server_at_once() {
    let (mut server, addr) =
        testkit::start_server_with(&common::bin("server"), &[], Stdio::piped());
    let mut stream = connect(addr);
    // A call that would hold the drain for 10 s. Once `add` is answered,
    // the server has read `sleep`: requests are read in order.
    send(
        &mut stream,
        br#"{"id":1,"method":"sleep","params":{"ms":10000}}"#,
    );
    let sum = exchange(
        &mut stream,
        br#"{"id":2,"method":"add","params":{"a":1,"b":2}}"#,
    );
    assert_eq!(sum["result"], 3.0, "{sum}");

    kill("-TERM", server.id());
    let notice = receive(&mut stream);
    assert_eq!(notice["error"]["details"]["going_away"], true, "{notice}");
    assert!(
        server.try_wait().unwrap().is_none(),
        "the first signal drains"
    );

    let second = Instant::now();
    kill("-INT", server.id());
    wait_until("the server exits", STUCK, || {
        server.try_wait().unwrap().is_some()
    });
    assert!(
        second.elapsed() < Duration::from_secs(5),
        "it waited for the drain"
    );
    let status = server.wait().unwrap();
    let mut log = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        !status.success(),
        "a drain cut short is not a success: {status}\n{log}"
    );
    // The sleep was never answered: the connection just ended.
    assert!(matches!(read_frame(&mut stream), Ok(None) | Err(_)));
}
// ANCHOR_END: second_signal

// ANCHOR: transparent_retry
/// Exercise 2: a call that a server going away refused did not run, and
/// its next attempt goes to a new connection: the client sends it again at
/// once, without a pause, and without counting it as an attempt, as gRPC
/// does; but only once per call, so that a server that refuses everything
/// cannot keep a call going round for ever.
#[tokio::test]
#[ignore]
async fn a_refused_call_is_retried_at_once_and_costs_no_attempt() {
    // The first request gets the notice and a refusal; then `refusals - 1`
    // more refusals; then its answer.
    let fake = |refusals: usize| {
        let mut seen = 0;
        FakeServer::start(move |request| {
            seen += 1;
            let id = &request["id"];
            let refusal = json!({"id": id, "ok": false, "error": {"code": "SERVER_BUSY",
                "message": "going away", "details": {"going_away": true}}});
            let notice = json!({"id": null, "ok": false, "error": {"code": "SERVER_BUSY",
                "message": "going away", "details": {"going_away": true}}});
            match seen {
                n if n <= refusals => vec![Reply::Json(notice), Reply::Json(refusal)],
                _ => vec![Reply::Json(json!({"id": id, "ok": true, "result": 3.0}))],
            }
        })
    };
    let pauses = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&pauses);
    let config = ClientConfig {
        // One attempt, and so no retry, unless a refusal costs none.
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        sleep: Arc::new(move |pause| {
            recorded.lock().unwrap().push(pause);
            Box::pin(std::future::ready(()))
        }),
        default_timeout: Duration::from_secs(2),
        ..ClientConfig::default()
    };

    let once = fake(1);
    let client = Client::connect_with(once.addr(), config.clone())
        .await
        .unwrap();
    assert_eq!(client.add(1.0, 2.0).await.unwrap(), 3.0, "sent again");
    assert_eq!(*pauses.lock().unwrap(), [], "sent again without a pause");

    let twice = fake(2);
    let client = Client::connect_with(twice.addr(), config).await.unwrap();
    match client.add(1.0, 2.0).await {
        Err(CallError::Server(error)) => assert!(error.is_going_away(), "{error:?}"),
        other => panic!("a second refusal is an attempt like any other: {other:?}"),
    }
    assert_eq!(twice.requests_so_far().len(), 2, "sent twice, and no more");
}
// ANCHOR_END: transparent_retry
