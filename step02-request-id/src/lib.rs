//! # Step 2: request ids
//!
//! Every request now carries an `id` chosen by the client and every
//! response the id it answers, so one connection carries many calls at
//! once, answered in whatever order they finish: a slow call no longer
//! holds up a fast one. The server runs each request on a thread of its own.
//!
//! ## Layout
//!
//! - [`frame`]: cuts messages out of the byte stream (`read_frame`,
//!   `write_frame`, `MAX_FRAME_LEN`).
//! - [`protocol`]: the messages (`Request` with its `Meta`, `Response` with
//!   its `RpcError`) and how a frame's body is read as a request. No I/O.
//! - [`methods`]: the method registry, `Methods`: names to handlers.
//! - [`server`]: the transport: accepts connections and answers each
//!   connection's requests; `ServerConfig` holds its limits.
//! - [`client`]: the generic client: a `Client` many threads can share, its
//!   `PendingCalls` table, and the reader thread that matches answers to
//!   calls by id.
//! - [`service`]: the example service: its methods, `add`, `divide` and
//!   `sleep`, and their typed client calls (`ServiceCalls`).
//! - [`load`]: the load generator behind `step02-client bench`; not part of
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
