//! # Step 8: observability
//!
//! Step 7's server wrote a few lines to stderr, and kept no numbers: when
//! a call was slow or failed, nothing said which call, from whom, or how
//! often. Now the server logs through `tracing`: every line carries the
//! fields of the spans it is in, the connection's peer, the call's request
//! id and method, and failures say their code and latency. `RUST_LOG` picks
//! what is logged, `--log-format json` writes it for machines. The server
//! also keeps numbers about itself (connections open, calls in flight, and
//! per method the calls by code and a latency histogram) and answers two
//! built-in methods: `stats`, the numbers, and `health`, which needs no
//! token. The client's `stats` subcommand prints them as a table.
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
//! - [`load`]: the load generator behind `step09-client bench`; not part of
//!   the RPC itself, it measures it.

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
