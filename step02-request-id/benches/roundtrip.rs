//! Criterion benchmarks, the same shape in every step so the book can chart
//! them side by side: the round-trip latency of `add`, one call at a time
//! on one connection, and the throughput of `add` with 64 calls in flight
//! on one connection.

use std::net::TcpListener;
use std::thread;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use step02_request_id::client::Client;
use step02_request_id::server::{self, ServerConfig};
use step02_request_id::service::{self, ServiceCalls};

/// How many calls `add_throughput_64_inflight` keeps in flight.
const INFLIGHT: usize = 64;

fn roundtrip(c: &mut Criterion) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || server::run(listener, service::methods(), ServerConfig::default()));
    let client = Client::connect(addr).unwrap();

    c.bench_function("add_roundtrip_seq", |b| {
        b.iter(|| client.add(1.0, 2.0).unwrap())
    });

    // One iteration is 64 calls at once: 64 threads share the client, and
    // each makes `iters` calls, one after another. The time per iteration
    // is the time per 64 calls, so calls per second = 64 / that time.
    c.bench_function("add_throughput_64_inflight", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            thread::scope(|s| {
                for _ in 0..INFLIGHT {
                    s.spawn(|| {
                        for _ in 0..iters {
                            client.add(1.0, 2.0).unwrap();
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
