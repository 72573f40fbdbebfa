//! The binaries as real processes: what the README and the tour run.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::thread;

use serde_json::{Value, json};
use step03_retries::client::Client;
use step03_retries::protocol::{read_frame, write_frame};

const CLIENT: &str = env!("CARGO_BIN_EXE_step03-client");
const SERVER: &str = env!("CARGO_BIN_EXE_step03-server");

#[test]
fn the_demo_passes_against_a_real_server() {
    let addr = common::spawn_server();
    let output = Command::new(CLIENT)
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
    // Retried until it succeeded; not retried; timed out.
    assert!(
        stdout.contains("idempotent = 3 (the server saw 3 attempts)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("not idempotent -> error unavailable"),
        "{stdout}"
    );
    assert!(
        stdout.contains("with a 100ms deadline -> timeout"),
        "{stdout}"
    );
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
            .args(["--addr", "127.0.0.1:0"])
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
    let result =
        Client::connect(addr).and_then(|c| c.add(20.0, 22.0).map_err(std::io::Error::other));
    drop(server);
    assert_eq!(result.unwrap(), 42.0);
}

#[test]
fn both_binaries_explain_themselves() {
    for bin in [CLIENT, SERVER] {
        let output = Command::new(bin).arg("--help").output().unwrap();
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("--addr"), "{text}");
    }
}
