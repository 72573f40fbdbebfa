//! The binaries as real processes: what the README and the tour run.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use common::rpc::client::{CallError, Client, ClientConfig};
use common::rpc::protocol::ErrorCode;
use common::rpc::service::{self, ServiceCalls};
use serde_json::json;
use testkit::{FakeServer, KillOnDrop, Reply, STUCK, wait_until};

#[test]
fn the_demo_passes_against_a_real_server() {
    // As the tour runs it: both sides with the same token.
    let mut methods = service::methods();
    methods.require_token("demo-token");
    let addr = common::spawn_server_offering(methods);
    let output = Command::new(common::bin("client"))
        .args(["--addr", &addr.to_string(), "--token", "demo-token"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("add(5, 3) = 8"), "{stdout}");
    // The fast call was answered while the slow one was still running.
    assert!(stdout.contains("answer 1: add(2, 2) = 4"), "{stdout}");
    assert!(stdout.contains("answer 2: sleep(300) = 300"), "{stdout}");
    // Retried until it succeeded.
    assert!(
        stdout.contains("idempotent = 3 (the server saw 3 attempts)"),
        "{stdout}"
    );
    // One call for each error code.
    for line in [
        "divide(10, 0) -> BAD_REQUEST: division by zero",
        "multiply(2, 3) -> METHOD_NOT_FOUND: ",
        "with a 100ms deadline -> TIMEOUT",
        "explode() -> INTERNAL: ",
        "with a wrong token -> UNAUTHORIZED: ",
        "not sent again -> SERVER_BUSY: ",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
    // This step's part: many calls at once, and a blocking call beside one.
    assert!(stdout.contains("10000 add calls at once on one connection: all answered"));
    assert!(stdout.contains("beside add(1, 2) = 3"), "{stdout}");
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

#[tokio::test]
async fn the_server_binary_serves_on_the_port_it_prints() {
    let (server, addr) = testkit::start_server(&common::bin("server"), &["--token", "s3cret"]);
    let config = |token: Option<&str>| ClientConfig {
        token: token.map(String::from),
        ..ClientConfig::default()
    };
    let add = async |token| {
        let client = Client::connect_with(addr, config(token)).await.unwrap();
        client.add(20.0, 22.0).await
    };
    let (with_token, without) = (add(Some("s3cret")).await, add(None).await);
    drop(server);
    assert_eq!(with_token.unwrap(), 42.0);
    assert!(matches!(without, Err(CallError::Server(e)) if e.code == ErrorCode::Unauthorized));
}

#[tokio::test]
async fn a_server_whose_stdout_is_gone_serves_on() {
    let (_server, addr) = testkit::start_server_stdout_gone(&common::bin("server"));
    let client = Client::connect(addr).await.unwrap();
    assert_eq!(client.add(20.0, 22.0).await.unwrap(), 42.0);
}

#[tokio::test]
async fn limits_past_what_a_semaphore_can_hold_are_no_limit() {
    let max = usize::MAX.to_string();
    let (_server, addr) =
        testkit::start_server(&common::bin("server"), &["--max-connections", &max]);
    let client = Client::connect(addr).await.unwrap();
    assert_eq!(client.add(20.0, 22.0).await.unwrap(), 42.0);
}

#[test]
fn the_server_binary_refuses_an_empty_token() {
    // What `--token "$UNSET_VARIABLE"` passes: an empty token would match a
    // request without one, so the server must not start, and must say why.
    let mut server = KillOnDrop(
        Command::new(common::bin("server"))
            .args(["--addr", "127.0.0.1:0", "--token", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_until("the server exits", STUCK, || {
        server.try_wait().unwrap().is_some()
    });
    let status = server.wait().unwrap();
    let mut stderr = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "{status}");
    assert!(stderr.contains("the token is empty"), "{stderr}");
}
