//! A scripted server: it reads request frames like a real server, and
//! answers each with whatever the test says, including what no real server
//! would send (a wrong id, garbage, half a frame, silence, one byte at a
//! time). For testing how a client copes.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::peer::write_raw;
use crate::{STUCK, lock, read_frame, write_frame};

/// One thing the fake server does in answer to a request. A script returns
/// them in order; after the last one the server reads the next request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// One frame holding this JSON: a right answer, or a wrong id, a
    /// duplicate id, a shape the client does not expect.
    Json(Value),
    /// One frame holding these bytes, e.g. a body that is not JSON.
    Frame(Vec<u8>),
    /// These bytes as they are: half a frame, a length over the limit,
    /// bytes that are no frame at all.
    Raw(Vec<u8>),
    /// These bytes one at a time, with a pause of `every` before each: a
    /// server so slow that each read gets something, but never enough.
    Trickle {
        /// What to send, eventually.
        bytes: Vec<u8>,
        /// The pause before each byte.
        every: Duration,
    },
    /// Say nothing more and read nothing more, but keep the connection open
    /// until the [`FakeServer`] is dropped: a server that hangs.
    Stall,
    /// Hang up, with nothing more said.
    Close,
}

/// What the fake server does for each request it reads: given the request
/// as JSON (`Null` if it is not JSON), the replies, in order.
type Script = Box<dyn FnMut(&Value) -> Vec<Reply> + Send>;

/// A fake server on `127.0.0.1`, on a port the OS picks, serving on its own
/// threads until it is dropped.
///
/// Each request it reads is reported to the test ([`request`](Self::request)
/// and friends) *before* its replies go out, so once the client has an
/// answer, or has seen the connection cut, the test can see the request.
///
/// Dropping it stops listening and hangs up every connection still open,
/// stalled or waiting for a request: a client waiting on it gets an end of
/// stream at that moment, which a test can use as "the server went away".
pub struct FakeServer {
    /// Where it listens.
    addr: SocketAddr,
    /// Every request body read, in order, across connections.
    requests: Receiver<Vec<u8>>,
    /// One message each time a client closed a connection between frames.
    hang_ups: Receiver<()>,
    /// What the serving threads share with this handle.
    shared: Arc<Shared>,
}

/// The state the accept loop, the connections and the handle share.
struct Shared {
    /// The test's script. One lock for all connections: a script is an
    /// `FnMut` and may count requests across connections. So a script
    /// must not block; to hold a connection, reply [`Reply::Stall`].
    script: Mutex<Script>,
    /// Set once, when the [`FakeServer`] is dropped.
    stopped: Mutex<bool>,
    /// Wakes stalls and trickles when `stopped` is set.
    stopping: Condvar,
    /// A second handle on every open connection, by number, so that drop
    /// can hang them all up even while their threads block in a read.
    open: Mutex<Vec<(u64, TcpStream)>>,
    /// The number the next connection gets in `open`.
    next_connection: AtomicU64,
    /// False once the listener is closed, so drop knows not to wake it.
    listening: AtomicBool,
    /// Where each request read is reported.
    requests: Sender<Vec<u8>>,
    /// Where each clean hang-up by a client is reported.
    hang_ups: Sender<()>,
}

impl FakeServer {
    /// Serves every connection, each on its own thread, answering each
    /// request as `script` says. The script sees every request, from every
    /// connection, one at a time.
    ///
    /// ```no_run
    /// # use serde_json::json;
    /// # use testkit::{FakeServer, Reply};
    /// // Answers every call with 0, right or not.
    /// let server = FakeServer::start(|request| {
    ///     vec![Reply::Json(json!({"id": request["id"], "ok": true, "result": 0}))]
    /// });
    /// ```
    pub fn start(script: impl FnMut(&Value) -> Vec<Reply> + Send + 'static) -> FakeServer {
        FakeServer::spawn(Box::new(script), false)
    }

    /// Takes one connection and then stops listening, so that a client's
    /// reconnect is refused; answers its requests as `script` says.
    pub fn start_once(script: impl FnMut(&Value) -> Vec<Reply> + Send + 'static) -> FakeServer {
        FakeServer::spawn(Box::new(script), true)
    }

