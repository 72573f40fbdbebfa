//! The example service: the methods the server offers, and the typed calls
//! a client makes to them.
//!
//! Each method takes its parameters as a struct, `TwoNumbers { a, b }` or
//! `SleepParams { ms }`, which the server decodes from the request's JSON
//! before the method runs. A method checks only what a type cannot say,
//! such as a divisor that must not be zero.

use std::collections::HashMap;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{CallError, Client};
use crate::lock;
use crate::methods::Methods;
use crate::protocol::{ErrorCode, RpcError};

// ANCHOR: methods
/// The table of every method this step offers.
pub fn methods() -> Methods {
    let mut methods = Methods::new();
    methods.register("add", add);
    methods.register("divide", divide);
    methods.register("sleep", sleep);
    methods.register("flaky", flaky());
    methods.register("explode", explode);
    methods
}

/// The parameters of `add` and `divide`: `{"a": 5, "b": 3}`.
#[derive(Deserialize)]
struct TwoNumbers {
    a: f64,
    b: f64,
}

/// `add {a, b}` returns `a + b`.
fn add(TwoNumbers { a, b }: TwoNumbers) -> Result<f64, RpcError> {
    finite(a + b)
}

/// `divide {a, b}` returns `a / b`, or `BAD_REQUEST` when `b` is zero.
fn divide(TwoNumbers { a, b }: TwoNumbers) -> Result<f64, RpcError> {
    if b == 0.0 {
        let (field, expected) = ("params.b", "a number other than zero");
        return Err(RpcError::bad_request(field, expected, "division by zero"));
    }
    finite(a / b)
}
// ANCHOR_END: methods

/// The longest `sleep` accepts: 10 seconds. Each call holds a server thread
/// for as long as it sleeps, so a caller must not be able to ask for hours.
pub const MAX_SLEEP_MS: u64 = 10_000;

/// The parameters of `sleep`: `{"ms": 300}`.
#[derive(Deserialize)]
struct SleepParams {
    ms: u64,
}

/// `sleep {ms}` waits `ms` milliseconds, then returns `ms`: a slow call,
/// for showing that a fast one on the same connection can overtake it.
fn sleep(SleepParams { ms }: SleepParams) -> Result<u64, RpcError> {
    if ms > MAX_SLEEP_MS {
        let expected = format!("at most {MAX_SLEEP_MS}");
        let message = format!("`params.ms` must be {expected}");
        return Err(RpcError::bad_request("params.ms", &expected, message));
    }
    thread::sleep(Duration::from_millis(ms));
    Ok(ms)
}

/// The most keys `flaky` remembers. Past that it forgets them all: each key
/// costs the server memory, and callers choose the keys.
pub const MAX_FLAKY_KEYS: usize = 1024;

/// The longest key `flaky` accepts, in bytes; a longer one is refused.
/// With [`MAX_FLAKY_KEYS`], this bounds what callers can make `flaky` hold:
/// 1,024 keys of 64 bytes are 64 KiB, and with the table's own slots under
/// 160 KiB in all. Without it, 1,023 keys of 1 MiB each held 1 GiB.
pub const MAX_FLAKY_KEY_BYTES: usize = 64;

/// The parameters of `flaky`: `{"key": "k1", "failures": 2}`.
#[derive(Deserialize)]
struct FlakyParams {
    key: String,
    failures: u64,
}

/// `flaky {key, failures}` fails its first `failures` calls for `key` with
/// the code `SERVER_BUSY`, then succeeds, returning how many calls for
/// `key` it has had: a server that is down for a moment, to show retries
/// on. Every attempt that reached it counts, so a caller can check.
fn flaky() -> impl Fn(FlakyParams) -> Result<u64, RpcError> + Send + Sync {
    // The counts live in the closure, shared by every request thread.
    let calls = Mutex::new(HashMap::<String, u64>::new());
    move |FlakyParams { key, failures }| {
        if key.len() > MAX_FLAKY_KEY_BYTES {
            let expected = format!("at most {MAX_FLAKY_KEY_BYTES} bytes");
            let message = format!("`params.key` must be {expected}");
            return Err(RpcError::bad_request("params.key", &expected, message));
        }
        let mut calls = lock(&calls);
        if calls.len() >= MAX_FLAKY_KEYS && !calls.contains_key(&key) {
            calls.clear();
        }
        let count = calls.entry(key).or_insert(0);
        *count += 1;
        if *count <= failures {
            let message = format!("flaky: failing call {count} of {failures}");
            return Err(RpcError::new(ErrorCode::ServerBusy, message));
        }
        Ok(*count)
    }
}

// ANCHOR: explode
/// `explode` panics, on purpose, whatever its params: a bug in a method,
/// to show that its caller gets `INTERNAL` and the server goes on.
fn explode(_params: Value) -> Result<Value, RpcError> {
    panic!("explode: this method panics on purpose")
}
// ANCHOR_END: explode

/// JSON has no infinity: `1e308 + 1e308` must be an error, not a silent
/// `null`. The caller's numbers are to blame, so it is a `BAD_REQUEST`.
fn finite(x: f64) -> Result<f64, RpcError> {
    if x.is_finite() {
        Ok(x)
    } else {
        let (field, expected) = ("params", "numbers with a finite result");
        Err(RpcError::bad_request(
            field,
            expected,
            "result is not a finite number",
        ))
    }
}

/// The example service's calls, typed, on the generic [`Client`].
///
/// The client only moves requests and answers; this trait is what knows
/// that `add` takes `{a, b}` and answers a number. A program imports it to
/// write `client.add(5.0, 3.0)` instead of building JSON by hand.
pub trait ServiceCalls {
    /// Calls `add {a, b}`.
    fn add(&self, a: f64, b: f64) -> Result<f64, CallError>;
    /// Calls `divide {a, b}`.
    fn divide(&self, a: f64, b: f64) -> Result<f64, CallError>;
    /// Calls `sleep {ms}`, which answers after `ms` milliseconds.
    fn sleep(&self, ms: u64) -> Result<u64, CallError>;
}

impl ServiceCalls for Client {
    fn add(&self, a: f64, b: f64) -> Result<f64, CallError> {
        let result = self.call("add", json!({ "a": a, "b": b }))?;
        as_number(result)
    }

    fn divide(&self, a: f64, b: f64) -> Result<f64, CallError> {
        let result = self.call("divide", json!({ "a": a, "b": b }))?;
        as_number(result)
    }

    fn sleep(&self, ms: u64) -> Result<u64, CallError> {
        let result = self.call("sleep", json!({ "ms": ms }))?;
        result
            .as_u64()
            .ok_or_else(|| CallError::BadResponse(format!("expected a whole number, got {result}")))
    }
}

/// A result that should be a number, or the error that it is not.
fn as_number(result: Value) -> Result<f64, CallError> {
    result
        .as_f64()
        .ok_or_else(|| CallError::BadResponse(format!("expected a number, got {result}")))
}
