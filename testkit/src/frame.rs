//! Frames, written and read without any step's code: a u32 big-endian
//! length, then exactly that many bytes of body.
//!
//! Unlike a step's framing these helpers have no 1 MiB limit of their own:
//! a test must be able to write a frame a step refuses. They only refuse to
//! *read* absurd lengths, so that a hostile peer cannot make a test allocate
//! gigabytes.

use std::io::{self, ErrorKind, Read, Write};

/// The largest frame body [`read_frame`] accepts: 16 MiB, well above any
/// step's limit (1 MiB), so that a length prefix of `0xFFFFFFFF` costs a
/// test an error, not 4 GiB.
const MAX_READ: u32 = 16 * 1024 * 1024;

/// `body` as one frame: its length as a u32 big-endian, then the bytes.
///
/// For building exactly the bytes a test sends (several frames back to
/// back, a frame cut in half) or expects.
///
/// # Panics
///
/// If `body` is 4 GiB or more, which no u32 prefix can announce.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).expect("a frame body is under 4 GiB");
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(body);
    frame
}

/// Writes `body` as one frame and flushes, in a single `write_all`, so the
/// frame leaves whole rather than header and body apart.
pub fn write_frame(writer: &mut impl Write, body: &[u8]) -> io::Result<()> {
    writer.write_all(&frame(body))?;
    writer.flush()
}

/// Reads one frame and returns its body.
///
/// `Ok(None)` on a clean close between frames, `UnexpectedEof` when the
/// stream ends inside a frame (header or body), `InvalidData` for an
/// announced length over 16 MiB, which is refused before any of the body is
/// read. A read timeout on the stream comes back as its own error
/// (`WouldBlock` or `TimedOut`).
pub fn read_frame(reader: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 4];
    let mut got = 0;
    // Not `read_exact`: it cannot tell "closed before the frame" (clean)
    // from "closed inside the header" (cut).
    while got < header.len() {
        match reader.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(cut(got, header.len())),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes(header);
    if len > MAX_READ {
        let message = format!("a frame of {len} bytes is more than a test reads ({MAX_READ})");
        return Err(io::Error::new(ErrorKind::InvalidData, message));
    }
    // `take` + `read_to_end` grows the buffer only as bytes arrive.
    let mut body = Vec::new();
    reader.take(u64::from(len)).read_to_end(&mut body)?;
    if body.len() != len as usize {
        return Err(cut(body.len(), len as usize));
    }
    Ok(Some(body))
}

/// The error for a stream that ended after `got` of `wanted` bytes.
fn cut(got: usize, wanted: usize) -> io::Error {
    let message = format!("the stream ended after {got} of {wanted} bytes");
    io::Error::new(ErrorKind::UnexpectedEof, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::net::{TcpListener, TcpStream};
    use std::thread;

    #[test]
    fn frames_round_trip_back_to_back() {
        let wire = [frame(b"{}"), frame(b""), frame(b"[1]")].concat();
        assert_eq!(wire[..6], [0, 0, 0, 2, b'{', b'}']);
        let mut reader = Cursor::new(wire);
        for body in [&b"{}"[..], b"", b"[1]"] {
            assert_eq!(read_frame(&mut reader).unwrap().as_deref(), Some(body));
        }
        assert!(read_frame(&mut reader).unwrap().is_none(), "a clean end");
    }

    #[test]
    fn a_frame_split_across_tcp_writes_is_read_whole() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.set_nodelay(true).unwrap();
        let writer = thread::spawn(move || {
            for byte in frame(b"split") {
                client.write_all(&[byte]).unwrap();
            }
            write_frame(&mut client, b"whole").unwrap();
        });
        assert_eq!(read_frame(&mut server).unwrap().unwrap(), b"split");
        assert_eq!(read_frame(&mut server).unwrap().unwrap(), b"whole");
        writer.join().unwrap();
        assert!(read_frame(&mut server).unwrap().is_none());
    }

    #[test]
    fn a_cut_in_the_header_or_the_body_is_unexpected_eof() {
        let wire = frame(b"{}");
        for cut in [&wire[..1], &wire[..3], &wire[..4], &wire[..5]] {
            let err = read_frame(&mut Cursor::new(cut)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "cut at {}", cut.len());
        }
    }

    #[test]
    fn a_length_over_16_mib_is_refused_before_its_body_is_read() {
        let mut reader = Cursor::new([(MAX_READ + 1).to_be_bytes(), [0; 4]].concat());
        let err = read_frame(&mut reader).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert_eq!(reader.position(), 4, "only the header was read");

        // 16 MiB itself is read.
        let header = MAX_READ.to_be_bytes();
        let mut reader = Cursor::new(header).chain(io::repeat(7).take(u64::from(MAX_READ)));
        let body = read_frame(&mut reader).unwrap().unwrap();
        assert_eq!(body.len(), MAX_READ as usize);
    }
}
