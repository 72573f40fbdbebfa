//! Bad input, sent as raw bytes: nothing a peer sends may crash the server,
//! stop it serving other connections, or make it allocate without bound.

mod common;

use std::time::Duration;

use common::rpc::client::Client;
use common::rpc::frame::MAX_FRAME_LEN;
use common::rpc::server::{Limits, ServerConfig};
use common::rpc::service::ServiceCalls;
use common::{assert_server_answers, spawn_server};
use serde_json::json;
use testkit::{
    STUCK, closed_by_server, connect, exchange, frame, receive, send_raw, write_until_stalled,
};
use tokio::time;

#[test]
fn malformed_json_gets_an_error_and_the_connection_stays_usable() {
    let addr = spawn_server();
    let mut stream = connect(addr);
    let bad_bodies: [&[u8]; 7] = [
        b"{not json",
        b"",
        b"[1, 2]",
        br#"{"params": {"a": 1, "b": 2}}"#,
        br#"{"method": 7}"#,
        br#"{"method": "add", "params": {"a": 1, "b": 2}}"#, // no id
        &[0xC3, 0x28, 0xFF],                                 // not UTF-8
    ];
    for body in bad_bodies {
        let response = exchange(&mut stream, body);
        assert_eq!(response["ok"], false, "{body:?} -> {response}");
        assert_eq!(response["error"]["code"], "BAD_REQUEST", "{response}");
        let field = &response["error"]["details"]["field"];
        assert!(field.is_string(), "{body:?} -> {response}");
        // Same connection, next frame: still answered.
        let ok = exchange(
            &mut stream,
            br#"{"id":1,"method":"add","params":{"a":5,"b":3}}"#,
        );
        assert_eq!(ok, json!({"id": 1, "ok": true, "result": 8.0}));
    }
}

