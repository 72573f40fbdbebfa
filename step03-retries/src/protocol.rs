//! The wire format: what a request and a response look like, and how each
//! is cut into a frame on the TCP byte stream.
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

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value;

// ANCHOR: max_frame_len
/// The largest frame body either side accepts: 1 MiB.
///
/// The length prefix comes from the peer, so it cannot be trusted: without
/// this limit a single four-byte header of `0xFFFFFFFF` would make us try to
/// buffer 4 GiB. A frame whose prefix is larger is refused *before* any of
/// its body is read, and the connection is closed, because after an unread
/// body we no longer know where the next frame starts.
pub const MAX_FRAME_LEN: u32 = 1024 * 1024;
// ANCHOR_END: max_frame_len

// ANCHOR: messages
/// A call: which method to run, its parameters, and the id its answer will
/// carry.
///
/// On the wire:
/// `{"id":1,"method":"add","params":{"a":5,"b":3},"meta":{"timeout_ms":15000,"idempotent":false}}`.
/// `params` is any JSON value; each method decides what shape it expects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client and copied into the response, so that answers
    /// arriving in any order can each be handed to the call that asked.
    ///
    /// A per-connection counter from 1 is all it takes: an id only has to
    /// be unique among the calls in flight on one connection, not across
    /// clients or over time, and a counter costs one atomic add, where a
    /// random or globally unique id would need a generator or coordination.
    /// Many JSON parsers read numbers as `f64`, which holds integers exactly
    /// only below 2^53; a counter would need centuries at a million calls a
    /// second to get there.
    pub id: u64,
    /// The name the server registered the method under.
    pub method: String,
    /// The arguments. Missing on the wire means `null`.
    #[serde(default)]
    pub params: Value,
    /// How the caller wants the call handled. Missing means the defaults.
    #[serde(default)]
    pub meta: Meta,
}

// ANCHOR: meta
/// What a caller says about a call besides what to run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    // ANCHOR: deadline
    /// How long the caller is still willing to wait, in milliseconds,
    /// counted from when the server reads the request; `None` (`null`) for
    /// as long as it takes.
    ///
    /// A duration, not a point in time such as "until 12:00:03.250 UTC":
    /// the caller's and the server's clocks can disagree by more than a
    /// whole call takes, and an absolute deadline would carry that error
    /// into every call. A duration needs only each side's own clock to
    /// measure it. The price is that the time the request spent on the wire
    /// is not counted, so the server's deadline falls a little after the
    /// caller's. gRPC sends its deadline the same way, as the relative
    /// `grpc-timeout` header, and tarpc keeps an absolute deadline in its
    /// context but serialises it as the time remaining, "to prevent clock
    /// skew issues".
    pub timeout_ms: Option<u64>,
    // ANCHOR_END: deadline
    /// True if running the call twice does no more harm than running it
    /// once, so that it is safe to retry. The client decides by it; the
    /// server only sees it.
    pub idempotent: bool,
}
// ANCHOR_END: meta

// ANCHOR: response
/// The answer to one request, tagged with that request's id.
///
/// On the wire, `{"id":1,"ok":true,"result":8.0}` on success and
/// `{"id":2,"ok":false,"error":{"code":"method_error","message":"division by zero","details":null}}`
/// on failure: `result` is left out of a failure and `error` out of a
/// success. `ok` says which to look for without guessing from which keys
/// are there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The id of the request answered. `None` (`null`) when the request was
    /// too broken for its id to be read.
    pub id: Option<u64>,
    /// Whether the method ran and returned a result.
    pub ok: bool,
    /// What the method returned, when `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why the request failed, when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

/// Why a request failed, in a form both a program and a human can use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    /// What kind of failure, for a program to match on: `"bad_request"`,
    /// `"unknown_method"`, `"method_error"`, `"timeout"`, `"unavailable"`,
    /// ... In this step each site picks its own string; step 4 makes the
    /// codes a typed enum.
    pub code: String,
    /// What went wrong, for a human to read.
    pub message: String,
    /// Anything else a program could use, as JSON; `null` when there is
    /// nothing to add.
    #[serde(default)]
    pub details: Value,
}

impl Response {
    /// The method with request `id` ran and returned `result`.
    pub fn success(id: u64, result: Value) -> Response {
        Response {
            id: Some(id),
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    /// The request with `id` (if it could be read) failed with `error`.
    pub fn failure(id: Option<u64>, error: RpcError) -> Response {
        Response {
            id,
            ok: false,
            result: None,
            error: Some(error),
        }
    }
}

impl RpcError {
    /// An error with `code` and `message`, and nothing in `details`.
    pub fn new(code: &str, message: impl Into<String>) -> RpcError {
        RpcError {
            code: code.to_string(),
            message: message.into(),
            details: Value::Null,
        }
    }
}

/// A handler's plain message is a `method_error`, so that `?` on a
/// `Result<_, String>` or `Result<_, &str>` works inside a handler.
impl From<String> for RpcError {
    fn from(message: String) -> RpcError {
        RpcError::new("method_error", message)
    }
}

impl From<&str> for RpcError {
    fn from(message: &str) -> RpcError {
        RpcError::new("method_error", message)
    }
}
// ANCHOR_END: response
// ANCHOR_END: messages

// ANCHOR: read_frame
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
// ANCHOR_END: read_frame

// ANCHOR: write_frame
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
// ANCHOR_END: write_frame

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

    #[test]
    fn messages_have_the_documented_json_shape() {
        let request: Request =
            serde_json::from_str(r#"{"id":1,"method":"add","params":{"a":5,"b":3}}"#).unwrap();
        assert_eq!(request.method, "add");
        // No `meta` on the wire is the default meta.
        assert_eq!(request.meta, Meta::default());
        assert_eq!(
            serde_json::to_string(&Response::success(1, 8.0.into())).unwrap(),
            r#"{"id":1,"ok":true,"result":8.0}"#
        );
        let error = RpcError::new("method_error", "division by zero");
        assert_eq!(
            serde_json::to_string(&Response::failure(Some(2), error)).unwrap(),
            r#"{"id":2,"ok":false,"error":{"code":"method_error","message":"division by zero","details":null}}"#
        );
    }
}
