//! # Step 2: request ids
//!
//! Step 1 could only have one call at a time on a connection, because the
//! only way to match an answer to its call was order. Now every request
//! carries an `id` chosen by the client, every response carries the id it
//! answers, and so a connection can carry many calls at once, answered in
//! whatever order they finish: a slow call no longer holds up a fast one.
//! Responses also grow a shape a program can use, `ok` and an error `code`.
//!
//! The transport is a blocking TCP connection from `std::net`, with one
//! thread per connection and now one per request on the server. Each
//! message is a *frame*: a 4-byte big-endian length followed by that many
//! bytes of UTF-8 JSON.
//!
//! ## Layout
//!
//! - [`protocol`]: the wire types (`Request` with its `Meta`, `Response`
//!   with its `RpcError`) and framing (`read_frame`, `write_frame`,
//!   `MAX_FRAME_LEN`).
//! - [`server`]: accepts connections and runs each request on its own
//!   thread, writing answers as they finish; `Methods` maps method names to
//!   handlers.
//! - [`client`]: a `Client` many threads can share, its `PendingCalls`
//!   table, and the reader thread that matches answers to calls by id.
//! - [`service`]: the example methods, `add`, `divide` and `sleep`.
//! - [`load`]: the load generator behind `step02-client bench`; not part of
//!   the RPC itself, it measures it.

pub mod client;
pub mod load;
pub mod protocol;
pub mod server;
pub mod service;
