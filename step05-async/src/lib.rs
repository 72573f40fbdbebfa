//! # Step 5: async
//!
//! The same protocol as step 4, byte for byte, on tokio. A connection is a
//! task, and so is every request that has to wait: ten thousand calls in
//! flight on one connection, or ten thousand idle connections, cost memory,
//! not threads. A call given up on (its deadline passed, its connection
//! closed) is cancelled on the server, and a call the client drops leaves
//! nothing behind.
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
//!   `ServerConfig` holds its limits.
//! - [`client`]: the generic client: a `Client` many tasks can share, its
//!   `PendingCalls` table, the reader and writer tasks of a connection, and
//!   the retry loop with its `RetryPolicy` and `CallOptions`.
//! - [`service`]: the example service: its methods, `add`, `divide`,
//!   `sleep`, `flaky`, `explode` and `hash`, and their typed client calls
//!   (`ServiceCalls`).
//! - [`load`]: the load generator behind `step05-client bench`; not part of
//!   the RPC itself, it measures it.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub mod client;
pub mod frame;
pub mod load;
pub mod methods;
pub mod protocol;
pub mod server;
pub mod service;

/// Locks `mutex`, ignoring poisoning: no code in this crate panics while
/// holding one of its locks, so a poisoned lock still guards consistent data.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
