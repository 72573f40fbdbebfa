//! The chapter's exercises. Each test is `#[ignore]`d so that the step's
//! own suite stays green; run them with
//!
//! ```text
//! cargo test -p step05-async --test exercises -- --ignored
//! ```
//!
//! and make them pass, in any order: each is independent of the others.
//! `cargo xtask exercises` checks that each one fails on the step as
//! shipped and with each wrong solution in `exercises/`, and passes with
//! its reference solution, alone or with the others.

#[path = "../tests/common/mod.rs"]
mod common;

use std::future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::thread;
use std::time::{Duration, Instant};

use common::rpc::client::{CallError, Client, ClientConfig};
use common::rpc::methods::Methods;
use common::rpc::protocol::RpcError;
use common::rpc::service;
use common::spawn_server_offering;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use testkit::{STUCK, connect, exchange, read_frame, receive, send, send_raw};
use tokio::sync::watch;

// Stand-ins. A test must compile on the step as shipped, to show that it
// fails there, but each exercise here adds a method that the step does not
// have yet. So each has a stand-in: a trait method of the same name and
// signature, which does what the step does without the exercise. Rust
// looks for a type's own methods before a trait's: once you write the real
// one, in `impl Client` or `impl Methods`, the test calls yours, and the
// stand-in goes unused (hence the `allow`).

/// Exercise 1 without a solution: the calls one after another, as a caller
/// of the step makes them.
#[allow(dead_code)]
trait CallManyStandIn {
    async fn call_many(&self, calls: Vec<(String, Value)>) -> Vec<Result<Value, CallError>>;
}

impl CallManyStandIn for Client {
    async fn call_many(&self, calls: Vec<(String, Value)>) -> Vec<Result<Value, CallError>> {
        let mut results = Vec::new();
        for (method, params) in calls {
            results.push(self.call(&method, params).await);
        }
        results
    }
}

/// Exercise 2 without a solution: no limit at all.
#[allow(dead_code)]
trait SetTimeoutStandIn {
    fn set_timeout(&mut self, name: &str, limit: Duration);
}

impl SetTimeoutStandIn for Methods {
    fn set_timeout(&mut self, _name: &str, _limit: Duration) {}
}

/// Exercise 3 without a solution: a blocking method whose flag nobody ever
/// sets.
#[allow(dead_code)]
trait RegisterCancellableStandIn {
    fn register_cancellable<P, R>(
        &mut self,
        name: &str,
        handler: impl Fn(P, &AtomicBool) -> Result<R, RpcError> + Send + Sync + 'static,
    ) where
        P: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static;
}

impl RegisterCancellableStandIn for Methods {
    fn register_cancellable<P, R>(
        &mut self,
        name: &str,
        handler: impl Fn(P, &AtomicBool) -> Result<R, RpcError> + Send + Sync + 'static,
    ) where
        P: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
    {
        let never = AtomicBool::new(false);
        self.register_blocking(name, move |params| handler(params, &never));
    }
}

// ANCHOR: call_many
/// Exercise 1: `Client::call_many(calls)` makes a list of calls at once, on
/// the client's one connection, and returns their results in the order of
/// the list, whatever order they finish in. Each call succeeds or fails on
/// its own.
#[tokio::test]
#[ignore]
async fn call_many_runs_calls_concurrently() {
    // `in_turn n` waits for its turn, until the calls with a smaller `n`
    // have finished, then returns `n`: a counter of turns, no clock. The
    // list starts with `in_turn 2`, which made alone waits for calls that
    // have not been sent yet.
    let (turn, _) = watch::channel(0_u64);
    let turn = Arc::new(turn);
    let mut methods = service::methods();
    methods.register("in_turn", move |n: u64| {
        let (turn, mut turns) = (Arc::clone(&turn), turn.subscribe());
        async move {
            let _ = turns.wait_for(|&now| now == n).await;
            turn.send_modify(|now| *now += 1);
            Ok::<_, RpcError>(n)
        }
    });
    // So it waits until this deadline passes, and fails.
    let config = ClientConfig {
        default_timeout: Duration::from_secs(2),
        ..ClientConfig::default()
    };
    let addr = spawn_server_offering(methods);
    let client = Client::connect_with(addr, config).await.unwrap();
    let calls = vec![
        ("in_turn".to_string(), json!(2)),
        ("divide".to_string(), json!({"a": 1, "b": 0})),
        ("in_turn".to_string(), json!(1)),
        ("add".to_string(), json!({"a": 1, "b": 2})),
        ("in_turn".to_string(), json!(0)),
    ];
    let results = client.call_many(calls).await;

    // Each result as its value, or its error's code or message.
    let results: Vec<Value> = results
        .into_iter()
        .map(|result| match result {
            Ok(value) => value,
            Err(CallError::Server(error)) => json!(error.code.to_string()),
            Err(other) => json!(other.to_string()),
        })
        .collect();
    assert_eq!(
        json!(results),
        json!([2, "BAD_REQUEST", 1, 3.0, 0]),
        "in_turn 2, 1 and 0 finish in the order 0, 1, 2 only if all of them are \
         sent before any is answered; their results come in the order of the calls"
    );
}
// ANCHOR_END: call_many

/// Sends `()` when dropped: how a test sees a method's future dropped,
/// since code after its last `.await` never runs.
struct SignalOnDrop(Sender<()>);

impl Drop for SignalOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

