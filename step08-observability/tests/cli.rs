//! The binaries as real processes: what the README and the tour run.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::rpc::client::{CallError, CallOptions, Client, ClientConfig};
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
    // Step 8's: health, and a row of stats for each method called.
    assert!(
        stdout.contains(r#"health() = {"status":"serving"}"#),
        "{stdout}"
    );
    let row = |method: &str| {
        stdout
            .lines()
            .find(|line| line.starts_with(method))
            .unwrap_or("")
    };
    assert!(row("add ").contains("10006  OK 10006 "), "{stdout}");
    // The call without the right token is not counted as an `add`.
    let other = row("(other)");
    assert!(
        other.contains("METHOD_NOT_FOUND 1, UNAUTHORIZED 1"),
        "{stdout}"
    );
    assert!(row("explode ").contains("  INTERNAL 1 "), "{stdout}");
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

/// SIGTERM, as `kill`, systemd or Kubernetes send it: the server drains.
/// The call it has read gets its answer after the notice, then the
/// connection ends cleanly, and the process exits with status 0, saying
/// what it did.
#[test]
fn sigterm_drains_the_server_then_it_exits_cleanly() {
    let (mut server, addr) =
        testkit::start_server_with(&common::bin("server"), &[], Stdio::piped());
    let mut stream = testkit::connect(addr);
    testkit::send(
        &mut stream,
        br#"{"id":1,"method":"sleep","params":{"ms":2000}}"#,
    );
    // Requests are read in order: once `add` is answered, `sleep` has been
    // read, and is running.
    let sum = testkit::exchange(
        &mut stream,
        br#"{"id":2,"method":"add","params":{"a":1,"b":2}}"#,
    );
    assert_eq!(sum["result"], 3.0, "{sum}");

    let kill = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let notice = testkit::receive(&mut stream);
    assert_eq!(notice["error"]["details"]["going_away"], true, "{notice}");
    let slept = testkit::receive(&mut stream);
    assert_eq!(
        (&slept["id"], slept["ok"].as_bool()),
        (&json!(1), Some(true)),
        "{slept}"
    );
    match testkit::read_frame(&mut stream) {
        Ok(None) => {}
        other => panic!("expected a clean end of stream, got {other:?}"),
    }
    drop(stream);

    wait_until("the server exits", STUCK, || {
        server.try_wait().unwrap().is_some()
    });
    let status = server.wait().unwrap();
    let mut stderr = String::new();
    let log = server.stderr.take().unwrap().read_to_string(&mut stderr);
    log.unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("SIGTERM: shutting down"), "{stderr}");
    assert!(stderr.ends_with("shut down\n"), "{stderr}");
}

/// Sends `signal` (`-STOP`, `-CONT`) to process `pid`, as `kill` does.
fn signal(signal: &str, pid: u32) {
    let kill = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
    assert!(kill.unwrap().success());
}

/// Whether every thread of process `pid` is stopped: `kill` returns once
/// the signal is sent, and a thread running on another core may serve a
/// request or two before it stops.
fn is_stopped(pid: u32) -> bool {
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    threads.map(Result::unwrap).all(|thread| {
        let stat = std::fs::read_to_string(thread.path().join("stat")).unwrap_or_default();
        // `pid (name) STATE ...`: the state follows the name's parenthesis.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with(['T', 't']))
    })
}

/// A frozen server (SIGSTOP: the process runs no more, but its kernel
/// still takes connections and bytes) answers nothing and never closes:
/// only the heartbeat can tell. The client gives the connection up within
/// its ping interval and timeout, well before the call's deadline, and
/// once the server is thawed, the next call connects anew and succeeds.
#[tokio::test]
async fn a_frozen_server_is_detected_by_the_heartbeat_and_the_next_call_reconnects() {
    let (server, addr) = testkit::start_server(&common::bin("server"), &[]);
    // A short interval, and a timeout long enough for the thawed server's
    // answer to the last call on a busy machine.
    let ping = Duration::from_millis(200);
    let config = ClientConfig {
        ping_interval: ping,
        ping_timeout: Duration::from_secs(2),
        ..ClientConfig::default()
    };
    let client = Client::connect_with(addr, config).await.unwrap();
    assert_eq!(client.add(1.0, 2.0).await.unwrap(), 3.0);
    // The heartbeat counts from that answer, the last frame heard.
    let start = Instant::now();

    signal("-STOP", server.id());
    wait_until("the server is stopped", STUCK, || is_stopped(server.id()));
    let options = CallOptions {
        timeout: Some(STUCK * 3),
        ..CallOptions::default()
    };
    let frozen = client
        .call_with("add", json!({"a": 1, "b": 2}), &options)
        .await;
    let took = start.elapsed();
    signal("-CONT", server.id());
    match frozen {
        Err(CallError::Io(e)) => assert!(e.to_string().contains("ping"), "{e}"),
        other => panic!("expected the heartbeat to give up, got {other:?}"),
    }
    // 2.2 s is the heartbeat's (a little less from `start`, just after
    // the answer); the rest allows for a busy machine.
    assert!(took >= ping && took < STUCK, "gave up after {took:?}");
    assert_eq!(client.add(2.0, 2.0).await.unwrap(), 4.0);
}
