//! The milestone's retries: which failures are tried again, how far apart,
//! and never a call that is not idempotent once it may have reached the
//! server.

mod common;

use std::future::{self, Ready};
use std::io::ErrorKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use common::rpc::client::{CallError, CallOptions, Client, ClientConfig, RetryPolicy};
use common::rpc::protocol::{ErrorCode, RpcError};
use common::rpc::service;
use common::rpc::service::ServiceCalls;
use common::{spawn_server, spawn_server_at, spawn_server_offering};
use serde_json::{Value, json};
use testkit::{FakeServer, Reply};

/// A fake server that reports every request it reads. It cuts each of the
/// first `cuts` requests' connections without answering, and answers the
/// rest with how many requests it has seen. It accepts connections until
/// it is dropped, so that it would see any retry.
fn cutting_server(cuts: u64) -> FakeServer {
    let mut count = 0;
    FakeServer::start(move |request| {
        count += 1;
        if count <= cuts {
            return vec![Reply::Close];
        }
        let answer = json!({"id": request["id"], "ok": true, "result": count});
        vec![Reply::Json(answer)]
    })
}

/// A config that allows `max_attempts` and does not really pause.
fn no_pauses(max_attempts: u32) -> ClientConfig {
    ClientConfig {
        retry: RetryPolicy {
            max_attempts,
            ..RetryPolicy::default()
        },
        sleep: Arc::new(|_| Box::pin(future::ready(()))),
        ..ClientConfig::default()
    }
}

fn idempotent() -> CallOptions {
    CallOptions {
        idempotent: true,
        ..CallOptions::default()
    }
}

fn is_server_busy(result: Result<Value, CallError>) -> bool {
    matches!(result, Err(CallError::Server(error)) if error.code == ErrorCode::ServerBusy)
}

#[tokio::test]
async fn non_idempotent_call_runs_at_most_once_even_when_the_connection_is_cut_after_sending() {
    let server = cutting_server(u64::MAX);
    let client = Client::connect_with(server.addr(), no_pauses(10))
        .await
        .unwrap();
    match client.call("add", json!({"a": 1, "b": 2})).await {
        Err(CallError::Io(e)) => assert_eq!(e.kind(), ErrorKind::UnexpectedEof),
        other => panic!("expected the cut connection's error, got {other:?}"),
    }
    // Each attempt is reported before its cut, so before the call returned:
    // a retry would be here.
    let seen = server.requests_so_far();
    assert_eq!(seen.len(), 1, "sent more than once: {seen:?}");
    assert_eq!(seen[0]["meta"]["idempotent"], false);
}

#[tokio::test]
async fn a_call_that_never_left_is_retried_even_if_not_idempotent() {
    // A server that takes one connection, stops listening, and cuts the
    // connection at its first request.
    let fake = FakeServer::once(vec![Reply::Close]);
    let addr = fake.addr();
    // The first pause between attempts brings a real server up on that port.
    let restart = Once::new();
    let config = ClientConfig {
        sleep: Arc::new(move |_| {
            restart.call_once(|| spawn_server_at(addr));
            Box::pin(future::ready(()))
        }),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(addr, config).await.unwrap();
    // Sent, then cut: final for a call that is not idempotent.
    assert!(matches!(client.add(1.0, 2.0).await, Err(CallError::Io(_))));
    // The next attempt finds the connection dead and cannot connect: the
    // request never left, so it is retried, and reaches the new server.
    assert_eq!(client.add(1.0, 2.0).await.unwrap(), 3.0);
}

#[tokio::test]
async fn opted_in_non_idempotent_call_is_retried() {
    let opt_in = CallOptions {
        retry_non_idempotent: true,
        ..CallOptions::default()
    };
    // Cut twice, answered the third time: three requests, each still
    // telling the server that it is not idempotent.
    let server = cutting_server(2);
    let client = Client::connect_with(server.addr(), no_pauses(4))
        .await
        .unwrap();
    let answer = client
        .call_with("add", json!({"a": 1, "b": 2}), &opt_in)
        .await;
    assert_eq!(answer.unwrap(), 3);
    let seen = server.requests_so_far();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|request| request["meta"]["idempotent"] == false)
    );

    // Told `SERVER_BUSY` twice, answered the third time.
    let client = Client::connect_with(spawn_server(), no_pauses(4))
        .await
        .unwrap();
    let params = json!({"key": "opted-in", "failures": 2});
    assert_eq!(client.call_with("flaky", params, &opt_in).await.unwrap(), 3);
}

#[tokio::test]
async fn idempotent_flaky_call_succeeds_after_retries() {
    // Told `SERVER_BUSY` twice: the server counts three calls.
    let client = Client::connect_with(spawn_server(), no_pauses(4))
        .await
        .unwrap();
    let params = json!({"key": "idempotent", "failures": 2});
    let answer = client.call_with("flaky", params, &idempotent()).await;
    assert_eq!(answer.unwrap(), 3);

    // Cut twice: three requests, on three connections.
    let server = cutting_server(2);
    let client = Client::connect_with(server.addr(), no_pauses(4))
        .await
        .unwrap();
    let answer = client
        .call_with("add", json!({"a": 1, "b": 2}), &idempotent())
        .await;
    assert_eq!(answer.unwrap(), 3);
    let seen = server.requests_so_far();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|request| request["meta"]["idempotent"] == true)
    );
}

