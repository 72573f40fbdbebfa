//! Graceful shutdown: stop taking work, finish the work taken, then stop.
//!
//! [`crate::server::run`] stops when the future it is given completes (in
//! the binary, at the first of [`StopSignals`]: Ctrl-C or SIGTERM). In
//! this order:
//!
//! 1. It closes the listener: a new connection is refused.
//! 2. It tells every connection to drain ([`drain`]): each sends its peer
//!    the going-away notice, runs no more requests (those that arrive are
//!    refused), lets the calls it has taken on finish and writes their
//!    answers, then closes.
//! 3. It waits for every connection to close, up to
//!    `ServerConfig::drain_timeout`. At the timeout, every connection still
//!    open is dropped: its calls are cancelled, and its socket closed.
//!
//! So a call the server has taken on gets its whole answer, unless the
//! drain timeout comes first.

use std::io;
use std::time::Duration;

use futures_util::StreamExt;

use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time;
use tokio_util::codec::FramedRead;
use tokio_util::task::AbortOnDropHandle;

use crate::frame::FrameCodec;
use crate::limits::Outgoing;
use crate::protocol::{Message, Response, parse_message};

/// How long after its notice a draining connection goes on reading, to
/// refuse what its peer sent before it read the notice. On a LAN that is
/// within a millisecond; a second allows for a slow network and a busy
/// client.
const NOTICE_GRACE: Duration = Duration::from_secs(1);

/// How long the linger waits for more from a peer that sends nothing. A
/// peer that keeps its end open, and silent, has read what it will read.
const LINGER_QUIET: Duration = Duration::from_secs(2);

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

/// Shuts one connection down gracefully, once the server is stopping or
/// the connection has been idle too long: what `serve_connection` does
/// instead of reading the next request.
///
/// `requests` are the calls read and still running, `answers` the queue to
/// the `writer` task, and `frames` the read half, with whatever the peer
/// sent that was not read. The server stops waiting for this at its drain
/// timeout, and drops it: the calls still running are cancelled then.
pub(crate) async fn drain(
    mut requests: JoinSet<()>,
    answers: mpsc::Sender<Outgoing>,
    writer: AbortOnDropHandle<io::Result<()>>,
    mut frames: FramedRead<OwnedReadHalf, FrameCodec>,
) -> io::Result<()> {
    // Tell the peer first, so that it sends new calls elsewhere while the
    // calls it has here finish. The notice queues behind the answers
    // already waiting; it fails only if the writer has gone, and then
    // nothing more can be written anyway.
    let notice = serde_json::to_vec(&Response::going_away()).expect("a Response is valid JSON");
    let _ = answers.send(Outgoing::uncharged(notice)).await;
    // Every call taken on runs to its end and queues its answer. Meanwhile
    // a request that arrives (sent before the peer read the notice) is
    // refused, not run, for a while after the notice, and for as long as
    // calls run. At the end of the stream, or a broken frame, the calls are
    // cancelled, as they would be were the server not stopping: the peer
    // has gone, and nobody would read their answers.
    let grace = time::sleep(NOTICE_GRACE);
    tokio::pin!(grace);
    let mut reading = true;
    while !(requests.is_empty() && (grace.is_elapsed() || !reading)) {
        tokio::select! {
            Some(_) = requests.join_next() => {}
            frame = frames.next(), if reading => match frame {
                Some(Ok(body)) => {
                    let _ = answers.send(Outgoing::uncharged(refusal(&body))).await;
                }
                _ => {
                    requests.abort_all();
                    reading = false;
                }
            },
            () = &mut grace, if !grace.is_elapsed() => {}
        }
    }
    // The last sender gone, the writer writes what is queued and then
    // shuts its half: the peer reads every answer, then the end.
    drop(answers);
    writer.await.unwrap_or_else(|e| Err(io::Error::other(e)))?;
    linger(frames.into_inner()).await
}

/// [`drain`], for a connection the server closes while it runs on (an idle
/// one): within `limit`, the drain timeout, as the server's own timeout
/// bounds a shutdown's drains. At the limit, the connection is dropped and
/// its calls cancelled: a peer that trickles a byte a second cannot keep
/// the linger reading for ever.
pub(crate) async fn drain_within(
    limit: Duration,
    requests: JoinSet<()>,
    answers: mpsc::Sender<Outgoing>,
    writer: AbortOnDropHandle<io::Result<()>>,
    frames: FramedRead<OwnedReadHalf, FrameCodec>,
) -> io::Result<()> {
    let drain = drain(requests, answers, writer, frames);
    time::timeout(limit, drain).await.unwrap_or_else(|_| {
        let message = "the connection did not close within the drain timeout";
        Err(io::Error::new(io::ErrorKind::TimedOut, message))
    })
}

/// The answer to a request read while draining: refused, not run, under
/// its id; or, if it has no id to answer under, what any server would
/// answer (`BAD_REQUEST`), which does not run anything either. A ping is
/// answered: the server is still there, finishing the peer's calls.
fn refusal(body: &[u8]) -> Vec<u8> {
    let response = match parse_message(body) {
        Ok(Message::Request(request)) => Response::refused(request.id),
        Ok(Message::Ping(ping)) => return ping.answer(),
        Err((id, error)) => Response::failure(id, error),
    };
    serde_json::to_vec(&response).expect("a Response is valid JSON")
}

/// Reads and drops whatever the peer still sends, until it closes its end,
/// or is quiet for [`LINGER_QUIET`].
///
/// Closing a socket whose unread bytes (requests sent after the notice)
/// are still in the kernel's buffer makes the kernel reset the connection
/// rather than end it, and a reset can destroy answers that the peer has
/// not read yet. Reading first lets them all arrive: the peer reads our
/// end, and closes its own. A peer that keeps its end open and quiet has
/// nothing unread left here, and closing on it sends no reset. One that
/// keeps sending is cut off at the drain timeout.
async fn linger(mut reader: OwnedReadHalf) -> io::Result<()> {
    let mut scratch = [0; 4096];
    while let Ok(read) = time::timeout(LINGER_QUIET, reader.read(&mut scratch)).await {
        if read? == 0 {
            break;
        }
    }
    Ok(())
}
