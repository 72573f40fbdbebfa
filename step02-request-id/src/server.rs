//! The server: accept connections, and on each one read requests and run
//! them all at once, each answer sent as soon as it is ready, until the
//! peer hangs up.
//!
//! Every connection gets its own operating-system thread, which does
//! nothing but read requests. Every request then gets a thread of its own,
//! which runs the method and writes the response, tagged with the request's
//! id, whenever it finishes: a slow call no longer holds up the fast ones
//! behind it. Everything still blocks, so the code still reads top to
//! bottom. What it costs (a thread per idle connection and one per running
//! request, with nothing bounding either) is what later steps fix.

use std::collections::HashMap;
use std::io::{self, BufReader};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::protocol::{MAX_FRAME_LEN, Request, Response, RpcError, read_frame, write_frame};

// ANCHOR: methods
/// A method's code: takes the request's `params`, returns a result or an
/// error message for the caller.
///
/// `Send + Sync` because one `Methods` table is shared by every connection
/// and request thread.
pub type Handler = Box<dyn Fn(&Value) -> Result<Value, String> + Send + Sync>;

/// The table of methods a server offers, by name.
#[derive(Default)]
pub struct Methods {
    /// Method name to code. Filled before the server starts, read-only after.
    handlers: HashMap<String, Handler>,
}

impl Methods {
    /// An empty table.
    pub fn new() -> Methods {
        Methods::default()
    }

    /// Offers `handler` under `name`, replacing any method of that name.
    pub fn register(
        &mut self,
        name: &str,
        handler: impl Fn(&Value) -> Result<Value, String> + Send + Sync + 'static,
    ) {
        self.handlers.insert(name.to_string(), Box::new(handler));
    }

    /// Runs the method a request names and answers under the request's id.
    /// An unknown name is an error response, not a server error: the caller
    /// made the mistake.
    pub fn call(&self, request: &Request) -> Response {
        let id = Some(request.id);
        match self.handlers.get(&request.method) {
            Some(handler) => match handler(&request.params) {
                Ok(result) => Response::success(request.id, result),
                // Whatever the handler's reason, this step has one code for
                // it; the message says the rest.
                Err(message) => Response::failure(id, RpcError::new("method_error", message)),
            },
            None => {
                let message = format!("unknown method `{}`", request.method);
                Response::failure(id, RpcError::new("unknown_method", message))
            }
        }
    }
}
// ANCHOR_END: methods

/// How long to pause after `accept` (or starting a thread) fails before
/// trying again.
///
/// `accept` fails mostly when the process is out of file descriptors, and a
/// thread fails to start when it is out of memory or threads. Trying again
/// at once would spin a core printing errors; a short pause gives
/// connections time to close. Step 9 adds a real connection limit.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

// ANCHOR: run
/// Serves `methods` on `listener` until the process exits.
///
/// The caller binds the listener, so a test can bind `127.0.0.1:0` and ask
/// it for the port the OS chose. There is no way to stop this server yet
/// other than ending the process; graceful shutdown is step 6.
pub fn run(listener: TcpListener, methods: Methods) -> io::Result<()> {
    // One table, shared read-only by every connection and request thread.
    let methods = Arc::new(methods);
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let methods = Arc::clone(&methods);
                let peer = match stream.peer_addr() {
                    Ok(addr) => addr.to_string(),
                    Err(_) => "(unknown peer)".to_string(),
                };
                // One thread per connection: simple, and the reason one slow
                // or hostile peer cannot block the others. Nothing bounds
                // the number of threads; that is step 9's job. `Builder`
                // rather than `thread::spawn`, which panics when the OS
                // refuses a thread: a flood of connections must cost the
                // flood its connections, not the server its life.
                let spawned = thread::Builder::new().spawn(move || {
                    if let Err(e) = serve_connection(stream, &methods) {
                        // Whatever went wrong, it went wrong for this
                        // connection only. Say so, and let the thread end.
                        eprintln!("connection {peer} closed: {e}");
                    }
                });
                if let Err(e) = spawned {
                    // The stream moved into the closure, which was dropped
                    // with the error: the connection is already closed.
                    eprintln!("cannot start a thread for a connection: {e}");
                    thread::sleep(ACCEPT_ERROR_PAUSE);
                }
            }
            Err(e) => {
                eprintln!("accept failed: {e}");
                thread::sleep(ACCEPT_ERROR_PAUSE);
            }
        }
    }
    Ok(())
}
// ANCHOR_END: run

