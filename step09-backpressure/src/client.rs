//! The client: one connection, many calls in flight on it at once.
//!
//! A `Client` is a handle that any number of tasks can clone and call
//! through at the same time. Each call takes the next id, adds itself to
//! the table of pending calls, queues its request for the connection's
//! writer task and waits. One reader task per connection reads every
//! response and wakes the call with that response's id, in whatever order
//! the server answers.
//!
//! Every call has a deadline, and within it a call that failed for a
//! passing reason is tried again after a pause, on a new connection if the
//! old one died: [`Client::call_with`] says when. A server that goes
//! silent while calls wait is pinged, and given up if it stays silent (see
//! [`crate::heartbeat`]). A call is a future, and a caller may drop it at
//! any `.await` (a `tokio::time::timeout` around it, a `select!` that took
//! another branch): it leaves nothing behind.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{Semaphore, SemaphorePermit, mpsc, oneshot};
use tokio::time::{self, Instant};
use tokio_util::codec::FramedRead;
use tokio_util::task::AbortOnDropHandle;
use tracing::debug;

use crate::frame::{FrameCodec, MAX_FRAME_LEN, write_frames};
use crate::heartbeat::{Beat, Heartbeat};
use crate::lock;
use crate::protocol::{Meta, Ping, Pong, Request, Response, RpcError};

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
    /// The connection failed: refused, reset, closed, or silent through a
    /// ping and its timeout before the answer came; or the request was too
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

impl CallError {
    /// True if the same request, sent again, may succeed: the connection
    /// failed (unless the request was too large, as it would be again), or
    /// the server answered with a code that says so
    /// ([`ErrorCode::is_retryable`](crate::protocol::ErrorCode::is_retryable):
    /// only `SERVER_BUSY`).
    pub fn is_transient(&self) -> bool {
        match self {
            CallError::Io(e) => e.kind() != io::ErrorKind::InvalidInput,
            CallError::Server(error) => error.code.is_retryable(),
            CallError::BadResponse(_) | CallError::TooManyPending | CallError::Timeout => false,
        }
    }

    /// How long a busy server that shed the call asked to be left alone.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::Server(error) => error.retry_after(),
            _ => None,
        }
    }
}

/// How a client behaves. [`Client::connect`] uses `ClientConfig::default()`.
#[derive(Clone)]
pub struct ClientConfig {
    /// The most calls that may wait for an answer at once on one
    /// connection; one more fails at once with [`CallError::TooManyPending`],
    /// so that a runaway caller cannot pile up table entries and server work
    /// without limit. Default: [`DEFAULT_MAX_PENDING`].
    pub max_pending: usize,
    /// How long the server may take to accept a request (our write waits
    /// while it reads nothing), before the connection is given up and every
    /// waiting call fails with `Io`. Default: [`DEFAULT_IO_TIMEOUT`].
    pub io_timeout: Duration,
    /// How long a connection with calls waiting may go without a whole
    /// frame from the server before the client pings it. Default:
    /// [`DEFAULT_PING_INTERVAL`].
    pub ping_interval: Duration,
    /// How long after a ping the client waits for anything from the server
    /// (the pong, an answer) before it gives the connection up, and fails
    /// every call waiting on it with `Io`. So a server that stops answering
    /// is found out within `ping_interval + ping_timeout`. Default:
    /// [`DEFAULT_PING_TIMEOUT`].
    pub ping_timeout: Duration,
    /// How long a call may take, every attempt and pause included, when
    /// its [`CallOptions`] do not say; also how long [`Client::connect`]
    /// may take. Default: [`DEFAULT_TIMEOUT`].
    pub default_timeout: Duration,
    /// How many times, and how far apart, a failed call is tried.
    pub retry: RetryPolicy,
    /// How the retry loop pauses: `tokio::time::sleep`, unless a test
    /// records the pauses instead of waiting them out.
    pub sleep: Arc<dyn Fn(Duration) -> Pause + Send + Sync>,
    /// The retry loop's source of numbers in `[0, 1)` for jitter:
    /// [`random_uniform`], unless a test fixes it.
    pub uniform: Arc<dyn Fn() -> f64 + Send + Sync>,
    /// The token to send in `meta.token` of every request, for a server
    /// that requires one. Default: `None`, none sent.
    pub token: Option<String>,
    /// Whether a call made while `max_pending` calls wait waits for one of
    /// them to finish (until its deadline) instead of failing at once with
    /// [`CallError::TooManyPending`]. Default: `false`.
    pub wait_for_room: bool,
}

