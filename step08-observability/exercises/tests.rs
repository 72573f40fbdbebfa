//! The chapter's exercises. Each test is `#[ignore]`d so that the step's
//! own suite stays green; run them with
//!
//! ```text
//! cargo test -p step08-observability --test exercises -- --ignored
//! ```
//!
//! and make them pass, in any order: each is independent of the others.
//! `cargo xtask exercises` checks that each one fails on the step as
//! shipped and with each wrong solution in `exercises/`, and passes with
//! its reference solution, alone or with the others.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;

use serde_json::{Value, json};
use testkit::{STUCK, wait_until};

/// Sends `request` on `stream` and returns its answer.
fn call(stream: &mut TcpStream, request: Value) -> Value {
    testkit::exchange(stream, request.to_string().as_bytes())
}

/// `sleep`'s row of the server's `stats`, asked on `stream`.
fn sleep_stats(stream: &mut TcpStream) -> Value {
    let stats = call(stream, json!({"id": 1000, "method": "stats"}));
    stats["result"]["methods"]["sleep"].clone()
}

// ANCHOR: cancelled
/// Exercise 1: a call whose peer hangs up is cancelled, and `stats` says
/// how many were, per method, beside the calls answered.
#[test]
#[ignore]
fn calls_cut_off_by_a_hang_up_are_counted_as_cancelled() {
    let addr = common::spawn_server();
    let mut watcher = testkit::connect(addr);
    let mut leaver = testkit::connect(addr);
    let sleep = json!({"id": 1, "method": "sleep", "params": {"ms": 5000}});
    testkit::send(&mut leaver, sleep.to_string().as_bytes());
    let in_flight = |stream: &mut TcpStream| {
        let stats = call(stream, json!({"id": 1001, "method": "stats"}));
        stats["result"]["calls_in_flight"].as_u64()
    };
    wait_until("the sleep is running", STUCK, || {
        in_flight(&mut watcher) == Some(2)
    });
    drop(leaver);
    wait_until("the sleep is cancelled", STUCK, || {
        sleep_stats(&mut watcher)["cancelled"] == 1
    });
    assert_eq!(in_flight(&mut watcher), Some(1));
    // An answered call is counted as answered, and only as that.
    let short = json!({"id": 2, "method": "sleep", "params": {"ms": 1}});
    assert_eq!(call(&mut watcher, short)["result"], 1);
    let sleep = sleep_stats(&mut watcher);
    assert_eq!(
        (&sleep["calls"], &sleep["cancelled"]),
        (&json!(1), &json!(1)),
        "{sleep}"
    );
    assert_eq!(sleep["codes"], json!({"OK": 1}), "{sleep}");
}
// ANCHOR_END: cancelled

// ANCHOR: slow_calls
/// Exercise 2: a call slower than a second is logged at the default level,
/// however it ended, with its method and latency; a quick one is not.
#[test]
#[ignore]
fn slow_calls_are_logged_at_the_default_level() {
    let bin = common::bin("server");
    let env = [("RUST_LOG", "info")];
    let (mut server, addr) = testkit::start_server_in(&bin, &[], &env, Stdio::piped());
    let stderr = server.stderr.take().unwrap();
    let (lines, log) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut stream = testkit::connect(addr);
    call(
        &mut stream,
        json!({"id": 1, "method": "add", "params": {"a": 1, "b": 2}}),
    );
    // Half a second is not slow; 1.1 s is, answered or not.
    let quick = json!({"id": 3, "method": "sleep", "params": {"ms": 500}});
    assert_eq!(call(&mut stream, quick)["result"], 500);
    let slow = json!({"id": 2, "method": "sleep", "params": {"ms": 1100}});
    assert_eq!(call(&mut stream, slow)["result"], 1100);
    let late = json!({"timeout_ms": 1050});
    let failed = json!({"id": 4, "method": "sleep", "params": {"ms": 1100}, "meta": late});
    assert_eq!(call(&mut stream, failed)["error"]["code"], "TIMEOUT");
    let mut seen = Vec::new();
    let mut slow_lines = Vec::new();
    while slow_lines.len() < 2 {
        let line = (log.recv_timeout(STUCK))
            .unwrap_or_else(|_| panic!("not two slow calls in {seen:#?} {slow_lines:#?}"));
        if line.contains("slow") {
            slow_lines.push(line);
        } else {
            seen.push(line);
        }
    }
    for (slow, id) in slow_lines.iter().zip([2, 4]) {
        assert!(slow.contains("WARN"), "{slow}");
        let span = format!(r#"call{{request_id={id} method="sleep"}}"#);
        assert!(slow.contains(&span), "{slow}");
        let latency = slow
            .split("latency_us=")
            .nth(1)
            .and_then(|rest| rest.split(' ').next());
        let latency: u64 = latency
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{slow}"));
        assert!(latency >= 1_050_000, "{slow}");
    }
    let quick = |line: &&String| line.contains("add") || line.contains("request_id=3");
    assert!(!seen.iter().any(|line| quick(&line)), "{seen:#?}");
}
// ANCHOR_END: slow_calls