#[tokio::test]
async fn retries_stop_at_max_attempts_and_skip_errors_that_would_recur() {
    let client = Client::connect_with(spawn_server(), no_pauses(4))
        .await
        .unwrap();
    let params = json!({"key": "max-attempts", "failures": 10});
    assert!(is_server_busy(
        client.call_with("flaky", params, &idempotent()).await
    ));
    // Four attempts reached `flaky`: this fifth call is its fifth.
    let params = json!({"key": "max-attempts", "failures": 0});
    assert_eq!(client.call("flaky", params).await.unwrap(), 5);

    // An error that is the method's answer is not tried again.
    let calls = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&calls);
    let mut methods = service::methods();
    methods.register(
        "refuse",
        move |_: Value| -> Ready<Result<Value, RpcError>> {
            counter.fetch_add(1, Ordering::Relaxed);
            future::ready(Err(RpcError::new(ErrorCode::BadRequest, "no")))
        },
    );
    let client = Client::connect_with(spawn_server_offering(methods), no_pauses(4))
        .await
        .unwrap();
    let refused = client.call_with("refuse", json!(null), &idempotent()).await;
    assert!(matches!(refused, Err(CallError::Server(e)) if e.code == ErrorCode::BadRequest));
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn server_busy_is_retried_only_when_idempotent_and_other_codes_never() {
    // A method that fails with the code it is asked for, and counts the
    // attempts that reach it.
    let attempts = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&attempts);
    let mut methods = service::methods();
    methods.register(
        "fail_with",
        move |code: ErrorCode| -> Ready<Result<Value, RpcError>> {
            counter.fetch_add(1, Ordering::Relaxed);
            future::ready(Err(RpcError::new(code, "as asked")))
        },
    );
    let client = Client::connect_with(spawn_server_offering(methods), no_pauses(4))
        .await
        .unwrap();
    for &code in ErrorCode::ALL {
        for options in [idempotent(), CallOptions::default()] {
            attempts.store(0, Ordering::Relaxed);
            let result = client.call_with("fail_with", json!(code), &options).await;
            assert!(matches!(result, Err(CallError::Server(e)) if e.code == code));
            // All four attempts for an idempotent SERVER_BUSY; else one.
            let retried = code == ErrorCode::ServerBusy && options.idempotent;
            let expected = if retried { 4 } else { 1 };
            let idempotent = options.idempotent;
            let seen = attempts.load(Ordering::Relaxed);
            assert_eq!(seen, expected, "{code}, idempotent: {idempotent}");
        }
    }
}

#[tokio::test]
async fn backoff_schedule_is_the_documented_one() {
    // pause(n) = uniform * min(300 ms, 100 ms * 2^(n-1)): ceilings of 100,
    // 200, then 300 ms for every pause after, the cap.
    let policy = RetryPolicy {
        max_attempts: 6,
        initial_backoff: Duration::from_millis(100),
        multiplier: 2.0,
        max_backoff: Duration::from_millis(300),
    };
    let ms = |ms: [u64; 5]| ms.map(Duration::from_millis);
    let us = |us: [u64; 5]| us.map(Duration::from_micros);
    let cases = [
        (0.5, ms([50, 100, 150, 150, 150])),
        (0.999, us([99_900, 199_800, 299_700, 299_700, 299_700])),
        (0.0, ms([0; 5])),
    ];
    let addr = spawn_server();
    for (uniform, expected) in cases {
        let pauses = Arc::new(Mutex::new(Vec::new()));
        let recorder = Arc::clone(&pauses);
        let config = ClientConfig {
            retry: policy,
            sleep: Arc::new(move |pause| {
                recorder.lock().unwrap().push(pause);
                Box::pin(future::ready(()))
            }),
            uniform: Arc::new(move || uniform),
            ..ClientConfig::default()
        };
        let client = Client::connect_with(addr, config).await.unwrap();
        let params = json!({"key": format!("schedule-{uniform}"), "failures": 100});
        assert!(is_server_busy(
            client.call_with("flaky", params, &idempotent()).await
        ));
        // Six attempts, five pauses between them.
        assert_eq!(*pauses.lock().unwrap(), expected, "uniform = {uniform}");
    }
}

#[tokio::test]
async fn overall_deadline_covers_all_attempts() {
    // Every attempt is cut, and far more are allowed than fit in 300 ms:
    // the deadline, with real pauses, is what ends the call.
    let server = cutting_server(u64::MAX);
    let config = ClientConfig {
        retry: RetryPolicy {
            max_attempts: 1000,
            ..RetryPolicy::default()
        },
        ..ClientConfig::default()
    };
    let client = Client::connect_with(server.addr(), config).await.unwrap();
    let options = CallOptions {
        timeout: Some(Duration::from_millis(300)),
        ..idempotent()
    };
    let start = Instant::now();
    let result = client
        .call_with("add", json!({"a": 1, "b": 2}), &options)
        .await;
    let elapsed = start.elapsed();
    assert!(matches!(result, Err(CallError::Timeout)), "{result:?}");
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    // It did try again within the deadline, not just wait it out.
    assert!(server.requests_so_far().len() > 1);
}

#[tokio::test]
async fn a_dead_connection_is_replaced_on_the_next_call() {
    let server = cutting_server(1);
    let client = Client::connect(server.addr()).await.unwrap();
    assert!(matches!(
        client.call("add", json!({"a": 1, "b": 2})).await,
        Err(CallError::Io(_))
    ));
    // The next call connects anew, and is the server's second request.
    assert_eq!(
        client.call("add", json!({"a": 1, "b": 2})).await.unwrap(),
        2
    );
    assert_eq!(server.requests_so_far().len(), 2);
    // And stays on the new connection.
    assert_eq!(
        client.call("add", json!({"a": 1, "b": 2})).await.unwrap(),
        3
    );
}
