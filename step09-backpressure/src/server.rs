//! The server: accept connections, and on each one read requests and run
//! each as a task of its own, which queues the response, tagged with the
//! request's id, as soon as it is ready: a slow call does not hold up the
//! fast ones behind it.
//! A request whose caller's deadline has passed is not started, and one
//! still running at the deadline is stopped there and answered with an
//! error. Whatever goes wrong with a request, even a method that panics,
//! its caller gets an answer with a code that says what.
//!
//! Everything runs on tokio: a connection is a task, not a thread, and so
//! is each request. A task costs a few hundred bytes and no system call,
//! where a thread cost a stack and a trip through the kernel: ten thousand
//! idle connections, or ten thousand calls in flight on one, are cheap.
//!
//! The server runs until told to stop, and then drains: see
//! [`crate::shutdown`]. A connection whose peer sends nothing for the idle
//! timeout drains the same way, alone: see [`crate::heartbeat`].

use std::future::Future;
use std::io;
use std::mem;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, SemaphorePermit, mpsc};
use tokio::task::JoinSet;
use tokio::time::{self, Instant};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use tracing::{Instrument, debug, error, error_span, info, warn};

use crate::frame::{FrameCodec, MAX_FRAME_LEN, write_frames};
pub use crate::limits::Limits;
use crate::limits::{Budget, Charge, Outgoing, RETRY_AFTER};
use crate::lock;
use crate::methods::Methods;
use crate::metrics::{self, Metrics};
use crate::protocol::{ErrorCode, Message, Request, Response, RpcError, parse_message};
use crate::{heartbeat, shutdown};

/// Everything a server can be configured with. Later steps add fields here
/// (heartbeats, load limits), never new `run` functions.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// What peers can make the server hold at once.
    pub limits: Limits,
    /// How long one write of answers may wait for the peer to make room
    /// for them, before the connection is closed. A peer that sends
    /// requests and never reads their answers would otherwise keep its
    /// connection, and its place under `max_connections`, for good.
    /// Default: 30 s.
    pub write_timeout: Duration,
    /// How long a shutdown waits for its connections to drain: for the
    /// calls already taken on to finish, their answers to be written, and
    /// the peers to close. At the timeout, the connections still open are
    /// closed, and their calls cancelled. Default: 15 s, the client's
    /// default deadline, and half of the 30 s that Kubernetes (for one)
    /// allows between SIGTERM and SIGKILL.
    pub drain_timeout: Duration,
    /// How long a connection may be idle (no call of its running, no
    /// request from its peer) before the server closes it, as it would at a
    /// shutdown: notice first, within the drain timeout. Pings do not count:
    /// they ask whether the server is there, and give it nothing to do.
    /// Default: 60 s.
    pub idle_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            limits: Limits::default(),
            write_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// How many answers may wait for a connection's writer task. A request's
/// task that finds the queue full waits, and keeps its place under
/// `max_in_flight_per_connection` meanwhile.
const ANSWER_QUEUE: usize = 64;

/// The methods every server offers, whatever its table. `health` is
/// answered by the server itself, without the token and without running
/// anything: a load balancer (or a person) asks it whether the server
/// serves at all. `stats` returns the server's [`Metrics`] as JSON, and
/// needs the token like any method: numbers about a server tell a stranger
/// how it is used. Each shadows a method of the same name in the table.
pub const HEALTH: &str = "health";
pub const STATS: &str = "stats";

/// What every task that serves requests shares: the method table, the
/// numbers they keep, and what all of them together may hold.
struct Shared {
    methods: Methods,
    metrics: Arc<Metrics>,
    /// One permit per request that may run at once, server-wide.
    handlers: Arc<Semaphore>,
    /// The bytes all connections together hold.
    bytes: Arc<Budget>,
    limits: Limits,
}

