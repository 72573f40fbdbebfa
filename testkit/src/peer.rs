//! A raw client: bytes written straight to a `TcpStream`, so that a test
//! can send what the real client never would (garbage, half a frame, a
//! hostile length, a flood it never reads the answers to) and see exactly
//! what a server answers.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::{STUCK, read_frame, write_frame};

/// Connects to `addr`, with read and write timeouts of [`STUCK`], so that a
/// server that never answers fails the test instead of hanging it.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(STUCK))
        .expect("setting a read timeout");
    stream
        .set_write_timeout(Some(STUCK))
        .expect("setting a write timeout");
    stream
}

/// Sends `body` as one frame, e.g. a request the test wrote by hand.
pub fn send(stream: &mut TcpStream, body: &[u8]) {
    write_frame(stream, body).unwrap_or_else(|e| panic!("sending a frame: {e}"));
}

/// Reads the next frame and parses it as JSON: the server's next answer.
///
/// Panics with a clear message if the server closed the connection, cut
/// the frame, did not answer within the stream's read timeout, or answered
/// something that is not JSON.
pub fn receive(stream: &mut TcpStream) -> Value {
    parse(&receive_bytes(stream))
}

/// Sends `body` as one frame and returns the answer parsed as JSON:
/// [`send`], then [`receive`].
pub fn exchange(stream: &mut TcpStream, body: &[u8]) -> Value {
    send(stream, body);
    receive(stream)
}

/// Sends `body` as one frame and returns the answer's exact bytes, for the
/// tests that pin the wire format byte for byte (key order, number format).
pub fn exchange_bytes(stream: &mut TcpStream, body: &[u8]) -> Vec<u8> {
    send(stream, body);
    receive_bytes(stream)
}

/// The next frame's body, or a panic that says why there is none.
fn receive_bytes(stream: &mut TcpStream) -> Vec<u8> {
    match read_frame(stream) {
        Ok(Some(body)) => body,
        Ok(None) => panic!("the server closed the connection instead of answering"),
        Err(e) => panic!("reading the answer: {e}"),
    }
}

/// `body` as JSON, or a panic that shows it.
fn parse(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        let text = String::from_utf8_lossy(body);
        panic!("the answer is not JSON ({e}): {text:?}")
    })
}

/// Writes `bytes` as they are, e.g. half a frame, garbage, or several
/// frames in one write.
pub fn send_raw(stream: &mut TcpStream, bytes: &[u8]) {
    write_raw(stream, bytes).unwrap_or_else(|e| panic!("sending raw bytes: {e}"));
}

/// [`send_raw`] that reports a failure instead of panicking (the fake
/// server's replies go to a client that may have hung up).
pub(crate) fn write_raw(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    stream.write_all(bytes)?;
    stream.flush()
}

/// True once the server has closed `stream`: reads whatever it still sends
/// (at most 64 KiB) until end-of-file, or a reset if it closed with our
/// bytes still unread. A server that keeps the connection open makes the
/// read time out after the stream's read timeout, which is `false`; so is
/// a server that keeps talking.
pub fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    match stream.take(64 * 1024).read_to_end(&mut rest) {
        Ok(_) => rest.len() < 64 * 1024,
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
    }
}

/// Writes `pattern` over and over without reading anything back, until the
/// peer stops taking bytes: `Ok(())`; `Err(bytes sent)` if 64 MiB go
/// through first. For proving that a peer that never reads is throttled by
/// TCP rather than buffered without bound.
///
/// A partial write is resumed where it stopped, so frames in `pattern`
/// stay intact. "Stops" means three write timeouts of 500 ms in a row with
/// no byte accepted: one scheduling hiccup on a busy machine is not enough,
/// and a busy machine only makes a real stall come sooner. The stream's
/// write timeout is put back as it was.
///
/// # Panics
///
/// If `pattern` is empty, or a write fails other than by timing out.
pub fn write_until_stalled(stream: &mut TcpStream, pattern: &[u8]) -> Result<(), usize> {
    assert!(
        !pattern.is_empty(),
        "write_until_stalled needs bytes to write"
    );
    let before = stream.write_timeout().expect("reading the write timeout");
    stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .expect("setting a write timeout");
    let outcome = flood(stream, pattern);
    stream
        .set_write_timeout(before)
        .expect("restoring the write timeout");
    outcome
}

/// The loop of [`write_until_stalled`].
fn flood(stream: &mut TcpStream, pattern: &[u8]) -> Result<(), usize> {
    let (mut sent, mut offset, mut timeouts) = (0, 0, 0);
    while sent < 64 * 1024 * 1024 {
        match stream.write(&pattern[offset..]) {
            Ok(n) => {
                (sent, timeouts) = (sent + n, 0);
                offset = (offset + n) % pattern.len();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                timeouts += 1;
                if timeouts == 3 {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("flood write failed after {sent} bytes: {e}"),
        }
    }
    Err(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame;
    use serde_json::json;
    use std::net::{Shutdown, TcpListener};
    use std::thread;

    /// A connected pair over loopback: (the test's raw client, the far end).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = connect(listener.local_addr().unwrap());
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn exchange_sends_a_frame_and_parses_the_answer() {
        let (mut client, mut server) = pair();
        let echo = thread::spawn(move || {
            let body = read_frame(&mut server).unwrap().unwrap();
            write_frame(&mut server, &body).unwrap();
            send_raw(&mut server, &frame(br#"{"id": 2}"#));
        });
        assert_eq!(exchange(&mut client, br#"{"id":1}"#), json!({"id": 1}));
        assert_eq!(receive(&mut client), json!({"id": 2}));
        echo.join().unwrap();
    }

    #[test]
    #[should_panic(expected = "closed the connection instead of answering")]
    fn exchange_says_when_the_server_hung_up() {
        let (mut client, server) = pair();
        drop(server);
        exchange(&mut client, b"{}");
    }

    #[test]
    fn closed_by_server_tells_a_close_from_an_open_connection() {
        let (mut client, server) = pair();
        client
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        assert!(!closed_by_server(&mut client), "still open");
        server.shutdown(Shutdown::Both).unwrap();
        client.set_read_timeout(Some(STUCK)).unwrap();
        assert!(closed_by_server(&mut client));
    }

    #[test]
    fn write_until_stalled_reports_a_peer_that_keeps_reading() {
        let (mut client, mut server) = pair();
        let reader = thread::spawn(move || io::copy(&mut server, &mut io::sink()));
        let sent = write_until_stalled(&mut client, &frame(&[0; 1000]));
        assert!(matches!(sent, Err(n) if n >= 64 * 1024 * 1024), "{sent:?}");
        assert_eq!(client.write_timeout().unwrap(), Some(STUCK), "restored");
        drop(client);
        reader.join().unwrap().unwrap();
    }
}
