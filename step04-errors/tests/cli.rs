//! The binaries as real processes: what the README and the tour run.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::thread;

use serde_json::{Value, json};
use step04_errors::client::{CallError, Client, ClientConfig};
use step04_errors::protocol::{ErrorCode, read_frame, write_frame};
use step04_errors::service;

const CLIENT: &str = env!("CARGO_BIN_EXE_step04-client");
const SERVER: &str = env!("CARGO_BIN_EXE_step04-server");

#[test]
fn the_demo_passes_against_a_real_server() {
    // As the tour runs it: both sides with the same token.
    let mut methods = service::methods();
    methods.require_token("demo-token");
    let addr = common::spawn_server_offering(methods);
    let output = Command::new(CLIENT)
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
        "with a 100ms deadline -> TIMEOUT: ",
        "explode() -> INTERNAL: ",
        "with a wrong token -> UNAUTHORIZED: ",
        "not sent again -> SERVER_BUSY: ",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
}

#[test]
fn the_demo_fails_against_a_server_that_lies() {
    // Answers every request with 0, which is right for no call in the demo.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        while let Ok(Some(request)) = read_frame(&mut stream) {
            let request: Value = serde_json::from_slice(&request).unwrap();
            let lie = json!({"id": request["id"], "ok": true, "result": 0});
            write_frame(&mut stream, lie.to_string().as_bytes()).unwrap();
        }
    });
    let output = Command::new(CLIENT)
        .args(["--addr", &addr.to_string()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("wrong answers"), "{stderr}");
}

/// Kills the server process when dropped, even if the test panics first.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_server_binary_serves_on_the_port_it_prints() {
    let mut server = KillOnDrop(
        Command::new(SERVER)
            .args(["--addr", "127.0.0.1:0", "--token", "s3cret"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    let config = |token: Option<&str>| ClientConfig {
        token: token.map(String::from),
        ..ClientConfig::default()
    };
    let add = |token| {
        let client = Client::connect_with(addr, config(token)).unwrap();
        client.add(20.0, 22.0)
    };
    let (with_token, without) = (add(Some("s3cret")), add(None));
    drop(server);
    assert_eq!(with_token.unwrap(), 42.0);
    assert!(matches!(without, Err(CallError::Server(e)) if e.code == ErrorCode::Unauthorized));
}

#[test]
fn both_binaries_explain_themselves() {
    for bin in [CLIENT, SERVER] {
        let output = Command::new(bin).arg("--help").output().unwrap();
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains("--addr") && text.contains("--token"),
            "{text}"
        );
    }
}
