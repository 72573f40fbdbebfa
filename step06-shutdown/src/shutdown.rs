//! Graceful shutdown: stop taking work, finish the work taken, then stop.
//!
//! [`crate::server::run`] stops when the future it is given completes (in
//! the binary, at the first of [`StopSignals`]: Ctrl-C or SIGTERM). In
//! this order:
//!
//! 1. It closes the listener: a new connection is refused.
//! 2. It tells every connection to drain ([`drain`]): each sends its peer
//!    the going-away notice, reads no more requests, lets the calls it has
//!    read finish and writes their answers, then closes.
//! 3. It waits for every connection to close, up to
//!    `ServerConfig::drain_timeout`. At the timeout, every connection still
//!    open is dropped: its calls are cancelled, and its socket closed.
//!
//! So a request the server has read gets a whole answer, unless its call
//! outlives the drain timeout; a request it has not read gets none, and its
//! client hears the connection close.

use std::io;

use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::codec::FramedRead;
use tokio_util::task::AbortOnDropHandle;

use crate::frame::FrameCodec;
use crate::protocol::Response;

// ANCHOR: signal
/// The signals that ask the process to stop: SIGINT (Ctrl-C in a
/// terminal) and SIGTERM (what `kill`, systemd and Kubernetes send first).
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    /// Installs handlers for both. From here on, these signals no longer
    /// kill the process: each is counted, for [`StopSignals::recv`]. So
    /// install them early, or a signal that comes first is missed.
    pub fn install() -> io::Result<StopSignals> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next of them, and says which: `SIGINT` or `SIGTERM`.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
// ANCHOR_END: signal

// ANCHOR: drain
/// Shuts one connection down gracefully, once the server is stopping: what
/// `serve_connection` does instead of reading the next request.
///
/// `requests` are the calls read and still running, `answers` the queue to
/// the `writer` task, and `frames` the read half, with whatever the peer
/// sent that was not read. The server stops waiting for this at its drain
/// timeout, and drops it: the calls still running are cancelled then.
pub(crate) async fn drain(
    mut requests: JoinSet<()>,
    answers: mpsc::Sender<Vec<u8>>,
    writer: AbortOnDropHandle<io::Result<()>>,
    frames: FramedRead<OwnedReadHalf, FrameCodec>,
) -> io::Result<()> {
    // Tell the peer first, so that it sends new calls elsewhere while the
    // calls it has here finish. The notice queues behind the answers
    // already waiting; it fails only if the writer has gone, and then
    // nothing more can be written anyway.
    let notice = serde_json::to_vec(&Response::going_away()).expect("a Response is valid JSON");
    let _ = answers.send(notice).await;
    // Every call read runs to its end and queues its answer. No request is
    // read from here on: one the peer sent after the notice left goes
    // unanswered, and its client hears the connection close.
    while requests.join_next().await.is_some() {}
    // The last sender gone, the writer writes what is queued and then
    // shuts its half: the peer reads every answer, then the end.
    drop(answers);
    writer.await.unwrap_or_else(|e| Err(io::Error::other(e)))?;
    linger(frames.into_inner()).await
}
// ANCHOR_END: drain

// ANCHOR: linger
/// Reads and drops whatever the peer still sends, until it closes its end.
///
/// Closing a socket whose unread bytes (requests sent after the notice)
/// are still in the kernel's buffer makes the kernel reset the connection
/// rather than end it, and a reset can destroy answers that the peer has
/// not read yet. Reading to the end first lets them all arrive: the peer
/// reads our end, closes its own, and then this returns. A peer that never
/// closes is cut off at the drain timeout.
async fn linger(mut reader: OwnedReadHalf) -> io::Result<()> {
    let mut scratch = [0; 4096];
    while reader.read(&mut scratch).await? > 0 {}
    Ok(())
}
// ANCHOR_END: linger
