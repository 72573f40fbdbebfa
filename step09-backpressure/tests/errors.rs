//! The milestone: every malformed request is answered with its documented
//! code and details, a method that panics costs its caller an `INTERNAL`
//! and the server nothing, and a request without the token never reaches a
//! method.

mod common;

use std::future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::rpc::client::{CallError, Client, ClientConfig};
use common::rpc::protocol::{ErrorCode, RpcError};
use common::rpc::server::{Limits, ServerConfig};
use common::rpc::service;
use common::rpc::service::ServiceCalls;
use common::{
    assert_server_answers, spawn_server, spawn_server_offering, spawn_server_offering_with,
};
use serde_json::{Value, json};
use testkit::{connect, exchange, receive, send};

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

/// Waits once, so that it runs as a task of its own and takes a place under
/// the bound, then panics.
async fn explode_later(_: Value) -> Result<Value, RpcError> {
    tokio::task::yield_now().await;
    panic!("explode_later: this method panics on purpose")
}

#[test]
fn the_server_survives_a_panicking_handler() {
    // Five panics on one connection that runs two requests at a time, sent
    // two at a time. Each must be answered, and give back its place: else
    // the third would be shed, `SERVER_BUSY`. (Changed from step 4:
    // `explode` panics the first time it is polled, so it never becomes a
    // task nor takes a place; `explode_later` does both. Changed from
    // step 8, where the third would have waited: now it is shed.)
    let bound = 2;
    let limits = Limits {
        max_in_flight_per_connection: bound,
        ..Limits::default()
    };
    let mut methods = service::methods();
    methods.register("explode_later", explode_later);
    let config = ServerConfig {
        limits,
        ..ServerConfig::default()
    };
    let addr = spawn_server_offering_with(methods, config);
    let mut stream = connect(addr);
    let panics: u64 = 5;
    assert!(panics > bound as u64);
    let mut ids = Vec::new();
    let all: Vec<u64> = (1..=panics).collect();
    for two in all.chunks(bound) {
        for id in two {
            let request = json!({"id": id, "method": "explode_later"});
            send(&mut stream, request.to_string().as_bytes());
        }
        for _ in two {
            let response = receive(&mut stream);
            assert_eq!(response["error"]["code"], "INTERNAL", "{response}");
            // The peer learns that the method failed, not what the panic said.
            assert_eq!(
                response["error"]["message"],
                "method `explode_later` failed"
            );
            ids.push(response["id"].as_u64().unwrap());
        }
    }
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3, 4, 5]);

    // The same connection, and a new one, are served as before.
    let add = br#"{"id":6,"method":"add","params":{"a":1,"b":2}}"#;
    assert_eq!(exchange(&mut stream, add)["result"], 3.0);
    assert_server_answers(addr);
}

#[tokio::test]
async fn unauthorized_calls_never_reach_the_handler() {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&calls);
    let mut methods = service::methods();
    methods.register("count", move |_: Value| {
        future::ready(Ok(counter.fetch_add(1, Ordering::Relaxed) + 1))
    });
    methods.require_token("s3cret");
    let addr = spawn_server_offering(methods);
    let client = async |token: Option<&str>| {
        let config = ClientConfig {
            token: token.map(String::from),
            ..ClientConfig::default()
        };
        Client::connect_with(addr, config).await.unwrap()
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
        let client = client(token).await;
        for method in ["count", "no_such_method"] {
            let result = client.call(method, Value::Null).await;
            assert!(
                matches!(&result, Err(CallError::Server(e)) if e.code == ErrorCode::Unauthorized),
                "{token:?} calling {method}: {result:?}"
            );
        }
    }
    assert_eq!(calls.load(Ordering::Relaxed), 0);

    let client = client(Some("s3cret")).await;
    assert_eq!(client.call("count", Value::Null).await.unwrap(), 1);
    assert_eq!(client.add(1.0, 2.0).await.unwrap(), 3.0);
}

