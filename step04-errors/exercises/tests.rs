//! The chapter's exercises. Each test is `#[ignore]`d so that the step's
//! own suite stays green; run them with
//!
//! ```text
//! cargo test -p step04-errors --test exercises -- --ignored
//! ```
//!
//! and make them pass, in any order: each is independent of the others.
//! `cargo xtask exercises` checks that each one fails on the step as
//! shipped and with each wrong solution in `exercises/`, and passes with
//! its reference solution, alone or with the others.

#[path = "../tests/common/mod.rs"]
mod common;

use common::rpc::client::{CallError, CallOptions, Client, ClientConfig};
use common::rpc::protocol::{ErrorCode, RpcError};
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
/// The client must know the new code, and must not retry it; and
/// `ErrorCode::ALL` lists it with the others.
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
            assert!(
                ErrorCode::ALL.contains(&error.code),
                "not in ErrorCode::ALL"
            );
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
    // The service's methods, and some of the test's own, registered after.
    // Enough names that a list in a `HashMap`'s order is never sorted by
    // luck.
    let own = ["zeta", "alpha", "omega", "beta", "kappa", "delta", "mu"];
    let mut methods = service::methods();
    for name in own {
        methods.register(name, |params: Value| Ok::<_, RpcError>(params));
    }
    let mut stream = connect(spawn_server_offering(methods));
    let response = exchange(&mut stream, br#"{"id":1,"method":"multiply"}"#);
    assert_eq!(response["error"]["code"], "METHOD_NOT_FOUND", "{response}");
    let details = &response["error"]["details"];
    let allowed: Vec<String> = serde_json::from_value(details["allowed"].clone())
        .unwrap_or_else(|e| panic!("expected {{\"allowed\": [names]}}, got {details}: {e}"));
    assert!(
        allowed.windows(2).all(|pair| pair[0] < pair[1]),
        "not sorted, or a name twice: {details}"
    );
    for name in own.into_iter().chain(["add", "divide", "sleep"]) {
        assert!(allowed.iter().any(|n| n == name), "no {name} in {details}");
    }
    // And every name listed is a method.
    for (id, name) in (2..).zip(&allowed) {
        let request = json!({"id": id, "method": name});
        let answer = exchange(&mut stream, request.to_string().as_bytes());
        assert_ne!(answer["error"]["code"], "METHOD_NOT_FOUND", "{answer}");
    }

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
/// other method, and every name that is not a method, still needs it; so
/// does a `health` that a program registers in its place.
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
    let member = Client::connect_with(addr, config.clone()).unwrap();
    assert_eq!(member.call("health", Value::Null).unwrap(), "ok");
    assert_eq!(member.add(1.0, 2.0).unwrap(), 3.0);

    // A program's own `health`, registered as any method is, in place of
    // the service's: what is public is the method, not its name.
    let mut methods = service::methods();
    methods.register("health", |_: Value| Ok::<_, RpcError>("mine"));
    methods.require_token("s3cret");
    let addr = spawn_server_offering(methods);
    let anyone = Client::connect(addr).unwrap();
    assert!(is_unauthorized(anyone.call("health", Value::Null)));
    let member = Client::connect_with(addr, config).unwrap();
    assert_eq!(member.call("health", Value::Null).unwrap(), "mine");
}
// ANCHOR_END: public_health
