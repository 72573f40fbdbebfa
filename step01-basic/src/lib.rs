//! # Step 1: a basic RPC
//!
//! A client sends a request naming a method and its parameters; the server
//! runs that method and sends back its result or an error. Everything later
//! steps add is built on this loop. Here it runs on blocking `std::net`
//! sockets, one server thread per connection, one call at a time.
//!
//! ## Layout
//!
//! - [`frame`]: cuts messages out of the byte stream (`read_frame`,
//!   `write_frame`, `MAX_FRAME_LEN`).
//! - [`protocol`]: the messages (`Request`, `Response`) and how a frame's
//!   body is read as a request. No I/O.
//! - [`methods`]: the method registry, `Methods`: names to handlers.
//! - [`server`]: the transport: accepts connections and answers each
//!   connection's requests; `ServerConfig` holds its limits.
//! - [`client`]: the generic client: connects and makes calls.
//! - [`service`]: the example service: its methods, `add` and `divide`, and
//!   their typed client calls (`ServiceCalls`).
//! - [`load`]: the load generator behind `step01-client bench`; not part of
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
