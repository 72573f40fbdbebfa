//! The milestone: every malformed request is answered with its documented
//! code and details, a method that panics costs its caller an `INTERNAL`
//! and the server nothing, and a request without the token never reaches a
//! method.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::rpc::client::{CallError, Client, ClientConfig};
use common::rpc::protocol::ErrorCode;
use common::rpc::server::{Limits, ServerConfig};
use common::rpc::service;
use common::rpc::service::ServiceCalls;
use common::{assert_server_answers, spawn_server, spawn_server_offering, spawn_server_with};
use serde_json::{Value, json};
use testkit::{connect, exchange, receive, send};

// ANCHOR: malformed_table
#[test]
fn every_malformed_request_maps_to_its_documented_code() {
    // Each row: the body sent, and the whole answer expected but for the
    // message, which is for humans and may change.
    let bad = |id: Option<u64>, field: &str, expected: &str| {
        let details = json!({ "field": field, "expected": expected });
        json!({ "id": id, "ok": false, "error": { "code": "BAD_REQUEST", "details": details } })
    };
    let cases = [
        ("{not json", bad(None, "", "a JSON object")),
        (r#"[7,"add",{"a":1,"b":2}]"#, bad(None, "", "a JSON object")),
        (r#""add""#, bad(None, "", "a JSON object")),
        ("{}", bad(None, "id", "a value")),
        (r#"{"method":"add"}"#, bad(None, "id", "a value")),
        (
            r#"{"id":-7,"method":"add"}"#,
            bad(None, "id", "an unsigned integer"),
        ),
        (
            r#"{"id":7.5,"method":"add"}"#,
            bad(None, "id", "an unsigned integer"),
        ),
        (
            r#"{"id":"7","method":"add"}"#,
            bad(None, "id", "an unsigned integer"),
        ),
        // From here on the id can be read, and the answer carries it.
        (r#"{"id":7}"#, bad(Some(7), "method", "a value")),
        (
            r#"{"id":7,"method":42}"#,
            bad(Some(7), "method", "a string"),
        ),
        (
            r#"{"id":7,"method":""}"#,
            bad(Some(7), "method", "a non-empty string"),
        ),
        (
            r#"{"id":7,"method":"multiply"}"#,
            json!({"id": 7, "ok": false, "error": {"code": "METHOD_NOT_FOUND", "details": null}}),
        ),
        (
            r#"{"id":7,"method":"add","params":{"a":1,"b":2},"meta":"fast"}"#,
            bad(Some(7), "meta", "an object"),
        ),
        (
            r#"{"id":7,"method":"add","params":{"a":1,"b":2},"meta":{"timeout_ms":"soon"}}"#,
            bad(Some(7), "meta.timeout_ms", "an unsigned integer"),
        ),
        (
            r#"{"id":7,"method":"add","params":{"a":1,"b":2},"meta":{"idempotent":1}}"#,
            bad(Some(7), "meta.idempotent", "a boolean"),
        ),
        (
            r#"{"id":7,"method":"add"}"#,
            bad(Some(7), "params", "an object"),
        ),
        (
            r#"{"id":7,"method":"add","params":{"a":1}}"#,
            bad(Some(7), "params.b", "a value"),
        ),
        (
            r#"{"id":7,"method":"add","params":{"a":1,"b":"2"}}"#,
            bad(Some(7), "params.b", "a number"),
        ),
        (
            r#"{"id":7,"method":"divide","params":{"a":1,"b":0}}"#,
            bad(Some(7), "params.b", "a number other than zero"),
        ),
        // Fields nobody defined are ignored, at the top and in `meta`: a
        // later step may add some, and this server must not refuse them.
        (
            r#"{"id":7,"method":"add","params":{"a":1,"b":2},"trace":"x","meta":{"priority":1}}"#,
            json!({"id": 7, "ok": true, "result": 3.0}),
        ),
    ];
    // All on one connection: none of them closes it.
    let mut stream = connect(spawn_server());
    for (body, expected) in cases {
        let mut response = exchange(&mut stream, body.as_bytes());
        // `get_mut`, not `[..]`, which would add an `"error": null`.
        if let Some(error) = response.get_mut("error").and_then(Value::as_object_mut) {
            let message = error.remove("message").unwrap_or_default();
            assert!(message.as_str().is_some_and(|m| !m.is_empty()), "{body}");
        }
        assert_eq!(response, expected, "for {body}");
    }
}
// ANCHOR_END: malformed_table

// ANCHOR: panic_test
#[test]
fn the_server_survives_a_panicking_handler() {
    // Five panics on one connection that runs two requests at a time, all
    // sent before any answer is read. Each must be answered, and give back
    // its place: else the third would never start, and the reads below
    // would time out.
    let bound = 2;
    let limits = Limits {
        max_in_flight_per_connection: bound,
        ..Limits::default()
    };
    let addr = spawn_server_with(ServerConfig { limits });
    let mut stream = connect(addr);
    let panics = 5;
    assert!(panics > bound);
    for id in 1..=panics {
        let request = json!({"id": id, "method": "explode"});
        send(&mut stream, request.to_string().as_bytes());
    }
    let mut ids = Vec::new();
    for _ in 1..=panics {
        let response = receive(&mut stream);
        assert_eq!(response["error"]["code"], "INTERNAL", "{response}");
        // The peer learns that the method failed, not what the panic said.
        assert_eq!(response["error"]["message"], "method `explode` failed");
        ids.push(response["id"].as_u64().unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3, 4, 5]);

    // The same connection, and a new one, are served as before.
    let add = br#"{"id":6,"method":"add","params":{"a":1,"b":2}}"#;
    assert_eq!(exchange(&mut stream, add)["result"], 3.0);
    assert_server_answers(addr);
}
// ANCHOR_END: panic_test

// ANCHOR: unauthorized_test
#[test]
fn unauthorized_calls_never_reach_the_handler() {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&calls);
    let mut methods = service::methods();
    methods.register("count", move |_: Value| {
        Ok(counter.fetch_add(1, Ordering::Relaxed) + 1)
    });
    methods.require_token("s3cret");
    let addr = spawn_server_offering(methods);
    let client = |token: Option<&str>| {
        let config = ClientConfig {
            token: token.map(String::from),
            ..ClientConfig::default()
        };
        Client::connect_with(addr, config).unwrap()
    };

    // Missing, wrong, empty, too long, wrong case: all refused, and for a
    // method that does not exist too, so that a caller without the token
    // cannot even find out which methods there are.
    for token in [
        None,
        Some("wrong"),
        Some(""),
        Some("s3cret!"),
        Some("S3CRET"),
    ] {
        let client = client(token);
        for method in ["count", "no_such_method"] {
            let result = client.call(method, Value::Null);
            assert!(
                matches!(&result, Err(CallError::Server(e)) if e.code == ErrorCode::Unauthorized),
                "{token:?} calling {method}: {result:?}"
            );
        }
    }
    assert_eq!(calls.load(Ordering::Relaxed), 0);

    let client = client(Some("s3cret"));
    assert_eq!(client.call("count", Value::Null).unwrap(), 1);
    assert_eq!(client.add(1.0, 2.0).unwrap(), 3.0);
}
// ANCHOR_END: unauthorized_test
