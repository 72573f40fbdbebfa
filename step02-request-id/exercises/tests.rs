//! The chapter's exercises. Each test is `#[ignore]`d so that the step's
//! own suite stays green; run them with
//!
//! ```text
//! cargo test -p step02-request-id --test exercises -- --ignored
//! ```
//!
//! and make them pass, in any order: each is independent of the others.
//! `cargo xtask exercises` checks that each one fails on the step as
//! shipped and with each wrong solution in `exercises/`, and passes with
//! its reference solution, alone or with the others.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::TcpStream;
use std::thread;

use common::rpc::client::Client;
use common::rpc::server::Limits;
use common::rpc::service::ServiceCalls;
use serde_json::{Value, json};
use testkit::{FakeServer, Reply, STUCK, read_frame, write_frame};

/// Reads one response frame as JSON.
fn read_response(stream: &mut TcpStream) -> Value {
    let body = read_frame(stream).unwrap().expect("a response");
    serde_json::from_slice(&body).unwrap()
}

// ANCHOR: duplicate_id
/// Exercise 1: refuse a request whose id is already in flight on its
/// connection, with the code `duplicate_id`.
#[test]
#[ignore]
fn a_duplicate_id_in_flight_is_refused() {
    let (addr, hold) = common::spawn_server_with_hold();
    let mut stream = testkit::connect(addr);
    write_frame(&mut stream, br#"{"id":1,"method":"hold","params":"first"}"#).unwrap();
    hold.started.recv_timeout(STUCK).unwrap();

    // Id 1 is still running: a second request with id 1 is refused.
    let add = br#"{"id":1,"method":"add","params":{"a":1,"b":2}}"#;
    let refused = testkit::exchange(&mut stream, add);
    assert_eq!(refused["id"], 1);
    assert_eq!(refused["error"]["code"], "duplicate_id", "{refused}");
    // Ids are per connection: on another one, 1 is free.
    let mut other = testkit::connect(addr);
    let answer = testkit::exchange(&mut other, add);
    assert_eq!(answer, json!({"id": 1, "ok": true, "result": 3.0}));

    // The first request is unharmed, and once answered its id is free.
    hold.release.send(()).unwrap();
    assert_eq!(
        read_response(&mut stream),
        json!({"id": 1, "ok": true, "result": "first"})
    );
    let again = testkit::exchange(&mut stream, add);
    assert_eq!(again, json!({"id": 1, "ok": true, "result": 3.0}));

    // Free the moment its answer can arrive, not a moment later: a server
    // that frees the id after writing the answer loses a race against a
    // client that reuses the id at once. A race is lost only now and then,
    // so this runs it many times, on more connections than there are CPUs.
    let cpus = thread::available_parallelism().map_or(2, usize::from);
    let connections = (2 * cpus).clamp(4, 16);
    let clients: Vec<_> = (0..connections)
        .map(|_| {
            thread::spawn(move || {
                let mut stream = testkit::connect(addr);
                for _ in 0..1000 {
                    let answer = testkit::exchange(&mut stream, add);
                    assert_eq!(answer["ok"], true, "id 1 reused once answered: {answer}");
                }
            })
        })
        .collect();
    for client in clients {
        client
            .join()
            .expect("every reuse of an answered id is accepted");
    }
}
// ANCHOR_END: duplicate_id

// ANCHOR: in_flight_cap
/// Exercise 2: at the bound of requests in flight, refuse one more at once
/// with the code `server_busy`, instead of no longer reading.
#[test]
#[ignore]
fn a_request_over_the_bound_is_refused_not_queued() {
    let bound = Limits::default().max_in_flight_per_connection as u64;
    let (addr, hold) = common::spawn_server_with_hold();
    let mut stream = testkit::connect(addr);
    for id in 1..=bound {
        let request = json!({"id": id, "method": "hold", "params": id});
        write_frame(&mut stream, request.to_string().as_bytes()).unwrap();
    }
    for _ in 0..bound {
        hold.started.recv_timeout(STUCK).unwrap();
    }

    let add = |id: u64| json!({"id": id, "method": "add", "params": {"a": 1, "b": 2}});
    let refused = testkit::exchange(&mut stream, add(bound + 1).to_string().as_bytes());
    assert_eq!(refused["id"], bound + 1);
    assert_eq!(refused["error"]["code"], "server_busy", "{refused}");

    // Once they finish, there is room again.
    for _ in 0..bound {
        hold.release.send(()).unwrap();
    }
    for _ in 0..bound {
        assert_eq!(read_response(&mut stream)["ok"], true);
    }
    let admitted = testkit::exchange(&mut stream, add(bound + 2).to_string().as_bytes());
    assert_eq!(
        admitted,
        json!({"id": bound + 2, "ok": true, "result": 3.0})
    );
}
// ANCHOR_END: in_flight_cap

// ANCHOR: idempotent
/// Exercise 3: `add` and `divide` can safely run twice, so the client says
/// so in `meta.idempotent`; a plain `call` promises nothing.
#[test]
#[ignore]
fn add_and_divide_say_they_are_idempotent() {
    // A fake server that answers every request with 1.
    let server = FakeServer::start(|request| {
        vec![Reply::Json(
            json!({"id": request["id"], "ok": true, "result": 1}),
        )]
    });
    let client = Client::connect(server.addr()).unwrap();
    client.add(1.0, 2.0).unwrap();
    client.divide(1.0, 2.0).unwrap();
    client.call("add", json!({"a": 1, "b": 2})).unwrap();
    let idempotent: Vec<_> = (0..3)
        .map(|_| server.request_json()["meta"]["idempotent"].clone())
        .collect();
    assert_eq!(idempotent, [true, true, false]);
}
// ANCHOR_END: idempotent
