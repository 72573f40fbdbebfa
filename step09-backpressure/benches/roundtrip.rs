//! Criterion benchmarks, the same shape in every step so the book can chart
//! them side by side: the round-trip latency of `add`, one call at a time
//! on one connection, and the throughput of `add` with 64 calls in flight
//! on one connection.

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use step09_backpressure::client::Client;
use step09_backpressure::server::{self, ServerConfig};
use step09_backpressure::service::{self, ServiceCalls};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// How many calls `add_throughput_64_inflight` keeps in flight.
const INFLIGHT: usize = 64;

fn roundtrip(c: &mut Criterion) {
    // Server and client share one runtime, as they would in one process.
    let runtime = Runtime::new().unwrap();
    let client = runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(server::run(
            listener,
            service::methods(),
            ServerConfig::default(),
            std::future::pending(),
        ));
        Client::connect(addr).await.unwrap()
    });

    c.bench_function("add_roundtrip_seq", |b| {
        b.to_async(&runtime)
            .iter(|| async { client.add(1.0, 2.0).await.unwrap() })
    });

    // One iteration is 64 calls at once: 64 tasks share the client, and
    // each makes `iters` calls, one after another. The time per iteration
    // is the time per 64 calls, so calls per second = 64 / that time.
    c.bench_function("add_throughput_64_inflight", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let client = client.clone();
            async move {
                let start = Instant::now();
                let mut tasks = JoinSet::new();
                for _ in 0..INFLIGHT {
                    let client = client.clone();
                    tasks.spawn(async move {
                        for _ in 0..iters {
                            client.add(1.0, 2.0).await.unwrap();
                        }
                    });
                }
                while let Some(task) = tasks.join_next().await {
                    task.unwrap();
                }
                start.elapsed()
            }
        })
    });
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
