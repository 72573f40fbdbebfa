//! Heartbeats, on tokio's paused clock: time jumps ahead whenever every
//! task waits, so a minute of idling takes no time, and every duration is
//! exact. The servers and peers here are tasks on the test's own runtime,
//! over real TCP on 127.0.0.1: a reply from another thread could come
//! after the clock has already jumped past it. Where an answer must come
//! at once, `promptly` waits for it without letting the clock move at all.
//!
//! The server closes a connection that has been idle (no request, no call
//! running) for its idle timeout, pings or not; a call that runs longer is
//! not cut. The client pings a silent server while calls wait, gives it up
//! when nothing comes back, and pings neither a quiet connection nor a busy
//! one.

mod common;

use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::rpc::client::{CallError, CallOptions, Client, ClientConfig, DEFAULT_MAX_PENDING};
use common::rpc::server::{self, ServerConfig};
use common::rpc::service::{self, ServiceCalls};
use common::{next_frame, promptly, read_frame, start_server_here};
use serde_json::{Value, json};
use testkit::frame;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{self, Instant};

/// The idle timeout the servers here are given: the default.
const IDLE: Duration = Duration::from_secs(60);

/// Starts this step's server, with its service's methods, on the test's
/// runtime.
async fn start_server(config: ServerConfig) -> std::net::SocketAddr {
    start_server_here(service::methods(), config).await
}

