//! The client: one connection, many calls in flight on it at once.
//!
//! A `Client` is a handle that any number of threads can clone and call
//! through at the same time. Each call takes the next id, adds itself to
//! the table of pending calls, writes its request and sleeps. One reader
//! thread per connection reads every response and wakes the call with that
//! response's id, in whatever order the server answers.
//!
//! Every call has a deadline, and within it a call that failed for a
//! passing reason is tried again after a pause, on a new connection if the
//! old one died: [`Client::call_with`] says when.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{self, BufRead, BufReader};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::frame::{read_frame, write_frame};
use crate::lock;
use crate::protocol::{Meta, Request, Response, RpcError};

/// Why a call failed. Each case calls for a different reaction:
///
/// - `Server`: an answer; the call ran and said no.
/// - `Io`: the connection failed.
/// - `BadResponse`: the server broke the protocol.
/// - `TooManyPending`: wait for some calls to finish before making more.
/// - `Timeout`: the call's deadline passed.
///
/// By the time a caller sees one, the retries it allowed have been made.
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
    /// The call's deadline passed before its answer came. The call may
    /// still have run on the server: only its answer was given up on.
    Timeout,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Io(e) => write!(f, "connection error: {e}"),
            CallError::Server(error) => {
                write!(f, "server error: {} ({})", error.message, error.code)
            }
            CallError::BadResponse(why) => write!(f, "bad response: {why}"),
            CallError::TooManyPending => write!(f, "too many calls pending on this connection"),
            CallError::Timeout => write!(f, "the call's deadline passed"),
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
            CallError::Timeout => CallError::Timeout,
        }
    }
}

impl From<io::Error> for CallError {
    fn from(e: io::Error) -> CallError {
        CallError::Io(e)
    }
}

// ANCHOR: retryable
/// The error codes with which a server says it did not do the work *this
/// time*, so that the same request may succeed later. Any other code is
/// the method's answer, and would come again. Step 4 turns this list into
/// a method on the typed error code.
pub const RETRYABLE_CODES: &[&str] = &["unavailable"];

impl CallError {
    /// True if the same request, sent again, may succeed: the connection
    /// failed (unless the request was too large, as it would be again), or
    /// the server answered with one of [`RETRYABLE_CODES`].
    pub fn is_transient(&self) -> bool {
        match self {
            CallError::Io(e) => e.kind() != io::ErrorKind::InvalidInput,
            CallError::Server(error) => RETRYABLE_CODES.contains(&error.code.as_str()),
            CallError::BadResponse(_) | CallError::TooManyPending | CallError::Timeout => false,
        }
    }
}
// ANCHOR_END: retryable

/// How a client behaves. [`Client::connect`] uses `ClientConfig::default()`.
#[derive(Clone)]
pub struct ClientConfig {
    /// The most calls that may wait for an answer at once on one
    /// connection; one more fails at once with [`CallError::TooManyPending`],
    /// so that a runaway caller cannot pile up table entries and server work
    /// without limit. Default: [`DEFAULT_MAX_PENDING`].
    pub max_pending: usize,
    /// How long the server may stay silent while calls wait for it, take
    /// to send one response once it has begun, or take to accept a request,
    /// before the connection is given up and every waiting call fails with
    /// `Io`. Default: [`DEFAULT_IO_TIMEOUT`].
    pub io_timeout: Duration,
    /// How long a call may take, every attempt and pause included, when
    /// its [`CallOptions`] do not say; also how long [`Client::connect`]
    /// may take. Default: [`DEFAULT_TIMEOUT`].
    pub default_timeout: Duration,
    /// How many times, and how far apart, a failed call is tried.
    pub retry: RetryPolicy,
    /// How the retry loop pauses: `thread::sleep`, unless a test records
    /// the pauses instead of waiting them out.
    pub sleep: Arc<dyn Fn(Duration) + Send + Sync>,
    /// The retry loop's source of numbers in `[0, 1)` for jitter:
    /// [`random_uniform`], unless a test fixes it.
    pub uniform: Arc<dyn Fn() -> f64 + Send + Sync>,
}

/// The default [`ClientConfig::max_pending`]: far more than the demo or the
/// benchmarks keep in flight, far less than would strain either side.
pub const DEFAULT_MAX_PENDING: usize = 1024;

