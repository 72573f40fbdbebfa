//! Helpers shared by this step's integration tests. Everything runs over
//! real TCP on 127.0.0.1, on a port the OS picks.

#![allow(dead_code)] // each test file uses a different subset

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use step04_errors::protocol::{read_frame, write_frame};
use step04_errors::server::{self, Methods};
use step04_errors::service;

/// How long a test waits on a socket before calling the server stuck. Far
/// longer than anything here should take, even on a busy machine: it turns
/// a hang into a failure, and never fires when things work.
pub const STUCK: Duration = Duration::from_secs(10);

/// Starts this step's server on a free port and returns its address. The
/// server thread lives until the test process exits.
pub fn spawn_server() -> SocketAddr {
    spawn_server_with(server::Limits::default())
}

/// Like [`spawn_server`], within `limits`.
pub fn spawn_server_with(limits: server::Limits) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || server::run_with(listener, service::methods(), limits));
    addr
}

/// Starts a server offering `methods`, e.g. the service's plus a test's own.
pub fn spawn_server_offering(methods: Methods) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || server::run(listener, methods));
    addr
}

/// The test's side of the `hold` method: a call to `hold` stays in flight
/// until the test lets it go, so a test can know a call is pending rather
/// than sleep and hope.
pub struct Hold {
    /// One message each time a `hold` call starts running on the server.
    pub started: Receiver<()>,
    /// Send one message to let one running `hold` call finish.
    pub release: Sender<()>,
}

/// Starts a server offering the service's methods plus `hold`, which says
/// it has started, waits to be released, and returns its params.
pub fn spawn_server_with_hold() -> (SocketAddr, Hold) {
    let (started, started_rx) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let release_rx = Mutex::new(release_rx);
    let mut methods = service::methods();
    methods.register("hold", move |params: Value| {
        let _ = started.send(());
        // An error here means the test is over: finish anyway.
        let _ = release_rx.lock().unwrap().recv();
        Ok(params)
    });
    let hold = Hold {
        started: started_rx,
        release,
    };
    (spawn_server_offering(methods), hold)
}

/// A raw connection, for sending what the real client never would.
pub fn raw_connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(STUCK)).unwrap();
    stream.set_write_timeout(Some(STUCK)).unwrap();
    stream
}

/// Sends `body` as one well-formed frame and returns the response frame as JSON.
pub fn raw_call(stream: &mut TcpStream, body: &[u8]) -> Value {
    write_frame(stream, body).unwrap();
    let response = read_frame(stream)
        .unwrap()
        .expect("server closed the connection");
    serde_json::from_slice(&response).unwrap()
}

/// True once the server has closed `stream`: reads whatever it still sends
/// (at most a few KiB) until end-of-file, or a reset if it closed with our
/// bytes still unread. A server that keeps the connection open makes the
/// read time out after [`STUCK`], which is `false`.
pub fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    match stream.take(64 * 1024).read_to_end(&mut rest) {
        Ok(_) => rest.len() < 64 * 1024,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// Proves the server still answers: a fresh client makes a call.
pub fn assert_server_answers(addr: SocketAddr) {
    let client = step04_errors::client::Client::connect(addr).unwrap();
    assert_eq!(client.add(2.0, 2.0).unwrap(), 4.0);
}

/// Writes `pattern` over and over without reading anything back, until the
/// server stops taking bytes; `Err(bytes sent)` if 64 MiB go through first.
///
/// A partial write is resumed where it stopped, so frames stay intact.
/// "Stops" means three write timeouts of 500 ms in a row with no byte
/// accepted: one scheduling hiccup on a busy machine is not enough, and a
/// busy machine only makes a real stall come sooner.
pub fn write_until_stalled(stream: &mut TcpStream, pattern: &[u8]) -> Result<(), usize> {
    stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let (mut sent, mut offset, mut timeouts) = (0, 0, 0);
    while sent < 64 * 1024 * 1024 {
        match stream.write(&pattern[offset..]) {
            Ok(n) => {
                (sent, timeouts) = (sent + n, 0);
                offset = (offset + n) % pattern.len();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                timeouts += 1;
                if timeouts == 3 {
                    return Ok(());
                }
            }
            Err(e) => panic!("flood write failed: {e}"),
        }
    }
    Err(sent)
}

/// Writes raw bytes, e.g. half a frame.
pub fn send_raw(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).unwrap();
}
