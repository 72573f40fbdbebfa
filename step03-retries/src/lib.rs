//! # Step 3: deadlines and retries
//!
//! Every call now has a deadline, sent to the server as the time it has
//! left (`meta.timeout_ms`), and the server skips or refuses work that is
//! already too late. The client retries a failed call with exponential
//! backoff and jitter, only when that cannot run it twice, and reconnects
//! when its connection dies.
//!
//! ## Layout
//!
//! - [`frame`]: cuts messages out of the byte stream (`read_frame`,
//!   `write_frame`, `MAX_FRAME_LEN`).
//! - [`protocol`]: the messages (`Request` with its `Meta`, `Response` with
//!   its `RpcError`) and how a frame's body is read as a request. No I/O.
//! - [`methods`]: the method registry, `Methods`: names to handlers.
//! - [`server`]: the transport: accepts connections and answers each
//!   connection's requests before their deadlines; `ServerConfig` holds its
//!   limits.
//! - [`client`]: the generic client: a `Client` many threads can share, its
//!   `PendingCalls` table, the reader thread that matches answers to calls
//!   by id, and the retry loop with its `RetryPolicy` and `CallOptions`.
//! - [`service`]: the example service: its methods, `add`, `divide`,
//!   `sleep` and `flaky`, and their typed client calls (`ServiceCalls`).
//! - [`load`]: the load generator behind `step03-client bench`; not part of
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
