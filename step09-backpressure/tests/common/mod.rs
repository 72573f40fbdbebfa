//! Helpers shared by this step's integration tests. What any step's tests
//! need (raw frames, fake servers, child processes) comes from `testkit`;
//! this file holds what is particular to this step. Everything runs over
//! real TCP on 127.0.0.1, on a port the OS picks.

#![allow(dead_code)] // each test file uses a different subset

/// The step under test. Tests name it only through this alias, so a copy of
/// the step for the next one changes this line and no other.
pub use step09_backpressure as rpc;

use std::future::{self, Future};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};

use rpc::methods::Methods;
use rpc::server::{self, ServerConfig};
use rpc::service;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Starts this step's server on a free port and returns its address. The
/// server lives until the test process exits.
pub fn spawn_server() -> SocketAddr {
    spawn_server_with(ServerConfig::default())
}

/// Like [`spawn_server`], configured by `config`.
pub fn spawn_server_with(config: ServerConfig) -> SocketAddr {
    spawn_server_offering_with(service::methods(), config)
}

/// Starts a server offering `methods`, e.g. the service's plus a test's own.
pub fn spawn_server_offering(methods: Methods) -> SocketAddr {
    spawn_server_offering_with(methods, ServerConfig::default())
}

/// Starts a server offering `methods`, configured by `config`.
pub fn spawn_server_offering_with(methods: Methods, config: ServerConfig) -> SocketAddr {
    serve_in_background(bind_any(), methods, config, future::pending()).0
}

/// A server that a test stops, and whose end it waits for.
pub struct StoppableServer {
    pub addr: SocketAddr,
    /// Sending on it (or dropping it) begins the shutdown.
    stop: Option<oneshot::Sender<()>>,
    /// The server's thread: it ends when `run` returns.
    thread: JoinHandle<io::Result<()>>,
}

impl StoppableServer {
    /// Begins the shutdown, as a signal would in the binary.
    pub fn stop(&mut self) {
        self.stop.take();
    }

    /// True once `run` has returned.
    pub fn has_stopped(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for `run` to return, and returns what it returned.
    pub fn join(self) -> io::Result<()> {
        self.thread.join().expect("the server's thread panicked")
    }
}

/// Starts a server offering `methods`, configured by `config`, that runs
/// until the test calls [`StoppableServer::stop`].
pub fn spawn_stoppable_server(methods: Methods, config: ServerConfig) -> StoppableServer {
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    let (addr, thread) = serve_in_background(bind_any(), methods, config, shutdown);
    StoppableServer {
        addr,
        stop: Some(stop),
        thread,
    }
}

/// Starts this step's server on `addr`: the port of a server that has gone
/// away, for a test whose client must find a new one there when it
/// reconnects.
pub fn spawn_server_at(addr: SocketAddr) {
    let listener = TcpListener::bind(addr).unwrap();
    let config = ServerConfig::default();
    serve_in_background(listener, service::methods(), config, future::pending());
}

fn bind_any() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// Runs a server on `listener` on a runtime and a thread of its own, until
/// `shutdown` completes (or the test process exits), and returns its
/// address and its thread.
///
/// A runtime of its own, so that a test may block its own thread (the
/// raw-frame helpers of `testkit` do) without stopping the server. One
/// thread only, so that a server task that blocked its thread would stop
/// the whole server, and a test would notice.
fn serve_in_background(
    listener: TcpListener,
    methods: Methods,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (SocketAddr, JoinHandle<io::Result<()>>) {
    let addr = listener.local_addr().unwrap();
    // tokio takes over a `std` listener only in non-blocking mode.
    listener.set_nonblocking(true).unwrap();
    let thread = thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            server::run(listener, methods, config, shutdown).await
        })
    });
    (addr, thread)
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
/// it has started, waits to be released, and returns its params. `hold`
/// blocks while it waits, so it is registered as a blocking method.
pub fn spawn_server_with_hold() -> (SocketAddr, Hold) {
    let (started, started_rx) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let release_rx = Mutex::new(release_rx);
    let mut methods = service::methods();
    methods.register_blocking("hold", move |params: Value| {
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

/// Proves the server still answers: a fresh connection makes a call. Raw
/// frames, not the client, so that any test can use it, async or not.
pub fn assert_server_answers(addr: SocketAddr) {
    let mut stream = testkit::connect(addr);
    let request = json!({"id": 1, "method": "add", "params": {"a": 2, "b": 2}});
    let response = testkit::exchange(&mut stream, request.to_string().as_bytes());
    assert_eq!(response["result"], 4.0, "{response}");
}

/// This step's `server` or `client` binary (`stepNN-server`), built by
/// `cargo test` before the tests run.
pub fn bin(role: &str) -> PathBuf {
    let step = env!("CARGO_PKG_NAME").split('-').next().unwrap();
    testkit::cargo_bin(&format!("{step}-{role}"))
}

// Helpers for tests on tokio's paused clock (`start_paused`), where the
// server runs on the test's own runtime: a server on a thread of its own
// would answer in real time, after the clock had already jumped.

/// Starts this step's server, serving `methods` as `config` says, on the
/// test's own runtime; returns its address.
pub async fn start_server_here(methods: Methods, config: ServerConfig) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::run(listener, methods, config, future::pending()));
    addr
}

/// The next frame's body as JSON, or `None` at a clean end of stream.
/// Panics after an hour of (paused) time without either, rather than hang.
pub async fn next_frame(stream: &mut tokio::net::TcpStream) -> Option<Value> {
    let hour = std::time::Duration::from_secs(3600);
    let next = tokio::time::timeout(hour, read_frame(stream)).await;
    next.expect("neither a frame nor the end within an hour")
}

/// The next frame's body as JSON, or `None` at a clean end of stream, for
/// as long as it takes.
pub async fn read_frame(stream: &mut tokio::net::TcpStream) -> Option<Value> {
    use tokio::io::AsyncReadExt;
    let mut length = [0; 4];
    match stream.read_exact(&mut length).await {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return None,
        read => read.unwrap(),
    };
    let mut body = vec![0; u32::from_be_bytes(length) as usize];
    stream.read_exact(&mut body).await.unwrap();
    Some(serde_json::from_slice(&body).unwrap())
}

/// Runs `future` to its end while no time passes: it yields to the other
/// tasks (and to the I/O they wait for) instead of letting the runtime
/// sleep, which on the paused clock would jump to the next timer. Panics if
/// it does not end within many turns: what should come at once did not.
pub async fn promptly<F: Future>(future: F) -> F::Output {
    tokio::pin!(future);
    for _ in 0..100_000 {
        let turn = future::poll_fn(|cx| std::task::Poll::Ready(future.as_mut().poll(cx)));
        if let std::task::Poll::Ready(output) = turn.await {
            return output;
        }
        tokio::task::yield_now().await;
    }
    panic!("it did not come at once");
}
