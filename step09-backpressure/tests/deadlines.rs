//! Deadlines on both sides: the client gives up at its deadline and drops
//! the answer that comes later; the server skips, or answers `TIMEOUT`
//! for, work whose caller has given up. A connection that cannot deliver
//! an answer in time, however slowly it dribbles, is replaced; a connect
//! that cannot be made in time gives up.

mod common;

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::rpc::client::{CallError, CallOptions, Client, ClientConfig};
use common::rpc::service::ServiceCalls;
use common::spawn_server_with_hold;
use serde_json::json;
use testkit::{FakeServer, Reply, STUCK, connect, exchange, receive, send};
use tokio::time;

#[tokio::test]
async fn late_response_after_timeout_is_dropped() {
    // Changed from step 4: the server now answers `TIMEOUT` at the deadline
    // itself, at times before the client's own timer fires. So a fake server
    // answers late for sure: the first request only with the second's answer.
    let mut first = None;
    let server = FakeServer::start(move |request| {
        let Some(id) = first.take() else {
            first = Some(request["id"].clone());
            return vec![];
        };
        vec![
            Reply::Json(json!({"id": id, "ok": true, "result": "late"})),
            Reply::Json(json!({"id": request["id"], "ok": true, "result": 3})),
        ]
    });
    let client = Client::connect(server.addr()).await.unwrap();
    let options = CallOptions {
        timeout: Some(Duration::from_millis(100)),
        ..CallOptions::default()
    };
    let start = Instant::now();
    let result = client.call_with("hold", json!("late"), &options).await;
    assert!(matches!(result, Err(CallError::Timeout)), "{result:?}");
    assert!(start.elapsed() >= Duration::from_millis(100));

    // The request went out, and its answer comes with the next one's: to
    // nobody.
    assert_eq!(server.request_json()["params"], "late");
    assert_eq!(client.unknown_responses(), 0);

    // The connection is still the same one (its count is 1), and still
    // works.
    assert_eq!(client.add(1.0, 2.0).await.unwrap(), 3.0);
    assert_eq!(client.unknown_responses(), 1);
}

#[test]
fn server_answers_timeout_for_work_past_its_deadline() {
    let (addr, hold) = spawn_server_with_hold();
    let mut stream = connect(addr);
    let request = json!({
        "id": 1, "method": "hold", "params": "held", "meta": {"timeout_ms": 500}
    });
    send(&mut stream, request.to_string().as_bytes());
    // Changed from step 4: the answer no longer waits for the method; the
    // server gives up on it at the deadline, while it is still held (it is
    // released only once the answer is in: were the server to wait for it,
    // this read would wait for ever).
    let response = receive(&mut stream);
    let _ = hold.release.send(());
    assert_eq!(response["id"], 1);
    assert_eq!(response["error"]["code"], "TIMEOUT", "{response}");
    assert!(response.get("result").is_none(), "{response}");

    // The connection goes on.
    let add = br#"{"id":2,"method":"add","params":{"a":1,"b":2}}"#;
    assert_eq!(exchange(&mut stream, add)["result"], 3.0);
}

#[test]
fn server_skips_work_whose_deadline_has_passed() {
    let (addr, hold) = spawn_server_with_hold();
    let mut stream = connect(addr);
    // No time left: had `hold` run, it would wait for a release that never
    // comes, and this read would time out.
    let request = json!({
        "id": 1, "method": "hold", "params": "held", "meta": {"timeout_ms": 0}
    });
    send(&mut stream, request.to_string().as_bytes());
    let response = receive(&mut stream);
    assert_eq!(response["error"]["code"], "TIMEOUT", "{response}");
    assert!(hold.started.try_recv().is_err(), "the method ran");
}

#[tokio::test]
async fn a_trickled_response_is_given_up_at_the_ping_timeout_and_the_connection_replaced() {
    // The first request is answered with a frame that announces 1 MiB and
    // then comes one byte every 50 ms: every read gets something, but no
    // whole frame, not even a pong, ever comes. Later requests get an answer.
    let mut requests = 0;
    let server = FakeServer::start(move |request| {
        requests += 1;
        if requests > 1 {
            return vec![Reply::Json(
                json!({"id": request["id"], "ok": true, "result": 3}),
            )];
        }
        let mut bytes = (1024 * 1024u32).to_be_bytes().to_vec();
        bytes.resize(4 + 1000, b' '); // 50 s of trickle, unless cut short
        let every = Duration::from_millis(50);
        vec![Reply::Trickle { bytes, every }]
    });
    let config = ClientConfig {
        ping_interval: Duration::from_millis(500),
        // Long enough for the second call's answer on a busy machine.
        ping_timeout: Duration::from_secs(2),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(server.addr(), config).await.unwrap();
    // A whole frame must arrive within the ping interval and timeout; none
    // does, so the connection is given up, long before this call's
    // deadline. (Not idempotent, so the call is not tried again.)
    let options = CallOptions {
        timeout: Some(STUCK),
        ..CallOptions::default()
    };
    match client
        .call_with("add", json!({"a": 1, "b": 2}), &options)
        .await
    {
        Err(CallError::Io(e)) => assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}"),
        other => panic!("expected the connection to time out, got {other:?}"),
    }
    // The next call connects anew, and is the server's second request.
    assert_eq!(
        client.call("add", json!({"a": 1, "b": 2})).await.unwrap(),
        3
    );
    assert_eq!(server.requests_so_far().len(), 2);
}

#[tokio::test]
async fn the_first_connect_gives_up_at_the_default_timeout() {
    // A server that never accepts. Once its accept queue is full (129
    // connections, for std's backlog of 128), Linux drops every further
    // handshake, and a connect without a timeout waits out the OS's
    // retries: over two minutes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(stream) => queued.push(stream),
            Err(e) if e.kind() == ErrorKind::TimedOut => break,
            Err(e) => panic!("filling the accept queue after {}: {e}", queued.len()),
        }
        assert!(queued.len() < 10_000, "the accept queue never filled");
    }
    let config = ClientConfig {
        default_timeout: Duration::from_secs(1),
        ..ClientConfig::default()
    };
    // Under a timeout, so that a connect that hangs fails the test in 20 s,
    // not two minutes: generous for a 1 s timeout on a busy machine.
    let connected = Client::connect_with(addr, config);
    let bound = Duration::from_secs(20);
    let connected = time::timeout(bound, connected)
        .await
        .unwrap_or_else(|_| panic!("the connect was still waiting after {bound:?}"));
    assert_eq!(connected.map(drop).unwrap_err().kind(), ErrorKind::TimedOut);
}
