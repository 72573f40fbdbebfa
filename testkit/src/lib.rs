//! Test support that every step's integration tests share.
//!
//! It knows the wire only as frames (a u32 big-endian length, then the
//! body) and JSON values, never a step's own types, so the same helpers
//! serve step 1 and step 12. It re-implements framing instead of borrowing
//! a step's `read_frame`: a framing bug in a step cannot hide in the
//! helpers that test it. It is blocking `std` only (threads, `std::net`),
//! so a fake server on a thread serves an async client just as well.
//!
//! ## Layout
//!
//! - `frame`: [`frame`], [`write_frame`], [`read_frame`]: frames written
//!   and read independently of any step.
//! - `peer`: a raw client for sending what a real client never would:
//!   [`connect`], [`send`], [`receive`], [`exchange`], [`exchange_bytes`],
//!   [`send_raw`], [`closed_by_server`], [`write_until_stalled`].
//! - `fake`: [`FakeServer`] and its [`Reply`]s, a scripted server for
//!   testing clients against answers a real server never gives.
//! - `process`: the steps' binaries as processes: [`cargo_bin`],
//!   [`start_server`], [`start_server_with`], [`KillOnDrop`].
//! - Here: [`STUCK`] and [`wait_until`], the two ways a test waits.

mod fake;
mod frame;
mod peer;
mod process;

pub use fake::{FakeServer, Reply};
pub use frame::{frame, read_frame, write_frame};
pub use peer::{
    closed_by_server, connect, exchange, exchange_bytes, receive, send, send_raw,
    write_until_stalled,
};
pub use process::{
    KillOnDrop, cargo_bin, start_server, start_server_in, start_server_stdout_gone,
    start_server_with,
};

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits on a socket, a channel or a process before calling
/// it stuck: 10 s. Far longer than anything should take, even on a busy
/// machine: it turns a hang into a failure, and never fires when things
/// work. (A test that proves something did *not* happen waits much less,
/// and says why.)
pub const STUCK: Duration = Duration::from_secs(10);

/// Polls `condition` every 10 ms until it holds; panics with
/// "timed out after {timeout:?} waiting until {what}" if it has not within
/// `timeout`.
///
/// For what another thread or process does in its own time (a slot freed,
/// a log line written) when there is no event to wait on. Where there is
/// one (a channel, a read), wait on that instead.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Locks `mutex`, ignoring poisoning. Sound here: what the fake server keeps
/// under a lock (its script, its open connections) stays usable after a
/// panic, and a script that panicked (a failed assert in it) has already
/// failed the test loudly; the other connections should go on.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn wait_until_returns_once_the_condition_holds() {
        let polls = Cell::new(0);
        wait_until("the third poll", STUCK, || {
            polls.set(polls.get() + 1);
            polls.get() == 3
        });
        assert_eq!(polls.get(), 3);
    }

    #[test]
    #[should_panic(expected = "waiting until never")]
    fn wait_until_gives_up_with_what_it_waited_for() {
        wait_until("never", Duration::from_millis(50), || false);
    }
}
