//! Test support that every step's integration tests share.
//!
//! It knows the wire only as frames (a u32 big-endian length, then the
//! body) and JSON values, never a step's own types, so it serves step 1 and
//! step 12 alike. It also re-implements framing instead of borrowing a
//! step's `read_frame`: a framing bug in a step cannot hide in the helpers
//! that test it.
//!
//! - Frames and raw peers: [`frame`], [`read_frame`], [`write_frame`],
//!   [`connect`], [`exchange`], [`send_raw`], [`closed_by_server`],
//!   [`write_until_stalled`]: for sending what a real client never would.
//! - [`FakeServer`]: a scripted server, for testing clients against
//!   answers a real server never gives.
//! - Processes: [`cargo_bin`], [`start_server`], [`KillOnDrop`].
//! - [`wait_until`]: poll for something that happens on another thread.

mod fake;
mod process;

pub use fake::{FakeServer, Reply};
pub use process::{KillOnDrop, cargo_bin, start_server, start_server_with};

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a test waits on a socket or a process before calling it stuck.
/// Far longer than anything should take, even on a busy machine: it turns a
/// hang into a failure, and never fires when things work.
pub const STUCK: Duration = Duration::from_secs(10);

/// The largest frame these helpers read: 16 MiB, well above any step's
/// limit, so that a hostile length costs a test an error, not 4 GiB.
const MAX_READ: u32 = 16 * 1024 * 1024;

/// `body` as one frame: its length as a u32 big-endian, then the bytes.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).expect("a frame body under 4 GiB");
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

/// Writes `body` as one frame.
pub fn write_frame(writer: &mut impl Write, body: &[u8]) -> io::Result<()> {
    writer.write_all(&frame(body))?;
    writer.flush()
}

/// Reads one frame: `Ok(None)` on a clean close between frames,
/// `UnexpectedEof` when cut inside one, `InvalidData` over 16 MiB.
pub fn read_frame(reader: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match reader.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes(header);
    if len > MAX_READ {
        let message = format!("a frame of {len} bytes is more than a test reads");
        return Err(io::Error::new(ErrorKind::InvalidData, message));
    }
    let mut body = Vec::new();
    reader.take(u64::from(len)).read_to_end(&mut body)?;
    if body.len() != len as usize {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    Ok(Some(body))
}

/// A raw connection, for sending what the real client never would. Reads
/// and writes give up after [`STUCK`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(STUCK)).unwrap();
    stream.set_write_timeout(Some(STUCK)).unwrap();
    stream
}

/// Sends `body` as one frame and returns the next frame's body, as bytes.
pub fn exchange_bytes(stream: &mut TcpStream, body: &[u8]) -> Vec<u8> {
    write_frame(stream, body).expect("sending a frame");
    read_frame(stream)
        .expect("reading the answer")
        .expect("the server closed the connection instead of answering")
}

/// Sends `body` as one frame and returns the answer parsed as JSON.
pub fn exchange(stream: &mut TcpStream, body: &[u8]) -> Value {
    let answer = exchange_bytes(stream, body);
    serde_json::from_slice(&answer).unwrap_or_else(|e| {
        panic!(
            "the answer is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&answer)
        )
    })
}

/// Writes raw bytes, e.g. half a frame.
pub fn send_raw(stream: &mut TcpStream, bytes: &[u8]) {
    send_raw_quietly(stream, bytes).expect("sending raw bytes");
}

/// [`send_raw`] that reports a failure instead of panicking.
fn send_raw_quietly(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    stream.write_all(bytes)?;
    stream.flush()
}

/// True once the server has closed `stream`: reads whatever it still sends
/// (at most 64 KiB) until end-of-file, or a reset if it closed with our
/// bytes still unread. A server that keeps the connection open makes the
/// read time out after the stream's read timeout, which is `false`.
pub fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    match stream.take(64 * 1024).read_to_end(&mut rest) {
        Ok(_) => rest.len() < 64 * 1024,
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
    }
}

/// Writes `pattern` over and over without reading anything back, until the
/// peer stops taking bytes; `Err(bytes sent)` if 64 MiB go through first.
///
/// A partial write is resumed where it stopped, so frames stay intact.
/// "Stops" means three write timeouts of 500 ms in a row with no byte
/// accepted: one scheduling hiccup on a busy machine is not enough, and a
/// busy machine only makes a real stall come sooner.
pub fn write_until_stalled(stream: &mut TcpStream, pattern: &[u8]) -> Result<(), usize> {
    stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
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
            Err(e) => panic!("flood write failed: {e}"),
        }
    }
    Err(sent)
}

/// Polls `condition` until it holds; panics if it has not within `timeout`.
///
/// For what another thread or process does in its own time (a slot freed,
/// a log line written), where there is no event to wait on.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn frames_round_trip_and_a_cut_is_unexpected_eof() {
        let wire = frame(b"{}");
        assert_eq!(wire, [0, 0, 0, 2, b'{', b'}']);
        let body = read_frame(&mut Cursor::new(&wire)).unwrap();
        assert_eq!(body.as_deref(), Some(&b"{}"[..]));
        assert!(read_frame(&mut Cursor::new([])).unwrap().is_none());
        for cut in [&wire[..2], &wire[..5]] {
            let err = read_frame(&mut Cursor::new(cut)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
        }
    }

    #[test]
    fn a_huge_length_is_refused_unread() {
        let err = read_frame(&mut Cursor::new([0xFF; 4])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
    }

    #[test]
    #[should_panic(expected = "waiting until never")]
    fn wait_until_gives_up() {
        wait_until("never", Duration::from_millis(50), || false);
    }
}