/// A pause of the retry loop, as [`ClientConfig::sleep`] makes it.
pub type Pause = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The default [`ClientConfig::max_pending`]: far more than the demo or the
/// benchmarks keep in flight, far less than would strain either side; and
/// fewer than the 1,024 calls a default server runs at once per
/// connection, so that the per-connection limit sheds none of this
/// one's (unless calls this client gave up on still run there).
pub const DEFAULT_MAX_PENDING: usize = 1000;

/// The default [`ClientConfig::io_timeout`].
///
/// Not the call's deadline ([`DEFAULT_TIMEOUT`]): a safety net, so that a
/// server that stops reading costs the caller an error, not a connection
/// stuck forever.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The default [`ClientConfig::ping_interval`]. With the ping timeout, a
/// server gone silent is found out in 10 s: within the default deadline of
/// 15 s, so that an idempotent call has time to be sent again elsewhere.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(5);

/// The default [`ClientConfig::ping_timeout`]: a pong takes one round trip,
/// under a millisecond on a LAN; 5 s allows for a busy server and network.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(5);

/// The default [`ClientConfig::default_timeout`]: longer than any method
/// of this step takes (`sleep` stops at 10 s), short enough that a lost
/// answer costs seconds, not a caller forever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            max_pending: DEFAULT_MAX_PENDING,
            io_timeout: DEFAULT_IO_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            default_timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
            sleep: Arc::new(|pause| Box::pin(time::sleep(pause))),
            uniform: Arc::new(random_uniform),
            token: None,
            wait_for_room: false,
        }
    }
}

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