    /// The simplest fake: one connection, whose first request is answered
    /// with `replies`, after which the server hangs up (unless one of them
    /// is [`Reply::Stall`]). A reconnect is refused.
    pub fn once(replies: Vec<Reply>) -> FakeServer {
        let mut replies = Some(replies);
        FakeServer::start_once(move |_| {
            let mut first = replies.take().unwrap_or_default();
            first.push(Reply::Close);
            first
        })
    }

    fn spawn(script: Script, only_one: bool) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a fake server");
        let addr = listener.local_addr().expect("a fake server's address");
        let (requests, requests_rx) = mpsc::channel();
        let (hang_ups, hang_ups_rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            script: Mutex::new(script),
            stopped: Mutex::new(false),
            stopping: Condvar::new(),
            open: Mutex::new(Vec::new()),
            next_connection: AtomicU64::new(0),
            listening: AtomicBool::new(true),
            requests,
            hang_ups,
        });
        let accepting = Arc::clone(&shared);
        thread::spawn(move || accept_loop(listener, accepting, only_one));
        FakeServer {
            addr,
            requests: requests_rx,
            hang_ups: hang_ups_rx,
            shared,
        }
    }

    /// Where the fake server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next request body the server read, byte for byte, waiting up to
    /// [`STUCK`] for it: what the client sent, for a byte-exact check.
    pub fn request(&self) -> Vec<u8> {
        self.requests
            .recv_timeout(STUCK)
            .unwrap_or_else(|_| panic!("the fake server read no request within {STUCK:?}"))
    }

    /// The next request the server read, as JSON, waiting up to [`STUCK`].
    pub fn request_json(&self) -> Value {
        let body = self.request();
        serde_json::from_slice(&body).unwrap_or_else(|e| {
            let text = String::from_utf8_lossy(&body);
            panic!("the request is not JSON ({e}): {text:?}")
        })
    }

    /// The next request, if one comes within `wait`: for proving that a
    /// client did *not* send something, where no event can be awaited.
    pub fn request_within(&self, wait: Duration) -> Option<Vec<u8>> {
        self.requests.recv_timeout(wait).ok()
    }

    /// Every request read and not yet taken, as JSON (`Null` for one that
    /// is not), without waiting: for counting a client's attempts once its
    /// call has returned.
    pub fn requests_so_far(&self) -> Vec<Value> {
        let bodies = self.requests.try_iter();
        let parse = |body: Vec<u8>| serde_json::from_slice(&body).unwrap_or(Value::Null);
        bodies.map(parse).collect()
    }

    /// Waits up to [`STUCK`] until a client closes a connection cleanly,
    /// between frames (each call takes one such close): for proving that a
    /// client hangs up, e.g. when its last handle is dropped.
    pub fn wait_for_hang_up(&self) {
        self.hang_ups.recv_timeout(STUCK).unwrap_or_else(|_| {
            panic!("no client closed its connection to the fake server within {STUCK:?}")
        });
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        *lock(&self.shared.stopped) = true;
        self.shared.stopping.notify_all();
        for (_, stream) in lock(&self.shared.open).drain(..) {
            // Wakes a thread blocked reading it, and tells the client.
            let _ = stream.shutdown(Shutdown::Both);
        }
        if self.shared.listening.load(Ordering::Acquire) {
            // Wakes the accept loop so it sees `stopped` and closes the
            // listener.
            let _ = TcpStream::connect(self.addr);
        }
    }
}

impl Shared {
    fn is_stopped(&self) -> bool {
        *lock(&self.stopped)
    }

    /// Blocks until the server is dropped.
    fn wait_for_stop(&self) {
        let stopped = lock(&self.stopped);
        let _stopped = self
            .stopping
            .wait_while(stopped, |stopped| !*stopped)
            .unwrap_or_else(|e| e.into_inner());
    }

    /// Sleeps for `pause`, or less if the server is dropped meanwhile;
    /// false if it was.
    fn pause(&self, pause: Duration) -> bool {
        let stopped = lock(&self.stopped);
        let (stopped, _) = self
            .stopping
            .wait_timeout_while(stopped, pause, |stopped| !*stopped)
            .unwrap_or_else(|e| e.into_inner());
        !*stopped
    }
}

