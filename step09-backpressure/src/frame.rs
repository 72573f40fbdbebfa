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
//! a body beyond the bytes that have actually arrived (the read buffer
//! grows with them, to at most about twice what arrived), and a stream cut
//! anywhere but between two frames reads as an error, never as a message.
//!
//! On tokio, [`FrameCodec`] is a `tokio_util::codec` decoder: wrapped in a
//! `FramedRead`, it turns a socket's read half into a stream of frames.
//! [`write_frames`] is the other direction: one task that owns a write
//! half and sends every frame queued for it, many in one write.

use std::io;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time;
use tokio_util::codec::Decoder;

/// The largest frame body either side accepts: 1 MiB.
///
/// The length prefix comes from the peer, so it cannot be trusted: without
/// this limit a single four-byte header of `0xFFFFFFFF` would make us try to
/// buffer 4 GiB. A frame whose prefix is larger is refused *before* any of
/// its body is read, and the connection is closed, because after an unread
/// body we no longer know where the next frame starts.
pub const MAX_FRAME_LEN: u32 = 1024 * 1024;

/// Cuts frames out of the bytes a `FramedRead` has read so far.
///
/// `tokio_util` has a ready-made `LengthDelimitedCodec`, and it reads this
/// very format. We write our own, in a dozen lines, for the two guarantees
/// above: `LengthDelimitedCodec` reserves room for the whole announced body
/// as soon as it reads a length (a peer announcing 1 MiB and sending
/// nothing costs 1 MiB), and a stream cut mid-frame ends it with an error
/// of kind `Other`, where steps 1-4 promised `UnexpectedEof`.
#[derive(Debug, Default)]
pub struct FrameCodec;

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = io::Error;

    /// A whole frame's body from the front of `buffer`, or `None` until its
    /// last byte has arrived. `FramedRead` calls this each time more bytes
    /// come in, with all those not yet taken.
    fn decode(&mut self, buffer: &mut BytesMut) -> io::Result<Option<Bytes>> {
        let Some(header) = buffer.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*header);
        // The check that keeps a hostile length from costing memory. It
        // must come before anything waits for, or makes room for, the body.
        if len > MAX_FRAME_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame of {len} bytes exceeds the maximum of {MAX_FRAME_LEN}"),
            ));
        }
        // No `reserve` here: the buffer grows only as bytes arrive.
        if buffer.len() < 4 + len as usize {
            return Ok(None);
        }
        buffer.advance(4);
        // `split_to` hands over the body without copying it.
        let body = buffer.split_to(len as usize).freeze();
        // After a large frame, start a small buffer again rather than keep
        // a megabyte for the life of a connection that may sit idle.
        if buffer.is_empty() && len > SMALL {
            *buffer = BytesMut::new();
        }
        Ok(Some(body))
    }

    /// The stream has ended. Bytes left over are a frame that was cut off.
    fn decode_eof(&mut self, buffer: &mut BytesMut) -> io::Result<Option<Bytes>> {
        match self.decode(buffer)? {
            Some(body) => Ok(Some(body)),
            None if buffer.is_empty() => Ok(None),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed in a frame, {} bytes into it",
                    buffer.len()
                ),
            )),
        }
    }
}

/// Appends `body` to `buffer` as one frame: its length, then the bytes.
///
/// Refuses a body over [`MAX_FRAME_LEN`], which the peer would refuse anyway,
/// and leaves `buffer` as it was.
pub fn encode_frame(body: &[u8], buffer: &mut BytesMut) -> io::Result<()> {
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
    buffer.reserve(4 + body.len());
    buffer.put_u32(len);
    buffer.put_slice(body);
    Ok(())
}

/// The most frames [`write_frames`] takes off its queue at once.
const BATCH: usize = 64;

/// The most bytes [`write_frames`] gathers before it writes them out, and
/// the size above which a buffer is not kept for the next frames.
const SMALL: u32 = 64 * 1024;

