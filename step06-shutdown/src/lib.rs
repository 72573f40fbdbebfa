//! # Step 6: shutdown
//!
//! Step 5's server could only be killed, and a kill loses every call in
//! flight. This one stops gracefully, on Ctrl-C, SIGTERM or a signal from
//! the code that runs it: it refuses new connections, tells each client it
//! is going away, runs no new request (it refuses those that arrive),
//! finishes and answers the calls it has taken on, and closes. A call that
//! outlives the drain timeout is cancelled then. The client, told the
//! server is going away, sends new calls on a new connection, sends a
//! refused call again there, and fails a call whose answer cannot come
//! with an error that says so, never a hang.
//!
//! ## Layout
//!
//! - [`frame`]: cuts messages out of the byte stream (`FrameCodec`, a
//!   `tokio_util` decoder) and writes them (`write_frames`, the writer
//!   task), under `MAX_FRAME_LEN`.
//! - [`protocol`]: the messages (`Request` with its `Meta`, `Response` with
//!   its `RpcError` and `ErrorCode`) and their validation (`parse_request`,
//!   `decode`). No I/O.
//! - [`methods`]: the method registry, `Methods`: names to typed async
//!   handlers, or blocking ones run on `spawn_blocking`; the token check,
//!   and panic containment.
//! - [`server`]: the transport: a task per connection, a reader loop, a
//!   writer task, a task per waiting request, each stopped at its deadline;
//!   `ServerConfig` holds its limits and its drain timeout.
//! - [`shutdown`]: how the server stops: the signals the binary waits for,
//!   and how a connection drains.
//! - [`client`]: the generic client: a `Client` many tasks can share, its
//!   `PendingCalls` table, the reader and writer tasks of a connection, and
//!   the retry loop with its `RetryPolicy` and `CallOptions`.
//! - [`service`]: the example service: its methods, `add`, `divide`,
//!   `sleep`, `flaky`, `explode` and `hash`, and their typed client calls
//!   (`ServiceCalls`).
//! - [`load`]: the load generator behind `step06-client bench`; not part of
//!   the RPC itself, it measures it.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub mod client;
pub mod frame;
pub mod load;
pub mod methods;
pub mod protocol;
pub mod server;
pub mod service;
pub mod shutdown;

/// Locks `mutex`, ignoring poisoning: no code in this crate panics while
/// holding one of its locks, so a poisoned lock still guards consistent data.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
