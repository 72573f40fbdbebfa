//! Heartbeats: how each end of a connection learns that the other has gone
//! without a word.
//!
//! A peer whose process dies is heard of: its kernel closes or resets the
//! connection. A peer that freezes (a stopped process, a paused virtual
//! machine) or that the network loses (a cable pulled, a firewall that
//! forgot the connection) sends nothing at all: no end, no reset. TCP
//! notices only when it has something to send, and even then only after
//! retrying for many minutes; an end that only reads waits forever.
//!
//! So each end writes down when it last heard from the other, and acts when
//! that gets old:
//!
//! - The client, while calls wait on a connection, pings a server it has
//!   not heard from for `ClientConfig::ping_interval`. If nothing comes in
//!   the `ping_timeout` after, the server has gone: every waiting call
//!   fails, and the next call connects anew. [`Heartbeat`] keeps the time,
//!   and `last_seen`: when the last whole frame came from the server.
//! - The server, which only answers, keeps `idle_since`: when its peer last
//!   sent a request, or its last call ended. It closes a connection that
//!   has been idle, with no call of its running and no request, for
//!   `ServerConfig::idle_timeout`, as it would at a shutdown: the notice,
//!   then the close (see `serve_connection`). Pings do not count: they give
//!   the server nothing to do, and a client pings only while it waits for
//!   calls, when the connection is not idle anyway. A half frame does not
//!   count either. A quiet client loses nothing: it reconnects at its next
//!   call.
//!
//! A busy connection needs no pings: every answer is news of the server.
//!
//! Step 8 left a gap here: at its `max_in_flight_per_connection` a server
//! stopped reading that connection, pings included. Step 9's server sheds
//! the call over the bound instead, and keeps reading: it stops only for
//! a peer that does not read its answers, whose pongs would wait anyway.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{self, Instant, Sleep};

/// Cuts a heartbeat's duration to between a millisecond, the timer's
/// grain (zero would wake the task on every turn), and a year, as good as
/// for ever and, unlike `Duration::MAX`, safe to add to the clock.
pub(crate) fn sane(duration: Duration) -> Duration {
    let year = Duration::from_secs(365 * 24 * 60 * 60);
    duration.clamp(Duration::from_millis(1), year)
}

/// The client's heartbeat on one connection: when to ping the server, and
/// when to give up on it.
pub(crate) struct Heartbeat {
    interval: Duration,
    timeout: Duration,
    /// When the last whole frame came from the server.
    last_seen: Instant,
    /// A ping has gone, and nothing has come since.
    pinged: bool,
    /// When to look again: not moved at each frame, the hot path, but set
    /// each time it fires, from `last_seen`.
    timer: Pin<Box<Sleep>>,
}

/// What the reader must do, once [`Heartbeat::next`] says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Beat {
    /// Send a ping: calls wait, and the server has been silent for the
    /// interval.
    Ping,
    /// Give the server up: nothing came in the timeout after a ping.
    Gone,
}

impl Heartbeat {
    pub(crate) fn new(interval: Duration, timeout: Duration) -> Heartbeat {
        Heartbeat {
            interval: sane(interval),
            timeout: sane(timeout),
            last_seen: Instant::now(),
            pinged: false,
            timer: Box::pin(time::sleep(sane(interval))),
        }
    }

    /// A whole frame came from the server: it is there.
    pub(crate) fn heard(&mut self) {
        self.last_seen = Instant::now();
        if self.pinged {
            // An answer to the ping: look again an interval from now, not
            // when the ping would have timed out. Rare: not the hot path.
            self.pinged = false;
            self.timer.as_mut().reset(self.last_seen + self.interval);
        }
    }

    /// Waits until the server must be pinged or given up. Silence matters
    /// only while calls wait for it: `calls_waiting` says if they do.
    pub(crate) async fn next(&mut self, calls_waiting: impl Fn() -> bool) -> Beat {
        loop {
            self.timer.as_mut().await;
            let now = Instant::now();
            if self.pinged {
                return Beat::Gone;
            }
            let due = self.last_seen + self.interval;
            if due > now {
                // Heard from since the timer was set: not yet.
                self.timer.as_mut().reset(due);
            } else if !calls_waiting() {
                // Silence, but nobody waits for the server to speak.
                self.timer.as_mut().reset(now + self.interval);
            } else {
                self.pinged = true;
                self.timer.as_mut().reset(now + self.timeout);
                return Beat::Ping;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits for the heartbeat's next beat, and says how long it took.
    async fn next(heartbeat: &mut Heartbeat, calls_waiting: bool) -> (Duration, Beat) {
        let start = Instant::now();
        let beat = heartbeat.next(|| calls_waiting).await;
        (start.elapsed(), beat)
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_server_is_pinged_then_given_up_while_calls_wait() {
        let (interval, timeout) = (Duration::from_secs(5), Duration::from_secs(3));
        let mut heartbeat = Heartbeat::new(interval, timeout);
        // Calls wait, and nothing comes: a ping after the interval, and the
        // end after the timeout: `interval + timeout` in all.
        assert_eq!(next(&mut heartbeat, true).await, (interval, Beat::Ping));
        assert_eq!(next(&mut heartbeat, true).await, (timeout, Beat::Gone));
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_connection_is_not_pinged_and_an_answer_cancels_the_ping() {
        let (interval, timeout) = (Duration::from_secs(5), Duration::from_secs(3));
        let mut heartbeat = Heartbeat::new(interval, timeout);
        // No call waits for 100 intervals: silence is no news. Then one
        // does, and the server is pinged at the next look.
        let waiting = time::timeout(100 * interval, heartbeat.next(|| false)).await;
        assert!(waiting.is_err(), "a beat with no call waiting");
        assert_eq!(next(&mut heartbeat, true).await, (interval, Beat::Ping));
        // Anything from the server (the pong, an answer) before the timeout:
        // it is there, and the next ping is an interval from then.
        time::sleep(timeout / 2).await;
        heartbeat.heard();
        assert_eq!(next(&mut heartbeat, true).await, (interval, Beat::Ping));
        // Hearing from it keeps moving the ping off: none is sent, though
        // the heartbeat is asked between frames, as the reader asks it.
        heartbeat.heard();
        for _ in 0..100 {
            let beat = time::timeout(interval / 2, heartbeat.next(|| true)).await;
            assert!(beat.is_err(), "a beat while heard from");
            heartbeat.heard();
        }
        assert_eq!(next(&mut heartbeat, true).await, (interval, Beat::Ping));
    }
}
