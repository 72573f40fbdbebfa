//! A bad or truncated response is an error for the caller, never a panic or
//! a hang. Each test stands up a fake server that answers with raw bytes.

mod common;

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::rpc::client::{CallError, Client, ClientConfig};
use common::rpc::service::ServiceCalls;
use testkit::{read_frame, write_frame};

/// A one-connection fake server: reads one request frame, writes `reply`
/// verbatim, and closes the connection. The client's first call on a
/// connection has id 1, so a reply can be written ahead of time. Once it
/// has its connection it stops listening, so a reconnect is refused.
fn fake_server(reply: impl AsRef<[u8]> + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        drop(listener);
        read_frame(&mut stream).unwrap();
        stream.write_all(reply.as_ref()).unwrap();
    });
    addr
}

fn add_against(reply: &[u8]) -> Result<f64, CallError> {
    Client::connect(fake_server(reply.to_vec()))
        .unwrap()
        .add(1.0, 2.0)
}

/// Frames, each body with its length in front, back to back.
fn frames(bodies: &[&str]) -> Vec<u8> {
    let mut wire = Vec::new();
    for body in bodies {
        write_frame(&mut wire, body.as_bytes()).unwrap();
    }
    wire
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
    // Half a frame, or nothing at all, then silence with the connection
    // left open.
    for reply in [&[0, 0, 0, 20, b'{'][..], &[]] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            read_frame(&mut stream).unwrap();
            stream.write_all(reply).unwrap();
            let _ = wait.recv(); // hold the connection open until the test ends
        });
        let io_timeout = Duration::from_millis(200);
        let config = ClientConfig {
            io_timeout,
            ..ClientConfig::default()
        };
        let client = Client::connect_with(addr, config).unwrap();
        match client.add(1.0, 2.0) {
            Err(CallError::Io(e)) => assert!(
                matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "{e}"
            ),
            other => panic!("{reply:?}: expected a timeout, got {other:?}"),
        }
        drop(done);
    }
}

#[test]
fn a_malformed_response_is_a_bad_response() {
    let replies = [
        "not json",
        r#"{"foo":1}"#,
        r#"{"result":8}"#, // step 1's shape: no id, no ok
        r#"{"id":1,"ok":true,"result":"eight"}"#,
        r#"{"id":1,"ok":false}"#,
        r#"{"id":1,"ok":true,"error":{"code":"x","message":"y","details":null}}"#,
    ];
    for reply in replies {
        match add_against(&frames(&[reply])) {
            Err(CallError::BadResponse(_)) => {}
            other => panic!("{reply:?}: expected BadResponse, got {other:?}"),
        }
    }
}

#[test]
fn an_unreadable_response_ends_the_connection() {
    // No id can be trusted in it, so no call can be given it: the waiting
    // call is told why, and the connection is given up. The next call
    // connects anew, which this fake server refuses.
    let client = Client::connect(fake_server(frames(&["not json"]))).unwrap();
    assert!(matches!(
        client.add(1.0, 2.0),
        Err(CallError::BadResponse(_))
    ));
    match client.add(1.0, 2.0) {
        Err(CallError::Io(e)) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused),
        other => panic!("expected ConnectionRefused, got {other:?}"),
    }
}

#[test]
fn a_response_with_an_unknown_id_is_dropped_and_counted() {
    let addr = fake_server(frames(&[
        r#"{"id":99,"ok":true,"result":0}"#,
        r#"{"id":1,"ok":true,"result":3}"#,
    ]));
    let client = Client::connect(addr).unwrap();
    assert_eq!(client.add(1.0, 2.0).unwrap(), 3.0);
    assert_eq!(client.unknown_responses(), 1);
}

#[test]
fn the_pending_table_is_bounded_and_fails_fast_when_the_connection_ends() {
    // A server that reads requests, reports each, never answers, and hangs
    // up when told to. It takes one connection only.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (received, requests) = mpsc::channel();
    let (hang_up, hang_up_rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        drop(listener);
        for _ in 0..2 {
            read_frame(&mut stream).unwrap();
            received.send(()).unwrap();
        }
        let _ = hang_up_rx.recv();
    });

    let config = ClientConfig {
        max_pending: 2,
        ..ClientConfig::default()
    };
    let client = Client::connect_with(addr, config).unwrap();
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            thread::spawn(move || client.add(1.0, 2.0))
        })
        .collect();
    // Both requests reached the server, so both calls are in the table.
    for _ in 0..2 {
        requests.recv().unwrap();
    }
    assert!(matches!(
        client.add(1.0, 2.0),
        Err(CallError::TooManyPending)
    ));

    drop(hang_up);
    for call in waiting {
        assert!(matches!(call.join().unwrap(), Err(CallError::Io(_))));
    }
    // And a call after the end does not wait on the dead connection: it
    // connects anew, which is refused here.
    assert!(matches!(client.add(1.0, 2.0), Err(CallError::Io(_))));
}
