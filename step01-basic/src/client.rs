//! The client: one connection, one call at a time.
//!
//! `call` writes a request frame and then blocks until the response frame
//! arrives. Because the server answers one request at a time, in order, the
//! next frame to arrive is always the answer to the call just made; that is
//! the only reason this client needs no request ids (step 2 adds them).

use std::fmt;
use std::io::{self, BufReader};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

use crate::frame::{read_frame, write_frame};
use crate::protocol::{Request, Response};

// ANCHOR: call_error
/// Why a call failed. Each case calls for a different reaction:
///
/// - `Server`: an answer; the call ran and said no.
/// - `Io`: the connection failed.
/// - `BadResponse`: the server broke the protocol.
#[derive(Debug)]
pub enum CallError {
    /// The connection failed: refused, reset, closed or silent for longer
    /// than the I/O timeout before the answer came; or the request was too
    /// large to send.
    Io(io::Error),
    /// The server answered with an error message.
    Server(String),
    /// The server answered with something that is not a valid response:
    /// a length over the limit, bad JSON, or the wrong shape.
    BadResponse(String),
}
// ANCHOR_END: call_error

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Io(e) => write!(f, "connection error: {e}"),
            CallError::Server(message) => write!(f, "server error: {message}"),
            CallError::BadResponse(why) => write!(f, "bad response: {why}"),
        }
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for CallError {
    fn from(e: io::Error) -> CallError {
        CallError::Io(e)
    }
}

/// How long a call waits on a silent server before giving up, unless
/// changed with [`Client::set_io_timeout`].
///
/// Not a deadline for the call (step 3 adds those): a safety net, so that a
/// server that stops talking mid-answer costs the caller an error, not a
/// thread blocked forever.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to a server.
pub struct Client {
    /// Buffered read half: a response costs a few syscalls, not one per byte.
    reader: BufReader<TcpStream>,
    /// Write half of the same socket; `write_frame` sends a frame in one write.
    writer: TcpStream,
}

impl Client {
    /// Connects to a server.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        // Each request is one small frame followed by a wait for the answer:
        // send it now instead of letting Nagle's algorithm hold it.
        stream.set_nodelay(true)?;
        let mut client = Client {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        client.set_io_timeout(DEFAULT_IO_TIMEOUT)?;
        Ok(client)
    }

    /// How long a read or write may wait for the server before the call
    /// fails with `Io`. Both handles share one socket, so this covers both.
    pub fn set_io_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.writer.set_read_timeout(Some(timeout))?;
        self.writer.set_write_timeout(Some(timeout))
    }

    // ANCHOR: call
    /// Calls `method` with `params` and waits for its answer.
    ///
    /// After an `Io` or `BadResponse` error the connection is in an unknown
    /// state; connect again rather than reuse this client.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, CallError> {
        let request = Request {
            method: method.to_string(),
            params,
        };
        let body = serde_json::to_vec(&request).map_err(io::Error::other)?;
        write_frame(&mut self.writer, &body)?;

        // The server may be broken or hostile too: a closed connection, a
        // cut frame or bad JSON is an error for the caller, never a panic.
        let body = match read_frame(&mut self.reader) {
            Ok(Some(body)) => body,
            Ok(None) => {
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection before answering",
                );
                return Err(CallError::Io(e));
            }
            // A length over the limit: the server broke the protocol.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(CallError::BadResponse(e.to_string()));
            }
            Err(e) => return Err(CallError::Io(e)),
        };
        match serde_json::from_slice(&body) {
            Ok(Response::Result(result)) => Ok(result),
            Ok(Response::Error(message)) => Err(CallError::Server(message)),
            Err(e) => Err(CallError::BadResponse(e.to_string())),
        }
    }
    // ANCHOR_END: call
}
