//! Criterion benchmarks, the same shape in every step so the book can chart
//! them side by side: the round-trip latency of `add`, one call at a time
//! on one connection.

use std::net::TcpListener;
use std::thread;

use criterion::{Criterion, criterion_group, criterion_main};
use step01_basic::client::Client;
use step01_basic::server::{self, ServerConfig};
use step01_basic::service::{self, ServiceCalls};

fn roundtrip(c: &mut Criterion) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || server::run(listener, service::methods(), ServerConfig::default()));
    let mut client = Client::connect(addr).unwrap();

    c.bench_function("add_roundtrip_seq", |b| {
        b.iter(|| client.add(1.0, 2.0).unwrap())
    });
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
