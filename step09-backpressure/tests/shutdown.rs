//! A server told to stop drains: it refuses new connections, tells its
//! clients it is going away, refuses the requests that arrive after, runs
//! every call it has taken on to its answer, and then closes; a call that
//! outlives the drain timeout is cancelled there. A client sends new calls
//! elsewhere, a refused call too, and a call whose answer cannot come fails
//! with an error that says so, never a hang.

mod common;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use common::rpc::client::{CallError, Client};
use common::rpc::methods::Methods;
use common::rpc::protocol::RpcError;
use common::rpc::server::{self, ServerConfig};
use common::rpc::service::{self, ServiceCalls};
use common::{StoppableServer, spawn_server_at, spawn_stoppable_server};
use serde::Deserialize;
use serde_json::{Value, json};
use testkit::{FakeServer, Reply, STUCK, connect, frame, read_frame, receive, send, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `()` on its channel when dropped: how a test sees a method's
/// future dropped, since code after its last `.await` never runs.
struct SignalOnDrop(Sender<()>);

impl Drop for SignalOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// The test's side of `hold`, an async method that says it has started and
/// then waits until the test releases it (or for ever), holding a guard
/// that says when its future is dropped.
struct Hold {
    started: Receiver<()>,
    release: Arc<tokio::sync::Semaphore>,
    dropped: Receiver<()>,
}

/// The service's methods plus `hold`.
fn methods_with_hold() -> (Methods, Hold) {
    let (started, started_rx) = mpsc::channel();
    let (dropped, dropped_rx) = mpsc::channel();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let mut methods = service::methods();
    let permits = Arc::clone(&release);
    methods.register("hold", move |params: Value| {
        let (started, guard) = (started.clone(), SignalOnDrop(dropped.clone()));
        let permits = Arc::clone(&permits);
        async move {
            let _guard = guard;
            let _ = started.send(());
            permits.acquire().await.expect("never closed").forget();
            Ok::<_, RpcError>(params)
        }
    });
    let hold = Hold {
        started: started_rx,
        release,
        dropped: dropped_rx,
    };
    (methods, hold)
}

/// The frame a server sends as it begins to drain, parsed.
fn is_going_away(frame: &Value) -> bool {
    frame["id"].is_null()
        && frame["error"]["code"] == "SERVER_BUSY"
        && frame["error"]["details"]["going_away"] == true
}

/// The order, seen from a raw connection: the notice first; a request
/// sent after it is refused, under its id, and not run; the answer to the
/// call in flight comes whole; then a clean end of stream. A clean end,
/// not a reset: the server reads what the peer still sends before it
/// closes, or its OS would reset the connection for the unread bytes, and
/// throw away the part of the answer (900 KB) not yet delivered.
#[test]
fn a_draining_server_answers_what_it_took_on_and_runs_nothing_more() {
    let (mut methods, hold) = methods_with_hold();
    let counted = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&counted);
    methods.register("count", move |_: Value| {
        count.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok::<_, RpcError>(Value::Null))
    });
    let mut server = spawn_stoppable_server(methods, ServerConfig::default());
    let mut stream = connect(server.addr);
    let held = "h".repeat(900_000);
    let request = json!({"id": 1, "method": "hold", "params": held});
    send(&mut stream, request.to_string().as_bytes());
    hold.started.recv_timeout(STUCK).expect("hold started");

    server.stop();
    let notice = receive(&mut stream);
    assert!(is_going_away(&notice), "the notice comes first: {notice}");
    send(&mut stream, br#"{"id":2,"method":"count"}"#);
    hold.release.add_permits(1);
    // Read nothing for a while, so the answer waits in the kernels' buffers
    // when this request comes: past the drain's first second, it is not
    // read, and a server that closed at once would reset the connection.
    thread::sleep(Duration::from_millis(1_500));
    send(&mut stream, br#"{"id":3,"method":"count"}"#);
    thread::sleep(Duration::from_millis(300));
    let mut answers = Vec::new();
    loop {
        match read_frame(&mut stream) {
            Ok(Some(body)) => answers.push(serde_json::from_slice::<Value>(&body).unwrap()),
            Ok(None) => break,
            Err(e) => panic!("expected a clean end of stream, got {e}"),
        }
    }
    drop(stream);
    server.join().expect("run returns Ok");

    let ids: Vec<&Value> = answers.iter().map(|a| &a["id"]).collect();
    let held_answer = json!({"id": 1, "ok": true, "result": held});
    assert!(answers.contains(&held_answer), "answers to {ids:?}");
    let refused = |a: &Value, id: u64| a["id"] == id && a["error"]["details"]["going_away"] == true;
    assert!(answers.iter().any(|a| refused(a, 2)), "answers to {ids:?}");
    // The second `count` came after the server stopped reading: refused,
    // or not read at all; never run.
    assert!(
        answers
            .iter()
            .all(|a| a == &held_answer || refused(a, 2) || refused(a, 3))
    );
    assert_eq!(
        counted.load(Ordering::SeqCst),
        0,
        "a request after the notice ran"
    );
}

/// What `work` was asked to do: echo `n` after `ms` milliseconds.
#[derive(Deserialize)]
struct Work {
    n: u64,
    ms: u64,
}

/// Four clients, sixteen callers each, call without pause; the server is
/// stopped in the middle. Every call ends (no hang), and the counts add
/// up: each caller's last call fails, with a connection error, and every
/// other call succeeds with its own answer, whole; the calls the server
/// started, and those it finished, are exactly the calls answered, so none
/// was cancelled, none ran without its caller hearing, and none ran twice.
/// A call of 3 s on each connection, running when the stop comes, must be
/// answered too: the drain waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_mid_load_answers_every_call_it_read() {
    const CLIENTS: usize = 4;
    const CALLERS: usize = 16;
    let (started, finished) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut methods = service::methods();
    let counts = (Arc::clone(&started), Arc::clone(&finished));
    methods.register("work", move |work: Work| {
        let (started, finished) = (Arc::clone(&counts.0), Arc::clone(&counts.1));
        async move {
            started.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(work.ms)).await;
            finished.fetch_add(1, Ordering::SeqCst);
            Ok::<_, RpcError>(work.n)
        }
    });
    let config = ServerConfig {
        drain_timeout: STUCK,
        ..ServerConfig::default()
    };
    let mut server = spawn_stoppable_server(methods, config);
    let mut callers = tokio::task::JoinSet::new();
    let mut long_calls = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let client = Client::connect(server.addr).await.unwrap();
        // And on each connection a call that outlasts the drain's first
        // second, made once the load is on (below).
        let (long_client, n) = (client.clone(), u64::MAX - c as u64);
        long_calls.spawn(async move {
            let started = Instant::now();
            let result = long_client.call("work", json!({"n": n, "ms": 3_000})).await;
            (result, n, started.elapsed())
        });
        for k in 0..CALLERS {
            let client = client.clone();
            callers.spawn(async move {
                let mut answered = 0;
                for i in 0.. {
                    let n = ((c * CALLERS + k) as u64) << 32 | i;
                    let params = json!({"n": n, "ms": i % 7});
                    match client.call("work", params).await {
                        Ok(result) => {
                            assert_eq!(result, json!(n), "an answer that is not this call's");
                            answered += 1;
                        }
                        Err(error) => return (answered, error),
                    }
                }
                unreachable!()
            });
        }
    }
    // Under load: the server has finished some calls, and is running more.
    let start = Instant::now();
    while finished.load(Ordering::SeqCst) < 1_000 {
        assert!(start.elapsed() < STUCK, "the load never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.stop();
    while let Some(ended) = long_calls.join_next().await {
        let (result, n, took) = ended.unwrap();
        assert_eq!(
            result.unwrap(),
            json!(n),
            "a long call, answered after {took:?}"
        );
    }

    let mut answered = 0;
    let mut why = BTreeMap::<String, usize>::new();
    let all_ended = tokio::time::timeout(STUCK * 3, async {
        while let Some(ended) = callers.join_next().await {
            let (calls, error) = ended.unwrap();
            answered += calls;
            match error {
                CallError::Io(e) => *why.entry(format!("{:?}: {e}", e.kind())).or_default() += 1,
                // Changed from step 8: a refused call is sent again only
                // if the retry budget pays for it; if not, its caller gets
                // the refusal, and knows that the call did not run.
                CallError::Server(e) if e.is_going_away() => {
                    *why.entry(e.message).or_default() += 1;
                }
                other => panic!("not a connection error nor a refusal: {other:?}"),
            }
        }
    });
    all_ended.await.expect("a call hung");
    let server = tokio::task::spawn_blocking(move || server.join());
    server.await.unwrap().expect("run returns Ok");
    println!("{answered} calls answered; the last calls failed with: {why:#?}");
    assert_eq!(why.values().sum::<usize>(), CLIENTS * CALLERS);
    let answered = answered + CLIENTS as u64;
    assert_eq!(finished.load(Ordering::SeqCst), answered);
    assert_eq!(
        started.load(Ordering::SeqCst),
        answered,
        "calls were cancelled"
    );
}

/// A call still running at the drain timeout is cancelled there (its future
/// is dropped) and its connection closed: its caller fails at once, with
/// an error that says the server shut down, and `run` returns.
#[test]
fn a_call_that_outlives_the_drain_timeout_is_cancelled_at_the_timeout() {
    let drain_timeout = Duration::from_millis(300);
    let (methods, hold) = methods_with_hold();
    let config = ServerConfig {
        drain_timeout,
        ..ServerConfig::default()
    };
    let mut server = spawn_stoppable_server(methods, config);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime.block_on(Client::connect(server.addr)).unwrap();
    let call = runtime.spawn({
        let client = client.clone();
        async move { client.call("hold", Value::Null).await }
    });
    hold.started.recv_timeout(STUCK).expect("hold started");

    let stopped = Instant::now();
    server.stop();
    hold.dropped.recv_timeout(STUCK).expect("hold cancelled");
    let cancelled_after = stopped.elapsed();
    assert!(
        cancelled_after >= drain_timeout,
        "cancelled after {cancelled_after:?}"
    );
    let error = runtime
        .block_on(call)
        .unwrap()
        .expect_err("no answer can come");
    let CallError::Io(e) = &error else {
        panic!("not a connection error: {error:?}")
    };
    assert_eq!(e.kind(), ErrorKind::ConnectionAborted, "{e}");
    assert!(e.to_string().contains("shut down"), "{e}");
    server.join().expect("run returns Ok");
    assert!(stopped.elapsed() < STUCK);
}

/// Starts a server serving `methods` with `drain_timeout` on the test's own
/// runtime, for tests on the paused clock: its address, the sender whose
/// drop stops it, and its task.
async fn start_stoppable_here(
    methods: Methods,
    drain_timeout: Duration,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = ServerConfig {
        drain_timeout,
        ..ServerConfig::default()
    };
    let shutdown = async {
        let _ = stopped.await;
    };
    let server = tokio::spawn(server::run(listener, methods, config, shutdown));
    (addr, stop, server)
}

/// The same, on tokio's paused clock, which jumps to the next timer
/// whenever every task waits: the server, on the test's own runtime, gives
/// up on the call exactly at the drain timeout, not a microsecond sooner
/// or later. (No client here: its timers would fire during the jumps.)
#[tokio::test(start_paused = true)]
async fn the_drain_timeout_is_exact_on_the_paused_clock() {
    let drain_timeout = Duration::from_secs(15);
    let (methods, hold) = methods_with_hold();
    let (addr, stop, server) = start_stoppable_here(methods, drain_timeout).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&frame(br#"{"id":1,"method":"hold"}"#))
        .await
        .unwrap();
    while hold.started.try_recv().is_err() {
        tokio::task::yield_now().await;
    }

    let stopped_at = tokio::time::Instant::now();
    drop(stop);
    server.await.unwrap().expect("run returns Ok");
    assert_eq!(stopped_at.elapsed(), drain_timeout);
    hold.dropped.try_recv().expect("hold was cancelled");
}

/// A peer that keeps its connection open, and says nothing, does not hold
/// the shutdown for the drain timeout: once its connection has nothing
/// left to do, the server waits for it only a moment. (Paused clock: the
/// time is exact, and no real time passes.)
#[tokio::test(start_paused = true)]
async fn a_silent_peer_does_not_hold_the_shutdown() {
    let drain_timeout = Duration::from_secs(15);
    let (addr, stop, server) = start_stoppable_here(service::methods(), drain_timeout).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&frame(br#"{"id":1,"method":"add","params":{"a":1,"b":2}}"#))
        .await
        .unwrap();
    let mut answer = [0; 4];
    stream.read_exact(&mut answer).await.unwrap();

    let stopped_at = tokio::time::Instant::now();
    drop(stop);
    server.await.unwrap().expect("run returns Ok");
    let took = stopped_at.elapsed();
    assert!(took < drain_timeout, "the shutdown took {took:?}");
    drop(stream);
}

/// A peer that hangs up during the drain wants no answers: its calls are
/// cancelled at once, as they would be were the server not stopping, and
/// do not hold the shutdown until the drain timeout.
#[tokio::test(start_paused = true)]
async fn a_peer_that_hangs_up_during_the_drain_takes_its_calls_with_it() {
    let drain_timeout = Duration::from_secs(15);
    let (methods, hold) = methods_with_hold();
    let (addr, stop, server) = start_stoppable_here(methods, drain_timeout).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&frame(br#"{"id":1,"method":"hold"}"#))
        .await
        .unwrap();
    while hold.started.try_recv().is_err() {
        tokio::task::yield_now().await;
    }

    let stopped_at = tokio::time::Instant::now();
    drop(stop);
    let mut notice = [0; 4];
    stream.read_exact(&mut notice).await.unwrap();
    drop(stream);
    server.await.unwrap().expect("run returns Ok");
    let took = stopped_at.elapsed();
    assert!(took < drain_timeout, "the shutdown took {took:?}");
    hold.dropped.try_recv().expect("hold was cancelled");
}

/// A request a server going away refused did not run: the client sends it
/// again on a new connection, though it is not idempotent. A plain
/// `SERVER_BUSY`, which may come after part of the work, is not sent again.
#[tokio::test]
async fn a_refused_call_is_sent_again_on_a_new_connection() {
    let notice = json!({"id": null, "ok": false, "error": {"code": "SERVER_BUSY",
        "message": "going away", "details": {"going_away": true}}});
    let mut seen = 0;
    let server = FakeServer::start(move |request| {
        seen += 1;
        let id = request["id"].clone();
        let busy = |details| {
            json!({"id": id, "ok": false, "error": {"code": "SERVER_BUSY",
                "message": "not now", "details": details}})
        };
        match seen {
            1 => vec![
                Reply::Json(notice.clone()),
                Reply::Json(busy(json!({"going_away": true}))),
            ],
            2 => vec![Reply::Json(json!({"id": id, "ok": true, "result": 3.0}))],
            _ => vec![Reply::Json(busy(Value::Null))],
        }
    });
    let client = Client::connect(server.addr()).await.unwrap();
    assert_eq!(client.add(1.0, 2.0).await.unwrap(), 3.0);
    let first = server.request_json();
    let second = server.request_json();
    assert_eq!(
        (&first["method"], &second["method"]),
        (&json!("add"), &json!("add"))
    );

    match client.add(1.0, 2.0).await {
        Err(CallError::Server(error)) => assert!(!error.is_going_away(), "{error:?}"),
        other => panic!("expected SERVER_BUSY, got {other:?}"),
    }
    server.request_json();
    assert!(
        server.requests_so_far().is_empty(),
        "a plain SERVER_BUSY was sent again"
    );
}

/// Once told the server is going away, the client sends new calls on a new
/// connection, here to a new server on the same address, while the old
/// connection drains: its call in flight gets its answer there.
#[test]
fn new_calls_go_to_a_new_connection_while_the_old_one_drains() {
    let (methods, hold) = methods_with_hold();
    let mut old = spawn_stoppable_server(methods, ServerConfig::default());
    let addr = old.addr;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime.block_on(Client::connect(addr)).unwrap();
    let held = runtime.spawn({
        let client = client.clone();
        async move { client.call("hold", json!("held")).await }
    });
    hold.started.recv_timeout(STUCK).expect("hold started");

    old.stop();
    wait_until("the client hears the notice", STUCK, || {
        client.is_going_away()
    });
    // The old server has closed its listener: a new one can take the port.
    bind_when_free(addr);
    let sum = runtime.block_on(client.add(2.0, 3.0));
    assert_eq!(sum.unwrap(), 5.0, "answered by the new server");
    assert!(
        !client.is_going_away(),
        "the new connection is the client's"
    );
    assert!(!old.has_stopped(), "the old server still drains");

    hold.release.add_permits(1);
    let answer = runtime.block_on(held).unwrap();
    assert_eq!(answer.unwrap(), json!("held"), "answered by the old server");
    old.join().expect("run returns Ok");
}

/// Starts a server on `addr` as soon as the port is free.
fn bind_when_free(addr: SocketAddr) {
    let start = Instant::now();
    while std::net::TcpListener::bind(addr).is_err() {
        assert!(start.elapsed() < STUCK, "{addr} stayed taken");
        thread::sleep(Duration::from_millis(10));
    }
    spawn_server_at(addr);
}

/// A client with no server left to go to: a call after the drain fails
/// at once (the connection is refused), and says so.
#[tokio::test]
async fn a_call_after_the_server_has_gone_fails_with_a_clear_error() {
    let mut server: StoppableServer =
        spawn_stoppable_server(service::methods(), ServerConfig::default());
    let client = Client::connect(server.addr).await.unwrap();
    assert_eq!(client.add(1.0, 1.0).await.unwrap(), 2.0);
    server.stop();
    let joined = tokio::task::spawn_blocking(move || server.join());
    joined.await.unwrap().expect("run returns Ok");
    match client.add(1.0, 1.0).await {
        Err(CallError::Io(e)) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}"),
        other => panic!("expected a refused connection, got {other:?}"),
    }
}

/// A client from before the notice (step 4's) takes it for an answer to no
/// call, drops it, and still gets the answer to its call in flight.
#[test]
fn an_older_client_ignores_the_notice_and_gets_its_answer() {
    let (methods, hold) = methods_with_hold();
    let mut server = spawn_stoppable_server(methods, ServerConfig::default());
    let client = step04::client::Client::connect(server.addr).unwrap();
    let held = thread::spawn({
        let client = client.clone();
        move || client.call("hold", json!("held"))
    });
    hold.started.recv_timeout(STUCK).expect("hold started");
    server.stop();
    wait_until("the notice arrives", STUCK, || {
        client.unknown_responses() == 1
    });
    hold.release.add_permits(1);
    assert_eq!(held.join().unwrap().unwrap(), json!("held"));
    drop(client);
    server.join().expect("run returns Ok");
}

/// Idle connections do not hold the shutdown up: each is told, and closes.
#[tokio::test]
async fn idle_connections_close_at_once() {
    let mut server = spawn_stoppable_server(service::methods(), ServerConfig::default());
    let mut clients = Vec::new();
    for _ in 0..100 {
        let client = Client::connect(server.addr).await.unwrap();
        assert_eq!(client.add(1.0, 2.0).await.unwrap(), 3.0);
        clients.push(client);
    }
    let stopped = Instant::now();
    server.stop();
    let joined = tokio::task::spawn_blocking(move || server.join());
    joined.await.unwrap().expect("run returns Ok");
    // Well under the default drain timeout of 15 s: nobody waited for it.
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopped.elapsed()
    );
    assert!(clients.iter().all(Client::is_going_away));
}
