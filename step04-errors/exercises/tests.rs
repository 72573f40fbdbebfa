//! The chapter's exercises. Each test is `#[ignore]`d so that the step's
//! own suite stays green; run them with
//!
//! ```text
//! cargo test -p step04-errors --test exercises -- --ignored
//! ```
//!
//! and make them pass. `cargo xtask exercises` checks that each one fails
//! on the step as shipped and passes with the solution in `exercises/`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::rpc::client::{CallError, CallOptions, Client, ClientConfig};
use common::rpc::protocol::ErrorCode;
use common::rpc::service;
use common::rpc::service::ServiceCalls;
use common::{spawn_server, spawn_server_offering};
use serde_json::{Value, json};
use testkit::{connect, exchange};

// ANCHOR: not_implemented
/// Exercise 1 (required): a seventh code. `power {a, b}` is planned but not
/// written yet: the service offers it as a stub that answers
/// `NOT_IMPLEMENTED`, which tells a caller "this method exists, but does
/// nothing yet", where `METHOD_NOT_FOUND` says "there is no such method".
/// The client must know the new code, and must not retry it.
#[test]
#[ignore]
fn a_stub_method_is_not_implemented() {
    let addr = spawn_server();
    let mut stream = connect(addr);
    let power = br#"{"id":1,"method":"power","params":{"a":2,"b":10}}"#;
    let response = exchange(&mut stream, power);
    assert_eq!(response["error"]["code"], "NOT_IMPLEMENTED", "{response}");
    let typo = exchange(&mut stream, br#"{"id":2,"method":"powr"}"#);
    assert_eq!(typo["error"]["code"], "METHOD_NOT_FOUND", "{typo}");

    // Through the client: a code it could not read would be a bad
    // response, and cost the whole connection.
    let client = Client::connect(addr).unwrap();
    let idempotent = CallOptions {
        idempotent: true,
        ..CallOptions::default()
    };
    match client.call_with("power", json!({"a": 2, "b": 10}), &idempotent) {
        Err(CallError::Server(error)) => {
            assert_eq!(error.code.to_string(), "NOT_IMPLEMENTED");
            assert!(!error.code.is_retryable());
        }
        other => panic!("expected NOT_IMPLEMENTED, got {other:?}"),
    }
    assert_eq!(client.add(1.0, 2.0).unwrap(), 3.0);
}
// ANCHOR_END: not_implemented

// ANCHOR: allowed_methods
/// Exercise 2: `METHOD_NOT_FOUND` says which methods there are, as
/// `details.allowed`, sorted by name, so that a caller with a typo can see
/// what it meant. A caller without the token still learns nothing.
#[test]
#[ignore]
fn method_not_found_lists_the_methods_there_are() {
    let mut stream = connect(spawn_server());
    let response = exchange(&mut stream, br#"{"id":1,"method":"multiply"}"#);
    assert_eq!(response["error"]["code"], "METHOD_NOT_FOUND", "{response}");
    let allowed = json!({"allowed": ["add", "divide", "explode", "flaky", "sleep"]});
    assert_eq!(response["error"]["details"], allowed);

    let mut methods = service::methods();
    methods.require_token("s3cret");
    let mut stream = connect(spawn_server_offering(methods));
    let response = exchange(&mut stream, br#"{"id":1,"method":"multiply"}"#);
    assert_eq!(response["error"]["code"], "UNAUTHORIZED", "{response}");
    assert_eq!(response["error"]["details"], Value::Null);
}
// ANCHOR_END: allowed_methods

// ANCHOR: public_health
/// Exercise 3: per-method authorization. The service offers `health`,
/// which answers `"ok"` to anyone, token or not, so that a load balancer
/// or a monitor can check on the server without holding the secret. Every
/// other method, and every name that is not a method, still needs it.
#[test]
#[ignore]
fn health_answers_without_the_token() {
    let mut methods = service::methods();
    methods.require_token("s3cret");
    let addr = spawn_server_offering(methods);
    let is_unauthorized = |result: Result<Value, CallError>| matches!(result, Err(CallError::Server(e)) if e.code == ErrorCode::Unauthorized);

    let anyone = Client::connect(addr).unwrap();
    assert_eq!(anyone.call("health", Value::Null).unwrap(), "ok");
    assert!(is_unauthorized(anyone.call("add", json!({"a": 1, "b": 2}))));
    assert!(is_unauthorized(anyone.call("no_such_method", Value::Null)));

    let config = ClientConfig {
        token: Some("s3cret".to_string()),
        ..ClientConfig::default()
    };
    let member = Client::connect_with(addr, config).unwrap();
    assert_eq!(member.call("health", Value::Null).unwrap(), "ok");
    assert_eq!(member.add(1.0, 2.0).unwrap(), 3.0);
}
// ANCHOR_END: public_health
