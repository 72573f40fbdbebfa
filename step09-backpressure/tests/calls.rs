//! The client API against a real server: calls work, and an error in one
//! call leaves the connection usable.

mod common;

use std::time::Duration;

use common::rpc::client::{CallError, Client, ClientConfig};
use common::rpc::protocol::ErrorCode;
use common::rpc::service::ServiceCalls;
use common::rpc::service::{MAX_FLAKY_KEY_BYTES, MAX_FLAKY_KEYS, MAX_SLEEP_MS};
use common::spawn_server;
use serde_json::json;
use testkit::STUCK;
use tokio::time;

#[tokio::test]
async fn add_and_divide_work_across_tcp() {
    let client = Client::connect(spawn_server()).await.unwrap();
    assert_eq!(client.add(5.0, 3.0).await.unwrap(), 8.0);
    assert_eq!(client.divide(10.0, 4.0).await.unwrap(), 2.5);
}

#[tokio::test]
async fn division_by_zero_is_an_error_answer() {
    let client = Client::connect(spawn_server()).await.unwrap();
    match client.divide(10.0, 0.0).await {
        Err(CallError::Server(error)) => {
            assert_eq!(error.code, ErrorCode::BadRequest);
            assert_eq!(error.message, "division by zero");
            assert_eq!(error.details["field"], "params.b");
        }
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_error_leaves_the_connection_usable() {
    let client = Client::connect(spawn_server()).await.unwrap();
    for _ in 0..3 {
        assert!(client.divide(1.0, 0.0).await.is_err());
        assert!(client.call("no_such_method", json!({})).await.is_err());
        assert!(client.call("add", json!({"a": "five"})).await.is_err());
        assert_eq!(client.add(1.0, 1.0).await.unwrap(), 2.0);
    }
}

#[tokio::test]
async fn unknown_method_and_bad_params_are_named_in_the_error() {
    let client = Client::connect(spawn_server()).await.unwrap();
    let err = client
        .call("multiply", json!({"a": 1, "b": 2}))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown method `multiply`"),
        "{err}"
    );
    assert!(matches!(err, CallError::Server(e) if e.code == ErrorCode::MethodNotFound));
    let err = client.call("add", json!({"a": 1})).await.unwrap_err();
    assert!(
        err.to_string().contains("missing field `params.b`"),
        "{err}"
    );
    let err = client
        .call("add", json!({"a": 1, "b": "two"}))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("`params.b` must be a number"),
        "{err}"
    );
}

#[tokio::test]
async fn an_infinite_result_is_an_error_not_null() {
    let client = Client::connect(spawn_server()).await.unwrap();
    let err = client.add(1e308, 1e308).await.unwrap_err();
    assert!(err.to_string().contains("not a finite number"), "{err}");
}

#[tokio::test]
async fn several_clients_at_once_each_get_their_own_answers() {
    let addr = spawn_server();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            tokio::spawn(async move {
                let client = Client::connect(addr).await.unwrap();
                for j in 0..50 {
                    let (a, b) = (f64::from(i), f64::from(j));
                    assert_eq!(client.add(a, b).await.unwrap(), a + b);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn sleep_returns_its_argument_and_refuses_to_sleep_too_long() {
    let client = Client::connect(spawn_server()).await.unwrap();
    assert_eq!(client.sleep(1).await.unwrap(), 1);
    let err = client.sleep(MAX_SLEEP_MS + 1).await.unwrap_err();
    assert!(err.to_string().contains("at most"), "{err}");
}

#[tokio::test]
async fn flaky_remembers_a_bounded_number_of_short_keys() {
    // Callers choose the keys, and each one costs the server memory.
    let client = Client::connect(spawn_server()).await.unwrap();
    let flaky = |key: &str| client.call("flaky", json!({"key": key, "failures": 0}));
    let err = flaky(&"k".repeat(MAX_FLAKY_KEY_BYTES + 1))
        .await
        .unwrap_err();
    let refused = format!("must be at most {MAX_FLAKY_KEY_BYTES} bytes");
    assert!(err.to_string().contains(&refused), "{err}");
    let longest = "k".repeat(MAX_FLAKY_KEY_BYTES);
    assert_eq!(flaky(&longest).await.unwrap(), 1);
    // As many keys as it remembers, `longest` included: it still counts.
    for i in 1..MAX_FLAKY_KEYS {
        flaky(&format!("key-{i}")).await.unwrap();
    }
    assert_eq!(flaky(&longest).await.unwrap(), 2);
    // One more, and it forgets them all: `longest` counts from 1 again.
    flaky("one-too-many").await.unwrap();
    assert_eq!(flaky(&longest).await.unwrap(), 1);
}

#[tokio::test]
async fn a_quiet_connection_is_not_pinged_and_stays_open() {
    // Pings are for a server silent while calls wait, not for a connection
    // with nothing to say: this one idles for three ping intervals. The
    // ping timeout is long, so that the `add` after, on a busy machine,
    // is never given up.
    let ping_interval = Duration::from_millis(500);
    let config = ClientConfig {
        ping_interval,
        ping_timeout: STUCK,
        ..ClientConfig::default()
    };
    let client = Client::connect_with(spawn_server(), config).await.unwrap();
    // Idling is what is tested: there is no event to wait for, only time.
    time::sleep(3 * ping_interval).await;
    assert_eq!(client.pings_sent(), 0);
    assert_eq!(client.add(1.0, 1.0).await.unwrap(), 2.0);
}
