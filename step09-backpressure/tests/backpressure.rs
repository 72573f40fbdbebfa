//! Step 9: past its limits the server degrades, and never falls over. A
//! flood beyond them is shed at once with `SERVER_BUSY`, every call
//! admitted succeeds, `health` answers throughout, and the bytes held stay
//! within their budgets, as `stats` shows. A peer that does not read its
//! answers is not read from. The client honours the server's hint, spends
//! retries from a budget, and can wait for room.
//!
//! The timing tests run on tokio's paused clock, with the server on the
//! test's own runtime (see `tests/heartbeat.rs` for why).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::rpc::client::{CallError, CallOptions, Client, ClientConfig};
use common::rpc::server::{Limits, ServerConfig};
use common::rpc::service::{self, ServiceCalls};
use common::{next_frame, promptly, start_server_here};
use serde_json::{Value, json};
use testkit::{FakeServer, Reply, frame};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// A server on the test's runtime with these limits.
async fn start_server(limits: Limits) -> std::net::SocketAddr {
    let config = ServerConfig {
        limits,
        ..ServerConfig::default()
    };
    start_server_here(service::methods(), config).await
}

/// Sends each of `bodies` as a frame, all in one write.
async fn send_all(stream: &mut TcpStream, bodies: &[Value]) {
    let bytes: Vec<u8> = (bodies.iter())
        .flat_map(|body| frame(body.to_string().as_bytes()))
        .collect();
    stream.write_all(&bytes).await.unwrap();
}

/// Asks `stream`'s server for `method` and returns the answer, which must
/// come at once.
async fn ask(stream: &mut TcpStream, method: &str) -> Value {
    send_all(stream, &[json!({"id": 0, "method": method})]).await;
    promptly(next_frame(stream)).await.unwrap()
}