/// How long to pause after `accept` fails before trying again.
///
/// `accept` fails mostly when the process is out of file descriptors.
/// Trying again at once would spin a core printing errors; a short pause
/// gives connections time to close.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `methods`, and the built-in `health` and `stats` (see
/// [`Shared`]), on `listener`, as `config` says, until `shutdown`
/// completes; then drains (see [`crate::shutdown`]), and returns once
/// every connection has closed, within `config.drain_timeout`. (A blocking
/// call cannot be cancelled: one still running then runs on, on its
/// thread, and a runtime being dropped waits for it.)
///
/// The caller binds the listener, so a test can bind `127.0.0.1:0` and ask
/// it for the port the OS chose. `shutdown` is any future: the binary's is
/// the first of [`shutdown::StopSignals`]; a test's is a channel it controls;
/// `std::future::pending()` is a server that runs until the process ends.
pub async fn run(
    listener: TcpListener,
    mut methods: Methods,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let limits = config.limits.clone();
    // The numbers, for every method the table has, and the two built in.
    let metrics = Arc::new(Metrics::new(methods.names().chain([HEALTH, STATS])));
    // At most `MAX_PERMITS`, as for connections below.
    let max_handlers = limits.max_handlers.min(Semaphore::MAX_PERMITS);
    let handlers = Arc::new(Semaphore::new(max_handlers));
    let bytes = Budget::new(limits.max_server_bytes);
    let (numbers, running, held) = (
        Arc::clone(&metrics),
        Arc::clone(&handlers),
        Arc::clone(&bytes),
    );
    methods.register(STATS, move |_params: serde_json::Value| {
        let mut stats = numbers.snapshot();
        // What the limits hold back, server-wide, now.
        stats["handlers_running"] = json!(max_handlers - running.available_permits());
        stats["bytes_held"] = json!(held.held());
        stats["max_handlers"] = json!(max_handlers);
        async move { Ok(stats) }
    });
    // Shared by every task that serves requests.
    let shared = Arc::new(Shared {
        methods,
        metrics,
        handlers,
        bytes,
        limits: limits.clone(),
    });
    // One permit per connection that may be served at once. A connection
    // task holds its permit until it ends, however it ends, and dropping
    // the permit gives the place back. A semaphore holds at most
    // `MAX_PERMITS`, about 2^61: more is no limit at all.
    let max_connections = limits.max_connections.min(Semaphore::MAX_PERMITS);
    let connections = Arc::new(Semaphore::new(max_connections));
    // What peers can make the server log is throttled: refusals here, and
    // connections that end in an error in their own tasks.
    let mut refusals = LogThrottle::default();
    let failures = Arc::new(Mutex::new(LogThrottle::default()));
    // Cancelled when the shutdown begins: each connection then drains.
    let stop = CancellationToken::new();
    // Cancelled at the drain timeout: each connection left is dropped.
    let cut = CancellationToken::new();
    // Every connection task, so that the shutdown can wait for them. Unlike
    // a `JoinSet`, it keeps nothing of a task that has ended.
    let connection_tasks = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                error!("accept failed: {e}");
                tokio::select! {
                    () = time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            // Dropping the stream closes it: the peer sees the connection
            // end before any answer. Step 9 says why.
            let max = limits.max_connections;
            match refusals.count(Instant::now()) {
                Some(1) => warn!("refused {peer}: {max} connections open"),
                Some(n) => warn!(
                    "refused {peer} and {} more since the last such line: \
                     {max} connections open",
                    n - 1
                ),
                None => {}
            }
            continue;
        };
        let shared = Arc::clone(&shared);
        let failures = Arc::clone(&failures);
        let write_timeout = config.write_timeout;
        let (idle_timeout, drain_timeout) = (config.idle_timeout, config.drain_timeout);
        // A child token per connection: each then waits on its own, not
        // all of them on one shared lock.
        let (stop, cut) = (stop.child_token(), cut.child_token());
        // One task per connection: the reason one slow or hostile peer
        // cannot block the others. A task cannot fail to start the way a
        // thread can; it costs memory, like everything else here.
        // Its span names the peer in every line logged while serving it. At
        // `error`, the highest level, so that no filter that lets a line
        // through leaves its span out.
        let span = error_span!("connection", %peer);
        let connection = async move {
            let _permit = permit;
            let metrics = Arc::clone(&shared.metrics);
            let _open = metrics.connection_opened();
            debug!("connected");
            let served = tokio::select! {
                served = serve_connection(
                    stream, shared, write_timeout, idle_timeout, drain_timeout, stop,
                ) => served,
                // Dropping `serve_connection` cancels its calls and closes
                // its socket.
                () = cut.cancelled() => Ok(()),
            };
            if let Err(e) = served {
                // Whatever went wrong, it went wrong for this connection
                // only. Say so, and let the task end.
                match lock(&failures).count(Instant::now()) {
                    Some(1) => warn!("connection closed: {e}"),
                    Some(n) => warn!(
                        "connection closed: {e} ({} more ended in errors \
                         since the last such line)",
                        n - 1
                    ),
                    None => {}
                }
            }
            debug!("disconnected");
        };
        connection_tasks.spawn(connection.instrument(span));
    }
    // The shutdown, in order. No new connection: closing the listener makes
    // the OS refuse them (and reset any it accepted that we had not).
    drop(listener);
    info!(
        "shutting down: no new connections; draining the {} open, for up to {:?}",
        connection_tasks.len(),
        config.drain_timeout
    );
    // Each connection sends its notice, and finishes what it has read.
    stop.cancel();
    connection_tasks.close();
    let drain = time::timeout(config.drain_timeout, connection_tasks.wait());
    if drain.await.is_err() {
        warn!(
            "drain timeout: closing the {} connections left, and cancelling their calls",
            connection_tasks.len()
        );
        cut.cancel();
        connection_tasks.wait().await;
    }
    info!("shut down");
    Ok(())
}

