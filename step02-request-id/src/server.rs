//! The server: accept connections, and on each one read requests and run
//! each on a thread of its own, which writes the response, tagged with the
//! request's id, as soon as it is ready: a slow call does not hold up the
//! fast ones behind it.
//!
//! Every read, write and method call blocks, so the code reads top to
//! bottom. What it costs (a thread per idle connection and one per running
//! request, under crude bounds) is what later steps fix.

use std::fmt;
use std::io::{self, BufReader, Write};
use std::mem;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::frame::{MAX_FRAME_LEN, read_frame, write_frame};
use crate::lock;
use crate::methods::Methods;
use crate::protocol::{Response, RpcError, parse_request};

// ANCHOR: limits
/// Bounds on what peers can make the server hold at once.
///
/// Threads are what a peer can exhaust here: every connection costs one,
/// and the OS allows only so many. On Linux each thread takes several memory
/// mappings, counted against `vm.max_map_count` (65,530 by default), which
/// caps a process at roughly 16,000 threads. Past that, starting a thread
/// can fail *inside* the new thread, where Rust's runtime can only abort
/// the whole process. So a server that starts a thread per connection must
/// bound the connections, or a peer can kill it by opening enough of them.
/// Step 9 grows this into real limits with load shedding.
///
/// With a thread per request too, both bounds together cap the threads:
/// 256 connections x (1 + 32 requests) = 8,448 at most, by default.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The most connections served at once. One more is closed as soon as
    /// it is accepted. Default: 256.
    pub max_connections: usize,
    /// The most requests of one connection running at once. At the bound,
    /// the connection stops reading until one finishes. Default: 32.
    pub max_in_flight_per_connection: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 256,
            max_in_flight_per_connection: 32,
        }
    }
}
// ANCHOR_END: limits

/// Everything a server can be configured with. Later steps add fields here
/// (a drain timeout, heartbeats, load limits), never new `run` functions.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// What peers can make the server hold at once.
    pub limits: Limits,
}

/// How long to pause after `accept` (or starting a thread) fails before
/// trying again.
///
/// `accept` fails mostly when the process is out of file descriptors, and a
/// thread fails to start when it is out of memory or threads. Trying again
/// at once would spin a core printing errors; a short pause gives
/// connections time to close.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Writes one line to the server's log, stderr, and ignores a failure.
///
/// `eprintln!` panics when it cannot write, as when stderr is a pipe whose
/// reader has gone (`server 2>&1 | head`, a log collector that died). In
/// the accept loop that panic would end the server: no log line is worth
/// that. Step 8's `tracing` replaces this.
fn log(line: fmt::Arguments) {
    let _ = writeln!(io::stderr(), "{line}");
}