// ANCHOR: flood
#[tokio::test(start_paused = true)]
async fn a_flood_ten_times_the_limit_is_shed_at_once_and_the_rest_succeeds() {
    let addr = start_server(Limits {
        max_handlers: 10,
        ..Limits::default()
    })
    .await;
    let mut watcher = TcpStream::connect(addr).await.unwrap();
    let mut flood = TcpStream::connect(addr).await.unwrap();
    let sleeps: Vec<Value> = (1..=100)
        .map(|id| json!({"id": id, "method": "sleep", "params": {"ms": 1000}}))
        .collect();
    send_all(&mut flood, &sleeps).await;
    let start = Instant::now();
    // The excess is answered at once, before any time passes.
    for _ in 0..90 {
        let shed = promptly(next_frame(&mut flood)).await.unwrap();
        let error = &shed["error"];
        assert_eq!(error["code"], "SERVER_BUSY", "{shed}");
        assert_eq!(
            error["details"],
            json!({"shed": "handlers", "retry_after_ms": 100})
        );
    }
    // Meanwhile, and half a second on, `health` answers at once, and
    // `stats` shows the ten running and the bytes they hold.
    for _ in 0..2 {
        assert_eq!(ask(&mut watcher, "health").await["ok"], true);
        let stats = ask(&mut watcher, "stats").await["result"].clone();
        assert_eq!(stats["handlers_running"], 10, "{stats}");
        let held = stats["bytes_held"].as_u64().unwrap();
        assert!(held > 0 && held < 1000, "{stats}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The ten admitted all succeed, at the end of their sleep.
    for _ in 0..10 {
        let slept = next_frame(&mut flood).await.unwrap();
        assert_eq!(slept["result"], 1000, "{slept}");
    }
    assert_eq!(start.elapsed(), Duration::from_millis(1000));
    let stats = ask(&mut watcher, "stats").await["result"].clone();
    assert_eq!(stats["handlers_running"], 0, "{stats}");
    let sleep = &stats["methods"]["sleep"]["codes"];
    assert_eq!(sleep, &json!({"OK": 10, "SERVER_BUSY": 90}), "{stats}");
}
// ANCHOR_END: flood

#[tokio::test(start_paused = true)]
async fn byte_budgets_bound_what_large_requests_can_make_the_server_hold() {
    const MIB: usize = 1 << 20;
    let addr = start_server(Limits {
        max_connection_bytes: MIB,
        max_server_bytes: 2 * MIB,
        ..Limits::default()
    })
    .await;
    // Four peers, each sending eight requests of 256 KiB (a `sleep` with
    // padding, which its params ignore). A peer's budget holds three of
    // them; the server's, seven in all: so the first two peers have five
    // shed each, the third seven, the fourth all eight.
    let pad = "x".repeat(256 * 1024);
    let request =
        |id: u64| json!({"id": id, "method": "sleep", "params": {"ms": 1000, "pad": pad}});
    let mut peers = Vec::new();
    for expected_shed in [5, 5, 7, 8] {
        let mut peer = TcpStream::connect(addr).await.unwrap();
        send_all(&mut peer, &(1..=8).map(request).collect::<Vec<_>>()).await;
        for _ in 0..expected_shed {
            let shed = promptly(next_frame(&mut peer)).await.unwrap();
            assert_eq!(shed["error"]["details"]["shed"], "bytes", "{shed}");
        }
        peers.push(peer);
    }
    let mut watcher = TcpStream::connect(addr).await.unwrap();
    let stats = ask(&mut watcher, "stats").await["result"].clone();
    // Exactly the seven requests' bytes: nothing else is held.
    let each = request(1).to_string().len() as u64;
    assert_eq!(stats["bytes_held"], 7 * each, "{stats}");
    // Their sleeps over, the seven succeed, and the bytes are given back.
    for (peer, admitted) in peers.iter_mut().zip([3, 3, 1, 0]) {
        for _ in 0..admitted {
            assert_eq!(next_frame(peer).await.unwrap()["result"], 1000);
        }
    }
    let stats = ask(&mut watcher, "stats").await["result"].clone();
    assert_eq!(stats["bytes_held"], 0, "{stats}");
}

#[test]
fn a_peer_that_never_reads_is_not_read_from_once_its_budget_is_spent() {
    const BUDGET: usize = 1 << 20;
    let addr = common::spawn_server_with(ServerConfig {
        limits: Limits {
            max_connection_bytes: BUDGET,
            ..Limits::default()
        },
        ..ServerConfig::default()
    });
    // Each request names an unknown method of 64 KiB, and its error quotes
    // it: 64 KiB of answer each, which this peer never reads. Its writes
    // stall once the server stops reading it.
    let mut peer = testkit::connect(addr);
    let name = "x".repeat(64 * 1024);
    let request = json!({"id": 1, "method": name}).to_string();
    assert!(testkit::write_until_stalled(&mut peer, &frame(request.as_bytes())).is_ok());
    // Held: the budget, spent or within one request of it (the requests
    // that would not fit were shed, their small refusals queued until the
    // queue was full), and at most the one answer that went over it: each
    // answer comes at once.
    let mut watcher = testkit::connect(addr);
    let stats = testkit::exchange(&mut watcher, br#"{"id":1,"method":"stats"}"#);
    let held = stats["result"]["bytes_held"].as_u64().unwrap() as usize;
    assert!(
        held + request.len() > BUDGET,
        "stopped reading early: {stats}"
    );
    assert!(held <= BUDGET + 70 * 1024, "{stats}");
    assert_eq!(
        testkit::exchange(&mut watcher, br#"{"id":2,"method":"health"}"#)["ok"],
        true
    );
}

#[tokio::test(start_paused = true)]
async fn a_shed_call_is_sent_again_after_the_hint_even_when_not_idempotent() {
    let addr = start_server(Limits {
        max_handlers: 1,
        ..Limits::default()
    })
    .await;
    let busy = Client::connect(addr).await.unwrap();
    let holder = tokio::spawn(async move { busy.sleep(150).await });
    // Wait, without letting time pass, for the sleep to hold the handler.
    let mut watcher = TcpStream::connect(addr).await.unwrap();
    while ask(&mut watcher, "stats").await["result"]["handlers_running"] != 1 {
        tokio::task::yield_now().await;
    }
    let config = ClientConfig {
        // No jitter: each pause is the hint, 100 ms, exactly.
        uniform: Arc::new(|| 0.0),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(addr, config).await.unwrap();
    let start = Instant::now();
    // Not idempotent, but shed twice (at 0 and 100 ms), so never run:
    // sent again each time, and run at 200 ms, once the sleep is over.
    assert_eq!(client.add(1.0, 2.0).await.unwrap(), 3.0);
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(holder.await.unwrap().unwrap(), 150);
    let stats = client.call("stats", Value::Null).await.unwrap();
    let add = &stats["methods"]["add"]["codes"];
    assert_eq!(add, &json!({"OK": 1, "SERVER_BUSY": 2}), "{stats}");
}

#[tokio::test]
async fn the_retry_budget_stops_a_retry_storm() {
    // A server that sheds everything it is sent.
    let server = FakeServer::start(|request| {
        let details = json!({"shed": "handlers", "retry_after_ms": 0});
        let error = json!({"code": "SERVER_BUSY", "message": "busy", "details": details});
        vec![Reply::Json(
            json!({"id": request["id"], "ok": false, "error": error}),
        )]
    });
    let config = ClientConfig {
        // Pauses are not waited out: the test counts requests, not time.
        sleep: Arc::new(|_| Box::pin(async {})),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(server.addr(), config).await.unwrap();
    let idempotent = CallOptions {
        idempotent: true,
        ..CallOptions::default()
    };
    for _ in 0..100 {
        let busy = client
            .call_with("add", json!({"a": 1, "b": 2}), &idempotent)
            .await;
        assert!(matches!(busy, Err(CallError::Server(_))), "{busy:?}");
    }
    // Four attempts each would be 400. The budget pays for the ten retries
    // saved up, and a fifth of a retry per call (but for the first, when
    // the budget was full): 29 retries in all.
    assert_eq!(server.requests_so_far().len(), 100 + 29);
}

#[tokio::test(start_paused = true)]
async fn a_client_told_to_wait_for_room_waits_instead_of_failing() {
    let addr = start_server(Limits::default()).await;
    for wait_for_room in [false, true] {
        let config = ClientConfig {
            max_pending: 2,
            wait_for_room,
            ..ClientConfig::default()
        };
        let client = Client::connect_with(addr, config).await.unwrap();
        let start = Instant::now();
        let mut calls = JoinSet::new();
        for _ in 0..3 {
            let client = client.clone();
            calls.spawn(async move { client.sleep(100).await });
        }
        let results: Vec<_> = calls.join_all().await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        if wait_for_room {
            // The third waited for a place, then ran: 100 ms later.
            assert_eq!(failed, 0, "{results:?}");
            assert_eq!(start.elapsed(), Duration::from_millis(200));
        } else {
            let too_many = results
                .iter()
                .any(|r| matches!(r, Err(CallError::TooManyPending)));
            assert!(failed == 1 && too_many, "{results:?}");
        }
    }
}
