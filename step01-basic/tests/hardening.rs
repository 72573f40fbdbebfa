//! What a server must survive besides bad frames: a log nobody reads, and
//! a peer that knocks again and again on a full server. These run the
//! server binary, whose stderr a test can close or read.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;

use common::rpc::server::Limits;
use testkit::{STUCK, closed_by_server, connect, exchange, send_raw, wait_until};

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
