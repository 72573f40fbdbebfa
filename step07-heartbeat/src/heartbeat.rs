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
//! So each end keeps `last_seen`, when it last read a whole frame, and acts
//! when that gets old:
//!
//! - The client, while calls wait on a connection, pings a server it has
//!   not heard from for `ClientConfig::ping_interval`. If nothing comes in
//!   the `ping_timeout` after, the server has gone: every waiting call
//!   fails, and the next call connects anew. [`Heartbeat`] keeps the time.
//! - The server closes a connection that has sent no whole frame for
//!   `ServerConfig::idle_timeout`, as it would at a shutdown: the notice,
//!   then the close (see `serve_connection`). A client that stays quiet
//!   is not pinged: the close costs it at most a reconnect.
//!
//! A busy connection needs no pings: every answer is news of the server.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{self, Instant, Sleep};

// ANCHOR: heartbeat
/// The client's heartbeat on one connection: when to ping the server, and
/// when to give up on it.
pub(crate) struct Heartbeat {
    interval: Duration,
    timeout: Duration,
    /// Fires `interval` after the last frame from the server or, once a
    /// ping has gone, `timeout` after the ping. Moved, never remade.
    timer: Pin<Box<Sleep>>,
    /// A ping has gone, and nothing has come since.
    pinged: bool,
}

/// What the reader does when the heartbeat's timer fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Beat {
    /// Nothing: no call is waiting, so the server has nothing to say.
    Quiet,
    /// Send a ping.
    Ping,
    /// The server has gone: it answered no ping in the ping timeout.
    Gone,
}

impl Heartbeat {
    pub(crate) fn new(interval: Duration, timeout: Duration) -> Heartbeat {
        Heartbeat {
            interval,
            timeout,
            timer: Box::pin(time::sleep(interval)),
            pinged: false,
        }
    }

    /// A whole frame came from the server: it is there.
    pub(crate) fn heard(&mut self) {
        self.pinged = false;
        self.timer.as_mut().reset(Instant::now() + self.interval);
    }

    /// Waits for the timer; then call [`Heartbeat::beat`], which resets it.
    pub(crate) async fn fired(&mut self) {
        self.timer.as_mut().await;
    }

    /// What to do now that the timer has fired, with calls waiting for the
    /// server, or none.
    pub(crate) fn beat(&mut self, calls_waiting: bool) -> Beat {
        if self.pinged {
            return Beat::Gone;
        }
        let now = Instant::now();
        if !calls_waiting {
            self.timer.as_mut().reset(now + self.interval);
            return Beat::Quiet;
        }
        self.pinged = true;
        self.timer.as_mut().reset(now + self.timeout);
        Beat::Ping
    }
}
// ANCHOR_END: heartbeat

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits for the heartbeat's next beat, and says how long it took.
    async fn next(heartbeat: &mut Heartbeat, calls_waiting: bool) -> (Duration, Beat) {
        let start = Instant::now();
        heartbeat.fired().await;
        (start.elapsed(), heartbeat.beat(calls_waiting))
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
        // No call waits: silence is no news, however long it lasts.
        for _ in 0..100 {
            assert_eq!(next(&mut heartbeat, false).await, (interval, Beat::Quiet));
        }
        assert_eq!(next(&mut heartbeat, true).await, (interval, Beat::Ping));
        // Anything from the server (the pong, an answer) before the timeout:
        // it is there, and the next ping is an interval from now.
        time::sleep(timeout / 2).await;
        heartbeat.heard();
        assert_eq!(next(&mut heartbeat, true).await, (interval, Beat::Ping));
        // Hearing from it keeps moving the ping off: none is sent.
        for _ in 0..100 {
            time::sleep(interval / 2).await;
            heartbeat.heard();
        }
        assert_eq!(next(&mut heartbeat, true).await, (interval, Beat::Ping));
    }
}
