//! The wire has not changed since step 4: step 4's blocking client is
//! served by this step's server, and this step's client by step 4's
//! server, answers, error codes, overtaking, retries and deadlines alike.
//! One module for each direction, each with its own side's imports.

mod common;

/// Step 4's client, blocking, in plain `#[test]`s, against this step's
/// server.
mod step04_client_against_this_server {
    use std::sync::mpsc::{self, TryRecvError};
    use std::thread;
    use std::time::Duration;

    use serde_json::{Value, json};
    use step04::client::{CallError, CallOptions, Client};
    use step04::protocol::ErrorCode;
    use step04::service::ServiceCalls;
    use testkit::STUCK;

    use super::common::{spawn_server, spawn_server_with_hold};

    /// The code of an error response; a panic for anything else.
    fn code(result: Result<Value, CallError>) -> ErrorCode {
        match result {
            Err(CallError::Server(error)) => error.code,
            other => panic!("expected an error response, got {other:?}"),
        }
    }

    /// Answers and error codes read the same to step 4's client.
    #[test]
    fn gets_answers_and_error_codes() {
        let client = Client::connect(spawn_server()).unwrap();
        assert_eq!(client.add(5.0, 3.0).unwrap(), 8.0);
        let divided = client.divide(1.0, 0.0).map(Value::from);
        assert_eq!(code(divided), ErrorCode::BadRequest);
        let unknown = client.call("nope", json!({}));
        assert_eq!(code(unknown), ErrorCode::MethodNotFound);
    }

    /// A fast call overtakes a slow one on step 4's one connection.
    #[test]
    fn sees_a_fast_call_overtake_a_slow_one() {
        let (addr, hold) = spawn_server_with_hold();
        let client = Client::connect(addr).unwrap();
        let (done, held) = mpsc::channel();
        let slow = client.clone();
        thread::spawn(move || done.send(slow.call("hold", json!("held"))));
        hold.started.recv_timeout(STUCK).unwrap();
        assert_eq!(client.add(1.0, 2.0).unwrap(), 3.0);
        assert_eq!(held.try_recv().unwrap_err(), TryRecvError::Empty);
        hold.release.send(()).unwrap();
        assert_eq!(held.recv_timeout(STUCK).unwrap().unwrap(), "held");
    }

    /// A call past its deadline times out, and the connection goes on.
    /// This server answers `TIMEOUT` at the deadline, just as the client
    /// gives up: either may come first, and either is a timeout.
    #[test]
    fn times_out_at_its_deadline() {
        let (addr, hold) = spawn_server_with_hold();
        let client = Client::connect(addr).unwrap();
        let options = CallOptions {
            timeout: Some(Duration::from_millis(100)),
            ..CallOptions::default()
        };
        match client.call_with("hold", json!("late"), &options) {
            Err(CallError::Timeout) => {}
            Err(CallError::Server(error)) if error.code == ErrorCode::Timeout => {}
            other => panic!("expected a timeout, got {other:?}"),
        }
        hold.release.send(()).unwrap();
        assert_eq!(client.add(2.0, 2.0).unwrap(), 4.0);
    }
}

/// This step's client, async, against step 4's server on a thread.
mod this_client_against_step04_server {
    use std::net::{SocketAddr, TcpListener};
    use std::sync::{Mutex, mpsc};
    use std::thread;
    use std::time::Duration;

    use serde_json::{Value, json};
    use testkit::STUCK;
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
    use tokio::time::{self, timeout};

    use super::common::rpc::client::{CallError, CallOptions, Client};
    use super::common::rpc::protocol::ErrorCode;
    use super::common::rpc::service::ServiceCalls;

    /// Step 4's server, offering its service's methods and a `hold` like
    /// `spawn_server_with_hold`'s. Returns its address, the "started"
    /// signal of `hold` (async, for an async test to wait on) and its
    /// release.
    fn spawn_step04_server() -> (SocketAddr, UnboundedReceiver<()>, mpsc::Sender<()>) {
        let (started, started_rx) = unbounded_channel();
        let (release, release_rx) = mpsc::channel();
        let release_rx = Mutex::new(release_rx);
        let mut methods = step04::service::methods();
        methods.register("hold", move |params: Value| {
            let _ = started.send(());
            let _ = release_rx.lock().unwrap().recv();
            Ok(params)
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let config = step04::server::ServerConfig::default();
        thread::spawn(move || step04::server::run(listener, methods, config));
        (addr, started_rx, release)
    }

    /// The code of an error response; a panic for anything else.
    fn code(result: Result<Value, CallError>) -> ErrorCode {
        match result {
            Err(CallError::Server(error)) => error.code,
            other => panic!("expected an error response, got {other:?}"),
        }
    }

    /// Step 4's answers and error codes read the same to this client.
    #[tokio::test]
    async fn gets_answers_and_error_codes() {
        let client = Client::connect(spawn_step04_server().0).await.unwrap();
        assert_eq!(client.add(5.0, 3.0).await.unwrap(), 8.0);
        let divided = client.divide(1.0, 0.0).await.map(Value::from);
        assert_eq!(code(divided), ErrorCode::BadRequest);
        let unknown = client.call("nope", json!({})).await;
        assert_eq!(code(unknown), ErrorCode::MethodNotFound);
    }

    /// A fast call overtakes a slow one on this client's one connection.
    #[tokio::test]
    async fn sees_a_fast_call_overtake_a_slow_one() {
        let (addr, mut started, release) = spawn_step04_server();
        let client = Client::connect(addr).await.unwrap();
        let slow = client.clone();
        let held = tokio::spawn(async move { slow.call("hold", json!("held")).await });
        timeout(STUCK, started.recv()).await.unwrap().unwrap();
        assert_eq!(client.add(1.0, 2.0).await.unwrap(), 3.0);
        assert!(!held.is_finished());
        release.send(()).unwrap();
        assert_eq!(held.await.unwrap().unwrap(), "held");
    }

    /// `SERVER_BUSY` from step 4's server is retried for an idempotent
    /// call: `flaky` fails twice, and answers the third call it counted.
    #[tokio::test]
    async fn retries_an_idempotent_call_through_server_busy() {
        let client = Client::connect(spawn_step04_server().0).await.unwrap();
        let idempotent = CallOptions {
            idempotent: true,
            ..CallOptions::default()
        };
        let flaky = json!({"key": "compat", "failures": 2});
        let calls = client.call_with("flaky", flaky, &idempotent).await;
        assert_eq!(calls.unwrap(), 3);
    }

    /// A call past its deadline gives up. Step 4's server answers it once
    /// `hold` is released, too late: this client reads that answer,
    /// matches it to no call, drops it, and the connection goes on.
    #[tokio::test]
    async fn times_out_at_its_deadline_and_drops_the_late_answer() {
        let (addr, _started, release) = spawn_step04_server();
        let client = Client::connect(addr).await.unwrap();
        let options = CallOptions {
            timeout: Some(Duration::from_millis(100)),
            ..CallOptions::default()
        };
        let late = client.call_with("hold", json!("late"), &options).await;
        assert!(matches!(late, Err(CallError::Timeout)), "{late:?}");
        release.send(()).unwrap();
        let late_answer_read = async {
            while client.unknown_responses() == 0 {
                time::sleep(Duration::from_millis(10)).await;
            }
        };
        timeout(STUCK, late_answer_read).await.unwrap();
        assert_eq!(client.add(2.0, 2.0).await.unwrap(), 4.0);
        assert_eq!(client.unknown_responses(), 1, "still the same connection");
    }
}
