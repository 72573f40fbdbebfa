//! Deadlines on both sides: the client gives up at its deadline and drops
//! the answer that comes later; the server skips, or answers `timeout`
//! for, work whose caller has given up.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::rpc::client::{CallError, CallOptions, Client};
use common::rpc::service::ServiceCalls;
use common::spawn_server_with_hold;
use serde_json::json;
use testkit::{STUCK, connect, exchange, receive, send, wait_until};

// ANCHOR: late_response_test
#[test]
fn late_response_after_timeout_is_dropped() {
    let (addr, hold) = spawn_server_with_hold();
    let client = Client::connect(addr).unwrap();
    let options = CallOptions {
        timeout: Some(Duration::from_millis(100)),
        ..CallOptions::default()
    };
    let start = Instant::now();
    let result = client.call_with("hold", json!("late"), &options);
    assert!(matches!(result, Err(CallError::Timeout)), "{result:?}");
    assert!(start.elapsed() >= Duration::from_millis(100));

    // The method ran, and its answer comes once it is let go: to nobody.
    hold.started.recv_timeout(STUCK).unwrap();
    assert_eq!(client.unknown_responses(), 0);
    hold.release.send(()).unwrap();
    wait_until("the late answer comes", STUCK, || {
        client.unknown_responses() == 1
    });

    // The connection is still the same one (its count is still 1), and
    // still works.
    assert_eq!(client.add(1.0, 2.0).unwrap(), 3.0);
    assert_eq!(client.unknown_responses(), 1);
}
// ANCHOR_END: late_response_test

// ANCHOR: server_deadline_test
#[test]
fn server_answers_timeout_for_work_past_its_deadline() {
    let (addr, hold) = spawn_server_with_hold();
    let mut stream = connect(addr);
    let request = json!({
        "id": 1, "method": "hold", "params": "held", "meta": {"timeout_ms": 50}
    });
    send(&mut stream, request.to_string().as_bytes());
    hold.started.recv_timeout(STUCK).unwrap();
    // The deadline was set when the request was read, before the method
    // started: 100 ms after that, it has passed for sure.
    thread::sleep(Duration::from_millis(100));
    hold.release.send(()).unwrap();
    let response = receive(&mut stream);
    assert_eq!(response["id"], 1);
    assert_eq!(response["error"]["code"], "timeout", "{response}");
    assert!(response.get("result").is_none(), "{response}");

    // The connection goes on.
    let add = br#"{"id":2,"method":"add","params":{"a":1,"b":2}}"#;
    assert_eq!(exchange(&mut stream, add)["result"], 3.0);
}
// ANCHOR_END: server_deadline_test

#[test]
fn server_skips_work_whose_deadline_has_passed() {
    let (addr, hold) = spawn_server_with_hold();
    let mut stream = connect(addr);
    // No time left: had `hold` run, it would wait for a release that never
    // comes, and this read would time out.
    let request = json!({
        "id": 1, "method": "hold", "params": "held", "meta": {"timeout_ms": 0}
    });
    send(&mut stream, request.to_string().as_bytes());
    let response = receive(&mut stream);
    assert_eq!(response["error"]["code"], "timeout", "{response}");
    assert!(hold.started.try_recv().is_err(), "the method ran");
}
