//! The example service: the methods the server offers, and the typed calls
//! a client makes to them.
//!
//! Each method takes its parameters as a JSON object, `{"a": .., "b": ..}`,
//! and checks their shape itself: step 4 replaces that hand-written checking
//! with typed parameters decoded by serde.

use std::collections::HashMap;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::client::{CallError, Client};
use crate::lock;
use crate::methods::Methods;
use crate::protocol::RpcError;

/// The table of every method this step offers.
pub fn methods() -> Methods {
    let mut methods = Methods::new();
    methods.register("add", add);
    methods.register("divide", divide);
    methods.register("sleep", sleep);
    methods.register("flaky", flaky());
    methods
}

/// `add {a, b}` returns `a + b`.
fn add(params: &Value) -> Result<Value, RpcError> {
    let (a, b) = two_numbers(params)?;
    finite(a + b)
}

/// `divide {a, b}` returns `a / b`, or an error when `b` is zero.
fn divide(params: &Value) -> Result<Value, RpcError> {
    let (a, b) = two_numbers(params)?;
    if b == 0.0 {
        return Err("division by zero".into());
    }
    finite(a / b)
}

/// The longest `sleep` accepts: 10 seconds. Each call holds a server thread
/// for as long as it sleeps, so a caller must not be able to ask for hours.
pub const MAX_SLEEP_MS: u64 = 10_000;

/// `sleep {ms}` waits `ms` milliseconds, then returns `ms`: a slow call,
/// for showing that a fast one on the same connection can overtake it.
fn sleep(params: &Value) -> Result<Value, RpcError> {
    let ms = params
        .get("ms")
        .and_then(Value::as_u64)
        .ok_or("params.ms must be a whole number")?;
    if ms > MAX_SLEEP_MS {
        return Err(format!("params.ms must be at most {MAX_SLEEP_MS}").into());
    }
    thread::sleep(Duration::from_millis(ms));
    Ok(ms.into())
}

// ANCHOR: flaky
/// The most keys `flaky` remembers. Past that it forgets them all: each key
/// costs the server memory, and callers choose the keys.
pub const MAX_FLAKY_KEYS: usize = 1024;

/// The longest key `flaky` accepts, in bytes; a longer one is refused.
/// With [`MAX_FLAKY_KEYS`], this bounds what callers can make `flaky` hold:
/// 1,024 keys of 64 bytes are 64 KiB, and with the table's own slots under
/// 160 KiB in all. Without it, 1,023 keys of 1 MiB each held 1 GiB.
pub const MAX_FLAKY_KEY_BYTES: usize = 64;

/// `flaky {key, failures}` fails its first `failures` calls for `key` with
/// the code `unavailable`, then succeeds, returning how many calls for
/// `key` it has had: a server that is down for a moment, to show retries
/// on. Every attempt that reached it counts, so a caller can check.
fn flaky() -> impl Fn(&Value) -> Result<Value, RpcError> + Send + Sync {
    // The counts live in the closure, shared by every request thread.
    let calls = Mutex::new(HashMap::<String, u64>::new());
    move |params| {
        let key =
            (params.get("key").and_then(Value::as_str)).ok_or("params.key must be a string")?;
        let failures = (params.get("failures").and_then(Value::as_u64))
            .ok_or("params.failures must be a whole number")?;
        if key.len() > MAX_FLAKY_KEY_BYTES {
            return Err(format!("params.key must be at most {MAX_FLAKY_KEY_BYTES} bytes").into());
        }
        let mut calls = lock(&calls);
        if calls.len() >= MAX_FLAKY_KEYS && !calls.contains_key(key) {
            calls.clear();
        }
        let count = calls.entry(key.to_string()).or_insert(0);
        *count += 1;
        if *count <= failures {
            let message = format!("flaky: failing call {count} of {failures}");
            return Err(RpcError::new("unavailable", message));
        }
        Ok((*count).into())
    }
}
// ANCHOR_END: flaky

/// Reads the numbers `a` and `b` out of `params`.
fn two_numbers(params: &Value) -> Result<(f64, f64), String> {
    let number = |name: &str| {
        params
            .get(name)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("params.{name} must be a number"))
    };
    Ok((number("a")?, number("b")?))
}

/// JSON has no infinity: `1e308 + 1e308` must be an error, not a silent `null`.
fn finite(x: f64) -> Result<Value, RpcError> {
    if x.is_finite() {
        Ok(x.into())
    } else {
        Err("result is not a finite number".into())
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