#[test]
fn the_checks_run_in_the_order_the_appendix_gives() {
    // The appendix's "Validation" table, row by row, then the order in
    // which a valid request is handled: each row a way to break a request
    // that works, and the answer that gets. Row k is sent with every later
    // row's break too (where two touch the same field, the earlier row's
    // wins): its answer must still be row k's, or the server checks in
    // another order than the one documented.
    let bad = |id: Option<u64>, field: &str, expected: &str| {
        let details = json!({ "field": field, "expected": expected });
        json!({ "id": id, "ok": false, "error": { "code": "BAD_REQUEST", "details": details } })
    };
    let refused =
        |code: &str| json!({"id": 7, "ok": false, "error": {"code": code, "details": null}});
    let rows = [
        ("id", None, bad(None, "id", "a value")),
        (
            "id",
            Some(json!(-7)),
            bad(None, "id", "an unsigned integer"),
        ),
        ("method", None, bad(Some(7), "method", "a value")),
        (
            "method",
            Some(json!(42)),
            bad(Some(7), "method", "a string"),
        ),
        (
            "method",
            Some(json!("")),
            bad(Some(7), "method", "a non-empty string"),
        ),
        ("meta", Some(json!(5)), bad(Some(7), "meta", "an object")),
        // An array is not an object either, though serde would read `Meta`
        // from one, by position, token and all.
        (
            "meta",
            Some(json!([null, false, "s3cret"])),
            bad(Some(7), "meta", "an object"),
        ),
        // Inside `meta`, fields are checked in the order of their names.
        (
            "meta.idempotent",
            Some(json!(1)),
            bad(Some(7), "meta.idempotent", "a boolean"),
        ),
        (
            "meta.timeout_ms",
            Some(json!("soon")),
            bad(Some(7), "meta.timeout_ms", "an unsigned integer"),
        ),
        (
            "meta.token",
            Some(json!(null)),
            bad(Some(7), "meta.token", "a string"),
        ),
        // The request is valid from here on; this is the order it is handled in.
        ("meta.timeout_ms", Some(json!(0)), refused("TIMEOUT")),
        ("meta.token", Some(json!("wrong")), refused("UNAUTHORIZED")),
        (
            "method",
            Some(json!("multiply")),
            refused("METHOD_NOT_FOUND"),
        ),
        (
            "params.b",
            Some(json!("2")),
            bad(Some(7), "params.b", "a number"),
        ),
        (
            "params",
            Some(json!({"a": 1e308, "b": 1e308})),
            bad(Some(7), "params", "numbers with a finite result"),
        ),
    ];
    let mut methods = service::methods();
    methods.require_token("s3cret");
    let mut stream = connect(spawn_server_offering(methods));
    let works =
        json!({"id": 7, "method": "add", "params": {"a": 1, "b": 2}, "meta": {"token": "s3cret"}});
    assert_eq!(
        exchange(&mut stream, works.to_string().as_bytes())["result"],
        3.0
    );
    for k in 0..rows.len() {
        let mut request = works.clone();
        for (path, value, _) in rows[k..].iter().rev() {
            set(&mut request, path, value.clone());
        }
        let mut response = exchange(&mut stream, request.to_string().as_bytes());
        let mut expected = rows[k].2.clone();
        for answer in [&mut response, &mut expected] {
            if let Some(error) = answer.get_mut("error").and_then(Value::as_object_mut) {
                error.remove("message");
                // Which check fired is in the code (and `details.field`); an
                // unknown method's details may say more, as an exercise does.
                if error["code"] == "METHOD_NOT_FOUND" {
                    error.remove("details");
                }
            }
        }
        assert_eq!(response, expected, "row {k}, for {request}");
    }
}

/// Sets the field at `path` (`"meta.token"`) in `request`, or removes it
/// when `value` is `None`.
fn set(request: &mut Value, path: &str, value: Option<Value>) {
    let (parents, name) = path.rsplit_once('.').unwrap_or(("", path));
    let mut object = request;
    for parent in parents.split('.').filter(|p| !p.is_empty()) {
        object = &mut object[parent];
    }
    let object = object.as_object_mut().unwrap();
    match value {
        Some(value) => object.insert(name.to_string(), value),
        None => object.remove(name),
    };
}

#[test]
fn no_struct_is_read_from_an_array() {
    // serde would read each of these by position; the protocol names its
    // fields, and so must every request. Arrays are fine where a method
    // takes one, and a struct inside the params is held to the rule too.
    #[derive(serde::Deserialize)]
    struct Outer {
        inner: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        x: u64,
    }
    let mut methods = service::methods();
    methods.register("sum", |numbers: Vec<f64>| {
        future::ready(Ok(numbers.iter().sum::<f64>()))
    });
    methods.register("nested", |outer: Outer| future::ready(Ok(outer.inner.x)));
    methods.require_token("s3cret");
    let mut stream = connect(spawn_server_offering(methods));
    let token = json!({"token": "s3cret"});
    let cases = [
        (
            json!({"method": "add", "params": [1, 2], "meta": token}),
            "params",
        ),
        (
            json!({"method": "add", "meta": [null, false, "s3cret"]}),
            "meta",
        ),
        (
            json!({"method": "nested", "params": {"inner": [5]}, "meta": token}),
            "params.inner",
        ),
    ];
    for (mut request, field) in cases {
        request["id"] = json!(1);
        let response = exchange(&mut stream, request.to_string().as_bytes());
        let error = &response["error"];
        assert_eq!(error["code"], "BAD_REQUEST", "{request} -> {response}");
        assert_eq!(
            error["details"],
            json!({"field": field, "expected": "an object"})
        );
    }
    let sum = json!({"id": 2, "method": "sum", "params": [1, 2, 3], "meta": token});
    assert_eq!(
        exchange(&mut stream, sum.to_string().as_bytes())["result"],
        6.0
    );
    let nested = json!({"id": 3, "method": "nested", "params": {"inner": {"x": 5}}, "meta": token});
    assert_eq!(
        exchange(&mut stream, nested.to_string().as_bytes())["result"],
        5
    );
}

#[test]
fn error_messages_speak_the_protocol_not_rust() {
    // What a caller sent wrong, said in JSON's words and the protocol's
    // names: never a Rust type (`f64`, `struct TwoNumbers`).
    let cases = [
        (
            json!({"method": "add", "params": [1, 2]}),
            "`params` must be an object with fields `a` and `b`",
        ),
        (
            json!({"method": "add"}),
            "`params` must be an object with fields `a` and `b`",
        ),
        (
            json!({"method": "add", "params": {"a": 1, "b": "2"}}),
            "`params.b` must be a number",
        ),
        (
            json!({"method": "sleep", "params": {"ms": 10.0}}),
            "`params.ms` must be an unsigned integer",
        ),
        (
            json!({"method": "sleep", "params": {"ms": 1}, "meta": {"idempotent": null}}),
            "`meta.idempotent` must be a boolean",
        ),
        (
            json!({"method": "add", "meta": "fast"}),
            "`meta` must be an object with fields `timeout_ms`, `idempotent` and `token`",
        ),
    ];
    let mut stream = connect(spawn_server());
    for (mut request, message) in cases {
        request["id"] = json!(1);
        let response = exchange(&mut stream, request.to_string().as_bytes());
        assert_eq!(response["error"]["message"], message, "{request}");
    }
}
