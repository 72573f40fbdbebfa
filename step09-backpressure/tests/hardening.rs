//! What a server must survive besides bad frames: a log nobody reads, a
//! peer that knocks again and again on a full server, and one that leaves
//! its calls running and comes back for more. The first two run the server
//! binary, whose stderr a test can close or read.

mod common;

use std::future;
use std::io::{BufRead, BufReader, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, mpsc};
use std::thread;

use common::rpc::server::{self, Limits, ServerConfig};
use common::rpc::service;
use serde_json::{Value, json};
use testkit::{
    KillOnDrop, STUCK, closed_by_server, connect, exchange, frame, send_raw, wait_until,
};

/// How many connections the server binary is started to serve at once
/// (`--max-connections`): the default, 10,000, is too many to open here.
/// A log nobody reads does not stop the server either: 2,000 panicking
/// calls write far more than a pipe holds (64 KiB), and every call is still
/// answered, and a fresh client too. Were a line written by the task that
/// logs it, the first full pipe would block a runtime thread, and with it
/// every task on that thread.
#[test]
fn a_log_nobody_reads_does_not_stop_the_server() {
    // The pipe stays open, and full: this end never reads it.
    let (_server, addr) = start_server();
    let mut stream = connect(addr);
    // In rounds of 100, so that no socket buffer fills on the test's side.
    for round in 0..20 {
        for id in 1..=100 {
            let request = json!({"id": round * 100 + id, "method": "explode"});
            testkit::send(&mut stream, request.to_string().as_bytes());
        }
        for _ in 1..=100 {
            assert_eq!(testkit::receive(&mut stream)["error"]["code"], "INTERNAL");
        }
    }
    common::assert_server_answers(addr);
}

const MAX_CONNECTIONS: usize = 256;

/// Starts the server binary, serving at most [`MAX_CONNECTIONS`] at once,
/// with its stderr piped: for the test to read, or to close.
fn start_server() -> (KillOnDrop, SocketAddr) {
    let bin = common::bin("server");
    let max = MAX_CONNECTIONS.to_string();
    testkit::start_server_with(&bin, &["--max-connections", &max], Stdio::piped())
}

/// Opens as many connections as the server binary serves at once, and
/// proves each is served: a malformed frame is answered, in every step. The
/// next one is refused.
fn fill_the_server(addr: SocketAddr) -> Vec<TcpStream> {
    let served = |_| {
        let mut stream = connect(addr);
        exchange(&mut stream, b"{not json");
        stream
    };
    (0..MAX_CONNECTIONS).map(served).collect()
}

/// Opens one connection too many and checks that it is refused, a refusal
/// being something the server logs.
fn knock(addr: SocketAddr) {
    let mut refused = connect(addr);
    assert!(
        closed_by_server(&mut refused),
        "a connection too many was served"
    );
}

/// Sends garbage on `stream`, which the server answers by closing it and
/// logging a line that says `closed`.
fn break_connection(mut stream: TcpStream) {
    send_raw(&mut stream, b"garbage!");
    assert!(closed_by_server(&mut stream), "garbage left open");
}

/// Whether a fresh connection is served; false, not a panic, if it is not.
fn served(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(STUCK));
    testkit::write_frame(&mut stream, b"{not json").is_ok()
        && matches!(testkit::read_frame(&mut stream), Ok(Some(_)))
}

/// The lines `stderr` carries up to the first that contains `last`.
///
/// # Panics
///
/// If no such line comes within [`STUCK`].
fn lines_until(stderr: impl Read + Send + 'static, last: &'static str) -> Vec<String> {
    let (line, lines) = mpsc::channel();
    thread::spawn(move || {
        for text in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = line.send(text);
        }
    });
    let mut seen = Vec::new();
    while seen.last().is_none_or(|text: &String| !text.contains(last)) {
        match lines.recv_timeout(STUCK) {
            Ok(text) => seen.push(text),
            Err(_) => panic!("no line with {last:?} within {STUCK:?}; the log: {seen:#?}"),
        }
    }
    seen
}

#[test]
fn a_closed_stderr_does_not_stop_the_server() {
    let (mut server, addr) = start_server();
    // Nobody reads the server's log from now on: each line it writes fails.
    drop(server.stderr.take());
    let mut open = fill_the_server(addr);
    // Refusals are logged by the accept loop, where a panic ends the
    // process; a broken connection by that connection's own task.
    for _ in 0..3 {
        knock(addr);
    }
    break_connection(open.pop().unwrap());
    assert_eq!(server.try_wait().unwrap(), None, "the server exited");
    drop(open);
    wait_until("a fresh connection is served", STUCK, || served(addr));
    common::assert_server_answers(addr);
    assert_eq!(server.try_wait().unwrap(), None, "the server exited");
}

