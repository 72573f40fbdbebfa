//! The milestone: many calls in flight on one connection, answered in the
//! order they finish and matched to their calls by id, with every frame
//! whole however many requests answer at once.

mod common;

use std::collections::HashSet;
use std::future;
use std::sync::Arc;
use std::sync::mpsc::{self, TryRecvError};

use common::rpc::client::Client;
use common::rpc::server::Limits;
use common::rpc::service;
use common::rpc::service::ServiceCalls;
use common::{spawn_server, spawn_server_offering, spawn_server_with_hold};
use serde_json::{Value, json};
use testkit::{FakeServer, STUCK, connect, frame, receive, send, send_raw};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

// Two worker threads: the held call's task must run while this test
// blocks on `hold`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_out_of_order_are_matched_to_their_calls_by_id() {
    let (addr, hold) = spawn_server_with_hold();
    let client = Client::connect(addr).await.unwrap();
    let (done, held_answer) = mpsc::channel();
    let held = {
        let client = client.clone();
        tokio::spawn(async move { done.send(client.call("hold", json!("held")).await) })
    };
    // The held call is running on the server, and will not finish...
    hold.started.recv_timeout(STUCK).unwrap();
    // ...yet a later call on the same connection is answered,
    assert_eq!(client.add(1.0, 2.0).await.unwrap(), 3.0);
    // while the held call is still waiting.
    assert_eq!(held_answer.try_recv().unwrap_err(), TryRecvError::Empty);

    hold.release.send(()).unwrap();
    let answer = held_answer.recv_timeout(STUCK).unwrap();
    assert_eq!(answer.unwrap(), json!("held"));
    held.await.unwrap().unwrap();
}

// Two worker threads, so that the tasks sharing the client run on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_sharing_one_client_each_get_their_own_answers() {
    fn shareable<T: Send + Sync + Clone>(_: &T) {}
    let client = Client::connect(spawn_server()).await.unwrap();
    shareable(&client);
    let mut tasks = JoinSet::new();
    for i in 0..16 {
        let client = client.clone();
        tasks.spawn(async move {
            for j in 0..50 {
                // A different sum for every call: a mixed-up answer shows.
                let (a, b) = (f64::from(i), f64::from(j) * 100.0);
                assert_eq!(client.add(a, b).await.unwrap(), a + b);
            }
        });
    }
    while let Some(task) = tasks.join_next().await {
        task.unwrap();
    }
    assert_eq!(client.unknown_responses(), 0);
}

// Two worker threads: the client's tasks must end while this test blocks
// on the fake server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_clone_closes_the_connection() {
    let server = FakeServer::start(|_| vec![]);
    let client = Client::connect(server.addr()).await.unwrap();
    let clone = client.clone();
    drop(client);
    drop(clone);
    // The server sees a clean end of stream: the client's reader and writer
    // tasks, which own the socket's halves, were aborted.
    server.wait_for_hang_up();
}

#[test]
fn concurrent_responses_never_interleave() {
    // No more than may run at once on one connection, so that all of them
    // write at the same time. Answers of 512 KiB, 16 MiB in all: far more
    // than the socket buffers hold, so writes stop part way through frames,
    // which is when two writers without a lock would mix their bytes.
    const CALLS: u64 = 32;
    assert!(CALLS as usize <= Limits::default().max_in_flight_per_connection);
    let big = |id: u64| Value::from(format!("{id:08}").repeat(64 * 1024));
    let mut methods = service::methods();
    methods.register("big", move |id: u64| future::ready(Ok(big(id))));
    let mut stream = connect(spawn_server_offering(methods));

    // Every request before reading any answer, so that all the requests
    // are answering at once.
    let mut requests = Vec::new();
    for id in 1..=CALLS {
        let request = json!({"id": id, "method": "big", "params": id});
        requests.extend(frame(request.to_string().as_bytes()));
    }
    send_raw(&mut stream, &requests);

    let mut ids = HashSet::new();
    for _ in 0..CALLS {
        let response = receive(&mut stream);
        let id = response["id"].as_u64().unwrap();
        assert_eq!(response["result"], big(id), "answer {id} is mixed up");
        assert!(ids.insert(id), "answer {id} came twice");
    }
    assert_eq!(ids, (1..=CALLS).collect());
}

#[test]
fn a_connection_runs_at_most_its_bound_of_requests_at_once_and_sheds_the_next() {
    let bound = Limits::default().max_in_flight_per_connection;
    // Changed from step 4: `common`'s `hold` is blocking, and blocking
    // calls run at most one per core at once, far under the bound of 1,024.
    // This `hold` awaits instead.
    let (starts, started) = mpsc::channel();
    let release = Arc::new(Semaphore::new(0));
    let permits = Arc::clone(&release);
    let mut methods = service::methods();
    methods.register("hold", move |id: u64| {
        let (starts, permits) = (starts.clone(), Arc::clone(&permits));
        async move {
            let _ = starts.send(());
            permits.acquire().await.unwrap().forget();
            Ok(id)
        }
    });
    let mut stream = connect(spawn_server_offering(methods));
    for id in 1..=bound + 1 {
        let request = json!({"id": id, "method": "hold", "params": id});
        send(&mut stream, request.to_string().as_bytes());
    }
    for _ in 0..bound {
        started.recv_timeout(STUCK).unwrap();
    }
    // The one over the bound is not started: it is shed, answered at once
    // while the others run. (Changed from step 8, where it waited.)
    let shed = receive(&mut stream);
    assert_eq!(shed["id"], bound + 1, "{shed}");
    assert_eq!(shed["error"]["code"], "SERVER_BUSY", "{shed}");
    assert_eq!(shed["error"]["details"]["shed"], "in_flight", "{shed}");
    assert!(started.try_recv().is_err(), "request {} started", bound + 1);
    release.add_permits(bound);
    for _ in 0..bound {
        assert_eq!(receive(&mut stream)["ok"], true);
    }
}
