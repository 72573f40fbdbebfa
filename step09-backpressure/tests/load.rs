//! The load mode reports in the one-line format every step shares. It
//! asserts the shape of the line, never a speed: speed lives in benchmarks.

mod common;

use std::time::Duration;

use common::rpc::load;

#[tokio::test]
async fn load_mode_prints_one_result_line() {
    let addr = common::spawn_server();
    for (inflight, mode) in [(1, "seq"), (4, "conc")] {
        let report = load::run(addr, inflight, Duration::from_millis(200), None)
            .await
            .unwrap();
        assert!(report.calls() > 0);
        assert!(report.percentile_us(50) <= report.percentile_us(99));
        let line = report.to_string();
        let keys: Vec<_> = line
            .split(' ')
            .map(|field| field.split('=').next().unwrap())
            .collect();
        let expected = [
            "RESULT", "tool", "mode", "inflight", "calls", "secs", "cps", "p50_us", "p99_us",
            "max_us",
        ];
        assert_eq!(keys, expected, "{line}");
        let step = env!("CARGO_PKG_NAME").split('-').next().unwrap();
        assert!(line.starts_with(&format!(
            "RESULT tool={step} mode={mode} inflight={inflight} "
        )));
    }
}
