//! The binaries as real processes: what the README and the tour run.

mod common;

use std::process::Command;

use common::rpc::client::Client;
use common::rpc::service::ServiceCalls;
use serde_json::json;
use testkit::{FakeServer, Reply};

#[test]
fn the_demo_passes_against_a_real_server() {
    let addr = common::spawn_server();
    let output = Command::new(common::bin("client"))
        .args(["--addr", &addr.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("add(5, 3) = 8"), "{stdout}");
    // The fast call was answered while the slow one was still running.
    assert!(stdout.contains("answer 1: add(2, 2) = 4"), "{stdout}");
    assert!(stdout.contains("answer 2: sleep(300) = 300"), "{stdout}");
    assert!(
        stdout.contains("divide(10, 0) -> error method_error: division by zero"),
        "{stdout}"
    );
}

#[test]
fn the_demo_fails_against_a_server_that_lies() {
    // Answers every request with 0, which is right for no call in the demo.
    let server = FakeServer::start(|request| {
        vec![Reply::Json(
            json!({"id": request["id"], "ok": true, "result": 0}),
        )]
    });
    let output = Command::new(common::bin("client"))
        .args(["--addr", &server.addr().to_string()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("wrong answers"), "{stderr}");
}

#[test]
fn the_server_binary_serves_on_the_port_it_prints() {
    let (_server, addr) = testkit::start_server(&common::bin("server"), &[]);
    let client = Client::connect(addr).unwrap();
    assert_eq!(client.add(20.0, 22.0).unwrap(), 42.0);
}

#[test]
fn a_server_whose_stdout_is_gone_serves_on() {
    let (_server, addr) = testkit::start_server_stdout_gone(&common::bin("server"));
    let client = Client::connect(addr).unwrap();
    assert_eq!(client.add(20.0, 22.0).unwrap(), 42.0);
}
