//! The example service: the methods the server offers, and the typed calls
//! a client makes to them.
//!
//! Each method takes its parameters as a struct, `TwoNumbers { a, b }` or
//! `SleepParams { ms }`, which the server decodes from the request's JSON
//! before the method runs. A method checks only what a type cannot say,
//! such as a divisor that must not be zero.

use std::collections::HashMap;
use std::future::{self, Future};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{CallError, Client};
use crate::lock;
use crate::methods::Methods;
use crate::protocol::{ErrorCode, RpcError};

/// The table of every method this step offers.
pub fn methods() -> Methods {
    let mut methods = Methods::new();
    methods.register("add", add);
    methods.register("divide", divide);
    methods.register("sleep", sleep);
    methods.register("flaky", flaky());
    methods.register("explode", explode);
    methods.register_blocking("hash", hash);
    methods
}

/// The parameters of `add` and `divide`: `{"a": 5, "b": 3}`.
#[derive(Deserialize)]
struct TwoNumbers {
    a: f64,
    b: f64,
}

/// `add {a, b}` returns `a + b`.
async fn add(TwoNumbers { a, b }: TwoNumbers) -> Result<f64, RpcError> {
    finite(a + b)
}

/// `divide {a, b}` returns `a / b`, or `BAD_REQUEST` when `b` is zero.
async fn divide(TwoNumbers { a, b }: TwoNumbers) -> Result<f64, RpcError> {
    if b == 0.0 {
        let (field, expected) = ("params.b", "a number other than zero");
        return Err(RpcError::bad_request(field, expected, "division by zero"));
    }
    finite(a / b)
}

/// The longest `sleep` accepts: 10 seconds. Each call holds a place under
/// its connection's bound for as long as it sleeps, so a caller must not be
/// able to ask for hours.
pub const MAX_SLEEP_MS: u64 = 10_000;

/// The parameters of `sleep`: `{"ms": 300}`.
#[derive(Deserialize)]
struct SleepParams {
    ms: u64,
}

/// `sleep {ms}` waits `ms` milliseconds, then returns `ms`: a slow call,
/// for showing that a fast one on the same connection can overtake it.
/// It waits on tokio's timer, not `thread::sleep`: a sleeping call holds no
/// thread, and is stopped at once if its caller's deadline passes.
async fn sleep(SleepParams { ms }: SleepParams) -> Result<u64, RpcError> {
    if ms > MAX_SLEEP_MS {
        let expected = format!("at most {MAX_SLEEP_MS}");
        let message = format!("`params.ms` must be {expected}");
        return Err(RpcError::bad_request("params.ms", &expected, message));
    }
    tokio::time::sleep(Duration::from_millis(ms)).await;
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
fn flaky() -> impl Fn(FlakyParams) -> future::Ready<Result<u64, RpcError>> + Send + Sync {
    // The counts live in the closure, shared by every request task.
    let calls = Mutex::new(HashMap::<String, u64>::new());
    // Its work never waits, so its future is ready at once.
    move |params| future::ready(count_flaky_call(&calls, params))
}

/// One call of `flaky`, counted in `calls`.
fn count_flaky_call(
    calls: &Mutex<HashMap<String, u64>>,
    FlakyParams { key, failures }: FlakyParams,
) -> Result<u64, RpcError> {
    if key.len() > MAX_FLAKY_KEY_BYTES {
        let expected = format!("at most {MAX_FLAKY_KEY_BYTES} bytes");
        let message = format!("`params.key` must be {expected}");
        return Err(RpcError::bad_request("params.key", &expected, message));
    }
    let mut calls = lock(calls);
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

/// `explode` panics, on purpose, whatever its params: a bug in a method,
/// to show that its caller gets `INTERNAL` and the server goes on.
async fn explode(_params: Value) -> Result<Value, RpcError> {
    panic!("explode: this method panics on purpose")
}

/// The most rounds `hash` accepts: a few hundred milliseconds of one core.
pub const MAX_HASH_ROUNDS: u32 = 20_000_000;

/// The parameters of `hash`: `{"text": "abc", "rounds": 1000}`.
#[derive(Deserialize)]
struct HashParams {
    text: String,
    rounds: u32,
}

/// `hash {text, rounds}` hashes `text`, then the hash, `rounds` times in
/// all, and returns the last hash as 16 hex digits: slow on purpose, the
/// way a password hash is, so that it computes for a while without ever
/// waiting. Registered with `register_blocking`: on a runtime thread it
/// would stop every other task that thread serves until it was done.
fn hash(HashParams { text, rounds }: HashParams) -> Result<String, RpcError> {
    if rounds > MAX_HASH_ROUNDS {
        let expected = format!("at most {MAX_HASH_ROUNDS}");
        let message = format!("`params.rounds` must be {expected}");
        return Err(RpcError::bad_request("params.rounds", &expected, message));
    }
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    let mut digest = hasher.finish();
    for _ in 1..rounds {
        let mut hasher = DefaultHasher::new();
        digest.hash(&mut hasher);
        digest = hasher.finish();
    }
    Ok(format!("{digest:016x}"))
}

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
/// write `client.add(5.0, 3.0).await` instead of building JSON by hand.
///
/// Each call returns a future that is `Send`, so that a caller can spawn
/// it on any runtime thread. (An `async fn` in a public trait would not
/// promise that, and the compiler warns about it.)
pub trait ServiceCalls {
    /// Calls `add {a, b}`.
    fn add(&self, a: f64, b: f64) -> impl Future<Output = Result<f64, CallError>> + Send;
    /// Calls `divide {a, b}`.
    fn divide(&self, a: f64, b: f64) -> impl Future<Output = Result<f64, CallError>> + Send;
    /// Calls `sleep {ms}`, which answers after `ms` milliseconds.
    fn sleep(&self, ms: u64) -> impl Future<Output = Result<u64, CallError>> + Send;
}

impl ServiceCalls for Client {
    async fn add(&self, a: f64, b: f64) -> Result<f64, CallError> {
        let result = self.call("add", json!({ "a": a, "b": b })).await?;
        as_number(result)
    }

    async fn divide(&self, a: f64, b: f64) -> Result<f64, CallError> {
        let result = self.call("divide", json!({ "a": a, "b": b })).await?;
        as_number(result)
    }

    async fn sleep(&self, ms: u64) -> Result<u64, CallError> {
        let result = self.call("sleep", json!({ "ms": ms })).await?;
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