/// The writer task: sends every frame body queued on `queue` to `writer`,
/// until every sender has gone and the queue is empty.
///
/// One task owns the write half, so frames can never interleave: no lock
/// around the socket, as steps 2-4 needed. And it batches: whatever has
/// queued up while the last write was in progress (up to [`BATCH`] frames,
/// written out every [`SMALL`] bytes) goes out in one buffer and one
/// `write_all`, so that 64 answers ready at once cost one system call, not
/// 64. When calls come one at a time, a batch is one frame, and nothing
/// waits for company.
///
/// A write that fails, or takes longer than `write_timeout` (the peer has
/// stopped reading, and its receive window is full), ends the task with an
/// error: the connection is broken, or not worth keeping.
pub async fn write_frames(
    mut writer: impl AsyncWrite + Unpin,
    mut queue: mpsc::Receiver<impl AsRef<[u8]>>,
    write_timeout: Duration,
) -> io::Result<()> {
    let mut bodies = Vec::with_capacity(BATCH);
    let mut buffer = BytesMut::new();
    // `recv_many` waits for at least one body, then takes every one that is
    // already queued, up to `BATCH`; 0 means the queue is closed and empty.
    while queue.recv_many(&mut bodies, BATCH).await > 0 {
        for (i, body) in bodies.iter().enumerate() {
            // Senders check the size first; a body too large to frame is
            // a bug in this crate, and is dropped rather than sent.
            let _ = encode_frame(body.as_ref(), &mut buffer);
            let last = i + 1 == bodies.len();
            if last || buffer.len() >= SMALL as usize {
                let write = time::timeout(write_timeout, writer.write_all_buf(&mut buffer));
                write.await.unwrap_or_else(|_| {
                    let message = format!("the peer read nothing for {write_timeout:?}");
                    Err(io::Error::new(io::ErrorKind::TimedOut, message))
                })?;
            }
        }
        bodies.clear();
        if buffer.capacity() > SMALL as usize {
            buffer = BytesMut::new();
        }
    }
    // Every sender has gone: no more frames will come. Say so to the peer.
    writer.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes what `wire` holds, then what its end means, as `FramedRead`
    /// would once the peer closes the connection after sending `wire`.
    fn read_all(wire: &[u8]) -> io::Result<Vec<Bytes>> {
        let mut buffer = BytesMut::from(wire);
        let mut bodies = Vec::new();
        while let Some(body) = FrameCodec.decode(&mut buffer)? {
            bodies.push(body);
        }
        bodies.extend(FrameCodec.decode_eof(&mut buffer)?);
        Ok(bodies)
    }

    #[test]
    fn frame_round_trips() {
        let mut wire = BytesMut::new();
        encode_frame(b"{}", &mut wire).unwrap();
        encode_frame(b"[]", &mut wire).unwrap();
        assert_eq!(wire[..6], [0, 0, 0, 2, b'{', b'}']);
        assert_eq!(read_all(&wire).unwrap(), [&b"{}"[..], b"[]"]);
    }

    #[test]
    fn clean_close_between_frames_is_the_end() {
        assert!(read_all(&[]).unwrap().is_empty());
    }

    #[test]
    fn a_partial_frame_waits_for_more_and_reserves_nothing() {
        let mut buffer = BytesMut::from(&[0, 0x10, 0, 0, b'{'][..]);
        let capacity = buffer.capacity();
        assert!(FrameCodec.decode(&mut buffer).unwrap().is_none());
        // 1 MiB announced, one byte sent: no room made for the rest.
        assert_eq!(buffer.capacity(), capacity);
        assert_eq!(buffer.len(), 5);
    }

    #[test]
    fn oversize_length_is_refused_before_reading_the_body() {
        for header in [[0xFF; 4], *b"GET "] {
            let err = read_all(&header).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{header:?}");
        }
    }

    #[test]
    fn cut_in_the_header_or_body_is_unexpected_eof() {
        for wire in [&[0, 0][..], &[0, 0, 0, 5, b'{']] {
            let err = read_all(wire).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        }
    }

    #[test]
    fn oversize_body_is_not_written() {
        let mut wire = BytesMut::new();
        let body = vec![b' '; MAX_FRAME_LEN as usize + 1];
        let err = encode_frame(&body, &mut wire).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(wire.is_empty());
    }

    #[tokio::test]
    async fn queued_frames_are_written_in_order_then_the_stream_is_shut() {
        let (sender, queue) = mpsc::channel(8);
        for body in ["1", "22", "333"] {
            sender.send(body.as_bytes().to_vec()).await.unwrap();
        }
        drop(sender);
        let mut wire = Vec::new();
        let write_timeout = Duration::from_secs(1);
        write_frames(&mut wire, queue, write_timeout).await.unwrap();
        assert_eq!(read_all(&wire).unwrap(), [&b"1"[..], b"22", b"333"]);
    }

    /// A peer that reads nothing: the writer fills the pipe, then gives up
    /// at exactly `write_timeout` of paused time.
    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_reads_gives_up_at_the_write_timeout() {
        let (writer, _unread) = tokio::io::duplex(16);
        let (sender, queue) = mpsc::channel(1);
        sender.send(vec![b'x'; 64]).await.unwrap();
        let write_timeout = Duration::from_secs(30);
        let start = time::Instant::now();
        let err = write_frames(writer, queue, write_timeout)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), write_timeout);
    }
}