/// The default [`ClientConfig::io_timeout`].
///
/// Not the call's deadline ([`DEFAULT_TIMEOUT`]): a safety net, so that a
/// server that stops talking mid-answer, or dribbles it, costs the caller
/// an error, not a thread blocked forever. A server that keeps answering
/// other calls but never answers one is not silent: that call waits for its
/// deadline.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The default [`ClientConfig::default_timeout`]: longer than any method
/// of this step takes (`sleep` stops at 10 s), short enough that a lost
/// answer costs seconds, not a thread forever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            max_pending: DEFAULT_MAX_PENDING,
            io_timeout: DEFAULT_IO_TIMEOUT,
            default_timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
            sleep: Arc::new(thread::sleep),
            uniform: Arc::new(random_uniform),
        }
    }
}

// ANCHOR: retry_policy
/// How many times, and how far apart, a call that failed for a passing
/// reason is tried.
///
/// The defaults are gRPC's example policy (4 attempts, pauses doubling, at
/// most 1 s) with a first pause of 50 ms, not 100: a LAN round trip takes
/// well under a millisecond, so all three retries then fit in 350 ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The most attempts a call gets, the first included; 1 never retries.
    pub max_attempts: u32,
    /// The longest pause before the first retry.
    pub initial_backoff: Duration,
    /// How much the longest pause grows with each retry after the first.
    pub multiplier: f64,
    /// The longest any pause can be, however many retries came before.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(50),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(1),
        }
    }
}
// ANCHOR_END: retry_policy

// ANCHOR: backoff
impl RetryPolicy {
    /// The pause before retry `n` (1 before the second attempt, 2 before
    /// the third, ...), given `uniform`, a random number in `[0, 1)`:
    ///
    /// ```text
    /// pause(n) = uniform * min(max_backoff, initial_backoff * multiplier^(n-1))
    /// ```
    ///
    /// Exponential, so that a server that stays down is asked less and less
    /// often; capped; and "full jitter", a draw from zero to the ceiling,
    /// so that clients that failed together (the server restarted) come
    /// back spread out, not together to knock it over again.
    pub fn backoff(&self, n: u32, uniform: f64) -> Duration {
        let growth = self.multiplier.powf(f64::from(n.saturating_sub(1)));
        let ceiling = (self.initial_backoff.as_nanos() as f64 * growth)
            .min(self.max_backoff.as_nanos() as f64);
        // `as` saturates: a product that is huge, negative or NaN becomes
        // a whole number of nanoseconds, never a panic.
        Duration::from_nanos((ceiling * uniform.clamp(0.0, 1.0)) as u64)
    }
}
// ANCHOR_END: backoff

/// A random number in `[0, 1)`, evenly spread: the default
/// [`ClientConfig::uniform`]. Jitter needs numbers that differ between
/// clients and calls, not secret ones: each `RandomState` is keyed apart
/// (from the OS's randomness), so hashing nothing with a fresh one gives 64
/// well-mixed bits, 53 of which fill an `f64`. `rand` would be a dependency.
pub fn random_uniform() -> f64 {
    let bits = RandomState::new().build_hasher().finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

// ANCHOR: call_options
/// How one call is to be made. `CallOptions::default()` is a call with the
/// client's default deadline that is not safe to run twice.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CallOptions {
    /// The call's deadline, from now: how long it may take, every attempt
    /// and pause included. `None` is [`ClientConfig::default_timeout`].
    pub timeout: Option<Duration>,
    /// Running the method twice does no more harm than once (it reads,
    /// computes, or sets rather than adds), so the call may be sent again.
    /// Sent to the server as `meta.idempotent`.
    pub idempotent: bool,
    /// Send the call again like an idempotent one although it is not: the
    /// caller accepts that it may run twice (it can spot duplicates).
    pub retry_non_idempotent: bool,
}
// ANCHOR_END: call_options

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
    /// Responses dropped because no call was waiting for their id: late
    /// answers to calls that gave up at their deadline, or a server's bug.
    unknown_responses: AtomicU64,
}

/// What [`PendingCalls`] keeps behind its lock.
struct Table {
    /// Each waiting call's channel, by request id. Used once, then dropped.
    waiting: HashMap<u64, Sender<Answer>>,
    /// Why the connection ended, once it has. No answer can come after
    /// that, so a new call does not wait on it: the client connects anew.
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

    /// Takes call `id` out unanswered: its request was never sent, or its
    /// caller stopped waiting at its deadline.
    fn remove(&self, id: u64) {
        self.lock().waiting.remove(&id);
    }

    /// True if no call is waiting for an answer.
    fn is_empty(&self) -> bool {
        self.lock().waiting.is_empty()
    }

