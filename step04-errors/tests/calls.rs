//! The client API against a real server: calls work, and an error in one
//! call leaves the connection usable.

mod common;

use std::thread;
use std::time::Duration;

use common::rpc::client::{CallError, Client, ClientConfig};
use common::rpc::protocol::ErrorCode;
use common::rpc::service::ServiceCalls;
use common::rpc::service::{MAX_FLAKY_KEY_BYTES, MAX_FLAKY_KEYS, MAX_SLEEP_MS};
use common::spawn_server;
use serde_json::json;

#[test]
fn add_and_divide_work_across_tcp() {
    let client = Client::connect(spawn_server()).unwrap();
    assert_eq!(client.add(5.0, 3.0).unwrap(), 8.0);
    assert_eq!(client.divide(10.0, 4.0).unwrap(), 2.5);
}

#[test]
fn division_by_zero_is_an_error_answer() {
    let client = Client::connect(spawn_server()).unwrap();
    match client.divide(10.0, 0.0) {
        Err(CallError::Server(error)) => {
            assert_eq!(error.code, ErrorCode::BadRequest);
            assert_eq!(error.message, "division by zero");
            assert_eq!(error.details["field"], "params.b");
        }
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[test]
fn an_error_leaves_the_connection_usable() {
    let client = Client::connect(spawn_server()).unwrap();
    for _ in 0..3 {
        assert!(client.divide(1.0, 0.0).is_err());
        assert!(client.call("no_such_method", json!({})).is_err());
        assert!(client.call("add", json!({"a": "five"})).is_err());
        assert_eq!(client.add(1.0, 1.0).unwrap(), 2.0);
    }
}

#[test]
fn unknown_method_and_bad_params_are_named_in_the_error() {
    let client = Client::connect(spawn_server()).unwrap();
    let err = client
        .call("multiply", json!({"a": 1, "b": 2}))
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown method `multiply`"),
        "{err}"
    );
    assert!(matches!(err, CallError::Server(e) if e.code == ErrorCode::MethodNotFound));
    let err = client.call("add", json!({"a": 1})).unwrap_err();
    assert!(
        err.to_string().contains("missing field `params.b`"),
        "{err}"
    );
    let err = client.call("add", json!({"a": 1, "b": "two"})).unwrap_err();
    assert!(
        err.to_string().contains("`params.b` must be a number"),
        "{err}"
    );
}

#[test]
fn an_infinite_result_is_an_error_not_null() {
    let client = Client::connect(spawn_server()).unwrap();
    let err = client.add(1e308, 1e308).unwrap_err();
    assert!(err.to_string().contains("not a finite number"), "{err}");
}

#[test]
fn several_clients_at_once_each_get_their_own_answers() {
    let addr = spawn_server();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            thread::spawn(move || {
                let client = Client::connect(addr).unwrap();
                for j in 0..50 {
                    let (a, b) = (f64::from(i), f64::from(j));
                    assert_eq!(client.add(a, b).unwrap(), a + b);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn sleep_returns_its_argument_and_refuses_to_sleep_too_long() {
    let client = Client::connect(spawn_server()).unwrap();
    assert_eq!(client.sleep(1).unwrap(), 1);
    let err = client.sleep(MAX_SLEEP_MS + 1).unwrap_err();
    assert!(err.to_string().contains("at most"), "{err}");
}

#[test]
fn flaky_remembers_a_bounded_number_of_short_keys() {
    // Callers choose the keys, and each one costs the server memory.
    let client = Client::connect(spawn_server()).unwrap();
    let flaky = |key: &str| client.call("flaky", json!({"key": key, "failures": 0}));
    let err = flaky(&"k".repeat(MAX_FLAKY_KEY_BYTES + 1)).unwrap_err();
    let refused = format!("must be at most {MAX_FLAKY_KEY_BYTES} bytes");
    assert!(err.to_string().contains(&refused), "{err}");
    let longest = "k".repeat(MAX_FLAKY_KEY_BYTES);
    assert_eq!(flaky(&longest).unwrap(), 1);
    // As many keys as it remembers, `longest` included: it still counts.
    for i in 1..MAX_FLAKY_KEYS {
        flaky(&format!("key-{i}")).unwrap();
    }
    assert_eq!(flaky(&longest).unwrap(), 2);
    // One more, and it forgets them all: `longest` counts from 1 again.
    flaky("one-too-many").unwrap();
    assert_eq!(flaky(&longest).unwrap(), 1);
}

#[test]
fn a_quiet_connection_outlives_the_io_timeout() {
    // The I/O timeout is for a server silent while calls wait, not for a
    // connection with nothing to say: this one idles for three of them. Long
    // enough that the `add` itself never takes as long on a busy machine.
    let io_timeout = Duration::from_millis(500);
    let config = ClientConfig {
        io_timeout,
        ..ClientConfig::default()
    };
    let client = Client::connect_with(spawn_server(), config).unwrap();
    // Idling is what is tested: there is no event to wait for, only time.
    thread::sleep(3 * io_timeout);
    assert_eq!(client.add(1.0, 1.0).unwrap(), 2.0);
}
