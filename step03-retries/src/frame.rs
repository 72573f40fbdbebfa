//! Framing: how one message is cut out of the TCP byte stream.
//!
//! TCP delivers a stream of bytes, not messages: one `write` may arrive as
//! two `read`s, and two writes may arrive as one. So every message is sent
//! as a frame, a length followed by exactly that many bytes:
//!
//! ```text
//! +----------------+---------------------------+
//! | length: u32 BE | body: `length` bytes JSON  |
//! +----------------+---------------------------+
//! ```
//!
//! Two guarantees the rest of the crate relies on: nothing is allocated for
//! a body beyond the bytes that have actually arrived, and a stream cut
//! anywhere but between two frames reads as an error, never as a message.

use std::io::{self, Read, Write};

/// The largest frame body either side accepts: 1 MiB.
///
/// The length prefix comes from the peer, so it cannot be trusted: without
/// this limit a single four-byte header of `0xFFFFFFFF` would make us try to
/// buffer 4 GiB. A frame whose prefix is larger is refused *before* any of
/// its body is read, and the connection is closed, because after an unread
/// body we no longer know where the next frame starts.
pub const MAX_FRAME_LEN: u32 = 1024 * 1024;

/// Reads one frame and returns its body.
///
/// Returns `Ok(None)` when the peer closed the connection cleanly, between
/// two frames. Every other way the stream can end or go wrong is an error:
/// a connection cut in the middle of a frame is `UnexpectedEof`, and a
/// length prefix above [`MAX_FRAME_LEN`] is `InvalidData`.
pub fn read_frame(reader: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 4];
    // `read_exact` cannot tell "closed before the frame" from "closed in the
    // middle of the header", so read the first byte on its own: zero bytes
    // here is the peer hanging up politely.
    loop {
        match reader.read(&mut header[..1]) {
            Ok(0) => return Ok(None),
            Ok(_) => break,
            // A signal arrived before any byte did: nothing was lost, try again.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    reader.read_exact(&mut header[1..])?;
    let len = u32::from_be_bytes(header);

    // The check that keeps a hostile length from costing memory. It must
    // come before anything is allocated or read for the body.
    if len > MAX_FRAME_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the maximum of {MAX_FRAME_LEN}"),
        ));
    }

    // `take` + `read_to_end` grows the buffer as bytes actually arrive, so a
    // peer that announces 1 MiB and then sends nothing costs us nothing.
    let mut body = Vec::new();
    reader.take(u64::from(len)).read_to_end(&mut body)?;
    if body.len() != len as usize {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("connection closed after {} of {len} bytes", body.len()),
        ));
    }
    Ok(Some(body))
}

/// Writes `body` as one frame: its length, then the bytes.
///
/// Refuses a body over [`MAX_FRAME_LEN`], which the peer would refuse anyway.
/// Header and body go out in one `write_all` so that a frame is never split
/// into two small TCP segments for no reason.
pub fn write_frame(writer: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&len| len <= MAX_FRAME_LEN)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "frame of {} bytes exceeds the maximum of {MAX_FRAME_LEN}",
                    body.len()
                ),
            )
        })?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(body);
    writer.write_all(&frame)?;
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn frame_round_trips() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"{}").unwrap();
        assert_eq!(wire, [0, 0, 0, 2, b'{', b'}']);
        let body = read_frame(&mut Cursor::new(wire)).unwrap();
        assert_eq!(body.as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn clean_close_between_frames_is_none() {
        assert!(read_frame(&mut Cursor::new(Vec::new())).unwrap().is_none());
    }

    #[test]
    fn oversize_length_is_refused_before_reading_the_body() {
        // Only the header is there. Had `read_frame` tried to read the body
        // it would report `UnexpectedEof`; `InvalidData` proves the length
        // was checked first.
        for header in [[0xFF; 4], *b"GET "] {
            let err = read_frame(&mut Cursor::new(header)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{header:?}");
        }
    }

    #[test]
    fn cut_in_the_header_or_body_is_unexpected_eof() {
        for wire in [vec![0, 0], vec![0, 0, 0, 5, b'{']] {
            let err = read_frame(&mut Cursor::new(wire)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        }
    }

    #[test]
    fn oversize_body_is_not_written() {
        let mut wire = Vec::new();
        let body = vec![b' '; MAX_FRAME_LEN as usize + 1];
        let err = write_frame(&mut wire, &body).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(wire.is_empty());
    }
}