#[test]
fn frames_survive_any_split_or_merge_of_the_byte_stream() {
    let addr = spawn_server();
    let mut stream = connect(addr);
    let add = |a: u32| {
        frame(format!(r#"{{"id":{a},"method":"add","params":{{"a":{a},"b":1}}}}"#).as_bytes())
    };
    // One request dribbled a byte per write (with Nagle off so each byte
    // really leaves alone), then two requests merged into one write.
    stream.set_nodelay(true).unwrap();
    for byte in add(1) {
        send_raw(&mut stream, &[byte]);
    }
    send_raw(&mut stream, &[add(2), add(3)].concat());
    // Answers come in the order they finish; sort them by id.
    let mut responses: Vec<serde_json::Value> = (0..3).map(|_| receive(&mut stream)).collect();
    responses.sort_by_key(|response| response["id"].as_u64());
    for (response, id) in responses.iter().zip(1..) {
        let expected = json!({ "id": id, "ok": true, "result": f64::from(id + 1) });
        assert_eq!(*response, expected);
    }
}

#[test]
fn a_response_too_large_for_a_frame_becomes_an_error() {
    // An unknown method's name is echoed in the error, so a name just under
    // the frame limit makes a response just over it.
    let addr = spawn_server();
    let mut stream = connect(addr);
    let name = "x".repeat(MAX_FRAME_LEN as usize - 20);
    let request = json!({ "id": 1, "method": name });
    let response = exchange(&mut stream, &serde_json::to_vec(&request).unwrap());
    let error = &response["error"];
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("exceeds the frame limit"), "{message:.80}");
    assert_eq!(
        (&response["id"], &error["code"]),
        (&json!(1), &json!("INTERNAL"))
    );
    // The details say by how much, for a program to act on.
    assert_eq!(error["details"]["max_bytes"], MAX_FRAME_LEN);
    assert!(error["details"]["bytes"].as_u64() > Some(u64::from(MAX_FRAME_LEN)));
    let ok = exchange(
        &mut stream,
        br#"{"id":2,"method":"add","params":{"a":5,"b":3}}"#,
    );
    assert_eq!(ok, json!({"id": 2, "ok": true, "result": 8.0}));
}

#[tokio::test]
async fn oversize_length_prefix_closes_only_that_connection() {
    let addr = spawn_server();
    // A client connected before the attack must keep working through it.
    let bystander = Client::connect(addr).await.unwrap();
    // 0xFFFFFFFF claims a 4 GiB frame; "GET " is what an HTTP client sends
    // first, and reads as a 1.2 GB length.
    for header in [[0xFF; 4], *b"GET "] {
        let mut stream = connect(addr);
        send_raw(&mut stream, &header);
        assert!(closed_by_server(&mut stream), "{header:?} left open");
        assert_eq!(bystander.add(1.0, 2.0).await.unwrap(), 3.0);
        assert_server_answers(addr);
    }
}

#[test]
fn garbage_harms_no_other_client() {
    let addr = spawn_server();
    let mut stream = connect(addr);
    send_raw(&mut stream, b"hello, is this the RPC server?\r\n\r\n");
    assert!(closed_by_server(&mut stream));
    assert_server_answers(addr);
}

#[test]
fn disconnect_mid_frame_harms_no_other_client() {
    let addr = spawn_server();
    let cuts: [&[u8]; 3] = [
        &[0, 0],                     // in the header
        &[0, 0, 0, 100],             // after the header
        &[0, 0, 0, 100, b'{', b'"'], // in the body
    ];
    for cut in cuts {
        let mut stream = connect(addr);
        send_raw(&mut stream, cut);
        drop(stream);
        assert_server_answers(addr);
    }
}

#[test]
fn a_stalled_peer_does_not_block_other_clients() {
    let addr = spawn_server();
    // Announces 100 bytes, sends 2, and then just sits there, open.
    let mut staller = connect(addr);
    send_raw(&mut staller, &[0, 0, 0, 100, b'{', b'"']);
    assert_server_answers(addr);
    drop(staller);
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_and_the_rest_still_served() {
    let limits = Limits {
        max_connections: 2,
        ..Default::default()
    };
    let addr = common::spawn_server_with(ServerConfig {
        limits,
        ..ServerConfig::default()
    });
    // A call on each proves the server has counted both connections.
    let first = Client::connect(addr).await.unwrap();
    let second = Client::connect(addr).await.unwrap();
    assert_eq!(first.add(1.0, 1.0).await.unwrap(), 2.0);
    assert_eq!(second.add(2.0, 2.0).await.unwrap(), 4.0);

    let mut third = connect(addr);
    assert!(
        closed_by_server(&mut third),
        "a third connection was served"
    );
    assert_eq!(first.add(3.0, 3.0).await.unwrap(), 6.0);

    // Once a connection ends its place is free again. The server notices
    // the end on its own thread, so poll rather than guess. (Not with
    // `wait_until`, which would block the thread that `first`'s tasks must
    // end on.)
    drop(first);
    let freed = async {
        loop {
            if let Ok(client) = Client::connect(addr).await
                && client.add(4.0, 4.0).await.is_ok()
            {
                return;
            }
            time::sleep(Duration::from_millis(10)).await;
        }
    };
    let waiting = "the freed place is given to a new connection";
    time::timeout(STUCK, freed)
        .await
        .unwrap_or_else(|_| panic!("timed out after {STUCK:?} waiting until {waiting}"));
}

#[test]
fn a_peer_that_never_reads_is_throttled_not_buffered() {
    let addr = spawn_server();
    let mut flooder = connect(addr);
    // Frames of one garbage byte: each earns an error response of ~130 bytes
    // that we never read. A server that kept reading regardless would have
    // to buffer those answers without bound; ours blocks writing them, stops
    // reading, and our writes stall.
    let chunk: Vec<u8> = [0, 0, 0, 1, b'x'].repeat(64 * 1024 / 5);
    let pushed_back = write_until_stalled(&mut flooder, &chunk);
    assert_eq!(
        pushed_back,
        Ok(()),
        "the server read on without pushing back"
    );
    // The flooder's connection is stuck writing to it; everyone else is fine.
    assert_server_answers(addr);
}

#[test]
fn a_flood_of_valid_requests_never_read_is_throttled_not_buffered() {
    let addr = spawn_server();
    let mut flooder = connect(addr);
    // Valid requests, each one a call, each answered with an
    // error that echoes its 8 KiB method name: the answers fill the socket
    // buffers quickly. Unbounded, the server would keep reading and start a
    // task per request, each stuck writing; bounded, it stops reading.
    let name = "x".repeat(8 * 1024);
    let mut frames = Vec::new();
    for id in 0..16 {
        let request = json!({"id": id, "method": name});
        frames.extend(frame(&serde_json::to_vec(&request).unwrap()));
    }
    let pushed_back = write_until_stalled(&mut flooder, &frames);
    assert_eq!(
        pushed_back,
        Ok(()),
        "the server read on without pushing back"
    );
    assert_server_answers(addr);
}
