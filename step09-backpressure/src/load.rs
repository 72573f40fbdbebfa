//! A load generator: calls `add` as fast as it can for a while and reports
//! throughput and latency in one line that every step prints the same way.

use std::fmt;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{CallError, CallOptions, Client, ClientConfig, RetryPolicy};
use crate::protocol::ErrorCode;
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

/// Runs `add` calls against `addr` from `inflight` tasks sharing one
/// connection, for `duration`, sending `token` with each if there is one.
pub async fn run(
    addr: SocketAddr,
    inflight: usize,
    duration: Duration,
    token: Option<String>,
) -> Result<LoadReport, CallError> {
    let inflight = inflight.max(1);
    // Each task has at most one call pending, so this bound is never hit.
    let config = ClientConfig {
        max_pending: inflight,
        token,
        ..ClientConfig::default()
    };
    let client = connect_patiently(addr, config).await?;
    let start = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..inflight {
        workers.spawn(worker(client.clone(), duration));
    }
    let mut latencies_us = Vec::new();
    while let Some(mine) = workers.join_next().await {
        latencies_us.extend(mine.expect("a load worker panicked")?);
    }
    Ok(LoadReport::new(inflight, start.elapsed(), latencies_us))
}

/// Connects, trying again for up to 5 s while the connection is refused:
/// a benchmark script may start the server and the load together.
async fn connect_patiently(addr: SocketAddr, config: ClientConfig) -> Result<Client, CallError> {
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        match Client::connect_with(addr, config.clone()).await {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused && Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            connected => return Ok(connected?),
        }
    }
}

/// One task making one call after another for `duration`.
async fn worker(client: Client, duration: Duration) -> Result<Vec<u64>, CallError> {
    // The clock starts once connected, so a slow start never means 0 calls.
    let deadline = Instant::now() + duration;
    let mut latencies_us = Vec::new();
    while Instant::now() < deadline {
        let sent = Instant::now();
        client.add(1.0, 2.0).await?;
        latencies_us.push(sent.elapsed().as_micros() as u64);
    }
    Ok(latencies_us)
}

// ANCHOR: flood
/// What a flood measured: the calls that ran, and the ones that did not.
#[derive(Debug)]
pub struct FloodReport {
    /// The calls answered with their result, and how long each took.
    pub ran: LoadReport,
    /// The calls shed by the server, not run.
    pub shed: usize,
    /// The calls that ran out of time: their caller got nothing.
    pub timed_out: usize,
}

impl fmt::Display for FloodReport {
    /// `RESULT tool=stepNN mode=flood ... cps=.. shed=.. timed_out=..`, where
    /// `calls` and `cps` count the calls answered in time: the goodput.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = self.ran.to_string().replace("mode=conc", "mode=flood");
        let (shed, late) = (self.shed, self.timed_out);
        write!(f, "{line} shed={shed} timed_out={late}")
    }
}

/// Floods `addr` with calls of `method` from `inflight` tasks on one
/// connection, each making one call and more until `duration` has
/// passed; each call has `deadline`, and none is retried. A task whose
/// call is shed waits the server's hint before its next call, as a client
/// should. `calls` and `cps` in the report count the calls answered in
/// time: the goodput. Any failure but a shed or a timeout ends the flood
/// with that error.
pub async fn flood(
    addr: SocketAddr,
    inflight: usize,
    duration: Duration,
    (method, params, deadline): (&'static str, Value, Duration),
    token: Option<String>,
) -> Result<FloodReport, CallError> {
    let config = ClientConfig {
        max_pending: inflight,
        token,
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        ..ClientConfig::default()
    };
    let client = connect_patiently(addr, config).await?;
    let start = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..inflight.max(1) {
        let (client, params) = (client.clone(), params.clone());
        workers.spawn(async move {
            let (mut ran, mut shed, mut timed_out) = (Vec::new(), 0, 0);
            let options = CallOptions {
                timeout: Some(deadline),
                ..CallOptions::default()
            };
            let end = start + duration;
            loop {
                let sent = Instant::now();
                match client.call_with(method, params.clone(), &options).await {
                    Ok(_) => ran.push(sent.elapsed().as_micros() as u64),
                    Err(e) if e.retry_after().is_some() => {
                        shed += 1;
                        let hint = e.retry_after().unwrap_or_default();
                        tokio::time::sleep_until(end.min(Instant::now() + hint)).await;
                    }
                    Err(CallError::Timeout) => timed_out += 1,
                    Err(CallError::Server(e)) if e.code == ErrorCode::Timeout => timed_out += 1,
                    Err(e) => return Err(e),
                }
                if Instant::now() >= end {
                    break Ok((ran, shed, timed_out));
                }
            }
        });
    }
    let mut report = (Vec::new(), 0, 0);
    while let Some(mine) = workers.join_next().await {
        let (ran, shed, timed_out) = mine.expect("a flood worker panicked")?;
        report.0.extend(ran);
        (report.1, report.2) = (report.1 + shed, report.2 + timed_out);
    }
    Ok(FloodReport {
        ran: LoadReport::new(inflight, start.elapsed(), report.0),
        shed: report.1,
        timed_out: report.2,
    })
}
// ANCHOR_END: flood

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