/// How often, at most, one kind of line a peer can cause is logged.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Keeps what peers do from flooding the log.
///
/// A peer at the connection limit may try again at once, thousands of
/// times a second, and a peer may open connection after connection only to
/// send garbage: a line for each (3,530 refusals in 10 s, once) would bury
/// the rest of the log and fill the disk. So the first event is logged, and
/// after it at most one line per [`LOG_INTERVAL`], with the count of events
/// since the last line. Events after the last line are counted in the next
/// one, whenever another comes; a timer to report them sooner is not worth
/// its code here.
#[derive(Debug, Default)]
struct LogThrottle {
    /// When the last line was written; `None` before the first event.
    last_line: Option<Instant>,
    /// Events not yet counted in a line.
    unlogged: u64,
}

impl LogThrottle {
    /// Counts one event at `now`, and says whether to log it: `Some(n)` for
    /// a line about `n` events (this one and those kept quiet since the
    /// last line), `None` for no line. The caller passes the time, so a test
    /// can pass any time it likes.
    fn count(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        let logged_recently =
            (self.last_line).is_some_and(|last| now.saturating_duration_since(last) < LOG_INTERVAL);
        if logged_recently {
            return None;
        }
        self.last_line = Some(now);
        Some(mem::take(&mut self.unlogged))
    }
}

