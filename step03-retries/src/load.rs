//! A load generator: calls `add` as fast as it can for a while and reports
//! throughput and latency in one line that every step prints the same way.

use std::fmt;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{CallError, Client, ClientConfig};
use crate::service::ServiceCalls;

/// What one load run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// How many calls were kept in flight at once.
    pub inflight: usize,
    /// How long the run lasted, measured.
    pub elapsed: Duration,
    /// The latency of every completed call, sorted, in microseconds.
    latencies_us: Vec<u64>,
}

impl LoadReport {
    /// A report from unsorted latencies.
    pub fn new(inflight: usize, elapsed: Duration, mut latencies_us: Vec<u64>) -> LoadReport {
        latencies_us.sort_unstable();
        LoadReport {
            inflight,
            elapsed,
            latencies_us,
        }
    }

    /// Completed calls.
    pub fn calls(&self) -> usize {
        self.latencies_us.len()
    }

    /// The latency below which `percent`% of calls completed (nearest rank).
    pub fn percentile_us(&self, percent: usize) -> u64 {
        let n = self.latencies_us.len();
        if n == 0 {
            return 0;
        }
        let rank = (n * percent).div_ceil(100).clamp(1, n);
        self.latencies_us[rank - 1]
    }
}

impl fmt::Display for LoadReport {
    /// `RESULT tool=stepNN mode=seq inflight=1 calls=.. secs=.. cps=.. p50_us=.. p99_us=.. max_us=..`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // "stepNN" from "stepNN-name": the line names the step without
        // each step having to edit this file.
        let tool = env!("CARGO_PKG_NAME").split('-').next().unwrap_or("?");
        let mode = if self.inflight == 1 { "seq" } else { "conc" };
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "RESULT tool={tool} mode={mode} inflight={} calls={} secs={secs:.2} cps={:.0} \
             p50_us={} p99_us={} max_us={}",
            self.inflight,
            self.calls(),
            self.calls() as f64 / secs,
            self.percentile_us(50),
            self.percentile_us(99),
            self.latencies_us.last().copied().unwrap_or(0),
        )
    }
}

/// Runs `add` calls against `addr` from `inflight` threads sharing one
/// connection, for `duration`.
pub fn run(addr: SocketAddr, inflight: usize, duration: Duration) -> Result<LoadReport, CallError> {
    let inflight = inflight.max(1);
    // Each thread has at most one call pending, so this bound is never hit.
    let client = Client::connect_with(
        addr,
        ClientConfig {
            max_pending: inflight,
            ..ClientConfig::default()
        },
    )?;
    let start = Instant::now();
    let workers: Vec<_> = (0..inflight)
        .map(|_| {
            let client = client.clone();
            thread::spawn(move || worker(&client, duration))
        })
        .collect();
    let mut latencies_us = Vec::new();
    for worker in workers {
        let mine = worker.join().expect("a load worker panicked")?;
        latencies_us.extend(mine);
    }
    Ok(LoadReport::new(inflight, start.elapsed(), latencies_us))
}

/// One thread making one call after another for `duration`.
fn worker(client: &Client, duration: Duration) -> Result<Vec<u64>, CallError> {
    // The clock starts once connected, so a slow start never means 0 calls.
    let deadline = Instant::now() + duration;
    let mut latencies_us = Vec::new();
    while Instant::now() < deadline {
        let sent = Instant::now();
        client.add(1.0, 2.0)?;
        latencies_us.push(sent.elapsed().as_micros() as u64);
    }
    Ok(latencies_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let report = |latencies: Vec<u64>| LoadReport::new(1, Duration::from_secs(1), latencies);
        let one = report(vec![7]);
        assert_eq!((one.percentile_us(50), one.percentile_us(99)), (7, 7));
        let hundred = report((1..=100).rev().collect());
        assert_eq!(hundred.percentile_us(50), 50);
        assert_eq!(hundred.percentile_us(99), 99);
        assert_eq!(hundred.percentile_us(100), 100);
        assert_eq!(report(vec![]).percentile_us(50), 0);
    }
}
