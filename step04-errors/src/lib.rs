//! # Step 4: validation and error codes
//!
//! Step 3's server answered every failure, but each place that failed
//! made up its own code (`"bad_request"`, `"unavailable"`, ...), each
//! method checked its parameters by hand, a JSON array was taken for a
//! request, and a method that panicked left its caller waiting until its
//! deadline. Now every frame is checked field by field, every failure has
//! one of six codes, a typed [`protocol::ErrorCode`] that says whether a
//! retry may help, and `details` say what exactly was wrong. Methods take
//! their parameters as types that serde decodes, a panic in one becomes
//! `INTERNAL`, and a server can require a shared token (`UNAUTHORIZED`).
//!
//! The transport is a blocking TCP connection from `std::net`, with one
//! thread per connection and now one per request on the server. Each
//! message is a *frame*: a 4-byte big-endian length followed by that many
//! bytes of UTF-8 JSON.
//!
//! ## Layout
//!
//! - [`protocol`]: the wire types (`Request` with its `Meta`, `Response`
//!   with its `RpcError` and `ErrorCode`), their validation
//!   (`parse_request`, `decode`) and framing (`read_frame`, `write_frame`,
//!   `MAX_FRAME_LEN`).
//! - [`server`]: accepts connections and runs each request on its own
//!   thread, writing answers as they finish; `Methods` maps method names to
//!   typed handlers, checks the token and catches a handler's panic; each
//!   request is checked against its caller's deadline.
//! - [`client`]: a `Client` many threads can share, its `PendingCalls`
//!   table, the reader thread that matches answers to calls by id, and the
//!   retry loop with its `RetryPolicy` and `CallOptions`.
//! - [`service`]: the example methods, `add`, `divide`, `sleep`, `flaky`
//!   and `explode`.
//! - [`load`]: the load generator behind `step04-client bench`; not part of
//!   the RPC itself, it measures it.

pub mod client;
pub mod load;
pub mod protocol;
pub mod server;
pub mod service;