/// Serves `methods` on `listener`, as `config` says, until the process exits.
///
/// The caller binds the listener, so a test can bind `127.0.0.1:0` and ask
/// it for the port the OS chose. There is no way to stop this server yet
/// other than ending the process; graceful shutdown is step 6.
pub fn run(listener: TcpListener, methods: Methods, config: ServerConfig) -> io::Result<()> {
    let limits = config.limits;
    // One table, shared read-only by every thread that serves requests.
    let methods = Arc::new(methods);
    // How many connections are being served. Only this loop adds to it, so
    // checking and then adding cannot race; connection threads take their
    // place back when they end (see `ConnectionSlot`).
    let open = Arc::new(AtomicUsize::new(0));
    // What peers can make the server log is throttled: refusals here, and
    // connections that end in an error on their own threads.
    let mut refusals = LogThrottle::default();
    let failures = Arc::new(Mutex::new(LogThrottle::default()));
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let methods = Arc::clone(&methods);
                let failures = Arc::clone(&failures);
                let peer = match stream.peer_addr() {
                    Ok(addr) => addr.to_string(),
                    Err(_) => "(unknown peer)".to_string(),
                };
                if open.load(Ordering::Acquire) >= limits.max_connections {
                    // Dropping the stream closes it: the peer sees the
                    // connection end before any answer. Step 9 says why.
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
                }
                open.fetch_add(1, Ordering::AcqRel);
                let slot = ConnectionSlot(Arc::clone(&open));
                let max_in_flight = limits.max_in_flight_per_connection;
                // One thread per connection: simple, and the reason one slow
                // or hostile peer cannot block the others. `Builder` rather
                // than `thread::spawn`, which panics when the OS refuses a
                // thread: a flood of connections must cost the flood its
                // connections, not the server its life.
                let spawned = thread::Builder::new().spawn(move || {
                    let _slot = slot;
                    if let Err(e) = serve_connection(stream, &methods, max_in_flight) {
                        // Whatever went wrong, it went wrong for this
                        // connection only. Say so, and let the thread end.
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
                if let Err(e) = spawned {
                    // The stream and the slot moved into the closure, which
                    // was dropped with the error: the connection is closed
                    // and its place given back.
                    log(format_args!("cannot start a thread for a connection: {e}"));
                    thread::sleep(ACCEPT_ERROR_PAUSE);
                }
            }
            Err(e) => {
                log(format_args!("accept failed: {e}"));
                thread::sleep(ACCEPT_ERROR_PAUSE);
            }
        }
    }
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
/// a thread here.
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

/// One connection's place under [`Limits::max_connections`], given back
/// when the connection's thread ends, however it ends.
struct ConnectionSlot(Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

// ANCHOR: serve_connection
/// Reads requests on one connection and starts each on its own thread, at
/// most `max_in_flight` at once, until the peer closes the connection or
/// breaks the framing.
///
/// An `Err` from here means the byte stream is unusable (cut mid-frame, a
/// length over the limit, a failed write) and the connection is dropped. A
/// *request* that is wrong but well framed is answered with an error
/// response instead, and the loop goes on.
fn serve_connection(
    stream: TcpStream,
    methods: &Arc<Methods>,
    max_in_flight: usize,
) -> io::Result<()> {
    // Responses are small and the client waits for each one: send them at
    // once rather than letting Nagle's algorithm hold them back.
    stream.set_nodelay(true)?;
    // Two handles on one socket: a buffered one to read from, so a frame
    // costs a few syscalls rather than one per `read`, and a plain one to
    // write to (`write_frame` sends each frame in one `write_all`).
    // Request threads share the write half: see `write_response`.
    let mut reader = BufReader::new(stream.try_clone()?);
    let writer = Arc::new(Mutex::new(stream));
    let in_flight = Arc::new(InFlight::default());
    // However this function ends (the peer hung up, broke the framing, or a
    // write failed), requests it started may still run, each on a thread.
    // The connection's place under `max_connections` is given back when it
    // returns: without this wait, a peer that sends requests and hangs up,
    // again and again, could start threads past every bound in `Limits`.
    let mut requests_finished = WaitForRequests {
        in_flight: Arc::clone(&in_flight),
        socket: lock(&writer).try_clone()?,
        clean_end: false,
    };

    while let Some(body) = read_frame(&mut reader)? {
        let request = match parse_request(&body) {
            Ok(request) => request,
            // The frame was fine, its contents were not. The next frame
            // starts right after this one, so the connection stays usable.
            Err((id, error)) => {
                write_response(&writer, &Response::failure(id, error))?;
                continue;
            }
        };
        // One thread per request, so that this loop can read the next
        // request while this one runs. A thread costs far more than `add`
        // itself (the benchmarks show it); step 5 makes a request a task.
        //
        // Unbounded, a peer could start threads until the server aborts
        // (see `Limits`), so at the bound this loop waits for a request to
        // finish before it reads on. A peer that never reads fills the bound
        // with threads stuck writing, and then this connection stops
        // reading: TCP's flow control makes the peer's writes stall, and
        // nothing piles up here. Step 9 refuses the excess instead.
        let slot = in_flight.start(max_in_flight);
        let id = request.id;
        let methods = Arc::clone(methods);
        let request_writer = Arc::clone(&writer);
        // `Builder`, not `thread::spawn`, for the reason `run` gives.
        let spawned = thread::Builder::new().spawn(move || {
            // Held until the answer is written, then given back.
            let _slot = slot;
            // A handler that panics ends this thread without an answer, and
            // its caller waits until its I/O timeout (if the connection goes
            // quiet) or forever: step 3 adds deadlines, step 4 turns the
            // panic into an error response.
            let response = methods.call(&request);
            // A failed write means the connection is broken, which the
            // connection thread's next read finds out too.
            let _ = write_response(&request_writer, &response);
        });
        if let Err(e) = spawned {
            // Out of threads: this request is refused, not dropped unanswered.
            let message = format!("cannot start a thread for this request: {e}");
            let error = RpcError::new("server_busy", message);
            write_response(&writer, &Response::failure(Some(id), error))?;
        }
    }
    requests_finished.clean_end = true;
    Ok(())
}
// ANCHOR_END: serve_connection

// ANCHOR: in_flight
/// The requests of one connection that are running, and a way to wait
/// until one of them finishes, or all of them have.
#[derive(Default)]
struct InFlight {
    /// How many request threads of this connection have not finished.
    running: Mutex<usize>,
    /// Signalled each time one finishes. Only the connection's thread waits
    /// on it (in `start`, or as the connection ends), so `notify_one` in
    /// `RequestSlot::drop` always wakes the one waiter there is.
    finished: Condvar,
}

impl InFlight {
    /// Waits until fewer than `max` requests run, then counts one more.
    fn start(self: &Arc<InFlight>, max: usize) -> RequestSlot {
        let mut running = lock(&self.running);
        while *running >= max {
            running = self
                .finished
                .wait(running)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *running += 1;
        RequestSlot(Arc::clone(self))
    }

    /// Waits until none of the connection's requests runs.
    fn wait_until_none_run(&self) {
        let mut running = lock(&self.running);
        while *running > 0 {
            running = self
                .finished
                .wait(running)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Waits, when dropped, until the connection's requests have all finished,
/// so that the connection keeps its place under the limits while they run.
struct WaitForRequests {
    in_flight: Arc<InFlight>,
    /// The connection's socket, shut down first unless the peer ended it
    /// cleanly: once the server gives up on a connection, requests stuck
    /// writing to a peer that does not read must fail, not wait for good.
    socket: TcpStream,
    /// Set when the peer hung up between frames; its answers may still go.
    clean_end: bool,
}

impl Drop for WaitForRequests {
    fn drop(&mut self) {
        if !self.clean_end {
            let _ = self.socket.shutdown(Shutdown::Both);
        }
        self.in_flight.wait_until_none_run();
    }
}

/// One running request's place under the bound, given back when dropped,
/// however its thread ends (a panicking handler included).
struct RequestSlot(Arc<InFlight>);

impl Drop for RequestSlot {
    fn drop(&mut self) {
        let in_flight = &self.0;
        *lock(&in_flight.running) -= 1;
        in_flight.finished.notify_one();
    }
}
// ANCHOR_END: in_flight

// ANCHOR: write_response
/// Sends one response as one frame on a connection's shared write half,
/// holding the lock for the whole frame: two request threads' `write_all`s
/// could otherwise interleave (a large frame takes several `write`s), and
/// the client would read half of one response as the next one's length.
fn write_response(writer: &Mutex<TcpStream>, response: &Response) -> io::Result<()> {
    // Serialise before taking the lock: only the write needs it.
    let body = encode(response);
    let mut stream = lock(writer);
    write_frame(&mut *stream, &body)
}
// ANCHOR_END: write_response

/// Serialises a response, replacing one too large to send with an error
/// that says so: better than closing the connection on an honest caller.
fn encode(response: &Response) -> Vec<u8> {
    // Serialising a `Response` cannot fail: it holds only numbers, strings
    // and `serde_json::Value`s, and all of them always have a JSON form.
    let body = serde_json::to_vec(response).expect("a Response is always valid JSON");
    if body.len() > MAX_FRAME_LEN as usize {
        let message = format!("response of {} bytes exceeds the frame limit", body.len());
        let error = RpcError {
            // The sizes, for a program that wants to ask for less.
            details: json!({ "bytes": body.len(), "max_bytes": MAX_FRAME_LEN }),
            ..RpcError::new("response_too_large", message)
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
}
