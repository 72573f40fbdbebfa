//! The client: one connection, many calls in flight on it at once.
//!
//! A `Client` is a handle that any number of threads can clone and call
//! through at the same time. Each call takes the next id, adds itself to
//! the table of pending calls, writes its request and sleeps. One reader
//! thread per connection reads every response and wakes the call with that
//! response's id, in whatever order the server answers.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, BufReader};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::frame::{read_frame, write_frame};
use crate::lock;
use crate::protocol::{Meta, Request, Response, RpcError};

// ANCHOR: call_error
/// Why a call failed. Each case calls for a different reaction:
///
/// - `Server`: an answer; the call ran and said no.
/// - `Io`: the connection failed.
/// - `BadResponse`: the server broke the protocol.
/// - `TooManyPending`: wait for some calls to finish before making more.
#[derive(Debug)]
pub enum CallError {
    /// The connection failed: refused, reset, closed or silent for longer
    /// than the I/O timeout before the answer came; or the request was too
    /// large to send.
    Io(io::Error),
    /// The server answered with an error.
    Server(RpcError),
    /// The server answered with something that is not a valid response:
    /// a length over the limit, bad JSON, or the wrong shape.
    /// When no call can be matched to it, every waiting call gets it.
    BadResponse(String),
    /// [`ClientConfig::max_pending`] calls were already waiting on this
    /// connection; this one was not sent.
    TooManyPending,
}
// ANCHOR_END: call_error

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Io(e) => write!(f, "connection error: {e}"),
            CallError::Server(error) => {
                write!(f, "server error: {} ({})", error.message, error.code)
            }
            CallError::BadResponse(why) => write!(f, "bad response: {why}"),
            CallError::TooManyPending => write!(f, "too many calls pending on this connection"),
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

/// One dead connection fails many calls with the same error, and
/// `io::Error` is not `Clone`: a copy has the same kind and message.
impl Clone for CallError {
    fn clone(&self) -> CallError {
        match self {
            CallError::Io(e) => CallError::Io(io::Error::new(e.kind(), e.to_string())),
            CallError::Server(error) => CallError::Server(error.clone()),
            CallError::BadResponse(why) => CallError::BadResponse(why.clone()),
            CallError::TooManyPending => CallError::TooManyPending,
        }
    }
}

impl From<io::Error> for CallError {
    fn from(e: io::Error) -> CallError {
        CallError::Io(e)
    }
}

// ANCHOR: client_config
/// How a client behaves. [`Client::connect`] uses `ClientConfig::default()`.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The most calls that may wait for an answer at once on one
    /// connection; one more fails at once with [`CallError::TooManyPending`],
    /// so that a runaway caller cannot pile up table entries and server work
    /// without limit. Default: [`DEFAULT_MAX_PENDING`].
    pub max_pending: usize,
    /// How long the server may stay silent while calls wait for it, or take
    /// to accept a request, before the connection is given up and every
    /// waiting call fails with `Io`. Default: [`DEFAULT_IO_TIMEOUT`].
    pub io_timeout: Duration,
}

/// The default [`ClientConfig::max_pending`]: far more than the demo or the
/// benchmarks keep in flight, far less than would strain either side.
pub const DEFAULT_MAX_PENDING: usize = 1024;

/// The default [`ClientConfig::io_timeout`].
///
/// Not a deadline for the call (step 3 adds those): a safety net, so that a
/// server that stops talking mid-answer costs the caller an error, not a
/// thread blocked forever. A server that keeps answering other calls but
/// never answers one is not silent: that call waits forever.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            max_pending: DEFAULT_MAX_PENDING,
            io_timeout: DEFAULT_IO_TIMEOUT,
        }
    }
}
// ANCHOR_END: client_config

// ANCHOR: pending_calls
/// What a call returns, on its way from the reader thread to the caller.
type Answer = Result<Value, CallError>;

/// The calls on one connection that are waiting for their answer, by id.
///
/// A call adds itself before it sends its request; the reader thread takes
/// it out when the answer with its id arrives, and sends the answer down
/// the call's own one-shot channel, which only that caller sleeps on.
struct PendingCalls {
    /// The table itself, behind one lock shared by callers and the reader.
    table: Mutex<Table>,
    /// The bound on `table.waiting`: [`ClientConfig::max_pending`].
    max_pending: usize,
    /// Responses dropped because no call was waiting for their id.
    unknown_responses: AtomicU64,
}

/// What [`PendingCalls`] keeps behind its lock.
struct Table {
    /// Each waiting call's channel, by request id. Used once, then dropped.
    waiting: HashMap<u64, Sender<Answer>>,
    /// Why the connection ended, once it has. No answer can come after
    /// that, so a new call fails at once rather than wait forever.
    closed: Option<CallError>,
}