/// Reads requests on one connection and starts each as a task, or sheds
/// it (see [`crate::limits`]), until the peer closes the connection or
/// breaks the framing, or `stop` is cancelled, or the connection has been
/// idle for `idle_timeout`: then the connection drains (see
/// [`shutdown::drain`]), within `drain_timeout` when idle.
///
/// An `Err` from here means the byte stream is unusable (cut mid-frame, a
/// length over the limit, a failed write) and the connection is dropped. A
/// *request* that is wrong but well framed is answered with an error
/// response instead, and the loop goes on.
async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    write_timeout: Duration,
    idle_timeout: Duration,
    drain_timeout: Duration,
    stop: CancellationToken,
) -> io::Result<()> {
    // Responses are small and the client waits for each one: send them at
    // once rather than letting Nagle's algorithm hold them back.
    stream.set_nodelay(true)?;
    // Two halves of one socket, each owned by one task: this loop reads,
    // and the writer task writes. Nothing is shared, so nothing is locked.
    let (reader, writer) = stream.into_split();
    let mut frames = FramedRead::new(reader, FrameCodec);
    // The queue of answers to the writer task. Bounded, in answers and in
    // bytes: when the peer reads slower than we answer, the loop stops
    // reading more requests (see below).
    let (answers, queue) = mpsc::channel::<Outgoing>(ANSWER_QUEUE);
    // The bytes this connection holds: requests running, answers unwritten.
    let budget = Budget::new(shared.limits.max_connection_bytes);
    // Aborted if this function returns early: a connection the server has
    // given up on must close, not wait on a peer that may never read.
    let mut writer =
        AbortOnDropHandle::new(tokio::spawn(write_frames(writer, queue, write_timeout)));
    // The connection's running requests. A `JoinSet` aborts every task still
    // in it when it is dropped: however this function returns, no request
    // of this connection runs on after it, and a peer that sends requests
    // and hangs up leaves no work behind.
    let mut requests = JoinSet::new();
    // Made once, not on each turn of the loop, which is the hot path.
    let stopping = stop.cancelled();
    tokio::pin!(stopping);
    // Idle: no call of this connection runs, and none has since
    // `idle_since`, when the peer last sent a request or the last call
    // ended. The timer is not moved at each request, the hot path: when it
    // fires, it looks at `idle_since`, and is set again for later if the
    // connection has not been idle long enough.
    let mut idle_since = Instant::now();
    let idle_timeout = heartbeat::sane(idle_timeout);
    let idle = time::sleep(idle_timeout);
    tokio::pin!(idle);

    loop {
        // ANCHOR: read_paused
        // Read only while there is room for an answer: a peer that does not
        // read its answers fills the queue, or takes the connection's byte
        // budget over its most, and then this connection stops reading:
        // TCP's flow control makes the peer's writes stall, and nothing
        // piles up here. Any other excess is shed below, not waited for.
        // Both are looked at once per turn: looked at again by each
        // branch's guard, a slot or bytes given back in between could
        // switch every branch off.
        let (room, within_budget) = (answers.capacity() > 0, !budget.is_spent());
        tokio::select! {
            frame = frames.next(), if room && within_budget => {
                // ANCHOR_END: read_paused
                let body = match frame {
                    Some(body) => body?,
                    None => break,
                };
                let parsed = match parse_message(&body) {
                    // A ping is answered at once, behind the answers already
                    // queued, and is not work: the connection stays idle.
                    // It never waits: if the queue is full, answers are on
                    // their way, news enough, or the peer reads nothing,
                    // and loses its pong.
                    Ok(Message::Ping(ping)) => {
                        let pong = Outgoing::charged(ping.answer(), &budget, &shared.bytes);
                        let _ = answers.try_send(pong);
                        continue;
                    }
                    Ok(Message::Request(request)) => Ok(request),
                    Err(error) => Err(error),
                };
                // What the call will hold, for the limits: its bytes, and a
                // place among this connection's calls (those finished but
                // not yet taken out of the set do not count).
                while requests.try_join_next().is_some() {}
                let (bytes, running) = (body.len(), requests.len());
                // The frame's bytes are not kept while the call runs.
                drop(body);
                // A request, or an error to answer: work, so not idle.
                idle_since = Instant::now();
                // The call's span: every line logged while it runs, here or
                // in a task or thread it goes on in, names the request.
                let (id, method) = match &parsed {
                    Ok(request) => (Some(request.id), clip(&request.method)),
                    Err((id, _)) => (*id, metrics::OTHER),
                };
                let span = error_span!("call", request_id = id, method);
                // Counted under its method only with the token (which
                // `health` needs not): a stranger must not be able to fill
                // the rows of the real methods.
                let index = match &parsed {
                    Ok(r) if r.method == HEALTH || shared.methods.is_authorized(r) => {
                        shared.metrics.method_index(&r.method)
                    }
                    _ => shared.metrics.method_index(metrics::OTHER),
                };
                let (shared, answers) = (Arc::clone(&shared), answers.clone());
                let budget = Arc::clone(&budget);
                let call = async move {
                    let in_flight = shared.metrics.call_started();
                    let started = Instant::now();
                    let response = match parsed {
                        Ok(request) if request.method == HEALTH => health(request.id),
                        // Admitted or shed at once, on the first poll, in
                        // the loop: the handler's place and the bytes are
                        // given back as soon as the call has its answer.
                        Ok(request) => match admit(&shared, &budget, &request, running, bytes) {
                            Ok(_room) => call_before(&shared.methods, request).await,
                            Err(limit) => Response::busy(request.id, limit, RETRY_AFTER),
                        },
                        // The frame was fine, its contents were not. The
                        // next frame starts right after this one, so the
                        // connection stays usable.
                        Err((id, error)) => Response::failure(id, error),
                    };
                    // Counted before it is sent: a caller that has its
                    // answer finds it in the stats it asks for next.
                    let code = response.error.as_ref().map(|error| error.code);
                    let latency = started.elapsed();
                    shared.metrics.record(index, code, latency);
                    log_answer(&response, latency);
                    drop(in_flight);
                    // Only the encoded answer waits for room in the queue.
                    let answer = Outgoing::charged(encode(&response), &budget, &shared.bytes);
                    drop(response);
                    // Fails only if the writer has gone, and with it the
                    // connection: nobody to answer.
                    let _ = answers.send(answer).await;
                };
                let mut call = Box::pin(call.instrument(span));
                // Most calls (`add`, `divide`) finish without ever waiting:
                // run them right here. Only a call that has to wait (for
                // its method, or for room in the queue of answers) becomes
                // a task, from where it stopped; the loop never waits, so
                // that it always hears `stop`.
                if poll_once(call.as_mut()).is_pending() {
                    requests.spawn(call);
                }
            }
            // ANCHOR: read_again
            // Room in the queue, or bytes given back: perhaps to read again.
            _ = async { drop(answers.reserve().await) }, if !room => {}
            () = budget.given_back(), if !within_budget => {}
            // ANCHOR_END: read_again
            // Finished requests are taken out of the set as they finish, or
            // it would keep every one's result until the connection ends.
            Some(_) = requests.join_next() => {
                if requests.is_empty() {
                    idle_since = Instant::now();
                }
            }
            // The writer stops only when a write fails: the connection is
            // broken, and nothing more can be answered on it.
            written = &mut writer => {
                return written.unwrap_or_else(|e| Err(io::Error::other(e)));
            }
            // The server is shutting down: run no more, finish the rest.
            () = &mut stopping => return shutdown::drain(requests, answers, writer, frames).await,
            () = &mut idle => {
                // A call still running: not idle. Or not idle for long
                // enough yet. Either way, look again when it could be.
                if !requests.is_empty() {
                    idle_since = Instant::now();
                }
                if idle_since + idle_timeout > Instant::now() {
                    idle.as_mut().reset(idle_since + idle_timeout);
                    continue;
                }
                // Idle for the idle timeout: the peer has gone, or has
                // nothing to ask. Close as a shutdown would, for this
                // connection alone: a call the peer sent just now is
                // refused, not lost. Within the drain timeout, as a shutdown.
                return shutdown::drain_within(drain_timeout, requests, answers, writer, frames)
                    .await;
            }
        }
    }
    // The peer hung up between frames: it is done with this connection.
    // Calls still running are cancelled (dropping the `JoinSet` aborts
    // them), answers already queued are still written, and then the writer
    // shuts the socket. A client that wants an answer keeps the connection
    // open until it has it.
    drop(requests);
    drop(answers);
    writer.await.unwrap_or_else(|e| Err(io::Error::other(e)))
}

