//! # Step 3: deadlines and retries
//!
//! Step 2's calls could wait forever, and a call that failed stayed failed.
//! Now every call has a deadline: the client gives up at it, and tells the
//! server how long is left (`meta.timeout_ms`), so that the server does not
//! start, or answer with, work nobody waits for any more. Within that
//! deadline the client retries what failed for a passing reason (a dead
//! connection, an `unavailable` answer), with exponential backoff and
//! jitter, and reconnects when the connection died. What it must never do
//! is run a call twice that is not safe to run twice: a call not marked
//! idempotent is sent again only if it provably never left the client.
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
//!   handlers; each request is checked against its caller's deadline.
//! - [`client`]: a `Client` many threads can share, its `PendingCalls`
//!   table, the reader thread that matches answers to calls by id, and the
//!   retry loop with its `RetryPolicy` and `CallOptions`.
//! - [`service`]: the example methods, `add`, `divide`, `sleep` and
//!   `flaky`.
//! - [`load`]: the load generator behind `step03-client bench`; not part of
//!   the RPC itself, it measures it.

pub mod client;
pub mod load;
pub mod protocol;
pub mod server;
pub mod service;