// ANCHOR: method_timeout
/// Exercise 2: `Methods::set_timeout(name, limit)` caps how long the method
/// `name` may run, whether its caller sent a deadline or not, and however
/// long that deadline is: past the limit, the method is dropped, as at a
/// deadline, and its caller answered `TIMEOUT`. A method that finishes
/// within its limit, and a method without one, answer as before.
#[test]
#[ignore]
fn a_method_timeout_caps_every_call() {
    // `stuck` never finishes unless it is dropped, and says when it is.
    let (dropped_tx, dropped) = mpsc::channel();
    let mut methods = service::methods();
    methods.register("stuck", move |_: Value| {
        let guard = SignalOnDrop(dropped_tx.clone());
        async move {
            let _guard = guard;
            future::pending::<Result<Value, RpcError>>().await
        }
    });
    methods.set_timeout("stuck", Duration::from_millis(50));
    methods.set_timeout("add", Duration::from_millis(50));
    let mut stream = connect(spawn_server_offering(methods));
    // `stuck`'s answer, which a read waits for until `STUCK` at most.
    let mut call_stuck = |request: Value, without_a_limit: &str| -> Value {
        send(&mut stream, request.to_string().as_bytes());
        match read_frame(&mut stream) {
            Ok(Some(body)) => serde_json::from_slice(&body).unwrap(),
            _ => panic!("no answer to {request} within {STUCK:?}: {without_a_limit}"),
        }
    };

    // No deadline from the caller, which would wait for ever.
    let response = call_stuck(json!({"id": 1, "method": "stuck"}), "nothing stopped it");
    assert_eq!(response["error"]["code"], "TIMEOUT", "{response}");
    (dropped.recv_timeout(STUCK)).expect("`stuck` was answered, but runs on");

    // A deadline of a minute: the limit is shorter, and comes first.
    let request = json!({"id": 2, "method": "stuck", "meta": {"timeout_ms": 60_000}});
    let response = call_stuck(request, "the limit did not cut the minute short");
    assert_eq!(response["error"]["code"], "TIMEOUT", "{response}");
    (dropped.recv_timeout(STUCK)).expect("`stuck` was answered, but runs on");

    // `add` finishes within its limit; `sleep` has none, and may take longer.
    let add = br#"{"id":3,"method":"add","params":{"a":1,"b":2}}"#;
    let add = exchange(&mut stream, add);
    assert_eq!(add["result"], 3.0, "{add}");
    let sleep = br#"{"id":4,"method":"sleep","params":{"ms":100}}"#;
    let sleep = exchange(&mut stream, sleep);
    assert_eq!(sleep["result"], 100, "{sleep}");
}
// ANCHOR_END: method_timeout

// ANCHOR: cancellable
/// Exercise 3: a blocking method cannot be stopped from outside, so it must
/// stop itself. `Methods::register_cancellable(name, handler)` offers a
/// blocking method, as `register_blocking` does, whose code also gets a
/// flag, `given_up: &AtomicBool`, of its call's own: `true` once nobody
/// waits for the answer, because the call's deadline passed or the server
/// dropped its connection. `hash` uses it to stop part way.
#[test]
#[ignore]
fn a_blocking_method_stops_when_its_caller_gives_up() {
    // `spin {ms}` works for `ms` milliseconds, one at a time, and looks at
    // its flag after each, as `hash` does every so many rounds. It says
    // when it starts, and when it stops whether it was told to. Never told,
    // it stops by itself after `STUCK / 2`, so as not to spin for ever.
    let (started_tx, started) = mpsc::channel();
    let (told_tx, told) = mpsc::channel();
    let mut methods = service::methods();
    methods.register_cancellable("spin", move |ms: u64, given_up: &AtomicBool| {
        let _ = started_tx.send(());
        let start = Instant::now();
        let mut done = 0;
        while done < ms && !given_up.load(Ordering::Relaxed) && start.elapsed() < STUCK / 2 {
            thread::sleep(Duration::from_millis(1));
            done += 1;
        }
        let _ = told_tx.send(given_up.load(Ordering::Relaxed));
        Ok::<_, RpcError>(done)
    });
    let addr = spawn_server_offering(methods);
    let was_told = |when: &str| {
        let told = (told.recv_timeout(STUCK)).expect("`spin` stops");
        assert!(
            told,
            "`spin` was never told {when}: it ran on until it gave up"
        );
    };

    // The call's deadline passes.
    let mut stream = connect(addr);
    let request = json!({
        "id": 1, "method": "spin", "params": 1_000_000, "meta": {"timeout_ms": 500}
    });
    send(&mut stream, request.to_string().as_bytes());
    (started.recv_timeout(STUCK)).expect("`spin` starts");
    let response = receive(&mut stream);
    assert_eq!(response["error"]["code"], "TIMEOUT", "{response}");
    was_told("that its deadline had passed");

    // The server drops the connection, and its calls with it: the length
    // of this frame is over the limit, and the stream cannot be read on.
    send(&mut stream, br#"{"id":2,"method":"spin","params":1000000}"#);
    (started.recv_timeout(STUCK)).expect("`spin` starts");
    send_raw(&mut stream, &u32::MAX.to_be_bytes());
    was_told("that its connection was gone");

    // The flag is the call's own: a call made after those is not told, and
    // does all of its work.
    let mut stream = connect(addr);
    let response = exchange(&mut stream, br#"{"id":3,"method":"spin","params":20}"#);
    assert_eq!(response["result"], 20, "`spin` stopped early: {response}");
    let told = told.recv_timeout(STUCK);
    assert_eq!(told, Ok(false), "`spin` was told, with its caller waiting");
}
// ANCHOR_END: cancellable
