//! The chapter's exercises. Each test is `#[ignore]`d so that the step's
//! own suite stays green; run them with
//!
//! ```text
//! cargo test -p step07-heartbeat --test exercises -- --ignored
//! ```
//!
//! and make them pass, in any order: each is independent of the others.
//! `cargo xtask exercises` checks that each one fails on the step as
//! shipped and with each wrong solution in `exercises/`, and passes with
//! its reference solution, alone or with the others.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::rpc::client::{CallError, Client, ClientConfig};
use common::rpc::server::ServerConfig;
use common::rpc::service;
use serde_json::{Value, json};
use testkit::frame;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time;

use common::{next_frame, promptly, start_server_here};

/// Sends `body` as one frame.
async fn send(stream: &mut TcpStream, body: Value) {
    send_all(stream, &[body]).await;
}

/// Sends each of `bodies` as a frame, all in one write.
async fn send_all(stream: &mut TcpStream, bodies: &[Value]) {
    let bytes: Vec<u8> = bodies
        .iter()
        .flat_map(|body| frame(body.to_string().as_bytes()))
        .collect();
    stream.write_all(&bytes).await.unwrap();
}

// ANCHOR: ping_strikes
/// Exercise 1: a peer that pings again and again, with no call running,
/// makes the server wake and write for nothing. A ping that comes sooner
/// than 1 s after the previous one while none of the connection's calls
/// runs is a strike; it is answered, but at the second strike the server
/// sends the going-away notice instead, and closes the connection.
#[tokio::test(start_paused = true)]
#[ignore]
async fn a_peer_that_pings_too_often_is_sent_away() {
    let addr = start_server_here(service::methods(), ServerConfig::default()).await;

    // One ping a second (exactly 1 s apart is not too soon), with a call
    // between two of them, which changes nothing: no strike.
    let mut polite = TcpStream::connect(addr).await.unwrap();
    for n in 1..=5 {
        send(&mut polite, json!({ "ping": n })).await;
        assert_eq!(
            promptly(next_frame(&mut polite)).await,
            Some(json!({ "pong": n }))
        );
        time::sleep(Duration::from_millis(900)).await;
        send(
            &mut polite,
            json!({"id": n, "method": "add", "params": {"a": 1, "b": 1}}),
        )
        .await;
        assert_eq!(
            promptly(next_frame(&mut polite)).await.unwrap()["result"],
            2.0
        );
        time::sleep(Duration::from_millis(100)).await;
    }
    // Pings as fast as it likes while a call of its runs: no strike either.
    let sleep = json!({"id": 1, "method": "sleep", "params": {"ms": 2000}});
    send(&mut polite, sleep).await;
    for n in 6..=15 {
        send(&mut polite, json!({ "ping": n })).await;
        assert_eq!(
            promptly(next_frame(&mut polite)).await,
            Some(json!({ "pong": n }))
        );
    }
    assert_eq!(next_frame(&mut polite).await.unwrap()["result"], 2000);

    // Three pings at once, no call running: two strikes, and it is sent away.
    let mut rude = TcpStream::connect(addr).await.unwrap();
    let pings: Vec<Value> = (1..=3).map(|n| json!({ "ping": n })).collect();
    send_all(&mut rude, &pings).await;
    assert_eq!(
        promptly(next_frame(&mut rude)).await,
        Some(json!({ "pong": 1 }))
    );
    assert_eq!(
        promptly(next_frame(&mut rude)).await,
        Some(json!({ "pong": 2 }))
    );
    let notice = promptly(next_frame(&mut rude))
        .await
        .expect("the going-away notice");
    assert_eq!(notice["error"]["details"]["going_away"], true, "{notice}");
    assert_eq!(next_frame(&mut rude).await, None);
    // The polite peer's connection is still open.
    send(&mut polite, json!({ "ping": 16 })).await;
    assert_eq!(
        promptly(next_frame(&mut polite)).await,
        Some(json!({ "pong": 16 }))
    );
}
// ANCHOR_END: ping_strikes

/// A server, on the test's runtime, that answers the client as `script`
/// says: it gets the connection and does what it likes with it.
async fn scripted_server<F>(
    script: impl FnOnce(TcpStream) -> F + Send + 'static,
) -> std::net::SocketAddr
where
    F: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        script(stream).await;
    });
    addr
}

// ANCHOR: pong_numbers
/// Exercise 2: a pong says "I read your ping number N". A pong for a ping
/// the client never sent comes from a broken server, which cannot be
/// trusted to be alive, let alone with answers: the client gives the
/// connection up with `BadResponse`. A late pong, for a ping sent before
/// the latest one, is no such thing.
#[tokio::test(start_paused = true)]
#[ignore]
async fn a_pong_for_no_ping_is_a_bad_response() {
    let config = ClientConfig {
        ping_interval: Duration::from_secs(5),
        ping_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    // Holds its pong to ping 1 until ping 2 has come, then answers both,
    // and the call.
    let addr = scripted_server(|mut stream| async move {
        let call = next_frame(&mut stream).await.unwrap();
        assert_eq!(next_frame(&mut stream).await, Some(json!({"ping": 1})));
        send(
            &mut stream,
            json!({"id": null, "ok": true, "result": "news"}),
        )
        .await;
        assert_eq!(next_frame(&mut stream).await, Some(json!({"ping": 2})));
        let answer = json!({"id": call["id"], "ok": true, "result": 2});
        send_all(
            &mut stream,
            &[json!({"pong": 1}), json!({"pong": 2}), answer],
        )
        .await;
        let _ = next_frame(&mut stream).await;
    })
    .await;
    let client = Client::connect_with(addr, config.clone()).await.unwrap();
    assert_eq!(
        client.call("add", json!({"a": 1, "b": 1})).await.unwrap(),
        2
    );

    // Answers the first ping with the pong of a ping never sent.
    let addr = scripted_server(|mut stream| async move {
        let _call = next_frame(&mut stream).await.unwrap();
        assert_eq!(next_frame(&mut stream).await, Some(json!({"ping": 1})));
        send(&mut stream, json!({"pong": 99})).await;
        let _ = next_frame(&mut stream).await;
    })
    .await;
    let client = Client::connect_with(addr, config).await.unwrap();
    let start = time::Instant::now();
    match client.call("add", json!({"a": 1, "b": 1})).await {
        Err(CallError::BadResponse(why)) => assert!(why.contains("99"), "{why}"),
        other => panic!("expected BadResponse, got {other:?}"),
    }
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(5),
        "given up at the pong"
    );
}
// ANCHOR_END: pong_numbers