// ANCHOR: serve_connection
/// Reads requests on one connection and starts each on its own thread,
/// until the peer closes the connection or breaks the framing.
///
/// An `Err` from here means the byte stream is unusable (cut mid-frame, a
/// length over the limit, a failed write) and the connection is dropped. A
/// *request* that is wrong but well framed is answered with an error
/// response instead, and the loop goes on.
fn serve_connection(stream: TcpStream, methods: &Arc<Methods>) -> io::Result<()> {
    // Responses are small and the client waits for each one: send them at
    // once rather than letting Nagle's algorithm hold them back.
    stream.set_nodelay(true)?;
    // Two handles on one socket: a buffered one to read from, so a frame
    // costs a few syscalls rather than one per `read`, and a plain one to
    // write to (`write_frame` sends each frame in one `write_all`). The
    // write half is shared by every request thread of this connection,
    // behind a lock: see `write_response`.
    let mut reader = BufReader::new(stream.try_clone()?);
    let writer = Arc::new(Mutex::new(stream));

    while let Some(body) = read_frame(&mut reader)? {
        let request = match serde_json::from_slice::<Request>(&body) {
            Ok(request) => request,
            // The frame was fine, its contents were not. The next frame
            // starts right after this one, so the connection stays usable.
            Err(e) => {
                write_response(&writer, &bad_request(&body, &e))?;
                continue;
            }
        };
        // ANCHOR: thread_per_request
        // One thread per request, so that this loop is at once free to read
        // the next request while this one runs. The costs: starting and
        // ending a thread takes far longer than `add` itself (the
        // benchmarks show it), and nothing bounds the threads. A peer can
        // start as many calls as it can send frames, each holding a thread
        // (and its stack) until it finishes, and a peer that sends requests
        // but never reads the answers leaves every finished thread stuck
        // writing. Step 5 makes a request cheap (a task, not a thread), and
        // step 9 bounds the calls in flight per connection and overall.
        // `meta` rides along unread: step 3 gives the server a deadline
        // from `meta.timeout_ms`.
        let id = request.id;
        let methods = Arc::clone(methods);
        let request_writer = Arc::clone(&writer);
        // `Builder`, not `thread::spawn`, for the reason `run` gives.
        let spawned = thread::Builder::new().spawn(move || {
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
        // ANCHOR_END: thread_per_request
    }
    Ok(())
}
// ANCHOR_END: serve_connection

// ANCHOR: bad_request
/// The answer to a frame that is not a valid request.
///
/// It still carries the request's id when that much can be read
/// (`{"id":7,"method":42}` is answered under id 7), so that the caller
/// waiting on id 7 gets its answer. When not even the id can be read, the
/// answer has `"id": null`, and no caller can be told which call failed.
fn bad_request(body: &[u8], e: &serde_json::Error) -> Response {
    // Parse again, loosely, just for the id: this is the rare path.
    let id = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|request| request.get("id")?.as_u64());
    let error = RpcError::new("bad_request", format!("bad request: {e}"));
    Response::failure(id, error)
}
// ANCHOR_END: bad_request

// ANCHOR: write_response
/// Sends one response as one frame on a connection's shared write half.
///
/// Request threads finish whenever they finish, so two may want to write
/// at the same moment. The lock is held for the whole frame: without it,
/// two `write_all`s could interleave their bytes (a large frame can take
/// several `write` syscalls), and the client would read half of one
/// response as the length of the next.
fn write_response(writer: &Mutex<TcpStream>, response: &Response) -> io::Result<()> {
    // Serialise before taking the lock: only the write needs it.
    let body = encode(response);
    // Nothing panics while holding this lock, so it is never poisoned;
    // `into_inner` says so without an `unwrap`.
    let mut stream = writer.lock().unwrap_or_else(PoisonError::into_inner);
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
