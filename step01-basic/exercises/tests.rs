//! The chapter's exercises. Each test is `#[ignore]`d so that the step's
//! own suite stays green; run them with
//!
//! ```text
//! cargo test -p step01-basic --test exercises -- --ignored
//! ```
//!
//! and make them pass, in any order: each is independent of the others.
//! `cargo xtask exercises` checks that each one fails on the step as
//! shipped and with each wrong solution in `exercises/`, and passes with
//! its reference solution, alone or with the others.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{TcpListener, TcpStream};
use std::thread;

use common::rpc::client::{CallError, Client};
use common::rpc::server::{self, ServerConfig};
use common::rpc::service;
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

// ANCHOR: methods
/// Exercise 3: every server answers `methods` with the names of all the
/// methods it offers, sorted, `methods` included: the service's, and any a
/// program registers on top of them.
#[test]
#[ignore]
fn methods_lists_what_the_server_offers() {
    // The service's methods, and some of the test's own, registered after.
    // Enough names that a list in a `HashMap`'s order is never sorted by
    // luck.
    let own = ["zeta", "alpha", "omega", "beta", "kappa", "delta", "mu"];
    let mut methods = service::methods();
    for name in own {
        methods.register(name, |params| Ok(params.clone()));
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || server::run(listener, methods, ServerConfig::default()));

    let mut client = Client::connect(addr).unwrap();
    let listed = client.call("methods", Value::Null).unwrap();
    let names: Vec<String> = serde_json::from_value(listed.clone())
        .unwrap_or_else(|e| panic!("expected a list of names, got {listed}: {e}"));
    assert!(
        names.windows(2).all(|pair| pair[0] < pair[1]),
        "not sorted, or a name twice: {listed}"
    );
    for name in own.into_iter().chain(["add", "divide", "methods"]) {
        assert!(names.iter().any(|n| n == name), "no {name} in {listed}");
    }
    // And every name listed is a method.
    for name in &names {
        if let Err(CallError::Server(message)) = client.call(name, Value::Null) {
            assert!(!message.contains("unknown method"), "{name}: {message}");
        }
    }
}
// ANCHOR_END: methods
