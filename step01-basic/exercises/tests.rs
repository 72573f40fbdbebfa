//! The chapter's exercises. Each test is `#[ignore]`d so that the step's
//! own suite stays green; run them with
//!
//! ```text
//! cargo test -p step01-basic --test exercises -- --ignored
//! ```
//!
//! and make them pass. `cargo xtask exercises` checks that each one fails
//! on the step as shipped and passes with the solution in `exercises/`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::TcpStream;

use common::rpc::client::{CallError, Client};
use serde_json::{Value, json};
use testkit::read_frame;

// ANCHOR: sum
/// Exercise 1: a method whose params are a list, `sum {numbers: [..]}`.
#[test]
#[ignore]
fn sum_adds_a_list_of_numbers() {
    let mut client = Client::connect(common::spawn_server()).unwrap();
    let sum = |client: &mut Client, params| client.call("sum", params);
    assert_eq!(
        sum(&mut client, json!({"numbers": [1, 2, 3.5]})).unwrap(),
        6.5
    );
    assert_eq!(sum(&mut client, json!({"numbers": []})).unwrap(), 0.0);
    for bad in [
        json!({"numbers": [1, "two"]}),
        json!({"numbers": 3}),
        json!({}),
    ] {
        match sum(&mut client, bad) {
            Err(CallError::Server(message)) => {
                assert!(message.contains("params.numbers"), "{message}")
            }
            other => panic!("expected an error naming params.numbers, got {other:?}"),
        }
    }
}
// ANCHOR_END: sum

/// Exercise 2: say why before hanging up on an oversize frame.
#[test]
#[ignore]
fn oversize_frame_is_answered_before_hanging_up() {
    let mut stream: TcpStream = testkit::connect(common::spawn_server());
    testkit::send_raw(&mut stream, &[0xFF; 4]);
    let answer = read_frame(&mut stream)
        .expect("a whole frame")
        .expect("an answer before the server hangs up");
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("exceeds the maximum"), "{answer}");
    assert!(
        testkit::closed_by_server(&mut stream),
        "still open after the answer"
    );
}

/// Exercise 3: a method that lists the methods, itself included.
#[test]
#[ignore]
fn methods_lists_what_the_server_offers() {
    let mut client = Client::connect(common::spawn_server()).unwrap();
    let names = client.call("methods", Value::Null).unwrap();
    assert_eq!(names, json!(["add", "divide", "methods"]));
}
