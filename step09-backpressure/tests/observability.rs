//! Step 8: what a server tells about itself. Its numbers (`stats`) agree
//! exactly with the calls made; `health` answers without the token and
//! ahead of busy calls; its log carries each call's fields, for an answer,
//! an error and a panic, in the call's span wherever the call ran.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;

use common::rpc::metrics::OTHER;
use serde_json::{Value, json};
use testkit::{KillOnDrop, STUCK, wait_until};

/// Sends `request` and returns its answer.
fn call(stream: &mut TcpStream, request: Value) -> Value {
    testkit::exchange(stream, request.to_string().as_bytes())
}

/// The server's `stats`, asked on `stream`.
fn stats(stream: &mut TcpStream) -> Value {
    let answer = call(stream, json!({"id": 1000, "method": "stats"}));
    assert_eq!(answer["ok"], true, "{answer}");
    answer["result"].clone()
}

/// `stats`' methods, each with its calls and codes: what a test can know
/// exactly (latencies it can only bound).
fn counts(stats: &Value) -> Value {
    let methods = stats["methods"].as_object().unwrap().iter();
    let counts = methods.map(|(name, m)| (name.clone(), json!([m["calls"], m["codes"]])));
    Value::Object(counts.collect())
}

#[test]
fn stats_agree_exactly_with_the_calls_made() {
    let addr = common::spawn_server();
    let mut stream = testkit::connect(addr);
    let two = |a, b| json!({ "a": a, "b": b });
    for id in 1..=3 {
        call(
            &mut stream,
            json!({"id": id, "method": "add", "params": two(id, 1)}),
        );
    }
    call(
        &mut stream,
        json!({"id": 4, "method": "divide", "params": two(1, 0)}),
    );
    call(
        &mut stream,
        json!({"id": 5, "method": "divide", "params": two(1, 2)}),
    );
    call(&mut stream, json!({"id": 6, "method": "multiply"}));
    call(&mut stream, json!({"id": 7, "method": "explode"}));
    let late = json!({"timeout_ms": 10});
    let slept = json!({"id": 8, "method": "sleep", "params": {"ms": 5000}, "meta": late});
    assert_eq!(call(&mut stream, slept)["error"]["code"], "TIMEOUT");
    // Too broken to name a method: counted under OTHER.
    testkit::exchange(&mut stream, b"not json");
    call(&mut stream, json!({"id": 9, "method": "health"}));

    let stats = stats(&mut stream);
    assert_eq!(
        counts(&stats),
        json!({
            "add": [3, {"OK": 3}],
            "divide": [2, {"BAD_REQUEST": 1, "OK": 1}],
            "explode": [1, {"INTERNAL": 1}],
            "health": [1, {"OK": 1}],
            "sleep": [1, {"TIMEOUT": 1}],
            OTHER: [2, {"BAD_REQUEST": 1, "METHOD_NOT_FOUND": 1}],
        }),
        "{stats:#}"
    );
    // The sleep was stopped at its 10 ms deadline, not before.
    let slept = &stats["methods"]["sleep"]["latency_us"];
    assert!(slept["p50"].as_u64().unwrap() >= 10_000, "{slept}");
    // The stats call itself is the one call in flight.
    assert_eq!(stats["calls_in_flight"], 1, "{stats:#}");
    assert_eq!(stats["connections_open"], 1, "{stats:#}");
}

#[test]
fn the_gauges_follow_calls_and_connections_and_go_back_down() {
    let addr = common::spawn_server();
    let mut watcher = testkit::connect(addr);
    let mut sleeper = testkit::connect(addr);
    let sleep = json!({"id": 1, "method": "sleep", "params": {"ms": 300}});
    testkit::send(&mut sleeper, sleep.to_string().as_bytes());
    let gauges = |stats: Value| {
        (
            stats["connections_open"].clone(),
            stats["calls_in_flight"].clone(),
        )
    };
    wait_until("the sleep is in flight", STUCK, || {
        gauges(stats(&mut watcher)) == (json!(2), json!(2))
    });
    assert_eq!(testkit::receive(&mut sleeper)["result"], 300);
    // Its gauge went down before its answer was sent: no waiting here.
    assert_eq!(gauges(stats(&mut watcher)), (json!(2), json!(1)));
    drop(sleeper);
    wait_until("the closed connection is counted out", STUCK, || {
        gauges(stats(&mut watcher)) == (json!(1), json!(1))
    });
}

#[test]
fn health_needs_no_token_but_stats_does() {
    let mut methods = common::rpc::service::methods();
    methods.require_token("secret");
    let addr = common::spawn_server_offering(methods);
    let mut stream = testkit::connect(addr);
    let health = call(&mut stream, json!({"id": 1, "method": "health"}));
    assert_eq!(health["result"], json!({"status": "serving"}), "{health}");
    let stats = call(&mut stream, json!({"id": 2, "method": "stats"}));
    assert_eq!(stats["error"]["code"], "UNAUTHORIZED", "{stats}");
    // A stranger's calls count under OTHER, not under the methods named.
    let add = json!({"id": 4, "method": "add", "params": {"a": 1, "b": 2}});
    assert_eq!(call(&mut stream, add)["error"]["code"], "UNAUTHORIZED");
    let late = json!({"id": 5, "method": "add", "meta": {"timeout_ms": 0}});
    assert_eq!(call(&mut stream, late)["error"]["code"], "TIMEOUT");
    let token = json!({"token": "secret"});
    let stats = call(
        &mut stream,
        json!({"id": 3, "method": "stats", "meta": token}),
    );
    assert_eq!(stats["ok"], true, "{stats}");
    let strangers = json!([3, {"TIMEOUT": 1, "UNAUTHORIZED": 2}]);
    let counts = counts(&stats["result"]);
    assert_eq!(counts, json!({"health": [1, {"OK": 1}], OTHER: strangers}));
}

