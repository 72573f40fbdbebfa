//! # Step 7: heartbeat
//!
//! Step 6's server and client each learn that the other has gone when the
//! connection ends. A peer that freezes, or that the network loses, never
//! ends it: it just goes silent. Now the client pings a server that has
//! been silent for a while with calls waiting, and gives the connection up
//! when nothing comes back: its calls fail with an error that says so, and
//! the next call connects anew. The server closes a connection that has
//! given it nothing to do (no request, no call running) for its idle
//! timeout, as it would at a shutdown, so a peer that vanished costs it
//! nothing for long.
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
//!   writer task, a task per waiting request, each stopped at its deadline;
//!   `ServerConfig` holds its limits and its drain timeout.
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
//! - [`load`]: the load generator behind `step07-client bench`; not part of
//!   the RPC itself, it measures it.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub mod client;
pub mod frame;
pub mod heartbeat;
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
