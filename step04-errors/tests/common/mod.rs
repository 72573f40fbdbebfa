//! Helpers shared by this step's integration tests. What any step's tests
//! need (raw frames, fake servers, child processes) comes from `testkit`;
//! this file holds what is particular to this step. Everything runs over
//! real TCP on 127.0.0.1, on a port the OS picks.

#![allow(dead_code)] // each test file uses a different subset

/// The step under test. Tests name it only through this alias, so a copy of
/// the step for the next one changes this line and no other.
pub use step04_errors as rpc;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;

use rpc::client::Client;
use rpc::methods::Methods;
use rpc::server::{self, ServerConfig};
use rpc::service::{self, ServiceCalls};
use serde_json::Value;

/// Starts this step's server on a free port and returns its address. The
/// server thread lives until the test process exits.
pub fn spawn_server() -> SocketAddr {
    spawn_server_with(ServerConfig::default())
}

/// Like [`spawn_server`], configured by `config`.
pub fn spawn_server_with(config: ServerConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || server::run(listener, service::methods(), config));
    addr
}

/// Starts a server offering `methods`, e.g. the service's plus a test's own.
pub fn spawn_server_offering(methods: Methods) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || server::run(listener, methods, ServerConfig::default()));
    addr
}

/// Starts this step's server on `addr`: the port of a server that has gone
/// away, for a test whose client must find a new one there when it
/// reconnects.
pub fn spawn_server_at(addr: SocketAddr) {
    let listener = TcpListener::bind(addr).unwrap();
    thread::spawn(move || server::run(listener, service::methods(), ServerConfig::default()));
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

/// Proves the server still answers: a fresh client makes a call.
pub fn assert_server_answers(addr: SocketAddr) {
    let client = Client::connect(addr).unwrap();
    assert_eq!(client.add(2.0, 2.0).unwrap(), 4.0);
}

/// This step's `server` or `client` binary (`stepNN-server`), built by
/// `cargo test` before the tests run.
pub fn bin(role: &str) -> PathBuf {
    let step = env!("CARGO_PKG_NAME").split('-').next().unwrap();
    testkit::cargo_bin(&format!("{step}-{role}"))
}
