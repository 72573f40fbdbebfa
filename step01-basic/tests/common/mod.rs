//! Helpers shared by this step's integration tests. What any step's tests
//! need (raw frames, fake servers, child processes) comes from `testkit`;
//! this file holds what is particular to this step. Everything runs over
//! real TCP on 127.0.0.1, on a port the OS picks.

#![allow(dead_code)] // each test file uses a different subset

/// The step under test. Tests name it only through this alias, so a copy of
/// the step for the next one changes this line and no other.
pub use step01_basic as rpc;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::thread;

use rpc::client::Client;
use rpc::server::{self, ServerConfig};
use rpc::service::{self, ServiceCalls};

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

/// Proves the server still answers: a fresh client makes a call.
pub fn assert_server_answers(addr: SocketAddr) {
    let mut client = Client::connect(addr).unwrap();
    assert_eq!(client.add(2.0, 2.0).unwrap(), 4.0);
}

/// This step's `server` or `client` binary (`stepNN-server`), built by
/// `cargo test` before the tests run.
pub fn bin(role: &str) -> PathBuf {
    let step = env!("CARGO_PKG_NAME").split('-').next().unwrap();
    testkit::cargo_bin(&format!("{step}-{role}"))
}