/// Accepts connections until the server is dropped, or, with `only_one`,
/// takes the first and closes the listener.
fn accept_loop(listener: TcpListener, shared: Arc<Shared>, only_one: bool) {
    loop {
        let accepted = listener.accept();
        if shared.is_stopped() {
            return;
        }
        let Ok((stream, _)) = accepted else {
            // A failed accept costs that connection only; don't spin on it.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        if only_one {
            // Closed before the first request is even read: by the time
            // the client has an answer, a reconnect is surely refused.
            drop(listener);
            shared.listening.store(false, Ordering::Release);
            serve(stream, &shared);
            return;
        }
        let shared = Arc::clone(&shared);
        thread::spawn(move || serve(stream, &shared));
    }
}

/// One connection, from registration to hang-up.
fn serve(mut stream: TcpStream, shared: &Shared) {
    let Some(_open) = Open::register(&stream, shared) else {
        return; // The server was dropped as it accepted.
    };
    // Each reply's bytes leave at once, however small: a trickle is a
    // trickle, and half a frame arrives without the client waiting on
    // Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    converse(&mut stream, shared);
    // `_open` goes first, then `stream`: the last handle, so the
    // connection closes as a plain drop would close it.
}

/// A connection's place in [`Shared::open`], given up when dropped (also if
/// the script panics), so that a connection that ended is really closed.
struct Open<'a> {
    number: u64,
    shared: &'a Shared,
}

