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
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::rpc::protocol::RpcError;
use common::rpc::server::ServerConfig;
use common::rpc::service;
use common::spawn_stoppable_server;
use serde_json::{Value, json};
use testkit::{STUCK, connect, exchange, read_frame, receive, send, wait_until};

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

// ANCHOR: refused_after_notice
/// Exercise 2: a draining server still reads what its peer sends, and
/// answers each request that arrives after the notice with `SERVER_BUSY`
/// under the request's id, without running it: its client then knows the
/// call did not run, and may send it elsewhere, which a connection that
/// just closes cannot tell it.
#[test]
#[ignore]
fn a_request_after_the_notice_is_refused_not_ignored() {
    let counted = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&counted);
    let (started, started_rx) = std::sync::mpsc::channel();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let mut methods = service::methods();
    methods.register("count", move |_: Value| {
        count.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok::<_, RpcError>(Value::Null))
    });
    let permits = Arc::clone(&release);
    methods.register("hold", move |_: Value| {
        let (started, permits) = (started.clone(), Arc::clone(&permits));
        async move {
            let _ = started.send(());
            permits.acquire().await.expect("never closed").forget();
            Ok::<_, RpcError>("held")
        }
    });
    let mut server = spawn_stoppable_server(methods, ServerConfig::default());
    let mut stream = connect(server.addr);
    send(&mut stream, br#"{"id":1,"method":"hold"}"#);
    started_rx.recv_timeout(STUCK).expect("hold started");
    server.stop();
    let notice = receive(&mut stream);
    assert_eq!(notice["error"]["details"]["going_away"], true, "{notice}");

    // Answered while `hold` still runs: the drain reads as it waits.
    let refused = exchange(&mut stream, br#"{"id":2,"method":"count"}"#);
    assert_eq!(refused["id"], 2, "{refused}");
    assert_eq!(refused["error"]["code"], "SERVER_BUSY", "{refused}");
    let refused = exchange(&mut stream, br#"{"id":3,"method":"count"}"#);
    assert_eq!(refused["id"], 3, "{refused}");
    assert_eq!(counted.load(Ordering::SeqCst), 0, "a refused request ran");

    release.add_permits(1);
    let held = receive(&mut stream);
    assert_eq!((&held["id"], &held["result"]), (&json!(1), &json!("held")));
    match read_frame(&mut stream) {
        Ok(None) => {}
        other => panic!("expected a clean end of stream, got {other:?}"),
    }
    drop(stream);
    server.join().expect("run returns Ok");
}
// ANCHOR_END: refused_after_notice