/// A random number in `[0, 1)`, evenly spread: the default
/// [`ClientConfig::uniform`]. Jitter needs numbers that differ between
/// clients and calls, not secret ones: each `RandomState` is keyed apart
/// (from the OS's randomness), so hashing nothing with a fresh one gives 64
/// well-mixed bits, 53 of which fill an `f64`. `rand` would be a dependency.
pub fn random_uniform() -> f64 {
    let bits = RandomState::new().build_hasher().finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

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

/// What a call returns, on its way from the reader task to the caller.
type Answer = Result<Value, CallError>;

/// The calls on one connection that are waiting for their answer, by id.
///
/// A call adds itself before it queues its request; the reader task takes
/// it out when the answer with its id arrives, and sends the answer down
/// the call's own `oneshot` channel, which only that caller waits on.
struct PendingCalls {
    /// The table itself, behind one lock shared by callers and the reader.
    /// A plain `std` mutex: it is held for a map operation, never across an
    /// `.await`, which is what tokio's own docs advise for such a lock.
    table: Mutex<Table>,
    /// The bound on `table.waiting`: [`ClientConfig::max_pending`].
    max_pending: usize,
    /// Responses dropped because no call was waiting for their id: late
    /// answers to calls that gave up at their deadline, or a server's bug.
    unknown_responses: AtomicU64,
    /// Pings sent by the reader task, which numbers them from 1.
    pings_sent: AtomicU64,
}

/// What [`PendingCalls`] keeps behind its lock.
struct Table {
    /// Each waiting call's channel, by request id. Used once, then dropped.
    waiting: HashMap<u64, oneshot::Sender<Answer>>,
    /// Why the connection ended, once it has. No answer can come after
    /// that, so a new call does not wait on it: the client connects anew.
    closed: Option<CallError>,
    /// The server said it is going away ([`Response::going_away`]): it
    /// runs no new request here, so a new call connects anew, while the
    /// calls already sent wait for their answers.
    going_away: bool,
}

impl PendingCalls {
    fn new(max_pending: usize) -> PendingCalls {
        PendingCalls {
            table: Mutex::new(Table {
                waiting: HashMap::new(),
                closed: None,
                going_away: false,
            }),
            max_pending,
            unknown_responses: AtomicU64::new(0),
            pings_sent: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        lock(&self.table)
    }

    /// Adds call `id`. Its answer will arrive on the returned call's
    /// channel; dropping the returned call takes it out of the table again.
    fn insert(&self, id: u64) -> Result<PendingCall<'_>, CallError> {
        let mut table = self.lock();
        if let Some(why) = &table.closed {
            let message = format!("the connection is closed: {why}");
            return Err(io::Error::new(io::ErrorKind::NotConnected, message).into());
        }
        if table.going_away {
            let message = "the server is going away: this connection takes no new call";
            return Err(io::Error::new(io::ErrorKind::NotConnected, message).into());
        }
        if table.waiting.len() >= self.max_pending {
            return Err(CallError::TooManyPending);
        }
        let (sender, answer) = oneshot::channel();
        table.waiting.insert(id, sender);
        Ok(PendingCall {
            pending: self,
            id,
            answer,
        })
    }

    /// How many calls wait for an answer.
    fn len(&self) -> usize {
        self.lock().waiting.len()
    }

    /// True while a new call may be sent on the connection: it has not
    /// ended, and the server has not said it is going away.
    fn takes_new_calls(&self) -> bool {
        let table = self.lock();
        table.closed.is_none() && !table.going_away
    }

    /// The server is going away: no new call is sent on this connection.
    fn going_away(&self) {
        self.lock().going_away = true;
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

/// One call's entry in [`PendingCalls`], and the channel its answer comes
/// on. Dropping it takes the entry out, if the reader has not already.
///
/// This is what makes a call safe to cancel. A caller may drop the call's
/// future at any `.await`: at its deadline, or because it lost a `select!`.
/// Code after that `.await` never runs, so a cleanup written there would
/// be skipped, and the entry would stay in the table for good. A `Drop`
/// runs however the future ends.
struct PendingCall<'a> {
    pending: &'a PendingCalls,
    id: u64,
    answer: oneshot::Receiver<Answer>,
}

impl Drop for PendingCall<'_> {
    fn drop(&mut self) {
        self.pending.lock().waiting.remove(&self.id);
    }
}

/// One connection, shared by every clone of a [`Client`].
struct Connection {
    /// The queue of request frames to the writer task, which alone owns the
    /// socket's write half (see `write_frames`). Bounded by `max_pending`,
    /// as the calls that fill it are.
    requests: mpsc::Sender<Vec<u8>>,
    /// The next request id: a counter from 1 (see [`Request::id`]).
    next_id: AtomicU64,
    /// The calls waiting for an answer, shared with the reader task.
    pending: Arc<PendingCalls>,
    /// The reader and writer tasks, aborted when the last `Client` lets go
    /// of this connection: that drops both halves, and closes the socket.
    _tasks: [AbortOnDropHandle<()>; 2],
}

/// A connection to a server, replaced by a new one when it dies.
///
/// Clone it to share the connection: every clone, in any task, can have
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
    /// A place per call that may wait at once, taken by every call when
    /// `config.wait_for_room` says so.
    room: Semaphore,
    /// The retries this client may still make.
    retries: RetryBudget,
}

// ANCHOR: retry_budget
/// Retries across all of a client's calls, as a token bucket: each call
/// puts in a fifth of a retry, each retry takes out a whole one, and at
/// most ten are saved up. So retries add at most a fifth to what the
/// client sends, past a burst of ten: when a server is overloaded, every
/// caller trying each call four times would send it four times the load
/// that overloaded it. A retry the budget cannot pay for is not made, and
/// the caller gets the error.
#[derive(Debug)]
struct RetryBudget {
    /// Tenths of a retry.
    tenths: AtomicU64,
}