    /// True once the connection has ended: no call can be sent on it.
    fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Hands `answer` to the call waiting for `id`. A response whose id no
    /// call is waiting for is dropped and counted: most often the answer to
    /// a call that reached its deadline and left, else a server bug (or
    /// `null` for a request the server could not read). Either way it must
    /// not cost any caller, let alone the whole connection.
    fn complete(&self, id: Option<u64>, answer: Answer) {
        // Take the channel out under the lock; send after letting go of it.
        let sender = id.and_then(|id| self.lock().waiting.remove(&id));
        // Sending fails only if the caller stopped waiting in the instant
        // between the two: just as late, so counted the same.
        if sender.is_none_or(|sender| sender.send(answer).is_err()) {
            self.unknown_responses.fetch_add(1, Ordering::Relaxed);
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

/// A connection to a server, replaced by a new one when it dies.
///
/// Clone it to share the connection: every clone, on any thread, can have
/// calls in flight on it at once.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

/// What every clone of a [`Client`] shares.
struct Shared {
    /// Where the server is, for reconnecting.
    addr: SocketAddr,
    /// How the client behaves.
    config: ClientConfig,
    /// The current connection. A dead one stays here, marked closed in its
    /// table, until the next attempt of any call replaces it.
    connection: Mutex<Arc<Connection>>,
}

impl Client {
    /// Connects to a server, with the default [`ClientConfig`].
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<Client> {
        Client::connect_with(addr, ClientConfig::default())
    }

    /// Connects to a server and starts the thread that reads its answers.
    /// Gives up after [`ClientConfig::default_timeout`], as a call would.
    pub fn connect_with(addr: impl ToSocketAddrs, config: ClientConfig) -> io::Result<Client> {
        let stream = connect_within(addr, config.default_timeout)?;
        let shared = Shared {
            // Reconnects go to the address that answered this time.
            addr: stream.peer_addr()?,
            connection: Mutex::new(Client::start_connection(stream, &config)?),
            config,
        };
        Ok(Client {
            shared: Arc::new(shared),
        })
    }

    /// Sets up a new connection on `stream`, and starts the thread that
    /// reads its answers.
    fn start_connection(stream: TcpStream, config: &ClientConfig) -> io::Result<Arc<Connection>> {
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
        let io_timeout = config.io_timeout;
        // `Builder`, not `thread::spawn`: no thread is an error, not a panic.
        thread::Builder::new().spawn(move || read_responses(reader, &table, io_timeout))?;
        Ok(Arc::new(Connection {
            writer: Mutex::new(stream),
            next_id: AtomicU64::new(1),
            pending,
        }))
    }

    /// The slot that holds the current connection, locked.
    fn slot(&self) -> MutexGuard<'_, Arc<Connection>> {
        lock(&self.shared.connection)
    }

    // ANCHOR: reconnect
    /// The connection to send on: the current one while it lives, else a
    /// new one in its place. So a connection that died costs the next
    /// attempt, of this call or any other, a reconnect, paced by the retry
    /// loop's backoff like any other retry.
    fn connection(&self, timeout: Duration) -> io::Result<Arc<Connection>> {
        let current = Arc::clone(&self.slot());
        if !current.pending.is_closed() {
            return Ok(current);
        }
        // Connect without holding the lock, so that no other caller waits
        // out our handshake, and with a timeout, so that a host that drops
        // it does not hold us for minutes past our deadline.
        let stream = connect_within(self.shared.addr, timeout)?;
        let fresh = Client::start_connection(stream, &self.shared.config)?;
        let mut slot = self.slot();
        // Another caller may have replaced the dead connection meanwhile:
        // then use theirs, and ours closes as it is dropped.
        if slot.pending.is_closed() {
            *slot = fresh;
        }
        Ok(Arc::clone(&slot))
    }
    // ANCHOR_END: reconnect

    /// Calls `method` with `params` and waits for its answer.
    ///
    /// The call has the client's default deadline, and is not marked
    /// idempotent: it is sent again only if it never left the client.
    /// [`Client::call_with`] says otherwise.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, CallError> {
        self.call_with(method, params, &CallOptions::default())
    }

    // ANCHOR: retry_loop
    /// Calls `method` with `params` as `options` say, trying again when
    /// that may help and can do no harm.
    ///
    /// One deadline covers the whole call: every attempt, pause and
    /// reconnect. Each attempt tells the server the time left; none left
    /// is [`CallError::Timeout`]. A failure is tried again, up to
    /// [`RetryPolicy::max_attempts`] attempts, only if it may pass
    /// ([`CallError::is_transient`]), and only if that cannot run the
    /// method twice: the call is idempotent (or opted in with
    /// [`CallOptions::retry_non_idempotent`]), or no byte of it can have
    /// reached the server. Once a write has begun, the client cannot know
    /// whether the method ran and only its answer was lost.
    pub fn call_with(
        &self,
        method: &str,
        params: Value,
        options: &CallOptions,
    ) -> Result<Value, CallError> {
        let config = &self.shared.config;
        let start = Instant::now();
        let timeout = options.timeout.unwrap_or(config.default_timeout);
        // A timeout too long to add to the clock (`Duration::MAX`) is as
        // good as none: a year.
        let year = Duration::from_secs(365 * 24 * 60 * 60);
        let deadline = start.checked_add(timeout).unwrap_or(start + year);
        let may_resend = options.idempotent || options.retry_non_idempotent;
        let mut attempts = 1;
        loop {
            let (error, sent) = match self.attempt(method, &params, options.idempotent, deadline) {
                Ok(result) => return Ok(result),
                Err(failure) => failure,
            };
            // ANCHOR: at_most_once
            let retry = error.is_transient() && (sent == Sent::No || may_resend);
            // ANCHOR_END: at_most_once
            if !retry || attempts >= config.retry.max_attempts {
                return Err(error);
            }
            let pause = config.retry.backoff(attempts, (config.uniform)());
            // A pause past the deadline is cut short at it, and the next
            // attempt ends the call with `Timeout` without sending anything.
            (config.sleep)(pause.min(time_left(deadline)));
            attempts += 1;
        }
    }
    // ANCHOR_END: retry_loop

    // ANCHOR: attempt
    /// One attempt at a call: a live connection, the request sent with the
    /// time left until `deadline`, and a wait for its answer until then.
    /// A failure says whether the request may have reached the server.
    fn attempt(
        &self,
        method: &str,
        params: &Value,
        idempotent: bool,
        deadline: Instant,
    ) -> Result<Value, (CallError, Sent)> {
        let unsent = |error: CallError| (error, Sent::No);
        let remaining = time_left(deadline);
        if remaining.is_zero() {
            return Err(unsent(CallError::Timeout));
        }
        let connection = self.connection(remaining).map_err(|e| unsent(e.into()))?;
        let id = connection.next_id.fetch_add(1, Ordering::Relaxed);
        let request = Request {
            id,
            method: method.to_string(),
            params: params.clone(),
            meta: Meta {
                // Rounded up, or half a millisecond left would read as none.
                // (At most a year: see `call_with`.)
                timeout_ms: Some(remaining.as_micros().div_ceil(1000) as u64),
                idempotent,
            },
        };
        let body = serde_json::to_vec(&request).map_err(|e| unsent(io::Error::other(e).into()))?;
        // In the table before the request leaves: the answer can arrive
        // before `write_frame` even returns. A failure here (the connection
        // died since we looked, or too many calls wait) sent nothing.
        let answer = connection.pending.insert(id).map_err(unsent)?;
        // A write can block until the I/O timeout, past the deadline, if the
        // server stops reading: a known gap, which step 5's async client
        // closes by racing the write against the deadline.
        if let Err(e) = connection.send(&body) {
            // No answer will come for a request that did not go out whole.
            connection.pending.remove(id);
            // Too large is refused before the first byte; anything else
            // may have come after some bytes, or all of them, had left.
            let sent = match e.kind() {
                io::ErrorKind::InvalidInput => Sent::No,
                _ => Sent::Maybe,
            };
            return Err((e.into(), sent));
        }
        // From here on the server may have the request, whatever happens.
        let sent = |error: CallError| (error, Sent::Maybe);
        // Sleep until the reader thread hands over this id's answer, or
        // fails every call because the connection ended, or the deadline.
        match answer.recv_timeout(time_left(deadline)) {
            Ok(answer) => answer.map_err(sent),
            Err(RecvTimeoutError::Timeout) => {
                // Out of the table, so that an answer that comes after all
                // finds nobody waiting, and is dropped and counted.
                connection.pending.remove(id);
                Err(sent(CallError::Timeout))
            }
            // The reader never drops a channel without sending on it, so
            // this happens only if that thread itself died.
            Err(RecvTimeoutError::Disconnected) => {
                Err(sent(io::Error::other("the reader thread died").into()))
            }
        }
    }
    // ANCHOR_END: attempt

    /// How many responses arrived on the current connection with an id no
    /// call was waiting for, and were dropped: late answers to calls that
    /// reached their deadline, or a broken server's. A new connection
    /// counts from 0.
    pub fn unknown_responses(&self) -> u64 {
        let pending = &Arc::clone(&self.slot()).pending;
        pending.unknown_responses.load(Ordering::Relaxed)
    }
}

/// The reader thread: reads every response on the connection and hands
/// each to the call waiting for its id, until the connection ends; then
/// fails every call still waiting, and every later one, with why.
fn read_responses(mut reader: BufReader<TcpStream>, pending: &PendingCalls, io_timeout: Duration) {
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
        // cut frame, a frame that takes too long or bad JSON is an error for
        // the caller, never a panic.
        let body = match read_frame(&mut FrameDeadline::start(&mut reader, io_timeout)) {
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

// ANCHOR: frame_deadline
/// The reader of one response frame, which must arrive whole within the
/// I/O timeout of its first byte. The socket's read timeout alone restarts
/// with every byte: a server that sends one byte a second would hold the
/// connection, and every call waiting behind that frame, forever.
struct FrameDeadline<'a> {
    /// The connection's read half, on which the frame has begun.
    reader: &'a mut BufReader<TcpStream>,
    /// When its first byte arrived.
    start: Instant,
    /// How long the whole frame may take; also the read timeout between
    /// frames, put back once this one is read.
    io_timeout: Duration,
    /// Whether the read timeout was changed for this frame. Most frames
    /// arrive with their first byte, and cost no system call for this.
    changed: bool,
}

impl FrameDeadline<'_> {
    /// A frame begun on `reader` just now, with `io_timeout` to arrive.
    fn start(reader: &mut BufReader<TcpStream>, io_timeout: Duration) -> FrameDeadline<'_> {
        FrameDeadline {
            reader,
            start: Instant::now(),
            io_timeout,
            changed: false,
        }
    }
}

