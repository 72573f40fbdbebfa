//! The server: accept connections, and on each one read a request, run it,
//! write the response, and repeat until the peer hangs up.
//!
//! Every connection gets its own operating-system thread, and on that thread
//! everything blocks: reading waits for the peer, the method runs to the end,
//! writing waits for room in the socket. That makes the code read top to
//! bottom like the protocol itself. What it costs (a thread per idle
//! connection, one call at a time per connection) is what later steps fix.

use std::fmt;
use std::io::{self, BufReader, Write};
use std::mem;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::frame::{MAX_FRAME_LEN, read_frame, write_frame};
use crate::lock;
use crate::methods::Methods;
use crate::protocol::{Response, parse_request};

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
#[derive(Debug, Clone)]
pub struct Limits {
    /// The most connections served at once. One more is closed as soon as
    /// it is accepted. Default: 256.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 256,
        }
    }
}
// ANCHOR_END: limits

// ANCHOR: server_config
/// Everything a server can be configured with. Later steps add fields here
/// (a drain timeout, heartbeats, load limits), never new `run` functions.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// What peers can make the server hold at once.
    pub limits: Limits,
}
// ANCHOR_END: server_config

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

// ANCHOR: run
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
                // One thread per connection: simple, and the reason one slow
                // or hostile peer cannot block the others. `Builder` rather
                // than `thread::spawn`, which panics when the OS refuses a
                // thread: a flood of connections must cost the flood its
                // connections, not the server its life.
                let spawned = thread::Builder::new().spawn(move || {
                    let _slot = slot;
                    if let Err(e) = serve_connection(stream, &methods) {
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
// ANCHOR_END: run

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
/// Answers requests on one connection, one at a time, until the peer closes
/// it or breaks the framing.
///
/// An `Err` from here means the byte stream is unusable (cut mid-frame, a
/// length over the limit, a failed write) and the connection is dropped. A
/// *request* that is wrong but well framed is answered with an error
/// response instead, and the loop goes on.
fn serve_connection(stream: TcpStream, methods: &Methods) -> io::Result<()> {
    // Responses are small and the client waits for each one: send them at
    // once rather than letting Nagle's algorithm hold them back.
    stream.set_nodelay(true)?;
    // Two handles on one socket: a buffered one to read from, so a frame
    // costs a few syscalls rather than one per `read`, and a plain one to
    // write to (`write_frame` sends each frame in one `write_all`).
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;

    while let Some(body) = read_frame(&mut reader)? {
        let response = match parse_request(&body) {
            Ok(request) => methods.call(&request),
            // The frame was fine, its contents were not. The next frame
            // starts right after this one, so the connection stays usable.
            Err(message) => Response::Error(message),
        };
        write_frame(&mut writer, &encode(&response))?;
    }
    Ok(())
}
// ANCHOR_END: serve_connection

/// Serialises a response, replacing one too large to send with an error
/// that says so: better than closing the connection on an honest caller.
fn encode(response: &Response) -> Vec<u8> {
    // Serialising a `Response` cannot fail: it holds only numbers, strings
    // and `serde_json::Value`s, and all of them always have a JSON form.
    let body = serde_json::to_vec(response).expect("a Response is always valid JSON");
    if body.len() > MAX_FRAME_LEN as usize {
        let message = format!("response of {} bytes exceeds the frame limit", body.len());
        return serde_json::to_vec(&Response::Error(message)).expect("valid JSON");
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
