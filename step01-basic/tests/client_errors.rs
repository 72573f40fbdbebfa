//! A bad or truncated response is an error for the caller, never a panic or
//! a hang. Each test stands up a fake server that answers with raw bytes.

mod common;

use std::io::ErrorKind;
use std::time::Duration;

use common::rpc::client::{CallError, Client};
use common::rpc::service::ServiceCalls;
use testkit::{FakeServer, Reply};

/// Calls `add` on a fake server that answers the request with `reply`,
/// byte for byte, and hangs up.
fn add_against(reply: &[u8]) -> Result<f64, CallError> {
    let server = FakeServer::once(vec![Reply::Raw(reply.to_vec()), Reply::Close]);
    Client::connect(server.addr()).unwrap().add(1.0, 2.0)
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
    let server = FakeServer::once(vec![Reply::Raw(vec![0, 0, 0, 20, b'{']), Reply::Stall]);
    let mut client = Client::connect(server.addr()).unwrap();
    client.set_io_timeout(Duration::from_millis(200)).unwrap();
    match client.add(1.0, 2.0) {
        Err(CallError::Io(e)) => assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{e}"
        ),
        other => panic!("expected a timeout, got {other:?}"),
    }
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
