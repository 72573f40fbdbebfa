//! The milestone: many calls in flight on one connection, answered in the
//! order they finish and matched to their calls by id, with every frame
//! whole however many threads write at once.

mod common;

use std::collections::HashSet;
use std::sync::mpsc::{self, TryRecvError};
use std::thread;
use std::time::Duration;

use common::rpc::client::Client;
use common::rpc::server::Limits;
use common::rpc::service;
use common::rpc::service::ServiceCalls;
use common::{spawn_server, spawn_server_offering, spawn_server_with_hold};
use serde_json::{Value, json};
use testkit::{FakeServer, STUCK, connect, frame, receive, send, send_raw};

// ANCHOR: out_of_order
#[test]
fn answers_out_of_order_are_matched_to_their_calls_by_id() {
    let (addr, hold) = spawn_server_with_hold();
    let client = Client::connect(addr).unwrap();
    let (done, held_answer) = mpsc::channel();
    let held = {
        let client = client.clone();
        thread::spawn(move || done.send(client.call("hold", json!("held"))))
    };
    // The held call is running on the server, and will not finish...
    hold.started.recv_timeout(STUCK).unwrap();
    // ...yet a later call on the same connection is answered,
    assert_eq!(client.add(1.0, 2.0).unwrap(), 3.0);
    // while the held call is still waiting.
    assert_eq!(held_answer.try_recv().unwrap_err(), TryRecvError::Empty);

    hold.release.send(()).unwrap();
    let answer = held_answer.recv_timeout(STUCK).unwrap();
    assert_eq!(answer.unwrap(), json!("held"));
    held.join().unwrap().unwrap();
}
// ANCHOR_END: out_of_order

#[test]
fn threads_sharing_one_client_each_get_their_own_answers() {
    fn shareable<T: Send + Sync + Clone>(_: &T) {}
    let client = Client::connect(spawn_server()).unwrap();
    shareable(&client);
    thread::scope(|s| {
        for i in 0..16 {
            let client = &client;
            s.spawn(move || {
                for j in 0..50 {
                    // A different sum for every call: a mixed-up answer shows.
                    let (a, b) = (f64::from(i), f64::from(j) * 100.0);
                    assert_eq!(client.add(a, b).unwrap(), a + b);
                }
            });
        }
    });
    assert_eq!(client.unknown_responses(), 0);
}

#[test]
fn dropping_the_last_clone_closes_the_connection() {
    let server = FakeServer::start(|_| vec![]);
    let client = Client::connect(server.addr()).unwrap();
    let clone = client.clone();
    drop(client);
    drop(clone);
    // The server sees a clean end of stream, although the client's reader
    // thread still holds a handle on the socket: it was shut down.
    server.wait_for_hang_up();
}

// ANCHOR: never_interleave
#[test]
fn concurrent_responses_never_interleave() {
    // As many as may run at once on one connection, so that all of them
    // write at the same time. Answers of 512 KiB, 16 MiB in all: far more
    // than the socket buffers hold, so writes stop part way through frames,
    // which is when two writers without a lock would mix their bytes.
    const CALLS: u64 = 32;
    assert_eq!(
        CALLS as usize,
        Limits::default().max_in_flight_per_connection
    );
    let big = |id: u64| Value::from(format!("{id:08}").repeat(64 * 1024));
    let mut methods = service::methods();
    methods.register("big", move |params| {
        Ok(big(params.as_u64().ok_or("params must be a number")?))
    });
    let mut stream = connect(spawn_server_offering(methods));

    // Every request before reading any answer, so that all the request
    // threads are writing answers at once.
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
// ANCHOR_END: never_interleave

#[test]
fn a_connection_runs_at_most_its_bound_of_requests_at_once() {
    let bound = Limits::default().max_in_flight_per_connection;
    let (addr, hold) = spawn_server_with_hold();
    let mut stream = connect(addr);
    for id in 1..=bound + 1 {
        let request = json!({"id": id, "method": "hold", "params": id});
        send(&mut stream, request.to_string().as_bytes());
    }
    for _ in 0..bound {
        hold.started.recv_timeout(STUCK).unwrap();
    }
    // The one over the bound is not started while the others run. A start
    // that never happens sends no event, so this waits: a broken bound
    // would start it at once, and waiting longer proves no more.
    let over = hold.started.recv_timeout(Duration::from_millis(300));
    assert!(
        over.is_err(),
        "request {} started over the bound",
        bound + 1
    );
    // As soon as one finishes, it is.
    hold.release.send(()).unwrap();
    hold.started.recv_timeout(STUCK).unwrap();
    for _ in 0..bound {
        hold.release.send(()).unwrap();
    }
    for _ in 0..=bound {
        assert_eq!(receive(&mut stream)["ok"], true);
    }
}