impl io::Read for FrameDeadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Bytes already buffered cost no wait.
        if !self.reader.buffer().is_empty() {
            return io::Read::read(self.reader, buf);
        }
        // A read from the socket waits at most for what is left of the time.
        let late = || {
            let message = "the server took longer than the I/O timeout to send a response";
            io::Error::new(io::ErrorKind::TimedOut, message)
        };
        let left = self.io_timeout.saturating_sub(self.start.elapsed());
        if left.is_zero() {
            return Err(late());
        }
        self.reader.get_ref().set_read_timeout(Some(left))?;
        self.changed = true;
        let read = io::Read::read(self.reader, buf);
        read.map_err(|e| if is_timeout(&e) { late() } else { e })
    }
}

impl Drop for FrameDeadline<'_> {
    fn drop(&mut self) {
        if !self.changed {
            return;
        }
        // Between frames, the I/O timeout again. Should this fail, the next
        // read may at worst time out early, and the connection be replaced.
        let _ = self
            .reader
            .get_ref()
            .set_read_timeout(Some(self.io_timeout));
    }
}
// ANCHOR_END: frame_deadline

/// Connects to the first of `addr`'s addresses that accepts, as
/// `TcpStream::connect` does, but gives up once `timeout` has passed.
/// `TcpStream::connect` waits as long as the OS retries the handshake (over
/// two minutes on Linux) when a host drops it, or a server's accept queue
/// is full. (Looking the name up is not bounded: `std` has no way to.)
fn connect_within(addr: impl ToSocketAddrs, timeout: Duration) -> io::Result<TcpStream> {
    let start = Instant::now();
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
    for addr in addr.to_socket_addrs()? {
        // One timeout for all the addresses together.
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Whether a failed attempt's request may have reached the server, which
/// decides whether a call that is not idempotent may be sent again.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sent {
    /// Provably not: nothing was written.
    No,
    /// Perhaps: a write began, so the method may have run.
    Maybe,
}

/// How long until `deadline`; zero once it has passed.
fn time_left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_a_jittered_exponential_with_a_cap() {
        // The defaults: ceilings of 50, 100, 200, 400, 800 ms, then 1 s.
        let policy = RetryPolicy::default();
        let pauses = |uniform| (1..=7).map(move |n| policy.backoff(n, uniform).as_millis());
        assert!(pauses(0.5).eq([25, 50, 100, 200, 400, 500, 500]));
        assert!(pauses(0.0).eq([0; 7]));
        // However many retries came before, the cap holds; a draw outside
        // [0, 1) is clamped into it.
        assert_eq!(policy.backoff(1000, 0.5), Duration::from_millis(500));
        assert_eq!(policy.backoff(1, 7.0), Duration::from_millis(50));
        assert_eq!(policy.backoff(1, f64::NAN), Duration::ZERO);
    }

    #[test]
    fn random_uniform_stays_in_its_range_and_varies() {
        let draws: Vec<f64> = (0..1000).map(|_| random_uniform()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        // Not a test of quality: only that the draws differ, and spread.
        assert!(draws.iter().any(|&x| x < 0.25) && draws.iter().any(|&x| x > 0.75));
    }
}