impl RetryBudget {
    const DEPOSIT: u64 = 2;
    const WITHDRAWAL: u64 = 10;
    const MOST: u64 = 100;

    fn new() -> RetryBudget {
        RetryBudget {
            tenths: AtomicU64::new(Self::MOST),
        }
    }

    fn deposit(&self) {
        let add = |tenths: u64| Some((tenths + Self::DEPOSIT).min(Self::MOST));
        let _ = (self.tenths).fetch_update(Ordering::Relaxed, Ordering::Relaxed, add);
    }

    /// Takes out one retry, if there is one to take.
    fn withdraw(&self) -> bool {
        let take = |tenths: u64| tenths.checked_sub(Self::WITHDRAWAL);
        (self.tenths)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, take)
            .is_ok()
    }
}
// ANCHOR_END: retry_budget

impl Client {
    /// Connects to a server, with the default [`ClientConfig`].
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<Client> {
        Client::connect_with(addr, ClientConfig::default()).await
    }

    /// Connects to a server and starts the tasks that write its requests
    /// and read its answers. Gives up after
    /// [`ClientConfig::default_timeout`], as a call would.
    pub async fn connect_with(
        addr: impl ToSocketAddrs,
        config: ClientConfig,
    ) -> io::Result<Client> {
        let stream = connect_within(addr, config.default_timeout).await?;
        let shared = Shared {
            // Reconnects go to the address that answered this time.
            addr: stream.peer_addr()?,
            connection: Mutex::new(Client::start_connection(stream, &config)?),
            room: Semaphore::new(config.max_pending.min(Semaphore::MAX_PERMITS)),
            retries: RetryBudget::new(),
            config,
        };
        Ok(Client {
            shared: Arc::new(shared),
        })
    }

    /// Sets up a new connection on `stream`: a writer task that owns its
    /// write half, and a reader task that owns its read half.
    fn start_connection(stream: TcpStream, config: &ClientConfig) -> io::Result<Arc<Connection>> {
        // Each request is one small frame followed by a wait for the answer:
        // send it now instead of letting Nagle's algorithm hold it.
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        let pending = Arc::new(PendingCalls::new(config.max_pending));
        let (requests, queue) = mpsc::channel(config.max_pending);
        // A write that fails, or stalls for the I/O timeout (the server
        // stopped reading), breaks the connection for every call on it.
        let (table, io_timeout) = (Arc::clone(&pending), config.io_timeout);
        let writer = tokio::spawn(async move {
            if let Err(e) = write_frames(writer, queue, io_timeout).await {
                table.fail_all(CallError::Io(e));
            }
        });
        // The reader task gets the read half and the table, not the
        // `Connection`, so that dropping the last `Client` can end it. It
        // sends its pings through the writer, as calls send requests.
        let (table, pings) = (Arc::clone(&pending), requests.clone());
        let frames = FramedRead::new(reader, FrameCodec);
        let heartbeat = Heartbeat::new(config.ping_interval, config.ping_timeout);
        let stop_writer = writer.abort_handle();
        let reader = tokio::spawn(async move {
            read_responses(frames, &table, &pings, heartbeat).await;
            // Tell the server too, if it is still there: with the writer
            // gone as well, both halves are dropped, and the socket closes.
            stop_writer.abort();
        });
        Ok(Arc::new(Connection {
            requests,
            next_id: AtomicU64::new(1),
            pending,
            _tasks: [
                AbortOnDropHandle::new(reader),
                AbortOnDropHandle::new(writer),
            ],
        }))
    }

