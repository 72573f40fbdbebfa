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

use std::fmt;
use std::future::Future;
use std::io::{self, Write};
use std::mem;
use std::panic;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self as std_mpsc, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::{self, Instant};
use tokio_util::codec::FramedRead;
use tokio_util::task::AbortOnDropHandle;

use crate::frame::{FrameCodec, MAX_FRAME_LEN, write_frames};
use crate::lock;
use crate::methods::Methods;
use crate::protocol::{ErrorCode, Request, Response, RpcError, parse_request};

/// Bounds on what peers can make the server hold at once.
///
/// A connection is now a task, not a thread, so it costs memory (its read
/// buffer, at least 8 KiB, and its queue), not one of the few thousand
/// threads an OS allows: the first limit a flood of connections meets is
/// the process's file descriptors (`ulimit -n`), and then `accept` fails,
/// is logged, and is tried again. What requests may hold is bounded per
/// connection only; step 9 adds limits for the whole server, in bytes too.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The most connections served at once. One more is closed as soon as
    /// it is accepted. Default: 10,000.
    pub max_connections: usize,
    /// The most requests of one connection running at once. At the bound,
    /// the connection stops reading until one finishes. Default: 1,024.
    pub max_in_flight_per_connection: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 10_000,
            max_in_flight_per_connection: 1024,
        }
    }
}

/// Everything a server can be configured with. Later steps add fields here
/// (a drain timeout, heartbeats, load limits), never new `run` functions.
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
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            limits: Limits::default(),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// How many answers may wait for a connection's writer task. A request's
/// task that finds the queue full waits, and keeps its place under
/// `max_in_flight_per_connection` meanwhile.
const ANSWER_QUEUE: usize = 64;

/// How long to pause after `accept` fails before trying again.
///
/// `accept` fails mostly when the process is out of file descriptors.
/// Trying again at once would spin a core printing errors; a short pause
/// gives connections time to close.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How many log lines may wait for the log thread; more are dropped.
const LOG_QUEUE: usize = 1024;

// ANCHOR: log
/// Writes one line to the server's log, stderr, without ever waiting for
/// it, and ignores a failure.
///
/// A write to stderr blocks while stderr is a pipe whose reader is slow or
/// stuck, and a task that blocks holds up every task on its runtime thread:
/// a peer that can make the server log could freeze it. So a line goes to
/// a queue, and one thread of its own writes the queue out. When the queue
/// is full, lines are dropped, and their number is written with the next
/// line that gets through. A failed write is ignored: `eprintln!` would
/// panic, as when the reader of the pipe has gone (`server 2>&1 | head`).
/// Step 8's `tracing` replaces this.
pub fn log(line: fmt::Arguments) {
    static QUEUE: OnceLock<Option<SyncSender<String>>> = OnceLock::new();
    static DROPPED: AtomicU64 = AtomicU64::new(0);
    let queue = QUEUE.get_or_init(|| {
        let (queue, lines) = std_mpsc::sync_channel::<String>(LOG_QUEUE);
        let write_out = move || {
            for line in lines {
                let mut stderr = io::stderr().lock();
                let dropped = DROPPED.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    let _ = writeln!(stderr, "({dropped} lines dropped: the log was too slow)");
                }
                let _ = writeln!(stderr, "{line}");
            }
        };
        // No thread, no log: the server serves on without one.
        let thread = thread::Builder::new().name("log".into()).spawn(write_out);
        thread.ok().map(|_| queue)
    });
    let sent = queue.as_ref().map(|queue| queue.try_send(line.to_string()));
    if !matches!(sent, Some(Ok(()))) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends panics to [`log`], one line each, instead of the standard hook's
/// direct write to stderr, which would block a runtime thread as `log`
/// explains; nor does it print a backtrace per panic, which a peer calling
/// a panicking method could make the server write by the megabyte.
pub fn log_panics() {
    panic::set_hook(Box::new(|info| {
        log(format_args!("{}", info.to_string().replace('\n', " ")));
    }));
}
// ANCHOR_END: log

// ANCHOR: accept_loop
/// Serves `methods` on `listener`, as `config` says, until the process exits.
///
/// The caller binds the listener, so a test can bind `127.0.0.1:0` and ask
/// it for the port the OS chose. There is no way to stop this server yet
/// other than ending the process: dropping this future stops accepting,
/// but connections already served run on as tasks. Graceful shutdown is
/// step 6.
pub async fn run(listener: TcpListener, methods: Methods, config: ServerConfig) -> io::Result<()> {
    let limits = config.limits.clone();
    // One table, shared read-only by every task that serves requests.
    let methods = Arc::new(methods);
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
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                log(format_args!("accept failed: {e}"));
                time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            // Dropping the stream closes it: the peer sees the connection
            // end before any answer. Step 9 says why.
            let max = limits.max_connections;
            match refusals.count(Instant::now()) {
                Some(1) => log(format_args!("refused {peer}: {max} connections open")),
                Some(n) => log(format_args!(
                    "refused {peer} and {} more since the last such line: \
                     {max} connections open",
                    n - 1
                )),
                None => {}
            }
            continue;
        };
        let methods = Arc::clone(&methods);
        let failures = Arc::clone(&failures);
        let (max_in_flight, write_timeout) =
            (limits.max_in_flight_per_connection, config.write_timeout);
        // One task per connection: the reason one slow or hostile peer
        // cannot block the others. A task cannot fail to start the way a
        // thread can; it costs memory, like everything else here.
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = serve_connection(stream, methods, max_in_flight, write_timeout).await {
                // Whatever went wrong, it went wrong for this connection
                // only. Say so, and let the task end.
                match lock(&failures).count(Instant::now()) {
                    Some(1) => log(format_args!("connection {peer} closed: {e}")),
                    Some(n) => log(format_args!(
                        "connection {peer} closed: {e} ({} more ended in errors \
                         since the last such line)",
                        n - 1
                    )),
                    None => {}
                }
            }
        });
    }
}
// ANCHOR_END: accept_loop

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

