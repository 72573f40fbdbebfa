//! What peers can make the server hold at once, and what happens past it.
//!
//! Counts bound what is cheap to count: connections, calls running on one
//! connection, handlers running in the whole server. Bytes bound memory: a
//! request held while its call runs and an answer waiting to be written
//! are charged, by their length, against their connection's budget and
//! the server's. Past a count, or past a budget, a request is *shed*:
//! answered `SERVER_BUSY` at once, without running, with a hint of when to
//! try again. A peer whose connection has spent its budget on answers it
//! does not read is not read from until it does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

// ANCHOR: limits
/// Bounds on what peers can make the server hold at once.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The most connections served at once. One more is closed as soon as
    /// it is accepted. Default: 10,000.
    pub max_connections: usize,
    /// The most requests of one connection running at once; one more is
    /// shed. Default: 1,024.
    pub max_in_flight_per_connection: usize,
    /// The most requests running at once in the whole server; one more is
    /// shed. Default: 4,096.
    pub max_handlers: usize,
    /// The most bytes one connection may hold: requests running and
    /// answers not yet written. A request that would go over is shed; a
    /// connection over it, its answers unread, is not read from. The calls
    /// running then still add their answers, over it. Default: 4 MiB.
    pub max_connection_bytes: usize,
    /// The most bytes all connections together may hold, as above. A
    /// request that would go over is shed. Default: 64 MiB.
    pub max_server_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 10_000,
            max_in_flight_per_connection: 1024,
            max_handlers: 4096,
            max_connection_bytes: 4 << 20,
            max_server_bytes: 64 << 20,
        }
    }
}

/// How long a shed request's caller is told to wait before trying again.
pub const RETRY_AFTER: Duration = Duration::from_millis(100);
// ANCHOR_END: limits

/// A number of bytes held, and the most that may be.
#[derive(Debug)]
pub struct Budget {
    held: AtomicUsize,
    max: usize,
    /// Told each time bytes are given back to a spent budget: a connection
    /// waiting for room to read again waits here. (Nobody waits on the
    /// server's: a request past it is shed, not waited for.)
    given_back: Notify,
}

impl Budget {
    pub fn new(max: usize) -> Arc<Budget> {
        Arc::new(Budget {
            held: AtomicUsize::new(0),
            max,
            given_back: Notify::new(),
        })
    }

    /// The bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Whether more than the most is held. Only answers, charged over it,
    /// can take it there: requests that would are shed. A budget filled to
    /// exactly its most by requests is not spent: their connection reads
    /// on (pings, `health`), and sheds what does not fit.
    pub fn is_spent(&self) -> bool {
        self.held() > self.max
    }

    /// Waits for the next give-back from a spent budget. One that came
    /// while nobody waited is remembered, so a caller that saw the budget
    /// spent and then waits cannot miss it.
    pub async fn given_back(&self) {
        self.given_back.notified().await;
    }

    /// Adds `bytes` if that stays within the most, and says whether it did.
    fn try_add(&self, bytes: usize) -> bool {
        let fits = |held: usize| held.checked_add(bytes).filter(|&new| new <= self.max);
        (self.held)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, fits)
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        let before = self.held.fetch_sub(bytes, Ordering::Relaxed);
        // Only a spent budget has a reader waiting for it; the hot path,
        // well within it, does not pay for the wake-up.
        if before > self.max {
            self.given_back.notify_one();
        }
    }
}

// ANCHOR: charge
/// A request's bytes, charged against its connection's budget and the
/// server's while its call runs, and given back to both when dropped.
#[derive(Debug)]
pub struct Charge<'a> {
    budgets: [&'a Budget; 2],
    bytes: usize,
}

impl<'a> Charge<'a> {
    /// Charges `bytes` against both budgets, if it fits within both; else
    /// charges nothing, and the request is shed.
    pub fn try_new(connection: &'a Budget, server: &'a Budget, bytes: usize) -> Option<Charge<'a>> {
        if !connection.try_add(bytes) {
            return None;
        }
        if !server.try_add(bytes) {
            connection.give_back(bytes);
            return None;
        }
        let budgets = [connection, server];
        Some(Charge { budgets, bytes })
    }
}

impl Drop for Charge<'_> {
    fn drop(&mut self) {
        for budget in self.budgets {
            budget.give_back(self.bytes);
        }
    }
}
// ANCHOR_END: charge

/// A frame on its way to the peer, its bytes charged against its
/// connection's budget and the server's until the writer has written it
/// and dropped it.
#[derive(Debug)]
pub struct Outgoing {
    body: Vec<u8>,
    charged: Option<[Arc<Budget>; 2]>,
}

impl Outgoing {
    /// `body`, charged against both budgets, over their most if need be:
    /// the call has run, and its caller is owed the answer. A connection
    /// over its budget then reads nothing more until its peer has read.
    pub fn charged(body: Vec<u8>, connection: &Arc<Budget>, server: &Arc<Budget>) -> Outgoing {
        for budget in [connection, server] {
            budget.held.fetch_add(body.len(), Ordering::Relaxed);
        }
        let charged = Some([Arc::clone(connection), Arc::clone(server)]);
        Outgoing { body, charged }
    }

    /// `body`, charged to nobody: the notice and refusals of a connection
    /// that is closing, which reads no more, a few hundred bytes each.
    pub fn uncharged(body: Vec<u8>) -> Outgoing {
        let charged = None;
        Outgoing { body, charged }
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        for budget in self.charged.iter().flatten() {
            budget.give_back(self.body.len());
        }
    }
}

impl AsRef<[u8]> for Outgoing {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_charge_fits_both_budgets_or_takes_nothing_and_is_given_back_on_drop() {
        let (connection, server) = (Budget::new(100), Budget::new(150));
        let (connection, server) = (&*connection, &*server);
        let first = Charge::try_new(connection, server, 60).unwrap();
        // Over the connection's budget: nothing charged anywhere.
        assert!(Charge::try_new(connection, server, 41).is_none());
        assert_eq!((connection.held(), server.held()), (60, 60));
        // Over the server's budget, shared with another connection.
        let other = Budget::new(100);
        let second = Charge::try_new(&other, server, 90).unwrap();
        assert!(Charge::try_new(connection, server, 1).is_none());
        assert_eq!(
            (connection.held(), other.held(), server.held()),
            (60, 90, 150)
        );
        drop((first, second));
        assert_eq!((connection.held(), other.held(), server.held()), (0, 0, 0));
    }

    #[test]
    fn an_answer_is_charged_over_the_budget_and_spends_it() {
        let (connection, server) = (Budget::new(100), Budget::new(1000));
        let answer = Outgoing::charged(vec![0; 250], &connection, &server);
        assert!(connection.is_spent() && !server.is_spent());
        drop(answer);
        assert!(!connection.is_spent());
        // Requests can fill a budget, but not spend it.
        let full = Charge::try_new(&connection, &server, 100).unwrap();
        assert_eq!(connection.held(), 100);
        assert!(!connection.is_spent());
        drop(full);
    }
}
