//! A bad or truncated response is an error for the caller, never a panic or
//! a hang. Each test stands up a fake server that answers with raw bytes.

mod common;

use std::io::ErrorKind;
use std::thread;
use std::time::Duration;

use common::rpc::client::{CallError, Client, ClientConfig};
use common::rpc::service::ServiceCalls;
use serde_json::json;
use testkit::{FakeServer, Reply, frame};

/// Calls `add` on a fake server that answers with `reply`, byte for byte,
/// and hangs up (and refuses a reconnect).
fn add_against(reply: &[u8]) -> Result<f64, CallError> {
    let server = FakeServer::once(vec![Reply::Raw(reply.to_vec())]);
    Client::connect(server.addr()).unwrap().add(1.0, 2.0)
}

#[test]
fn a_response_cut_short_is_an_io_error() {
    for reply in [&b""[..], &[0, 0], &[0, 0, 0, 20, b'{', b'"']] {
        match add_against(reply) {
            Err(CallError::Io(e)) => assert_eq!(e.kind(), ErrorKind::UnexpectedEof),
            other => panic!("{reply:?}: expected UnexpectedEof, got {other:?}"),
        }
    }
}

#[test]
fn an_oversize_response_length_is_a_bad_response() {
    match add_against(&[0xFF; 4]) {
        Err(CallError::BadResponse(why)) => assert!(why.contains("exceeds"), "{why}"),
        other => panic!("expected BadResponse, got {other:?}"),
    }
}

#[test]
fn a_server_that_stalls_mid_answer_is_an_error_not_a_hang() {
    // Half a frame, or nothing at all, then silence with the connection
    // left open.
    for reply in [&[0, 0, 0, 20, b'{'][..], &[]] {
        let server = FakeServer::once(vec![Reply::Raw(reply.to_vec()), Reply::Stall]);
        let io_timeout = Duration::from_millis(200);
        let config = ClientConfig {
            io_timeout,
            ..ClientConfig::default()
        };
        let client = Client::connect_with(server.addr(), config).unwrap();
        match client.add(1.0, 2.0) {
            Err(CallError::Io(e)) => assert!(
                matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "{e}"
            ),
            other => panic!("{reply:?}: expected a timeout, got {other:?}"),
        }
    }
}

#[test]
fn a_malformed_response_is_a_bad_response() {
    let replies = [
        "not json",
        r#"{"foo":1}"#,
        r#"{"result":8}"#, // step 1's shape: no id, no ok
        r#"{"id":1,"ok":true,"result":"eight"}"#,
        r#"{"id":1,"ok":false}"#,
        r#"{"id":1,"ok":true,"error":{"code":"x","message":"y","details":null}}"#,
    ];
    for reply in replies {
        match add_against(&frame(reply.as_bytes())) {
            Err(CallError::BadResponse(_)) => {}
            other => panic!("{reply:?}: expected BadResponse, got {other:?}"),
        }
    }
}

#[test]
fn an_unreadable_response_ends_the_connection() {
    // No id can be trusted in it, so no call can be given it: the waiting
    // call is told why, and the connection is given up.
    let server = FakeServer::once(vec![Reply::Frame(b"not json".to_vec())]);
    let client = Client::connect(server.addr()).unwrap();
    assert!(matches!(
        client.add(1.0, 2.0),
        Err(CallError::BadResponse(_))
    ));
    match client.add(1.0, 2.0) {
        Err(CallError::Io(e)) => assert_eq!(e.kind(), ErrorKind::NotConnected),
        other => panic!("expected NotConnected, got {other:?}"),
    }
}

// ANCHOR: unknown_id
#[test]
fn a_response_with_an_unknown_id_is_dropped_and_counted() {
    let server = FakeServer::once(vec![
        Reply::Json(json!({"id": 99, "ok": true, "result": 0})),
        Reply::Json(json!({"id": 1, "ok": true, "result": 3})),
    ]);
    let client = Client::connect(server.addr()).unwrap();
    assert_eq!(client.add(1.0, 2.0).unwrap(), 3.0);
    assert_eq!(client.unknown_responses(), 1);
}
// ANCHOR_END: unknown_id

// ANCHOR: pending_bound
#[test]
fn the_pending_table_is_bounded_and_fails_fast_when_the_connection_ends() {
    // A server that reads requests, reports each, never answers, and hangs
    // up when dropped. It takes one connection only.
    let server = FakeServer::start_once(|_| vec![]);

    let config = ClientConfig {
        max_pending: 2,
        ..ClientConfig::default()
    };
    let client = Client::connect_with(server.addr(), config).unwrap();
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            thread::spawn(move || client.add(1.0, 2.0))
        })
        .collect();
    // Both requests reached the server, so both calls are in the table.
    for _ in 0..2 {
        server.request();
    }
    assert!(matches!(
        client.add(1.0, 2.0),
        Err(CallError::TooManyPending)
    ));

    drop(server); // hangs up
    for call in waiting {
        assert!(matches!(call.join().unwrap(), Err(CallError::Io(_))));
    }
    // And a call after the end fails at once instead of waiting forever.
    assert!(matches!(client.add(1.0, 2.0), Err(CallError::Io(_))));
}
// ANCHOR_END: pending_bound