    /// The slot that holds the current connection, locked.
    fn slot(&self) -> MutexGuard<'_, Arc<Connection>> {
        lock(&self.shared.connection)
    }

    /// The connection to send on: the current one while it lives and its
    /// server has not said it is going away, else a new one in its place.
    /// So a connection that died costs the next attempt, of this call or
    /// any other, a reconnect, paced by the retry loop's backoff like any
    /// other retry. A connection going away costs none: the old one drains
    /// beside the new, its calls holding it until they have their answers.
    async fn connection(&self, timeout: Duration) -> io::Result<Arc<Connection>> {
        let current = Arc::clone(&self.slot());
        if current.pending.takes_new_calls() {
            return Ok(current);
        }
        // Connect without holding the lock (a `std` lock must never be held
        // across an `.await`), and with a timeout, so that a host that drops
        // the handshake does not hold us for minutes past our deadline.
        debug!(addr = %self.shared.addr, "connecting");
        let stream = connect_within(self.shared.addr, timeout).await?;
        let fresh = Client::start_connection(stream, &self.shared.config)?;
        let mut slot = self.slot();
        // Another caller may have replaced the dead connection meanwhile:
        // then use theirs, and ours closes as it is dropped.
        if !slot.pending.takes_new_calls() {
            *slot = fresh;
        }
        Ok(Arc::clone(&slot))
    }

    /// Calls `method` with `params` and waits for its answer.
    ///
    /// The call has the client's default deadline, and is not marked
    /// idempotent: it is sent again only if it never left the client.
    /// [`Client::call_with`] says otherwise.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, CallError> {
        self.call_with(method, params, &CallOptions::default())
            .await
    }

    /// Calls `method` with `params` as `options` say, trying again when
    /// that may help and can do no harm.
    ///
    /// One deadline covers the whole call: every attempt, pause and
    /// reconnect. Each attempt tells the server the time left; none left
    /// is [`CallError::Timeout`]. A failure is tried again, up to
    /// [`RetryPolicy::max_attempts`] attempts, only if it may pass
    /// ([`CallError::is_transient`]), and only if that cannot run the
    /// method twice: the call is idempotent (or opted in with
    /// [`CallOptions::retry_non_idempotent`]), or its request never reached
    /// the writer, or the server said it did not run it (shed, or refused
    /// while draining). Otherwise, once queued, it may have gone out, and the
    /// client cannot know whether the method ran and only its answer was
    /// lost.
    pub async fn call_with(
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
        // A place among the calls that may wait, if told to wait for one.
        let _place = match config.wait_for_room {
            true => Some(self.room(deadline).await?),
            false => None,
        };
        self.shared.retries.deposit();
        let mut attempts = 1;
        loop {
            let attempt = self.attempt(method, &params, options.idempotent, deadline);
            let (error, sent) = match attempt.await {
                Ok(result) => return Ok(result),
                Err(failure) => failure,
            };
            let retry = error.is_transient() && (sent == Sent::No || may_resend);
            if !retry || attempts >= config.retry.max_attempts || !self.shared.retries.withdraw() {
                return Err(error);
            }
            // A busy server says how long to stay away: at least that, and
            // the backoff's jitter on top, so that the callers it shed at
            // once do not all come back at once.
            let hint = error.retry_after().unwrap_or_default();
            let pause = hint + config.retry.backoff(attempts, (config.uniform)());
            debug!(method, attempts, ?pause, "retrying after: {error}");
            // A pause past the deadline is cut short at it, and the next
            // attempt ends the call with `Timeout` without sending anything.
            (config.sleep)(pause.min(time_left(deadline))).await;
            attempts += 1;
        }
    }

    /// A place among the `max_pending` calls that may wait, waited for
    /// until `deadline`.
    async fn room(&self, deadline: Instant) -> Result<SemaphorePermit<'_>, CallError> {
        match time::timeout_at(deadline, self.shared.room.acquire()).await {
            Ok(place) => Ok(place.expect("the semaphore is never closed")),
            Err(_elapsed) => Err(CallError::Timeout),
        }
    }

    /// One attempt at a call: a live connection, the request queued with
    /// the time left until `deadline`, and a wait for its answer until then.
    /// A failure says whether the request may have reached the server.
    async fn attempt(
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
        let connection = self.connection(remaining).await;
        let connection = connection.map_err(|e| unsent(e.into()))?;
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
                token: self.shared.config.token.clone(),
            },
        };
        let body = serde_json::to_vec(&request).map_err(|e| unsent(io::Error::other(e).into()))?;
        // Too large to frame: refused here, before it is queued, so the
        // connection stays usable for every other call.
        if body.len() > MAX_FRAME_LEN as usize {
            let message = format!("request of {} bytes exceeds the frame limit", body.len());
            let e = io::Error::new(io::ErrorKind::InvalidInput, message);
            return Err(unsent(e.into()));
        }
        // In the table before the request is queued: the answer can arrive
        // before `send` even returns. A failure here (the connection died
        // since we looked, or too many calls wait) sent nothing.
        let mut call = connection.pending.insert(id).map_err(unsent)?;
        // Queue the request for the writer task. It waits only while the
        // queue is full, and the deadline bounds that too.
        match time::timeout_at(deadline, connection.requests.send(body)).await {
            Ok(Ok(())) => {}
            // The writer has gone, and with it the connection: the request
            // was handed back unsent.
            Ok(Err(_)) => {
                let e = io::Error::new(io::ErrorKind::NotConnected, "the connection closed");
                return Err(unsent(e.into()));
            }
            Err(_elapsed) => return Err(unsent(CallError::Timeout)),
        }
        // From here on the server may have the request, whatever happens.
        let sent = |error: CallError| (error, Sent::Maybe);
        // Wait until the reader task hands over this id's answer, or fails
        // every call because the connection ended, or the deadline. At the
        // deadline `call` is dropped, which takes it out of the table, so
        // an answer that comes after all finds nobody waiting, and is
        // dropped and counted.
        match time::timeout_at(deadline, &mut call.answer).await {
            // A server going away refused it, or a busy one shed it: it
            // did not run.
            Ok(Ok(Err(CallError::Server(error))))
                if error.is_going_away() || error.retry_after().is_some() =>
            {
                Err(unsent(CallError::Server(error)))
            }
            Ok(Ok(answer)) => answer.map_err(sent),
            Ok(Err(_)) => Err(sent(io::Error::other("the reader task ended").into())),
            Err(_elapsed) => Err(sent(CallError::Timeout)),
        }
    }

    /// How many responses arrived on the current connection with an id no
    /// call was waiting for, and were dropped: late answers to calls that
    /// reached their deadline, or a broken server's. A new connection
    /// counts from 0.
    pub fn unknown_responses(&self) -> u64 {
        let pending = &Arc::clone(&self.slot()).pending;
        pending.unknown_responses.load(Ordering::Relaxed)
    }

    /// How many calls wait for an answer on the current connection. A call
    /// whose future was dropped is not one of them.
    pub fn pending_calls(&self) -> usize {
        Arc::clone(&self.slot()).pending.len()
    }

    /// How many pings the client has sent on the current connection: none
    /// while answers keep coming. A new connection counts from 0.
    pub fn pings_sent(&self) -> u64 {
        let pending = &Arc::clone(&self.slot()).pending;
        pending.pings_sent.load(Ordering::Relaxed)
    }

    /// True if the server of the current connection has said it is going
    /// away: the next call connects anew, and this one drains.
    pub fn is_going_away(&self) -> bool {
        let pending = &Arc::clone(&self.slot()).pending;
        pending.lock().going_away
    }
}

