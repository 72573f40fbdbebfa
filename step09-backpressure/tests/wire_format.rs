//! The wire format, byte for byte: what the client sends, and what the
//! server answers, for success and for each kind of error.

mod common;

use common::rpc::client::{Client, DEFAULT_TIMEOUT};
use common::rpc::protocol::ErrorCode;
use common::spawn_server;
use serde_json::{Value, json};
use testkit::{FakeServer, Reply, connect, exchange_bytes};

#[tokio::test]
async fn the_client_sends_the_documented_request() {
    // Hangs up: the call fails, but the bytes were already seen.
    let server = FakeServer::once(vec![Reply::Close]);
    let params = json!({"a": 5, "b": 3});
    let client = Client::connect(server.addr()).await.unwrap();
    let _ = client.call("add", params).await;
    let request = String::from_utf8(server.request()).unwrap();
    // The time left of the default deadline: all of it, or on a slow
    // machine a little less.
    let meta = &serde_json::from_str::<Value>(&request).unwrap()["meta"];
    let timeout_ms = meta["timeout_ms"].as_u64().unwrap();
    let default_ms = DEFAULT_TIMEOUT.as_millis() as u64;
    assert!(timeout_ms <= default_ms && timeout_ms > default_ms - 1000);
    assert_eq!(
        request,
        r#"{"id":1,"method":"add","params":{"a":5,"b":3},"meta":{"timeout_ms":TIME_LEFT,"idempotent":false}}"#
            .replace("TIME_LEFT", &timeout_ms.to_string())
    );
}

#[test]
fn the_server_answers_in_the_documented_format() {
    let cases = [
        (
            r#"{"id":7,"method":"add","params":{"a":5,"b":3}}"#,
            r#"{"id":7,"ok":true,"result":8.0}"#,
        ),
        // The keys of `details` come out sorted: serde_json keeps an
        // object's keys in order unless its `preserve_order` feature is on.
        (
            r#"{"id":8,"method":"divide","params":{"a":1,"b":0}}"#,
            r#"{"id":8,"ok":false,"error":{"code":"BAD_REQUEST","message":"division by zero","details":{"expected":"a number other than zero","field":"params.b"}}}"#,
        ),
        (
            r#"{"id":9,"method":"multiply"}"#,
            r#"{"id":9,"ok":false,"error":{"code":"METHOD_NOT_FOUND","message":"unknown method `multiply`","details":null}}"#,
        ),
        // A deadline the call meets changes nothing; one already past
        // means the method is not run.
        (
            r#"{"id":10,"method":"add","params":{"a":1,"b":1},"meta":{"timeout_ms":5000,"idempotent":true}}"#,
            r#"{"id":10,"ok":true,"result":2.0}"#,
        ),
        (
            r#"{"id":11,"method":"add","params":{"a":1,"b":1},"meta":{"timeout_ms":0}}"#,
            r#"{"id":11,"ok":false,"error":{"code":"TIMEOUT","message":"the caller's deadline passed before the method ran","details":null}}"#,
        ),
    ];
    let mut stream = connect(spawn_server());
    for (request, response) in cases {
        let answer = String::from_utf8(exchange_bytes(&mut stream, request.as_bytes())).unwrap();
        assert_eq!(answer, response, "for {request}");
    }
}

#[test]
fn error_codes_are_the_documented_strings() {
    // Every code goes out as the string `Display` gives it, and comes back.
    for &code in ErrorCode::ALL {
        let wire = code.to_string();
        assert_eq!(serde_json::to_value(code).unwrap(), json!(wire));
        assert_eq!(
            serde_json::from_value::<ErrorCode>(json!(wire)).unwrap(),
            code
        );
    }
    // And the strings are the protocol appendix's, written out here so that
    // renaming a variant cannot change the wire unnoticed.
    let wire: Vec<String> = ErrorCode::ALL.iter().map(ToString::to_string).collect();
    for documented in [
        "BAD_REQUEST",
        "METHOD_NOT_FOUND",
        "TIMEOUT",
        "INTERNAL",
        "UNAUTHORIZED",
        "SERVER_BUSY",
    ] {
        assert!(wire.iter().any(|w| w == documented), "{documented}");
    }
    // Step 3's ad-hoc codes, and other spellings, are not codes.
    for other in ["bad_request", "unavailable", "BadRequest", "NOT_FOUND"] {
        assert!(serde_json::from_value::<ErrorCode>(json!(other)).is_err());
    }
}

#[test]
fn a_bad_request_is_answered_under_its_id_if_it_can_be_read() {
    let mut stream = connect(spawn_server());
    let with_id = exchange_bytes(&mut stream, br#"{"id":7,"method":42}"#);
    let text = String::from_utf8_lossy(&with_id);
    assert!(
        text.starts_with(r#"{"id":7,"ok":false,"error":{"code":"BAD_REQUEST","#),
        "{text}"
    );
    for request in [&b"{not json"[..], br#"{"id":"seven","method":"add"}"#] {
        let no_id = exchange_bytes(&mut stream, request);
        let text = String::from_utf8_lossy(&no_id);
        assert!(
            text.starts_with(r#"{"id":null,"ok":false,"error":{"code":"BAD_REQUEST","#),
            "{text}"
        );
    }
}

#[test]
fn a_ping_is_answered_with_its_pong_and_a_request_with_a_ping_field_is_a_request() {
    let mut stream = connect(spawn_server());
    let cases = [
        (r#"{"ping":7}"#, r#"{"pong":7}"#),
        (
            r#"{"ping":18446744073709551615,"extra":[1]}"#,
            r#"{"pong":18446744073709551615}"#,
        ),
        (
            r#"{"ping":1,"id":5,"method":"add","params":{"a":1,"b":2}}"#,
            r#"{"id":5,"ok":true,"result":3.0}"#,
        ),
    ];
    for (sent, expected) in cases {
        let answer = exchange_bytes(&mut stream, sent.as_bytes());
        assert_eq!(String::from_utf8(answer).unwrap(), expected, "for {sent}");
    }
}
