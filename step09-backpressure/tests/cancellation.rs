//! Work nobody waits for is stopped: an async method is dropped at its next
//! `.await` when its caller's connection ends or its deadline passes.
//! Work that blocks runs on a thread of its own, and holds up no other call.

mod common;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::Duration;

use common::rpc::protocol::RpcError;
use common::rpc::service::{self, MAX_HASH_ROUNDS};
use common::{spawn_server, spawn_server_offering, spawn_server_with_hold};
use serde_json::{Value, json};
use testkit::{STUCK, connect, exchange, frame, receive, send};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Sends `()` on its channel when dropped: how a test sees a method's
/// future dropped, since code after its last `.await` never runs.
struct SignalOnDrop(Sender<()>);

impl Drop for SignalOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// A server offering `wait_forever`, an async method that says it started,
/// then waits for ever, holding a guard that says when it is dropped.
/// Returns the address, then the "started" and the "dropped" signals.
fn spawn_server_with_wait_forever() -> (SocketAddr, Receiver<()>, Receiver<()>) {
    let (started, started_rx) = mpsc::channel();
    let (dropped, dropped_rx) = mpsc::channel();
    let mut methods = service::methods();
    methods.register("wait_forever", move |_: Value| {
        let (started, guard) = (started.clone(), SignalOnDrop(dropped.clone()));
        async move {
            let _guard = guard;
            let _ = started.send(());
            std::future::pending::<Result<(), RpcError>>().await
        }
    });
    (spawn_server_offering(methods), started_rx, dropped_rx)
}

/// A caller whose connection ends takes its calls with it: the server
/// drops the method's future, which would otherwise wait for ever for
/// nobody. Both ways a connection can end: closed cleanly (FIN: the peer
/// is done sending, which this server takes as done), and reset (RST: its
/// OS sends one for a socket closed with a linger time of zero, or with
/// data still unread).
#[tokio::test]
async fn a_call_whose_connection_ends_is_cancelled_on_the_server() {
    for reset in [false, true] {
        let (addr, started, dropped) = spawn_server_with_wait_forever();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = frame(br#"{"id":1,"method":"wait_forever"}"#);
        stream.write_all(&request).await.unwrap();
        // Blocking waits are fine here: the server has a thread of its
        // own, and nothing else runs on the test's.
        started.recv_timeout(STUCK).expect("the method starts");
        if reset {
            stream.set_zero_linger().unwrap();
        }
        drop(stream);
        dropped
            .recv_timeout(STUCK)
            .unwrap_or_else(|_| panic!("not dropped after its caller left (reset: {reset})"));
    }
}

/// Blocking calls run at most one per core at once: the others wait for a
/// place, so that a flood of them cannot take every core from the runtime.
/// Without the places, every `hold` here would start at once.
#[test]
fn blocking_calls_run_at_most_one_per_core() {
    let cores = thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let (addr, hold) = spawn_server_with_hold();
    let mut stream = connect(addr);
    let calls = cores + 2;
    for id in 1..=calls {
        let request = json!({"id": id, "method": "hold", "params": id});
        send(&mut stream, request.to_string().as_bytes());
    }
    for _ in 0..cores {
        hold.started.recv_timeout(STUCK).expect("a hold starts");
    }
    // A start that never happens sends no event, so this waits a while.
    let extra = hold.started.recv_timeout(Duration::from_millis(300));
    assert!(
        extra.is_err(),
        "more than {cores} blocking calls ran at once"
    );
    // Each call let go gives its place to a waiting one.
    for _ in 0..calls {
        hold.release.send(()).unwrap();
    }
    for _ in 0..calls {
        assert_eq!(receive(&mut stream)["ok"], true);
    }
}

/// At the caller's deadline the method still running is dropped, and the
/// caller is answered `TIMEOUT` instead of waiting for ever.
#[test]
fn a_handler_still_running_at_the_deadline_is_cancelled_and_answered_timeout() {
    let (addr, started, dropped) = spawn_server_with_wait_forever();
    let mut stream = connect(addr);
    let request = json!({"id": 1, "method": "wait_forever", "meta": {"timeout_ms": 50}});
    send(&mut stream, request.to_string().as_bytes());
    started.recv_timeout(STUCK).expect("the method starts");
    let response = receive(&mut stream);
    assert_eq!(response["id"], 1, "{response}");
    assert_eq!(response["error"]["code"], "TIMEOUT", "{response}");
    dropped.recv_timeout(STUCK).expect("the method is dropped");
}

/// A method that blocks its thread does not block the server, which runs
/// on one thread here: `hold` is registered with `register_blocking`, so it
/// waits on a thread of tokio's blocking pool, and `add` is answered
/// meanwhile.
///
/// Registered with `register` instead, `hold` would block the server's
/// only thread: the `add` would wait for the release, which the test sends
/// only once the `add` is answered, and the test would fail after `STUCK`.
#[test]
fn a_blocking_method_does_not_hold_up_the_others() {
    let (addr, hold) = spawn_server_with_hold();
    let mut held = connect(addr);
    send(&mut held, br#"{"id":1,"method":"hold","params":"held"}"#);
    hold.started.recv_timeout(STUCK).expect("hold starts");

    let add = br#"{"id":1,"method":"add","params":{"a":1,"b":2}}"#;
    assert_eq!(exchange(&mut connect(addr), add)["result"], 3.0);

    hold.release.send(()).unwrap();
    assert_eq!(receive(&mut held)["result"], "held");
}

/// `hash` is a function of its input, and refuses more rounds than
/// `MAX_HASH_ROUNDS` with a `BAD_REQUEST` that names `params.rounds`.
#[test]
fn hash_is_deterministic_and_bounds_its_rounds() {
    let mut stream = connect(spawn_server());
    let mut hash = |text: &str, rounds: u32| {
        let params = json!({"text": text, "rounds": rounds});
        let request = json!({"id": 1, "method": "hash", "params": params});
        exchange(&mut stream, request.to_string().as_bytes())
    };
    let first = hash("abc", 1000)["result"].clone();
    let again = hash("abc", 1000)["result"].clone();
    let other = hash("abd", 1000)["result"].clone();
    assert_eq!(first.as_str().map(str::len), Some(16), "{first}");
    assert_eq!(again, first, "same text, same digest");
    assert_ne!(other, first, "other text, other digest");

    let refused = hash("abc", MAX_HASH_ROUNDS + 1);
    assert_eq!(refused["error"]["code"], "BAD_REQUEST", "{refused}");
    assert_eq!(refused["error"]["details"]["field"], "params.rounds");
}