// ANCHOR: serve_connection
/// Reads requests on one connection and starts each as a task, at most
/// `max_in_flight` at once, until the peer closes the connection or
/// breaks the framing.
///
/// An `Err` from here means the byte stream is unusable (cut mid-frame, a
/// length over the limit, a failed write) and the connection is dropped. A
/// *request* that is wrong but well framed is answered with an error
/// response instead, and the loop goes on.
async fn serve_connection(
    stream: TcpStream,
    methods: Arc<Methods>,
    max_in_flight: usize,
    write_timeout: Duration,
) -> io::Result<()> {
    // Responses are small and the client waits for each one: send them at
    // once rather than letting Nagle's algorithm hold them back.
    stream.set_nodelay(true)?;
    // Two halves of one socket, each owned by one task: this loop reads,
    // and the writer task writes. Nothing is shared, so nothing is locked.
    let (reader, writer) = stream.into_split();
    let mut frames = FramedRead::new(reader, FrameCodec);
    // The queue of answers to the writer task. Bounded: when the peer reads
    // slower than we answer, request tasks wait to queue theirs, and with
    // them the reading of more requests (see below).
    let (answers, queue) = mpsc::channel(ANSWER_QUEUE);
    // Aborted if this function returns early: a connection the server has
    // given up on must close, not wait on a peer that may never read.
    let mut writer =
        AbortOnDropHandle::new(tokio::spawn(write_frames(writer, queue, write_timeout)));
    // The connection's running requests. A `JoinSet` aborts every task still
    // in it when it is dropped: however this function returns, no request
    // of this connection runs on after it, and a peer that sends requests
    // and hangs up leaves no work behind.
    let mut requests = JoinSet::new();

    loop {
        tokio::select! {
            // At the bound, no more is read until a request finishes. A
            // peer that never reads fills the bound with tasks stuck
            // queueing answers, and then this connection stops reading:
            // TCP's flow control makes the peer's writes stall, and nothing
            // piles up here. Step 9 refuses the excess instead.
            frame = frames.next(), if requests.len() < max_in_flight => {
                let body = match frame {
                    Some(body) => body?,
                    None => break,
                };
                match parse_request(&body) {
                    Ok(request) => {
                        let (methods, answers) = (Arc::clone(&methods), answers.clone());
                        let mut call = Box::pin(async move {
                            let response = call_before(&methods, request).await;
                            // Only the encoded answer waits for room in the
                            // queue.
                            let answer = encode(&response);
                            drop(response);
                            // Fails only if the writer has gone, and with
                            // it the connection: nobody to answer.
                            let _ = answers.send(answer).await;
                        });
                        // Most calls (`add`, `divide`) finish without ever
                        // waiting: run them right here. Only a call that
                        // has to wait becomes a task, from where it stopped.
                        if poll_once(call.as_mut()).is_pending() {
                            requests.spawn(call);
                        }
                    }
                    // The frame was fine, its contents were not. The next
                    // frame starts right after this one, so the connection
                    // stays usable.
                    Err((id, error)) => {
                        let response = Response::failure(id, error);
                        if answers.send(encode(&response)).await.is_err() {
                            break;
                        }
                    }
                }
            }
            // Finished requests are taken out of the set as they finish, or
            // it would keep every one's result until the connection ends.
            Some(_) = requests.join_next() => {}
            // The writer stops only when a write fails: the connection is
            // broken, and nothing more can be answered on it.
            written = &mut writer => {
                return written.unwrap_or_else(|e| Err(io::Error::other(e)));
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
// ANCHOR_END: serve_connection

// ANCHOR: poll_once
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
// ANCHOR_END: poll_once

// ANCHOR: call_before
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
// ANCHOR_END: call_before

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
        let response = call_before(&methods, parse_request(body).unwrap()).await;
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        let error = response.error.expect("a TIMEOUT");
        assert_eq!((response.id, error.code), (Some(7), ErrorCode::Timeout));
        assert!(error.message.contains("while"), "{}", error.message);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_already_past_its_deadline_is_not_run() {
        let methods = crate::service::methods();
        let body = br#"{"id":8,"method":"explode","meta":{"timeout_ms":0}}"#;
        let response = call_before(&methods, parse_request(body).unwrap()).await;
        let error = response.error.expect("a TIMEOUT, not the panic's INTERNAL");
        assert_eq!(error.code, ErrorCode::Timeout);
        assert!(error.message.contains("before"), "{}", error.message);
    }
}