/// Runs `future` until it first has to wait, or to the end.
///
/// A spawned task costs an allocation, a trip through the scheduler and
/// often the waking of another thread: more than `add` itself. Measured in
/// the chapter: running calls here first, and spawning only those still
/// pending, was worth 28% more calls per second at 64 in flight.
///
/// The waker is one that does nothing, and that is enough: a future that
/// returns `Pending` is polled again later, as a task, and a future must
/// register the waker of its *latest* poll. Until then no one needs waking.
fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// Runs the request's method, if its caller still waits for the answer,
/// and stops it at the caller's deadline.
///
/// The deadline is taken from the time the caller had left when it sent
/// the request (see `Meta::timeout_ms` for why a duration). A request
/// already past it is not started: nobody would read the result. One that
/// runs into it is *dropped* there: an async method stops at its next
/// `.await` and never resumes. The caller gets a timeout error instead,
/// so every request whose connection lasts gets exactly one answer.
async fn call_before(methods: &Methods, request: Request) -> Response {
    let id = request.id;
    let timeout = |when: &str| {
        let message = format!("the caller's deadline passed {when} the method ran");
        Response::failure(Some(id), RpcError::new(ErrorCode::Timeout, message))
    };
    // Too far off to count is no deadline at all.
    let deadline = (request.meta.timeout_ms)
        .and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
    let Some(deadline) = deadline else {
        return methods.call(request).await;
    };
    if Instant::now() >= deadline {
        return timeout("before");
    }
    time::timeout_at(deadline, methods.call(request))
        .await
        .unwrap_or_else(|_elapsed| timeout("while"))
}

// ANCHOR: admit
/// Whether `request`, `bytes` long, may run now, on a connection with
/// `running` calls and `budget`: `Ok` with the handler's place and the
/// bytes charged, both given back when dropped; `Ok(None)` for `stats`,
/// which is never shed (nor is `health`, answered before admission); or
/// `Err`, the limit it would go past.
fn admit<'a>(
    shared: &'a Shared,
    budget: &'a Budget,
    request: &Request,
    running: usize,
    bytes: usize,
) -> Result<Option<(SemaphorePermit<'a>, Charge<'a>)>, &'static str> {
    if request.method == STATS {
        return Ok(None);
    }
    if running >= shared.limits.max_in_flight_per_connection {
        return Err("in_flight");
    }
    let handler = shared.handlers.try_acquire().map_err(|_| "handlers")?;
    let charge = Charge::try_new(budget, &shared.bytes, bytes).ok_or("bytes")?;
    Ok(Some((handler, charge)))
}
// ANCHOR_END: admit

