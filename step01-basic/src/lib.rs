//! # Step 1: a basic RPC
//!
//! A client sends a request naming a method and its parameters; the server
//! runs that method and sends back its result or an error. Everything later
//! steps add (ids, retries, async, shutdown, ...) is built on this loop.
//!
//! The transport is a blocking TCP connection from `std::net`, with one
//! thread per connection on the server. Each message is a *frame*: a 4-byte
//! big-endian length followed by that many bytes of UTF-8 JSON.
//!
//! ## Layout
//!
//! - [`protocol`]: the wire types (`Request`, `Response`) and framing
//!   (`read_frame`, `write_frame`, `MAX_FRAME_LEN`).
//! - [`server`]: accepts connections and runs one request at a time per
//!   connection; `Methods` maps method names to handlers.
//! - [`client`]: connects and makes one call at a time.
//! - [`service`]: the example methods, `add` and `divide`.
//! - [`load`]: the load generator behind `step01-client bench`; not part of
//!   the RPC itself, it measures it.

pub mod client;
pub mod load;
pub mod protocol;
pub mod server;
pub mod service;
