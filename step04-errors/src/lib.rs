//! # Step 4: validation and error codes
//!
//! Every frame is now checked field by field, and every failure carries one
//! of six codes, a typed [`protocol::ErrorCode`] that says whether a retry
//! may help, with `details` naming what was wrong. Methods take typed
//! parameters that serde decodes, a panic in one becomes `INTERNAL`, and a
//! server can require a shared token (`UNAUTHORIZED`).
//!
//! ## Layout
//!
//! - [`frame`]: cuts messages out of the byte stream (`read_frame`,
//!   `write_frame`, `MAX_FRAME_LEN`).
//! - [`protocol`]: the messages (`Request` with its `Meta`, `Response` with
//!   its `RpcError` and `ErrorCode`) and their validation (`parse_request`,
//!   `decode`). No I/O.
//! - [`methods`]: the method registry, `Methods`: names to typed handlers,
//!   the token check, and panic containment.
//! - [`server`]: the transport: accepts connections and answers each
//!   connection's requests before their deadlines; `ServerConfig` holds its
//!   limits.
//! - [`client`]: the generic client: a `Client` many threads can share, its
//!   `PendingCalls` table, the reader thread that matches answers to calls
//!   by id, and the retry loop with its `RetryPolicy` and `CallOptions`.
//! - [`service`]: the example service: its methods, `add`, `divide`,
//!   `sleep`, `flaky` and `explode`, and their typed client calls
//!   (`ServiceCalls`).
//! - [`load`]: the load generator behind `step04-client bench`; not part of
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
