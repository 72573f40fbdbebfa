//! The numbers a server keeps about itself: how many connections are open
//! and calls in flight right now (gauges), and for each method how many
//! calls it answered, with which codes, and how long they took (a latency
//! histogram). The `stats` method returns them as JSON.
//!
//! Everything here is updated on the hot path, so it costs little: the
//! gauges are atomics, and each method's numbers have a lock of their own,
//! held for a few increments. The table of methods is fixed when the server
//! starts: a peer naming methods we do not have cannot grow it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use crate::lock;
use crate::protocol::ErrorCode;

/// The name under which calls are counted that name no method the server
/// offers, or that could not be read well enough to name one.
pub const OTHER: &str = "(other)";

/// The longest latency the histograms tell apart: an hour. A longer one is
/// counted as an hour. Calls end at their deadline, so none should be near.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A server's numbers. Shared by every connection through an `Arc`.
pub struct Metrics {
    /// Connections being served now.
    connections_open: AtomicU64,
    /// Calls read and not yet answered (nor cancelled), on all connections.
    calls_in_flight: AtomicU64,
    /// Each method's numbers, by its name's place in `names`.
    names: Vec<String>,
    methods: Vec<Mutex<MethodStats>>,
}

/// One method's numbers since the server started.
struct MethodStats {
    /// Answers by code; `None` is success.
    codes: HashMap<Option<ErrorCode>, u64>,
    /// How long its calls took, from the request read to the answer ready,
    /// in microseconds.
    latency_us: Histogram<u64>,
}

impl Metrics {
    /// Numbers for each of `methods`, and for [`OTHER`].
    pub fn new<'a>(methods: impl IntoIterator<Item = &'a str>) -> Metrics {
        let mut names: Vec<String> = methods.into_iter().map(String::from).collect();
        names.push(OTHER.to_string());
        let methods = names
            .iter()
            .map(|_| Mutex::new(MethodStats::new()))
            .collect();
        Metrics {
            connections_open: AtomicU64::new(0),
            calls_in_flight: AtomicU64::new(0),
            names,
            methods,
        }
    }

    /// Counts a connection open until the returned guard is dropped.
    pub fn connection_opened(&self) -> Gauged<'_> {
        Gauged::up(&self.connections_open)
    }

    /// Counts a call in flight until the returned guard is dropped: however
    /// the call ends, answered or cancelled with its connection.
    pub fn call_started(&self) -> Gauged<'_> {
        Gauged::up(&self.calls_in_flight)
    }

    /// Where `method`'s numbers are: a number to pass to
    /// [`Metrics::record`], so that the name is looked up once per call.
    pub fn method_index(&self, method: &str) -> usize {
        let known = self.names.iter().position(|name| name == method);
        known.unwrap_or(self.names.len() - 1)
    }

    /// Counts one answered call of the method at `index`.
    pub fn record(&self, index: usize, code: Option<ErrorCode>, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let mut stats = lock(&self.methods[index]);
        *stats.codes.entry(code).or_default() += 1;
        stats.latency_us.saturating_record(micros.max(1));
    }

    /// Everything, as the `stats` method returns it. Methods never called
    /// are left out.
    pub fn snapshot(&self) -> Value {
        let mut methods = Map::new();
        for (name, stats) in self.names.iter().zip(&self.methods) {
            let stats = lock(stats);
            if stats.latency_us.is_empty() {
                continue;
            }
            let codes: Map<String, Value> = (stats.codes.iter())
                .map(|(code, n)| (code.map_or("OK".to_string(), |c| c.to_string()), json!(n)))
                .collect();
            let at = |quantile| stats.latency_us.value_at_quantile(quantile);
            let latency = json!({
                "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": stats.latency_us.max(),
            });
            let calls = stats.latency_us.len();
            let entry = json!({ "calls": calls, "codes": codes, "latency_us": latency });
            methods.insert(name.clone(), entry);
        }
        json!({
            "connections_open": self.connections_open.load(Ordering::Relaxed),
            "calls_in_flight": self.calls_in_flight.load(Ordering::Relaxed),
            "methods": methods,
        })
    }
}

impl MethodStats {
    fn new() -> MethodStats {
        // Two significant digits: a latency is counted within 1% of what it
        // was. The histogram is a fixed array of 3,328 counts: 26 KiB.
        let latency_us = Histogram::new_with_bounds(1, MAX_LATENCY_US, 2)
            .expect("1 µs to an hour at 2 digits is a valid histogram");
        MethodStats {
            codes: HashMap::new(),
            latency_us,
        }
    }
}

/// One count in a gauge, taken back when dropped. It borrows the gauge: a
/// task that owns an `Arc` of the metrics can hold one across `.await`s.
pub struct Gauged<'a>(&'a AtomicU64);

impl Gauged<'_> {
    fn up(gauge: &AtomicU64) -> Gauged<'_> {
        gauge.fetch_add(1, Ordering::Relaxed);
        Gauged(gauge)
    }
}

impl Drop for Gauged<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_by_method_and_code_and_unknown_names_share_one_row() {
        let metrics = Metrics::new(["add", "divide"]);
        let ms = Duration::from_millis;
        for latency in 1..=100 {
            metrics.record(metrics.method_index("add"), None, ms(latency));
        }
        let bad = Some(ErrorCode::BadRequest);
        metrics.record(metrics.method_index("divide"), bad, ms(1));
        for name in ["nope", "also-nope"] {
            let missing = Some(ErrorCode::MethodNotFound);
            metrics.record(metrics.method_index(name), missing, ms(1));
        }
        let stats = metrics.snapshot();
        let add = &stats["methods"]["add"];
        assert_eq!(
            (add["calls"].as_u64(), &add["codes"]),
            (Some(100), &json!({"OK": 100}))
        );
        // Within the histogram's 1%.
        let p50 = add["latency_us"]["p50"].as_u64().unwrap();
        assert!((50_000..=50_500).contains(&p50), "{p50}");
        let max = add["latency_us"]["max"].as_u64().unwrap();
        assert!((100_000..=101_000).contains(&max), "{max}");
        assert_eq!(
            stats["methods"]["divide"]["codes"],
            json!({"BAD_REQUEST": 1})
        );
        assert_eq!(
            stats["methods"][OTHER]["codes"],
            json!({"METHOD_NOT_FOUND": 2})
        );
        assert_eq!(stats["methods"].as_object().unwrap().len(), 3);
    }

    #[test]
    fn gauges_go_back_down_when_their_guards_drop() {
        let metrics = Metrics::new([]);
        let calls: Vec<_> = (0..3).map(|_| metrics.call_started()).collect();
        let connection = metrics.connection_opened();
        let gauges = |m: &Metrics| {
            let s = m.snapshot();
            (
                s["connections_open"].as_u64(),
                s["calls_in_flight"].as_u64(),
            )
        };
        assert_eq!(gauges(&metrics), (Some(1), Some(3)));
        drop((calls, connection));
        assert_eq!(gauges(&metrics), (Some(0), Some(0)));
    }
}