/// The reader task: reads every response on the connection and hands each
/// to the call waiting for its id, until the connection ends; then fails
/// every call still waiting, and every later one, with why. Meanwhile, it
/// keeps the `heartbeat`, and sends its pings to `pings`, the writer's
/// queue.
async fn read_responses(
    mut frames: FramedRead<OwnedReadHalf, FrameCodec>,
    pending: &PendingCalls,
    pings: &mpsc::Sender<Vec<u8>>,
    mut heartbeat: Heartbeat,
) {
    let why = loop {
        // A frame half read stays in `frames` while the timer fires:
        // nothing is lost by waiting again.
        let frame = tokio::select! {
            // Frames first: after a pause of the client's own (a starved
            // runtime, a suspended laptop), a pong that is waiting must be
            // heard before the heartbeat decides that none came.
            biased;
            frame = frames.next() => frame,
            beat = heartbeat.next(|| pending.len() > 0) => match beat {
                Beat::Ping => {
                    let ping = Ping { ping: pending.pings_sent.load(Ordering::Relaxed) + 1 };
                    let ping = serde_json::to_vec(&ping).expect("a Ping is valid JSON");
                    // A full queue has the writer waiting on a server that
                    // reads nothing: no ping goes, and the timeout runs.
                    if pings.try_send(ping).is_ok() {
                        pending.pings_sent.fetch_add(1, Ordering::Relaxed);
                        debug!("the server is silent: ping sent");
                    }
                    continue;
                }
                Beat::Gone => {
                    let message = "the server stopped answering: nothing came in the ping timeout";
                    break CallError::Io(io::Error::new(io::ErrorKind::TimedOut, message));
                }
            },
        };
        // The server may be broken or hostile too: a closed connection, a
        // cut frame or bad JSON is an error for the caller, never a panic.
        let body = match frame {
            Some(Ok(body)) => body,
            // After the notice, the end is the drain's: the calls still
            // waiting were cancelled at its drain timeout, or their
            // requests never read.
            None if pending.lock().going_away => {
                break shut_down_before_answering(String::new());
            }
            Some(Err(e)) if pending.lock().going_away => {
                break shut_down_before_answering(format!(" ({e})"));
            }
            None => {
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection before answering",
                );
                break CallError::Io(e);
            }
            // A length over the limit: the server broke the protocol.
            Some(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
                break CallError::BadResponse(e.to_string());
            }
            Some(Err(e)) => break CallError::Io(e),
        };
        heartbeat.heard();
        match serde_json::from_slice::<Response>(&body) {
            Ok(response) if response.is_going_away() => {
                debug!("the server is going away: new calls go to a new connection");
                pending.going_away();
            }
            Ok(response) => pending.complete(response.id, answer(response)),
            // A pong: news that the server is there, taken above.
            Err(_) if serde_json::from_slice::<Pong>(&body).is_ok() => {}
            // A response that does not parse has no id we can trust: its
            // caller would wait forever, and such a server cannot be trusted
            // with the rest either. Give up on the connection.
            Err(e) => break CallError::BadResponse(e.to_string()),
        }
    };
    pending.fail_all(why);
}

/// Why the calls still waiting on a connection whose server said it was
/// going away failed when the connection ended: `ConnectionAborted`, with
/// `detail` (what ended it, if not a clean end) after the message.
fn shut_down_before_answering(detail: String) -> CallError {
    let message = format!("the server shut down before answering{detail}");
    CallError::Io(io::Error::new(io::ErrorKind::ConnectionAborted, message))
}

/// Connects to the first of `addr`'s addresses that accepts, as
/// `TcpStream::connect` does, but gives up once `timeout` has passed.
/// `TcpStream::connect` waits as long as the OS retries the handshake (over
/// two minutes on Linux) when a host drops it, or a server's accept queue
/// is full. The name lookup is inside the timeout too.
async fn connect_within(addr: impl ToSocketAddrs, timeout: Duration) -> io::Result<TcpStream> {
    time::timeout(timeout, TcpStream::connect(addr))
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))
}

/// Whether a failed attempt's request may have reached the server, which
/// decides whether a call that is not idempotent may be sent again.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sent {
    /// Provably not: it was never queued for the writer, or a server going
    /// away refused it without running it.
    No,
    /// Perhaps: it was queued, so it may have been written, and run.
    Maybe,
}

/// How long until `deadline`; zero once it has passed.
fn time_left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
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