impl PendingCalls {
    fn new(max_pending: usize) -> PendingCalls {
        PendingCalls {
            table: Mutex::new(Table {
                waiting: HashMap::new(),
                closed: None,
            }),
            max_pending,
            unknown_responses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        crate::lock(&self.table)
    }

    /// Adds call `id`; returns the channel its answer will arrive on.
    fn insert(&self, id: u64) -> Result<Receiver<Answer>, CallError> {
        let mut table = self.lock();
        if let Some(why) = &table.closed {
            let message = format!("the connection is closed: {why}");
            return Err(io::Error::new(io::ErrorKind::NotConnected, message).into());
        }
        if table.waiting.len() >= self.max_pending {
            return Err(CallError::TooManyPending);
        }
        let (sender, receiver) = mpsc::channel();
        table.waiting.insert(id, sender);
        Ok(receiver)
    }

    /// Takes call `id` out unanswered: its request was never sent.
    fn remove(&self, id: u64) {
        self.lock().waiting.remove(&id);
    }

    /// True if no call is waiting for an answer.
    fn is_empty(&self) -> bool {
        self.lock().waiting.is_empty()
    }

    /// Hands `answer` to the call waiting for `id`. A response whose id no
    /// call is waiting for (a server bug, or `null` for a request the server
    /// could not read) is dropped and counted: the server's mistake must
    /// not cost any caller, let alone the whole connection.
    fn complete(&self, id: Option<u64>, answer: Answer) {
        // Take the channel out under the lock; send after letting go of it.
        let sender = id.and_then(|id| self.lock().waiting.remove(&id));
        match sender {
            // Sending fails only if the caller stopped waiting (from step 3
            // on, at its deadline), and then nobody wants the answer.
            Some(sender) => {
                let _ = sender.send(answer);
            }
            None => {
                self.unknown_responses.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The connection is gone: fails every waiting call with `why`, and
    /// marks the table closed so every later call fails too.
    fn fail_all(&self, why: CallError) {
        let waiting = {
            let mut table = self.lock();
            table.closed = Some(why.clone());
            std::mem::take(&mut table.waiting)
        };
        for sender in waiting.into_values() {
            let _ = sender.send(Err(why.clone()));
        }
    }
}
// ANCHOR_END: pending_calls

/// One connection, shared by every clone of a [`Client`].
struct Connection {
    /// Write half of the socket, shared by every caller: see `send`.
    writer: Mutex<TcpStream>,
    /// The next request id: a counter from 1 (see [`Request::id`]).
    next_id: AtomicU64,
    /// The calls waiting for an answer, shared with the reader thread.
    pending: Arc<PendingCalls>,
}

impl Connection {
    /// Writes one request as one frame. The lock is held for the whole
    /// frame, so two callers' requests never interleave on the wire.
    fn send(&self, body: &[u8]) -> io::Result<()> {
        let mut writer = lock(&self.writer);
        let sent = write_frame(&mut *writer, body);
        // A request too large to send was refused before any byte went out.
        // Any other failure may have sent part of the frame, and the server
        // cannot tell where the next one starts: end the connection, and the
        // reader thread fails every waiting call.
        if sent
            .as_ref()
            .is_err_and(|e| e.kind() != io::ErrorKind::InvalidInput)
        {
            let _ = writer.shutdown(Shutdown::Both);
        }
        sent
    }
}

impl Drop for Connection {
    /// The last `Client` is gone: shut the socket down, so that the reader
    /// thread, blocked reading it, sees the end and exits.
    fn drop(&mut self) {
        let stream = self
            .writer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let _ = stream.shutdown(Shutdown::Both);
    }
}

/// A connection to a server.
///
/// Clone it to share the connection: every clone, on any thread, can have
/// calls in flight on it at once.
#[derive(Clone)]
pub struct Client {
    connection: Arc<Connection>,
}

impl Client {
    /// Connects to a server, with the default [`ClientConfig`].
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<Client> {
        Client::connect_with(addr, ClientConfig::default())
    }

    /// Connects to a server and starts the thread that reads its answers.
    pub fn connect_with(addr: impl ToSocketAddrs, config: ClientConfig) -> io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        // Each request is one small frame followed by a wait for the answer:
        // send it now instead of letting Nagle's algorithm hold it.
        stream.set_nodelay(true)?;
        // One socket under both handles, so this covers reads and writes.
        stream.set_read_timeout(Some(config.io_timeout))?;
        stream.set_write_timeout(Some(config.io_timeout))?;
        // Buffered read half: a response costs a few syscalls, not one per byte.
        let reader = BufReader::new(stream.try_clone()?);
        let pending = Arc::new(PendingCalls::new(config.max_pending));
        // The reader thread gets the read half and the table, not the
        // `Connection`, so that dropping the last `Client` can end it.
        let table = Arc::clone(&pending);
        // `Builder`, not `thread::spawn`: no thread is an error, not a panic.
        thread::Builder::new().spawn(move || read_responses(reader, &table))?;
        Ok(Client {
            connection: Arc::new(Connection {
                writer: Mutex::new(stream),
                next_id: AtomicU64::new(1),
                pending,
            }),
        })
    }

    // ANCHOR: call
    /// Calls `method` with `params` and waits for its answer.
    ///
    /// After an `Io` error the connection is gone, and every later call on
    /// it fails at once: connect again. There is no deadline yet: if the
    /// server never answers this call's id but keeps answering others,
    /// this waits forever. Step 3 adds deadlines.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, CallError> {
        let connection = &*self.connection;
        let id = connection.next_id.fetch_add(1, Ordering::Relaxed);
        let request = Request {
            id,
            method: method.to_string(),
            params,
            meta: Meta::default(),
        };
        let body = serde_json::to_vec(&request).map_err(io::Error::other)?;
        // In the table before the request leaves: the answer can arrive
        // before `write_frame` even returns.
        let answer = connection.pending.insert(id)?;
        if let Err(e) = connection.send(&body) {
            // No answer will come for a request that did not go out whole.
            connection.pending.remove(id);
            return Err(e.into());
        }
        // Sleep until the reader thread hands over this id's answer, or
        // fails every call because the connection ended. The reader never
        // drops a channel without sending on it, so `recv` fails only if
        // that thread itself died.
        answer
            .recv()
            .map_err(|_| io::Error::other("the reader thread died"))?
    }
    // ANCHOR_END: call

    /// How many responses arrived with an id no call was waiting for, and
    /// were dropped. Always 0 against a correct server.
    pub fn unknown_responses(&self) -> u64 {
        let pending = &self.connection.pending;
        pending.unknown_responses.load(Ordering::Relaxed)
    }
}

// ANCHOR: read_responses
/// The reader thread: reads every response on the connection and hands
/// each to the call waiting for its id, until the connection ends; then
/// fails every call still waiting, and every later one, with why.
fn read_responses(mut reader: BufReader<TcpStream>, pending: &PendingCalls) {
    let why = loop {
        // Wait for the next frame to start, taking none of it yet. The I/O
        // timeout firing here is only a quiet connection if no call was
        // waiting all along; if one was, the server went silent on it.
        let calls_were_waiting = !pending.is_empty();
        match reader.fill_buf() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) && !calls_were_waiting => continue,
            Err(e) => break CallError::Io(e),
        }
        // The server may be broken or hostile too: a closed connection, a
        // cut frame or bad JSON is an error for the caller, never a panic.
        let body = match read_frame(&mut reader) {
            Ok(Some(body)) => body,
            Ok(None) => {
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection before answering",
                );
                break CallError::Io(e);
            }
            // A length over the limit: the server broke the protocol.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                break CallError::BadResponse(e.to_string());
            }
            Err(e) => break CallError::Io(e),
        };
        match serde_json::from_slice::<Response>(&body) {
            Ok(response) => pending.complete(response.id, answer(response)),
            // A response that does not parse has no id we can trust: its
            // caller would wait forever, and such a server cannot be trusted
            // with the rest either. Give up on the connection.
            Err(e) => break CallError::BadResponse(e.to_string()),
        }
    };
    pending.fail_all(why);
    // Tell the server too, if it is still there.
    let _ = reader.get_ref().shutdown(Shutdown::Both);
}
// ANCHOR_END: read_responses

/// A read that gave up after the I/O timeout: `WouldBlock` on Unix,
/// `TimedOut` on Windows.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// What a parsed response means for its call. `ok` must agree with which
/// of `result` and `error` is there; a response that contradicts itself
/// fails its own call only, since its id, at least, could be read.
fn answer(response: Response) -> Answer {
    match (response.ok, response.result, response.error) {
        // `"result": null` and no `result` at all read the same.
        (true, result, None) => Ok(result.unwrap_or(Value::Null)),
        (false, None, Some(error)) => Err(CallError::Server(error)),
        (ok, ..) => Err(CallError::BadResponse(format!(
            "`ok` is {ok}, which disagrees with its `result` or `error`"
        ))),
    }
}