/// A client configuration with this heartbeat.
fn heartbeat(ping_interval: Duration, ping_timeout: Duration) -> ClientConfig {
    ClientConfig {
        ping_interval,
        ping_timeout,
        ..ClientConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_sent_the_notice_at_the_idle_timeout_then_closed() {
    let drain_timeout = ServerConfig::default().drain_timeout;
    let addr = start_server(ServerConfig::default()).await;
    // One peer sends nothing at all; the other a frame, a byte every 10 s,
    // never whole: bytes are not requests, only whole frames are.
    let request = frame(br#"{"id":1,"method":"add","params":{"a":1,"b":2}}"#);
    for trickle in [&[][..], &request[..20]] {
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let start = Instant::now();
        for byte in trickle.iter().take(5) {
            peer.write_all(&[*byte]).await.unwrap();
            time::sleep(Duration::from_secs(10)).await;
        }
        let notice = next_frame(&mut peer).await.expect("the going-away notice");
        assert_eq!(start.elapsed(), IDLE, "the notice came early or late");
        assert_eq!(notice["error"]["details"]["going_away"], true, "{notice}");
        // Then the drain, as at a shutdown: nothing left to finish, so the
        // connection closes after the grace and the linger.
        assert_eq!(next_frame(&mut peer).await, None);
        let took = start.elapsed();
        assert!(took < IDLE + drain_timeout, "closed after {took:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn pings_are_answered_without_a_token_but_keep_no_idle_connection_open() {
    let mut methods = service::methods();
    methods.require_token("secret");
    let addr = start_server_here(methods, ServerConfig::default()).await;

    let mut peer = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    // A ping that is not a number is a bad request, answered under no id.
    peer.write_all(&frame(br#"{"ping":"hello"}"#))
        .await
        .unwrap();
    let answer = promptly(next_frame(&mut peer)).await.expect("an answer");
    assert_eq!(answer["id"], Value::Null, "{answer}");
    assert_eq!(answer["error"]["details"]["field"], "ping", "{answer}");
    // A ping every third of the idle timeout, each answered at once, with
    // its number; but pings are no work, and the notice comes on time.
    for n in 1..=2 {
        let ping = json!({ "ping": n }).to_string();
        peer.write_all(&frame(ping.as_bytes())).await.unwrap();
        let pong = promptly(next_frame(&mut peer)).await.expect("an answer");
        assert_eq!(pong, json!({ "pong": n }));
        time::sleep(IDLE / 3).await;
    }
    let notice = next_frame(&mut peer).await.expect("the going-away notice");
    assert_eq!(start.elapsed(), IDLE, "the notice came early or late");
    assert_eq!(notice["error"]["details"]["going_away"], true, "{notice}");
}

#[tokio::test(start_paused = true)]
async fn a_call_that_outlasts_the_idle_timeout_is_not_cut_by_it() {
    let idle_timeout = Duration::from_secs(3);
    let config = ServerConfig {
        idle_timeout,
        ..ServerConfig::default()
    };
    let addr = start_server(config).await;
    // A client that never pings (as every client before this step), and
    // waits 8 s for its call: the connection is busy, not idle.
    let mut peer = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    let call = br#"{"id":1,"method":"sleep","params":{"ms":8000}}"#;
    peer.write_all(&frame(call)).await.unwrap();
    let slept = next_frame(&mut peer).await.expect("the call's answer");
    assert_eq!(slept["result"], 8000, "{slept}");
    assert_eq!(start.elapsed(), Duration::from_secs(8));
    // Idle from the moment the call ended.
    let notice = next_frame(&mut peer).await.expect("the going-away notice");
    assert_eq!(notice["error"]["details"]["going_away"], true, "{notice}");
    assert_eq!(start.elapsed(), Duration::from_secs(8) + idle_timeout);
}

#[tokio::test(start_paused = true)]
async fn a_client_left_idle_is_closed_by_the_server_and_its_next_call_connects_anew() {
    let addr = start_server(ServerConfig::default()).await;
    let client = Client::connect(addr).await.unwrap();
    // A call about half an idle timeout in: the connection is idle from
    // then. (Not at a multiple of the 5 s ping interval: a call made just
    // as the heartbeat looks, after a long silence, gets a ping.)
    time::sleep(Duration::from_secs(32)).await;
    assert_eq!(client.add(1.0, 2.0).await.unwrap(), 3.0);
    time::sleep(IDLE - Duration::from_secs(1)).await;
    assert!(!client.is_going_away(), "closed before its idle timeout");
    // Past the idle timeout, the notice and the close.
    time::sleep(Duration::from_secs(10)).await;
    assert!(client.is_going_away());
    assert_eq!(client.pings_sent(), 0);
    // At once: a reconnect costs no timer.
    assert_eq!(promptly(client.add(2.0, 2.0)).await.unwrap(), 4.0);
    assert!(!client.is_going_away(), "the call went to a new connection");
}

/// A server that accepts connections and reads every byte, but never
/// answers: a process frozen with its kernel still taking bytes, or a
/// black-holed route. Reports each frame body and each connection.
struct BlackHole {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
    bodies: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

async fn start_black_hole() -> BlackHole {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let (report, bodies) = tokio::sync::mpsc::unbounded_channel();
    let count = Arc::clone(&connections);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let report = report.clone();
            tokio::spawn(async move {
                while let Some(body) = read_frame(&mut stream).await {
                    let _ = report.send(body);
                }
            });
        }
    });
    BlackHole {
        addr,
        connections,
        bodies,
    }
}

#[tokio::test(start_paused = true)]
async fn a_server_that_stops_answering_is_given_up_within_interval_plus_timeout() {
    let mut hole = start_black_hole().await;
    let config = heartbeat(Duration::from_secs(5), Duration::from_secs(3));
    let client = Client::connect_with(hole.addr, config).await.unwrap();
    // A deadline far off, so that it is the heartbeat that ends the call.
    let options = CallOptions {
        timeout: Some(Duration::from_secs(60)),
        ..CallOptions::default()
    };
    let start = Instant::now();
    match client
        .call_with("add", json!({"a": 1, "b": 2}), &options)
        .await
    {
        Err(CallError::Io(e)) => {
            assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
            assert!(e.to_string().contains("ping"), "{e}");
        }
        other => panic!("expected the connection to be given up, got {other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::from_secs(5 + 3));
    assert_eq!(client.pending_calls(), 0);
    // The server got the call, and then one ping, numbered 1.
    assert_eq!(hole.bodies.recv().await.unwrap()["method"], "add");
    assert_eq!(hole.bodies.recv().await.unwrap(), json!({"ping": 1}));
    // The next call connects anew (and gets no answer either).
    let options = CallOptions {
        timeout: Some(Duration::from_secs(1)),
        ..CallOptions::default()
    };
    let next = client.call_with("add", json!({"a": 1, "b": 2}), &options);
    assert!(matches!(next.await, Err(CallError::Timeout)));
    let reconnected = async {
        while hole.connections.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
    };
    promptly(reconnected).await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_call_on_a_live_server_outlasts_many_ping_intervals() {
    let addr = start_server(ServerConfig::default()).await;
    let config = heartbeat(Duration::from_secs(1), Duration::from_secs(1));
    let client = Client::connect_with(addr, config).await.unwrap();
    // Silent for 9.5 s on this call, but the server answers every ping.
    assert_eq!(client.sleep(9_500).await.unwrap(), 9_500);
    assert_eq!(
        client.pings_sent(),
        9,
        "one a second, each answered at once"
    );
}

#[tokio::test(start_paused = true)]
async fn a_busy_connection_sends_no_pings() {
    let addr = start_server(ServerConfig::default()).await;
    let config = ClientConfig {
        ping_interval: Duration::from_millis(150),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(addr, config).await.unwrap();
    // An answer every 100 ms for 5 s: never 150 ms without one.
    for _ in 0..50 {
        assert_eq!(client.sleep(100).await.unwrap(), 100);
    }
    assert_eq!(client.pings_sent(), 0);
}

#[tokio::test(start_paused = true)]
async fn pings_do_not_disturb_calls_under_load() {
    let addr = start_server(ServerConfig::default()).await;
    // A ping whenever 2 ms pass without an answer: many, among the calls.
    let config = heartbeat(Duration::from_millis(2), Duration::from_secs(1));
    let client = Client::connect_with(addr, config).await.unwrap();
    let mut callers = JoinSet::new();
    for caller in 0..16u64 {
        let client = client.clone();
        callers.spawn(async move {
            for call in 0..25u64 {
                let ms = (caller * 7 + call * 13) % 40 + 1;
                // Exactly as long as it sleeps: no ping holds it up.
                let start = Instant::now();
                assert_eq!(client.sleep(ms).await.unwrap(), ms);
                assert_eq!(start.elapsed(), Duration::from_millis(ms));
                let (a, b) = (caller as f64, call as f64);
                assert_eq!(client.add(a, b).await.unwrap(), a + b);
            }
        });
    }
    while let Some(caller) = callers.join_next().await {
        caller.unwrap();
    }
    assert!(client.pings_sent() > 10, "{} pings", client.pings_sent());
    // Every pong was taken for what it is, not for an answer.
    assert_eq!(client.unknown_responses(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_step06_server_answers_a_ping_with_an_error_which_shows_it_alive() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (methods, config) = (step06::service::methods(), Default::default());
    tokio::spawn(step06::server::run(
        listener,
        methods,
        config,
        std::future::pending(),
    ));
    let config = heartbeat(Duration::from_secs(1), Duration::from_secs(1));
    let client = Client::connect_with(addr, config).await.unwrap();
    assert_eq!(client.sleep(4_500).await.unwrap(), 4_500);
    // Each ping got a BAD_REQUEST under no id: news of the server, and an
    // answer for no call.
    assert_eq!(client.pings_sent(), 4);
    assert_eq!(client.unknown_responses(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_draining_server_still_answers_pings_while_it_finishes_calls() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    let config = ServerConfig::default();
    let server = tokio::spawn(server::run(listener, service::methods(), config, shutdown));
    let mut peer = TcpStream::connect(addr).await.unwrap();
    let call = br#"{"id":1,"method":"sleep","params":{"ms":5000}}"#;
    peer.write_all(&frame(call)).await.unwrap();
    time::sleep(Duration::from_secs(1)).await;

    drop(stop);
    let notice = next_frame(&mut peer).await.expect("the notice");
    assert_eq!(notice["error"]["details"]["going_away"], true, "{notice}");
    // Its client, with a call still running, asks if the server is there:
    // it is, and says so, rather than refuse the ping as a request.
    peer.write_all(&frame(br#"{"ping":1}"#)).await.unwrap();
    assert_eq!(
        promptly(next_frame(&mut peer)).await,
        Some(json!({"pong": 1}))
    );
    let slept = next_frame(&mut peer).await.expect("the call's answer");
    assert_eq!(slept["result"], 5000, "{slept}");
    assert_eq!(next_frame(&mut peer).await, None);
    server.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_default_client_with_all_its_calls_waiting_still_gets_its_pongs() {
    let addr = start_server(ServerConfig::default()).await;
    let config = heartbeat(Duration::from_secs(1), Duration::from_secs(1));
    let client = Client::connect_with(addr, config).await.unwrap();
    // As many slow calls as the client lets wait: the server runs them all
    // and still reads the pings, so none is taken for a dead server's.
    let mut calls = JoinSet::new();
    for _ in 0..DEFAULT_MAX_PENDING {
        let client = client.clone();
        calls.spawn(async move { client.sleep(3_000).await });
    }
    while let Some(call) = calls.join_next().await {
        assert_eq!(call.unwrap().unwrap(), 3_000);
    }
    assert!(client.pings_sent() > 0);
}

#[tokio::test(start_paused = true)]
async fn timeouts_too_long_to_add_to_the_clock_mean_never() {
    let config = ServerConfig {
        idle_timeout: Duration::MAX,
        ..ServerConfig::default()
    };
    let addr = start_server(config).await;
    let mut peer = TcpStream::connect(addr).await.unwrap();
    time::sleep(Duration::from_secs(7200)).await;
    let add = br#"{"id":1,"method":"add","params":{"a":1,"b":2}}"#;
    peer.write_all(&frame(add)).await.unwrap();
    let sum = promptly(next_frame(&mut peer)).await.expect("an answer");
    assert_eq!(sum["result"], 3.0, "{sum}");

    let mut hole = start_black_hole().await;
    let config = heartbeat(Duration::from_secs(1), Duration::MAX);
    let client = Client::connect_with(hole.addr, config).await.unwrap();
    let options = CallOptions {
        timeout: Some(Duration::from_secs(7200)),
        ..CallOptions::default()
    };
    let call = client.call_with("add", json!({"a": 1, "b": 2}), &options);
    assert!(matches!(call.await, Err(CallError::Timeout)));
    assert_eq!(hole.bodies.recv().await.unwrap()["method"], "add");
    assert_eq!(hole.bodies.recv().await.unwrap(), json!({"ping": 1}));
}

#[tokio::test(start_paused = true)]
async fn an_idle_timeout_of_zero_still_lets_a_call_finish() {
    let config = ServerConfig {
        idle_timeout: Duration::ZERO,
        ..ServerConfig::default()
    };
    let addr = start_server(config).await;
    let mut peer = TcpStream::connect(addr).await.unwrap();
    let call = br#"{"id":1,"method":"sleep","params":{"ms":2000}}"#;
    peer.write_all(&frame(call)).await.unwrap();
    let slept = next_frame(&mut peer).await.expect("the call's answer");
    assert_eq!(slept["result"], 2000, "{slept}");
    let notice = next_frame(&mut peer).await.expect("the going-away notice");
    assert_eq!(notice["error"]["details"]["going_away"], true, "{notice}");
}