/// `health`'s answer: the server is up and serving.
fn health(id: u64) -> Response {
    Response::success(id, json!({ "status": "serving" }))
}

/// Logs how a call ended, with its code and its latency in microseconds:
/// a failure the server's operator should look into (`INTERNAL`, or a
/// `TIMEOUT` while the method ran) as a warning; the rest, the callers'
/// own mistakes among them, at debug, so that a peer cannot fill the log
/// at the default level. A `TIMEOUT` before the method ran is the caller's
/// choice of deadline, and is answered before the token is checked: at
/// warn, a stranger could write a line per request.
fn log_answer(response: &Response, latency: Duration) {
    let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    let ran_out = |e: &RpcError| e.code == ErrorCode::Timeout && e.message.contains("while");
    match &response.error {
        None => debug!(latency_us, "answered"),
        Some(e) if e.code == ErrorCode::Internal || ran_out(e) => {
            warn!(code = %e.code, latency_us, error = clip(&e.message), "failed");
        }
        Some(e) => debug!(code = %e.code, latency_us, error = clip(&e.message), "failed"),
    }
}

/// The most of a peer's text (a method's name, an error message quoting
/// params) that goes into one log line.
const MAX_LOGGED: usize = 200;

/// `text`, cut to at most [`MAX_LOGGED`] bytes. A method name can be a
/// megabyte long, and the log holds up to a thousand lines in its queue:
/// cut, one line is under a kilobyte, and the queue under a megabyte.
fn clip(text: &str) -> &str {
    let mut end = text.len().min(MAX_LOGGED);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Serialises a response, replacing one too large to send with an error
/// that says so: better than closing the connection on an honest caller.
/// `INTERNAL`, for the server could not deliver what the method returned.
fn encode(response: &Response) -> Vec<u8> {
    // Serialising a `Response` cannot fail: it holds only numbers, strings
    // and `serde_json::Value`s, and all of them always have a JSON form.
    let body = serde_json::to_vec(response).expect("a Response is always valid JSON");
    if body.len() > MAX_FRAME_LEN as usize {
        let message = format!("response of {} bytes exceeds the frame limit", body.len());
        let error = RpcError {
            // The sizes, for a program that wants to ask for less.
            details: json!({ "bytes": body.len(), "max_bytes": MAX_FRAME_LEN }),
            ..RpcError::new(ErrorCode::Internal, message)
        };
        return serde_json::to_vec(&Response::failure(response.id, error)).expect("valid JSON");
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request in `body`, which must hold one.
    fn request(body: &[u8]) -> Request {
        match parse_message(body) {
            Ok(Message::Request(request)) => request,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn refusals_are_logged_first_then_counted_once_per_interval() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut refusals = LogThrottle::default();
        assert_eq!(refusals.count(at(0)), Some(1), "the first is logged");
        for _ in 0..3_529 {
            assert_eq!(refusals.count(at(5)), None);
        }
        // The interval is over: one line counts the quiet ones and this one.
        assert_eq!(refusals.count(at(10)), Some(3_530));
        assert_eq!(refusals.count(at(19)), None);
        assert_eq!(refusals.count(at(25)), Some(2));
        // After a quiet spell, the next refusal is logged at once.
        assert_eq!(refusals.count(at(3_600)), Some(1));
    }

    /// A `sleep` of 10 s whose caller allows 100 ms, on tokio's paused
    /// clock: the answer is `TIMEOUT`, exactly at the deadline, and the
    /// clock never reaches the end of the sleep.
    #[tokio::test(start_paused = true)]
    async fn a_call_is_stopped_exactly_at_its_deadline() {
        let methods = crate::service::methods();
        let body = br#"{"id":7,"method":"sleep","params":{"ms":10000},"meta":{"timeout_ms":100}}"#;
        let start = Instant::now();
        let response = call_before(&methods, request(body)).await;
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        let error = response.error.expect("a TIMEOUT");
        assert_eq!((response.id, error.code), (Some(7), ErrorCode::Timeout));
        assert!(error.message.contains("while"), "{}", error.message);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_already_past_its_deadline_is_not_run() {
        let methods = crate::service::methods();
        let body = br#"{"id":8,"method":"explode","meta":{"timeout_ms":0}}"#;
        let response = call_before(&methods, request(body)).await;
        let error = response.error.expect("a TIMEOUT, not the panic's INTERNAL");
        assert_eq!(error.code, ErrorCode::Timeout);
        assert!(error.message.contains("before"), "{}", error.message);
    }
}