impl<'a> Open<'a> {
    /// Records a second handle on `stream`; `None` if the server has been
    /// dropped already.
    fn register(stream: &TcpStream, shared: &'a Shared) -> Option<Open<'a>> {
        let handle = stream.try_clone().expect("a second handle on a connection");
        let mut open = lock(&shared.open);
        // Checked under the `open` lock, which drop takes after setting
        // `stopped`: a connection is either seen by drop or never served.
        if shared.is_stopped() {
            return None;
        }
        let number = shared.next_connection.fetch_add(1, Ordering::Relaxed);
        open.push((number, handle));
        Some(Open { number, shared })
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        lock(&self.shared.open).retain(|(number, _)| *number != self.number);
    }
}

/// Reads a request, reports it, does what the script says; until the
/// client hangs up, a reply ends the connection, or the server is dropped.
fn converse(stream: &mut TcpStream, shared: &Shared) {
    loop {
        let body = match read_frame(stream) {
            Ok(Some(body)) => body,
            Ok(None) => {
                if !shared.is_stopped() {
                    let _ = shared.hang_ups.send(());
                }
                return;
            }
            // Cut mid-frame, a length over 16 MiB, a reset: done.
            Err(_) => return,
        };
        let request = serde_json::from_slice(&body).unwrap_or(Value::Null);
        // Reported before any reply, so before the client can know.
        let _ = shared.requests.send(body);
        let replies = (lock(&shared.script))(&request);
        for reply in replies {
            let sent = match reply {
                Reply::Json(value) => write_frame(stream, value.to_string().as_bytes()),
                Reply::Frame(body) => write_frame(stream, &body),
                Reply::Raw(bytes) => write_raw(stream, &bytes),
                Reply::Trickle { bytes, every } => trickle(stream, &bytes, every, shared),
                Reply::Stall => return shared.wait_for_stop(),
                Reply::Close => return,
            };
            if sent.is_err() {
                return; // The client is gone, or the server was dropped.
            }
        }
    }
}

/// Sends `bytes` one at a time, pausing `every` before each; stops early
/// when the server is dropped.
fn trickle(
    stream: &mut TcpStream,
    bytes: &[u8],
    every: Duration,
    shared: &Shared,
) -> std::io::Result<()> {
    for byte in bytes {
        if !shared.pause(every) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        write_raw(stream, &[*byte])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{closed_by_server, connect, exchange, exchange_bytes, frame, send, send_raw};
    use serde_json::json;
    use std::io::ErrorKind;

    #[test]
    fn a_script_answers_each_request_on_every_connection_and_sees_it() {
        let mut count = 0;
        let server = FakeServer::start(move |request| {
            count += 1;
            vec![Reply::Json(json!({"n": request["n"], "count": count}))]
        });
        for connection in 0..2 {
            let mut stream = connect(server.addr());
            let answer = exchange(&mut stream, br#"{"n":1}"#);
            assert_eq!(answer, json!({"n": 1, "count": 2 * connection + 1}));
            // Not JSON: the script sees `Null`, the test the bytes.
            let answer = exchange(&mut stream, b"not json");
            assert_eq!(answer, json!({"n": null, "count": 2 * connection + 2}));
        }
        assert_eq!(server.request_json(), json!({"n": 1}));
        assert_eq!(server.request(), b"not json");
        let rest = server.requests_so_far();
        assert_eq!(rest, [json!({"n": 1}), Value::Null]);
        assert!(server.request_within(Duration::from_millis(1)).is_none());
    }

    #[test]
    fn frame_and_raw_replies_go_out_as_given() {
        let server = FakeServer::start(|_| {
            vec![
                Reply::Frame(b"not json".to_vec()),
                Reply::Raw(frame(b"second")),
                Reply::Raw(vec![0xFF; 4]),
            ]
        });
        let mut stream = connect(server.addr());
        assert_eq!(exchange_bytes(&mut stream, b"{}"), b"not json");
        assert_eq!(read_frame(&mut stream).unwrap().unwrap(), b"second");
        let over = read_frame(&mut stream).unwrap_err();
        assert_eq!(over.kind(), ErrorKind::InvalidData, "a 4 GiB length");
    }

    #[test]
    fn half_a_frame_then_close_is_a_cut() {
        let server = FakeServer::start(|_| vec![Reply::Raw(vec![0, 0, 0, 20, b'{']), Reply::Close]);
        let mut stream = connect(server.addr());
        send(&mut stream, b"{}");
        let cut = read_frame(&mut stream).unwrap_err();
        assert_eq!(cut.kind(), ErrorKind::UnexpectedEof);
    }

    #[test]
    fn close_hangs_up_right_after_reading() {
        let server = FakeServer::start(|_| vec![Reply::Close]);
        let mut stream = connect(server.addr());
        send(&mut stream, b"{}");
        assert!(read_frame(&mut stream).unwrap().is_none());
        assert_eq!(server.request(), b"{}");
    }

    #[test]
    fn once_answers_then_hangs_up_and_refuses_a_second_connection() {
        let server = FakeServer::once(vec![Reply::Frame(b"hi".to_vec())]);
        let mut stream = connect(server.addr());
        assert_eq!(exchange_bytes(&mut stream, b"{}"), b"hi");
        assert!(closed_by_server(&mut stream));
        // The listener closed before the first request was read.
        let refused = TcpStream::connect(server.addr()).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    }

    #[test]
    fn a_trickle_arrives_whole_and_a_stall_holds_until_drop() {
        let every = Duration::from_millis(1);
        let server = FakeServer::start(move |_| {
            vec![
                Reply::Trickle {
                    bytes: frame(b"slow"),
                    every,
                },
                Reply::Stall,
            ]
        });
        let mut stream = connect(server.addr());
        assert_eq!(exchange_bytes(&mut stream, b"{}"), b"slow");
        // Stalled: nothing comes, and the connection stays open. (Nothing
        // to wait on for "nothing happens"; more time proves no more.)
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let silence = read_frame(&mut stream).unwrap_err();
        assert!(matches!(
            silence.kind(),
            ErrorKind::WouldBlock | ErrorKind::TimedOut
        ));
        drop(server);
        stream.set_read_timeout(Some(STUCK)).unwrap();
        assert!(
            closed_by_server(&mut stream),
            "a stall ends with the server"
        );
    }

    #[test]
    fn a_server_that_never_answers_hangs_up_when_dropped() {
        // Reads requests and says nothing: the connection waits on a read.
        let server = FakeServer::start_once(|_| vec![]);
        let mut stream = connect(server.addr());
        send(&mut stream, b"1");
        send(&mut stream, b"2");
        assert_eq!([server.request(), server.request()], [b"1", b"2"]);
        drop(server);
        assert!(read_frame(&mut stream).unwrap().is_none());
    }

    #[test]
    fn a_client_hanging_up_is_seen() {
        let server = FakeServer::start(|_| vec![]);
        let mut stream = connect(server.addr());
        send_raw(&mut stream, &frame(b"{}"));
        drop(stream);
        server.wait_for_hang_up();
    }
}
