//! # Step 9: backpressure
//!
//! Step 8's server takes on whatever it is sent: a flood of calls queues
//! up behind its handlers until callers time out, and a peer that sends
//! large requests and never reads the answers makes it hold them all. Now
//! the server has limits (`Limits`, in their own module): connections,
//! calls in flight per connection, handlers running in all, and bytes held
//! per connection and in all. Past one, a request is shed: answered
//! `SERVER_BUSY` at once, not run, with a hint of when to come back;
//! `health` and `stats` never are. A connection whose peer does not read
//! its answers is not read from. The client treats a shed call as not
//! run, waits at least the hint before sending it again, and spends its
//! retries from a budget, so that an overloaded server is not buried in
//! retries.
//!
//! ## Layout
//!
//! - [`frame`]: cuts messages out of the byte stream (`FrameCodec`, a
//!   `tokio_util` decoder) and writes them (`write_frames`, the writer
//!   task), under `MAX_FRAME_LEN`.
//! - [`protocol`]: the messages (`Request` with its `Meta`, `Response` with
//!   its `RpcError` and `ErrorCode`, `Ping` and `Pong`) and their validation
//!   (`parse_message`, `decode`). No I/O.
//! - [`methods`]: the method registry, `Methods`: names to typed async
//!   handlers, or blocking ones run on `spawn_blocking`; the token check,
//!   and panic containment.
//! - [`server`]: the transport: a task per connection, a reader loop, a
//!   writer task, a task per waiting request, each stopped at its deadline
//!   and run in a span of its own; `ServerConfig` holds its limits and its
//!   drain timeout; `health` and `stats` are answered here.
//! - [`limits`]: what peers can make the server hold (`Limits`), and the
//!   byte budgets that bound it (`Budget`, `Charge`, `Outgoing`).
//! - [`metrics`]: the numbers the server keeps (`Metrics`): gauges, and
//!   per method the calls by code and a latency histogram.
//! - [`logging`]: where the log goes and in what shape (`init`), for both
//!   binaries.
//! - [`shutdown`]: how the server stops: the signals the binary waits for,
//!   and how a connection drains.
//! - [`heartbeat`]: how each end finds out that the other has gone silent:
//!   the client's pings (`Heartbeat`); the server's idle timeout is in
//!   `serve_connection`.
//! - [`client`]: the generic client: a `Client` many tasks can share, its
//!   `PendingCalls` table, the reader and writer tasks of a connection, and
//!   the retry loop with its `RetryPolicy` and `CallOptions`.
//! - [`service`]: the example service: its methods, `add`, `divide`,
//!   `sleep`, `flaky`, `explode` and `hash`, and their typed client calls
//!   (`ServiceCalls`).
//! - [`load`]: the load generators behind `step09-client bench` and
//!   `flood`; not part of the RPC itself, they measure it.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub mod client;
pub mod frame;
pub mod heartbeat;
pub mod limits;
pub mod load;
pub mod logging;
pub mod methods;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod service;
pub mod shutdown;

/// Locks `mutex`, ignoring poisoning: no code in this crate panics while
/// holding one of its locks, so a poisoned lock still guards consistent data.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
