//! A bad or truncated response is an error for the caller, never a panic or
//! a hang. Each test stands up a fake server that answers with raw bytes.

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

use step01_basic::client::{CallError, Client};
use step01_basic::protocol::read_frame;

/// A one-connection fake server: reads one request frame, writes `reply`
/// verbatim, and closes the connection.
fn fake_server(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        read_frame(&mut stream).unwrap();
        stream.write_all(reply).unwrap();
    });
    addr
}

fn add_against(reply: &'static [u8]) -> Result<f64, CallError> {
    Client::connect(fake_server(reply)).unwrap().add(1.0, 2.0)
}

#[test]
fn a_response_cut_short_is_an_io_error() {
    for reply in [&b""[..], &[0, 0], &[0, 0, 0, 20, b'{', b'"']] {
        match add_against(reply) {
            Err(CallError::Io(e)) => assert_eq!(e.kind(), ErrorKind::UnexpectedEof),
            other => panic!("{reply:?}: expected UnexpectedEof, got {other:?}"),
        }
    }
}

#[test]
fn an_oversize_response_length_is_a_bad_response() {
    match add_against(&[0xFF; 4]) {
        Err(CallError::BadResponse(why)) => assert!(why.contains("exceeds"), "{why}"),
        other => panic!("expected BadResponse, got {other:?}"),
    }
}

#[test]
fn a_server_that_stalls_mid_answer_is_an_error_not_a_hang() {
    // Half a frame, then silence with the connection left open.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (done, wait) = std::sync::mpsc::channel::<()>();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        read_frame(&mut stream).unwrap();
        stream.write_all(&[0, 0, 0, 20, b'{']).unwrap();
        let _ = wait.recv(); // hold the connection open until the test ends
    });
    let mut client = Client::connect(addr).unwrap();
    client.set_io_timeout(Duration::from_millis(200)).unwrap();
    match client.add(1.0, 2.0) {
        Err(CallError::Io(e)) => assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{e}"
        ),
        other => panic!("expected a timeout, got {other:?}"),
    }
    drop(done);
}

#[test]
fn a_malformed_response_is_a_bad_response() {
    let replies: [&'static [u8]; 3] = [
        b"\0\0\0\x08not json",
        b"\0\0\0\x09{\"foo\":1}",
        b"\0\0\0\x12{\"result\":\"eight\"}",
    ];
    for reply in replies {
        match add_against(reply) {
            Err(CallError::BadResponse(_)) => {}
            other => panic!("{reply:?}: expected BadResponse, got {other:?}"),
        }
    }
}
