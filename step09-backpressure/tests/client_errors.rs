//! A bad or truncated response is an error for the caller, never a panic or
//! a hang. Each test stands up a fake server that answers with raw bytes.

mod common;

use std::io::ErrorKind;
use std::time::Duration;

use common::rpc::client::{CallError, Client, ClientConfig};
use common::rpc::service::ServiceCalls;
use serde_json::json;
use testkit::{FakeServer, Reply, frame};

/// Calls `add` on a fake server that answers with `reply`, byte for byte,
/// and hangs up (and refuses a reconnect).
async fn add_against(reply: &[u8]) -> Result<f64, CallError> {
    let server = FakeServer::once(vec![Reply::Raw(reply.to_vec())]);
    let client = Client::connect(server.addr()).await.unwrap();
    client.add(1.0, 2.0).await
}

#[tokio::test]
async fn a_response_cut_short_is_an_io_error() {
    for reply in [&b""[..], &[0, 0], &[0, 0, 0, 20, b'{', b'"']] {
        match add_against(reply).await {
            Err(CallError::Io(e)) => assert_eq!(e.kind(), ErrorKind::UnexpectedEof),
            other => panic!("{reply:?}: expected UnexpectedEof, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_oversize_response_length_is_a_bad_response() {
    match add_against(&[0xFF; 4]).await {
        Err(CallError::BadResponse(why)) => assert!(why.contains("exceeds"), "{why}"),
        other => panic!("expected BadResponse, got {other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_stalls_mid_answer_is_an_error_not_a_hang() {
    // Half a frame, or nothing at all, then silence with the connection
    // left open.
    for reply in [&[0, 0, 0, 20, b'{'][..], &[]] {
        let server = FakeServer::once(vec![Reply::Raw(reply.to_vec()), Reply::Stall]);
        let config = ClientConfig {
            ping_interval: Duration::from_millis(100),
            ping_timeout: Duration::from_millis(100),
            ..ClientConfig::default()
        };
        let client = Client::connect_with(server.addr(), config).await.unwrap();
        match client.add(1.0, 2.0).await {
            Err(CallError::Io(e)) => assert!(e.kind() == ErrorKind::TimedOut, "{e}"),
            other => panic!("{reply:?}: expected a timeout, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_malformed_response_is_a_bad_response() {
    let replies = [
        "not json",
        r#"{"foo":1}"#,
        r#"{"result":8}"#, // step 1's shape: no id, no ok
        r#"{"id":1,"ok":true,"result":"eight"}"#,
        r#"{"id":1,"ok":false}"#,
        r#"{"id":1,"ok":true,"error":{"code":"INTERNAL","message":"y","details":null}}"#,
        // A code this client does not know: it cannot say what went wrong.
        r#"{"id":1,"ok":false,"error":{"code":"NOT_A_CODE","message":"y","details":null}}"#,
    ];
    for reply in replies {
        match add_against(&frame(reply.as_bytes())).await {
            Err(CallError::BadResponse(_)) => {}
            other => panic!("{reply:?}: expected BadResponse, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_unreadable_response_ends_the_connection() {
    // No id can be trusted in it, so no call can be given it: the waiting
    // call is told why, and the connection is given up. The next call
    // connects anew, which this fake server refuses.
    let server = FakeServer::once(vec![Reply::Frame(b"not json".to_vec())]);
    let client = Client::connect(server.addr()).await.unwrap();
    assert!(matches!(
        client.add(1.0, 2.0).await,
        Err(CallError::BadResponse(_))
    ));
    match client.add(1.0, 2.0).await {
        Err(CallError::Io(e)) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused),
        other => panic!("expected ConnectionRefused, got {other:?}"),
    }
}

#[tokio::test]
async fn a_response_with_an_unknown_id_is_dropped_and_counted() {
    let server = FakeServer::once(vec![
        Reply::Json(json!({"id": 99, "ok": true, "result": 0})),
        Reply::Json(json!({"id": 1, "ok": true, "result": 3})),
    ]);
    let client = Client::connect(server.addr()).await.unwrap();
    assert_eq!(client.add(1.0, 2.0).await.unwrap(), 3.0);
    assert_eq!(client.unknown_responses(), 1);
}

// Two worker threads: the calls' tasks must run while this test blocks on
// the fake server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pending_table_is_bounded_and_fails_fast_when_the_connection_ends() {
    // A server that reads requests, reports each, never answers, and hangs
    // up when dropped. It takes one connection only.
    let server = FakeServer::start_once(|_| vec![]);

    let config = ClientConfig {
        max_pending: 2,
        ..ClientConfig::default()
    };
    let client = Client::connect_with(server.addr(), config).await.unwrap();
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.add(1.0, 2.0).await })
        })
        .collect();
    // Both requests reached the server, so both calls are in the table.
    for _ in 0..2 {
        server.request();
    }
    assert!(matches!(
        client.add(1.0, 2.0).await,
        Err(CallError::TooManyPending)
    ));

    drop(server); // hangs up
    for call in waiting {
        assert!(matches!(call.await.unwrap(), Err(CallError::Io(_))));
    }
    // And a call after the end does not wait on the dead connection: it
    // connects anew, which is refused here.
    assert!(matches!(client.add(1.0, 2.0).await, Err(CallError::Io(_))));
}