#[test]
fn a_burst_of_refused_connections_is_logged_once() {
    let (mut server, addr) = start_server();
    let stderr = server.stderr.take().unwrap();
    let mut open = fill_the_server(addr);
    for _ in 0..20 {
        knock(addr);
    }
    // The server logs each refusal, if at all, before it closes the
    // connection; this line comes after all of them.
    break_connection(open.pop().unwrap());
    let log = lines_until(stderr, "closed");
    let refusals = log
        .iter()
        .filter(|line| line.contains(": refused "))
        .count();
    assert_eq!(refusals, 1, "{log:#?}");
}

#[test]
fn connections_that_end_in_errors_are_logged_once_then_counted() {
    let (mut server, addr) = start_server();
    let stderr = server.stderr.take().unwrap();
    for _ in 0..20 {
        break_connection(connect(addr));
    }
    // A connection gives its place back after its line, if any, is written;
    // so once every place can be taken again, all twenty have been dealt
    // with, and a refusal's line comes after them.
    let _open = fill_the_server(addr);
    knock(addr);
    let log = lines_until(stderr, "refused");
    let closed = log.iter().filter(|line| line.contains("closed")).count();
    assert_eq!(closed, 1, "{log:#?}");
}

// Two worker threads, for the server: this test blocks its own thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_calls_are_cancelled_and_give_their_connection_s_place_back() {
    // Changed from step 4, which had to let them run to their end: a peer
    // that hangs up now has its calls cancelled, and its place freed.
    let limits = Limits {
        max_connections: 2,
        max_in_flight_per_connection: 4,
        ..Limits::default()
    };
    // One call under the bound: at it, a connection reads no more until a
    // call ends, and would not see the hang-up.
    let per_connection = limits.max_in_flight_per_connection - 1;
    // `hold` counts the handlers running, and never finishes: a handler
    // stops running only when it is cancelled, and its future dropped.
    struct Running(Arc<AtomicUsize>);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.fetch_sub(1, SeqCst);
        }
    }
    let running = Arc::new(AtomicUsize::new(0));
    let mut methods = service::methods();
    let counter = Arc::clone(&running);
    methods.register("hold", move |_: Value| {
        counter.fetch_add(1, SeqCst);
        let running = Running(Arc::clone(&counter));
        async move {
            let _running = running;
            future::pending::<()>().await;
            Ok(Value::Null)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ServerConfig {
        limits,
        ..ServerConfig::default()
    };
    tokio::spawn(server::run(listener, methods, config, future::pending()));

    // The calls, sent, and then the peer hangs up without waiting for an
    // answer; ten times over.
    let calls: Vec<u8> = (1..=per_connection)
        .flat_map(|id| frame(json!({"id": id, "method": "hold"}).to_string().as_bytes()))
        .collect();
    for _ in 0..10 {
        let mut stream = connect(addr);
        send_raw(&mut stream, &calls);
        // Served, its calls all run: a place still taken would refuse it.
        wait_until("the calls run", STUCK, || {
            running.load(SeqCst) == per_connection
        });
        let _ = stream.shutdown(Shutdown::Write);
        wait_until("the calls are cancelled", STUCK, || {
            running.load(SeqCst) == 0
        });
    }
}

#[test]
fn a_panicking_handler_is_logged_once() {
    let bin = common::bin("server");
    let (mut server, addr) = testkit::start_server_with(&bin, &[], Stdio::piped());
    let stderr = server.stderr.take().unwrap();
    let mut stream = connect(addr);
    let answer = exchange(&mut stream, br#"{"id":1,"method":"explode"}"#);
    assert_eq!(answer["error"]["code"], "INTERNAL", "{answer}");
    // The panic is logged before it is answered; this line comes after.
    break_connection(stream);
    let log = lines_until(stderr, "closed");
    let panics = log.iter().filter(|line| line.contains("panicked")).count();
    assert_eq!(panics, 1, "{log:#?}");
}

#[test]
fn a_connection_the_server_gives_up_on_is_closed_even_with_answers_unsent() {
    // One connection at a time: the test sees when this one's place is free.
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let addr = common::spawn_server_with(ServerConfig {
        limits,
        ..ServerConfig::default()
    });
    let mut peer = connect(addr);
    // Requests whose answers, errors naming a 900 KiB method, are never
    // read: the writer task ends up stuck writing them to this peer.
    let name = "x".repeat(900 * 1024);
    let sent = 32;
    for id in 1..=sent {
        let request = json!({"id": id, "method": name});
        testkit::send(&mut peer, request.to_string().as_bytes());
    }
    // A length no frame may have: the server gives up on the connection.
    send_raw(&mut peer, &[0xFF; 4]);
    // Its place comes back, and its socket is closed with answers unsent:
    // the server aborts the stuck writer instead of leaving it to finish.
    // (29 MiB of answers is more than the sockets' buffers hold.)
    wait_until("the connection's place is given back", STUCK, || {
        served(addr)
    });
    peer.set_read_timeout(Some(STUCK)).unwrap();
    let mut answers = 0;
    while let Ok(Some(_)) = testkit::read_frame(&mut peer) {
        answers += 1;
    }
    assert!(answers < sent, "all {sent} answers were written");
}
