//! Deadlines on both sides: the client gives up at its deadline and drops
//! the answer that comes later; the server skips, or answers `TIMEOUT`
//! for, work whose caller has given up.

mod common;

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::rpc::client::{CallError, CallOptions, Client};
use common::rpc::service::ServiceCalls;
use common::spawn_server_with_hold;
use serde_json::{Value, json};
use testkit::{STUCK, connect, exchange};
use testkit::{read_frame, write_frame};

/// Sends a `hold` request with `timeout_ms` as one raw frame.
fn send_hold(stream: &mut TcpStream, timeout_ms: u64) {
    let request = json!({
        "id": 1, "method": "hold", "params": "held", "meta": {"timeout_ms": timeout_ms}
    });
    write_frame(stream, request.to_string().as_bytes()).unwrap();
}

/// Reads one response frame as JSON.
fn read_response(stream: &mut TcpStream) -> Value {
    let body = read_frame(stream).unwrap().expect("a response");
    serde_json::from_slice(&body).unwrap()
}

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
    let waiting = Instant::now();
    while client.unknown_responses() == 0 {
        assert!(waiting.elapsed() < STUCK, "the late answer never came");
        thread::sleep(Duration::from_millis(1));
    }

    // The connection is still the same one (its count is still 1), and
    // still works.
    assert_eq!(client.add(1.0, 2.0).unwrap(), 3.0);
    assert_eq!(client.unknown_responses(), 1);
}

#[test]
fn server_answers_timeout_for_work_past_its_deadline() {
    let (addr, hold) = spawn_server_with_hold();
    let mut stream = connect(addr);
    send_hold(&mut stream, 50);
    hold.started.recv_timeout(STUCK).unwrap();
    // The deadline was set when the request was read, before the method
    // started: 100 ms after that, it has passed for sure.
    thread::sleep(Duration::from_millis(100));
    hold.release.send(()).unwrap();
    let response = read_response(&mut stream);
    assert_eq!(response["id"], 1);
    assert_eq!(response["error"]["code"], "TIMEOUT", "{response}");
    assert!(response.get("result").is_none(), "{response}");

    // The connection goes on.
    let add = br#"{"id":2,"method":"add","params":{"a":1,"b":2}}"#;
    assert_eq!(exchange(&mut stream, add)["result"], 3.0);
}

#[test]
fn server_skips_work_whose_deadline_has_passed() {
    let (addr, hold) = spawn_server_with_hold();
    let mut stream = connect(addr);
    // No time left: had `hold` run, it would wait for a release that never
    // comes, and this read would time out.
    send_hold(&mut stream, 0);
    let response = read_response(&mut stream);
    assert_eq!(response["error"]["code"], "TIMEOUT", "{response}");
    assert!(hold.started.try_recv().is_err(), "the method ran");
}
