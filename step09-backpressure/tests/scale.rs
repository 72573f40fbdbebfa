//! What tasks instead of threads buy: ten thousand calls in flight on one
//! connection, each matched to its own answer, none left behind when its
//! caller gives up; and thousands of idle connections that cost a new
//! client nothing.

mod common;

use std::fs;
use std::time::Duration;

use common::rpc::client::{Client, ClientConfig};
use common::rpc::server::{Limits, ServerConfig};
use common::rpc::service::{MAX_SLEEP_MS, ServiceCalls};
use common::{spawn_server, spawn_server_with};
use testkit::STUCK;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{self, timeout};

const CALLS: usize = 10_000;

/// 10,000 calls at once on one connection (the client's default bound is
/// 1,024), each answered with its own sum.
#[tokio::test]
async fn ten_thousand_calls_in_flight_on_one_connection_are_all_answered_correctly() {
    let config = ClientConfig {
        max_pending: CALLS,
        ..ClientConfig::default()
    };
    let client = Client::connect_with(spawn_server(), config).await.unwrap();
    let mut calls = JoinSet::new();
    for i in 0..CALLS {
        let client = client.clone();
        // A different sum for every call: a mixed-up answer shows.
        calls.spawn(async move { (i, client.add(i as f64, 1.0).await) });
    }
    while let Some(answered) = calls.join_next().await {
        let (i, sum) = answered.unwrap();
        assert_eq!(sum.unwrap(), i as f64 + 1.0, "call {i}");
    }
    assert_eq!(client.unknown_responses(), 0);
}

/// Calls dropped while they wait for their answer (here, their tasks
/// aborted) leave no entry in the client's table of pending calls, and
/// the client goes on working. Without `PendingCall`'s `Drop`, all 10,000
/// entries would stay, and the table would be full.
#[tokio::test]
async fn dropped_calls_leave_nothing_pending() {
    // A server that runs all 10,000 at once and one more, so that it sheds
    // none, and answers the last call while they sleep.
    let limits = Limits {
        max_in_flight_per_connection: CALLS + 1,
        max_handlers: CALLS + 1,
        ..Limits::default()
    };
    let addr = spawn_server_with(ServerConfig {
        limits,
        ..ServerConfig::default()
    });
    let config = ClientConfig {
        max_pending: CALLS,
        ..ClientConfig::default()
    };
    let client = Client::connect_with(addr, config).await.unwrap();
    let mut calls = JoinSet::new();
    for _ in 0..CALLS {
        let client = client.clone();
        calls.spawn(async move { client.sleep(MAX_SLEEP_MS).await });
    }
    let all_pending = async {
        while client.pending_calls() < CALLS {
            time::sleep(Duration::from_millis(10)).await;
        }
    };
    timeout(STUCK, all_pending)
        .await
        .expect("all the calls are pending");

    // Aborts every task, and waits until each has been dropped.
    calls.shutdown().await;
    assert_eq!(client.pending_calls(), 0);
    assert_eq!(client.add(1.0, 2.0).await.unwrap(), 3.0);
}

const IDLE: usize = 5_000;

/// 5,000 connections that send nothing do not keep the server from
/// answering a new client: each is a task waiting to read, not a thread.
#[tokio::test]
async fn five_thousand_idle_connections_do_not_keep_a_new_client_waiting() {
    // Both ends of every connection are in this process, the server's too.
    let needed = 2 * IDLE + 256;
    if let Some(limit) = soft_open_files_limit() {
        assert!(
            limit >= needed,
            "this test needs {needed} open files and `ulimit -n` allows {limit}: \
             raise it in the shell that runs the tests (`ulimit -n {needed}`)"
        );
    }
    let addr = spawn_server();
    let mut idle = Vec::with_capacity(IDLE);
    while idle.len() < IDLE {
        for _ in 0..100 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        // The server accepts connections in the order they came, so once
        // it answers this client it has taken every idle one before it.
        // (In batches of 100: the OS queues at most 128 connections that
        // the server has yet to accept, and one more must try again 1 s
        // later.)
        let call = async {
            let client = Client::connect(addr).await.unwrap();
            client.add(2.0, 2.0).await.unwrap()
        };
        let answer = timeout(STUCK, call).await;
        let answer = answer.unwrap_or_else(|_| panic!("stuck behind {} idle", idle.len()));
        assert_eq!(answer, 4.0);
    }
}

/// The soft limit on open files, from `/proc/self/limits` ("Max open
/// files"), or `None` where there is no such file (not Linux).
fn soft_open_files_limit() -> Option<usize> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    // "Max open files   1024   524288   files": the soft limit comes first.
    line.split_whitespace().nth(3)?.parse().ok()
}