#[test]
fn health_is_answered_ahead_of_the_calls_running() {
    let addr = common::spawn_server();
    let mut stream = testkit::connect(addr);
    for id in 1..=10 {
        let sleep = json!({"id": id, "method": "sleep", "params": {"ms": 500}});
        testkit::send(&mut stream, sleep.to_string().as_bytes());
    }
    let health = json!({"id": 11, "method": "health"});
    testkit::send(&mut stream, health.to_string().as_bytes());
    let first = testkit::receive(&mut stream);
    assert_eq!(first["id"], 11, "{first}");
}

/// Starts this step's server binary with `RUST_LOG` set to `filter`, and
/// `args`; returns it, its address, and its log's lines as they come.
fn server_logging(filter: &str, args: &[&str]) -> (KillOnDrop, SocketAddr, mpsc::Receiver<String>) {
    let env = [("RUST_LOG", filter)];
    let (mut server, addr) =
        testkit::start_server_in(&common::bin("server"), args, &env, Stdio::piped());
    let stderr = server.stderr.take().unwrap();
    let (lines, log) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    (server, addr, log)
}

/// The lines of `log` up to the first that contains `last`, that one too.
fn lines_until(log: &mpsc::Receiver<String>, last: &str) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = log
            .recv_timeout(STUCK)
            .unwrap_or_else(|e| panic!("no line with {last:?} ({e}); got {lines:#?}"));
        lines.push(line);
        if lines.last().unwrap().contains(last) {
            return lines;
        }
    }
}

#[test]
fn json_logs_carry_each_call_s_fields_in_its_span() {
    // `RUST_LOG=stepNN=debug`, as the chapter says: this crate, at debug.
    let filter = format!("{}=debug", env!("CARGO_PKG_NAME").replace('-', "_"));
    let (_server, addr, log) = server_logging(&filter, &["--log-format", "json"]);
    let mut stream = testkit::connect(addr);
    let peer = stream.local_addr().unwrap().to_string();
    call(
        &mut stream,
        json!({"id": 1, "method": "add", "params": {"a": 1, "b": 2}}),
    );
    call(
        &mut stream,
        json!({"id": 2, "method": "divide", "params": {"a": 1, "b": 0}}),
    );
    // `sleep` waits, so it finishes as a task of its own, not in the loop.
    call(
        &mut stream,
        json!({"id": 3, "method": "sleep", "params": {"ms": 1}}),
    );
    call(&mut stream, json!({"id": 4, "method": "explode"}));
    let lines = lines_until(&log, r#""code":"INTERNAL""#);
    let events: Vec<Value> = (lines.iter())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    // The event of call `id`, with `message`, and the call's span in it.
    let event = |id: u64, message: &str| {
        let found = events.iter().find(|event| {
            let says = |field: &str| {
                (event["fields"][field].as_str()).is_some_and(|m| m.contains(message))
            };
            event["span"]["request_id"] == id && (says("message") || says("panic"))
        });
        found.unwrap_or_else(|| panic!("no {message:?} for call {id} in {events:#?}"))
    };
    let added = event(1, "answered");
    assert_eq!(added["span"]["method"], "add", "{added}");
    assert!(added["fields"]["latency_us"].is_u64(), "{added}");
    // The connection's span is around the call's: the peer is named.
    assert_eq!(added["spans"][0]["peer"], peer, "{added}");
    let refused = event(2, "failed");
    assert_eq!(refused["fields"]["code"], "BAD_REQUEST", "{refused}");
    assert!(refused["fields"]["latency_us"].is_u64(), "{refused}");
    assert_eq!(event(3, "answered")["span"]["method"], "sleep");
    let panic = event(4, "panics on purpose");
    assert_eq!(
        (&panic["level"], &panic["span"]["method"]),
        (&json!("ERROR"), &json!("explode"))
    );
    assert_eq!(event(4, "failed")["level"], "WARN");
}

#[test]
fn the_default_level_logs_failures_and_panics_not_answers() {
    // At `warn` too: the spans are at `error`, so no line loses them.
    for level in ["info", "warn"] {
        let (_server, addr, log) = server_logging(level, &[]);
        let mut stream = testkit::connect(addr);
        let add = json!({"id": 1, "method": "add", "params": {"a": 1, "b": 2}});
        call(&mut stream, add);
        let zero = json!({"id": 2, "method": "divide", "params": {"a": 1, "b": 0}});
        call(&mut stream, zero);
        // Late before it ran: the caller's choice, not the server's trouble.
        let late = json!({"id": 4, "method": "sleep", "meta": {"timeout_ms": 0}});
        assert_eq!(call(&mut stream, late)["error"]["code"], "TIMEOUT");
        call(&mut stream, json!({"id": 3, "method": "explode"}));
        let lines = lines_until(&log, "code=INTERNAL");
        let text = lines.join("\n");
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            !text.contains("answered") && !text.contains("BAD_REQUEST"),
            "{text}"
        );
        let panic = &lines[0];
        assert!(
            panic.contains("ERROR") && panic.contains("panics on purpose"),
            "{panic}"
        );
        assert!(
            panic.contains(r#"call{request_id=3 method="explode"}"#),
            "{panic}"
        );
    }
}
