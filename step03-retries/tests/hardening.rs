//! What a server must survive besides bad frames: a log nobody reads, a
//! peer that knocks again and again on a full server, and one that leaves
//! its calls running and comes back for more. The first two run the server
//! binary, whose stderr a test can close or read.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use common::rpc::server::{self, Limits, ServerConfig};
use common::rpc::service;
use serde_json::{Value, json};
use testkit::{STUCK, closed_by_server, connect, exchange, frame, send_raw, wait_until};

/// Opens as many connections as the server binary serves at once (it has
/// no flag to lower `Limits::max_connections`), and proves each is served:
/// a malformed frame is answered, in every step. The next one is refused.
fn fill_the_server(addr: SocketAddr) -> Vec<TcpStream> {
    let served = |_| {
        let mut stream = connect(addr);
        exchange(&mut stream, b"{not json");
        stream
    };
    (0..Limits::default().max_connections).map(served).collect()
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

/// Whether the server has closed `stream`, asked without waiting: end of
/// file or a reset is closed; nothing to read yet is open.
fn closed_now(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let closed = match stream.read(&mut [0]) {
        Ok(n) => n == 0,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).unwrap();
    closed
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
    let bin = common::bin("server");
    let (mut server, addr) = testkit::start_server_with(&bin, &[], Stdio::piped());
    // Nobody reads the server's log from now on: each line it writes fails.
    drop(server.stderr.take());
    let mut open = fill_the_server(addr);
    // Refusals are logged by the accept loop, where a panic ends the
    // process; a broken connection by that connection's own thread.
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
    let bin = common::bin("server");
    let (mut server, addr) = testkit::start_server_with(&bin, &[], Stdio::piped());
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
        .filter(|line| line.starts_with("refused"))
        .count();
    assert_eq!(refusals, 1, "{log:#?}");
}

#[test]
fn connections_that_end_in_errors_are_logged_once_then_counted() {
    let bin = common::bin("server");
    let (mut server, addr) = testkit::start_server_with(&bin, &[], Stdio::piped());
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

#[test]
fn abandoned_calls_keep_their_connection_s_place_until_they_finish() {
    let limits = Limits {
        max_connections: 2,
        max_in_flight_per_connection: 4,
    };
    let per_connection = limits.max_in_flight_per_connection;
    let bound = limits.max_connections * per_connection;
    // `hold` counts the handlers running at once, and the most seen, and
    // runs until the test drops `release`. None finishes before that, so
    // until then `running` only grows.
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (release, released) = mpsc::channel::<()>();
    let released = Mutex::new(released);
    let mut methods = service::methods();
    let (counter, high_water) = (Arc::clone(&running), Arc::clone(&most));
    methods.register("hold", move |_| {
        high_water.fetch_max(counter.fetch_add(1, SeqCst) + 1, SeqCst);
        // An error here means `release` is gone: finish.
        let _ = released.lock().unwrap().recv();
        counter.fetch_sub(1, SeqCst);
        Ok(Value::Null)
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ServerConfig { limits };
    thread::spawn(move || server::run(listener, methods, config));

    // A connection's worth of calls, sent, and then the peer hangs up
    // without waiting for an answer; ten times over.
    let calls: Vec<u8> = (1..=per_connection)
        .flat_map(|id| frame(json!({"id": id, "method": "hold"}).to_string().as_bytes()))
        .collect();
    for _ in 0..10 {
        let expected = running.load(SeqCst) + per_connection;
        let mut stream = connect(addr);
        // A refused connection may be closed before this is written.
        let _ = stream.write_all(&calls);
        let _ = stream.shutdown(Shutdown::Write);
        // Served, its calls all run; refused, it is closed.
        wait_until("the calls run or the connection is refused", STUCK, || {
            running.load(SeqCst) >= expected || closed_now(&mut stream)
        });
    }
    assert_eq!(
        most.load(SeqCst),
        bound,
        "at most {bound} handlers may run at once: {per_connection} on each of \
         {} connections",
        bound / per_connection
    );

    // Once the calls end, their connections' places are free again.
    drop(release);
    // (`served` makes a whole exchange. A second client straight after could
    // still find the place of `served`'s own connection taken.)
    wait_until("a fresh connection is served", STUCK, || served(addr));
}

#[test]
fn a_connection_the_server_gives_up_on_is_closed_even_with_answers_unsent() {
    // One connection at a time: the test sees when this one's place is free.
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let addr = common::spawn_server_with(ServerConfig { limits });
    let mut peer = connect(addr);
    // Requests whose answers, errors naming a 900 KiB method, are never
    // read: their threads end up stuck writing to this peer.
    let name = "x".repeat(900 * 1024);
    for id in 1..=8 {
        let request = json!({"id": id, "method": name});
        testkit::send(&mut peer, request.to_string().as_bytes());
    }
    // A length no frame may have: the server gives up on the connection.
    send_raw(&mut peer, &[0xFF; 4]);
    // Its place comes back only once the stuck answers fail, which they do
    // because the server shuts the socket down instead of waiting on them.
    wait_until("the connection's place is given back", STUCK, || {
        served(addr)
    });
    drop(peer);
}
