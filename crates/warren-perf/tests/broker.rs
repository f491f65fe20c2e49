//! A short perf run against a real broker named by `WARREN_PERF_TEST_URI`
//! (e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`); skipped when it is unset.

use clap::Parser;
use warren_perf::{run, PerfArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: PerfArgs,
}

fn args(uri: &str, extra: &[&str]) -> PerfArgs {
    let mut v = vec!["warren-perf", "--uri", uri, "--quiet"];
    v.extend_from_slice(extra);
    Cli::parse_from(v).args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_run_against_a_broker() {
    let Ok(uri) = std::env::var("WARREN_PERF_TEST_URI") else {
        eprintln!("skipped: set WARREN_PERF_TEST_URI to an AMQP URI to run this test");
        return;
    };
    let pattern = format!("warren-perf-test-{}-%d", std::process::id());

    // counted run with confirms and manual multiple acks on two queues
    let s = run(args(
        &uri,
        &[
            "--queue-pattern",
            &pattern,
            "--queues",
            "2",
            "--producers",
            "2",
            "--consumers",
            "2",
            "--count",
            "2000",
            "--duration",
            "20",
            "--confirm",
            "100",
            "--ack",
            "manual",
            "--multiple-ack-every",
            "10",
            "--prefetch",
            "100",
            "--delete-queues",
        ],
    ))
    .await
    .expect("counted run");
    assert_eq!(s.stop_reason, "count", "{s:?}");
    assert_eq!(s.published, 2000);
    assert_eq!(s.confirmed, 2000);
    assert_eq!(s.consumed, 2000);
    let lat = s.latency_ms.as_ref().expect("latency measured");
    assert_eq!(lat.count, 2000);
    assert!(lat.p50 > 0.0 && lat.p50 <= lat.p99 && lat.p99 <= lat.max);

    // timed run of 1 s through a fanout exchange on a shared connection
    let s = run(args(
        &uri,
        &[
            "--queue-pattern",
            &pattern,
            "--queues",
            "3",
            "--consumers",
            "3",
            "--exchange",
            "warren-perf-test-fanout",
            "--exchange-type",
            "fanout",
            "--duration",
            "1",
            "--rate",
            "2000",
            "--shared-connection",
            "--size",
            "100",
            "--delete-queues",
        ],
    ))
    .await
    .expect("timed run");
    assert_eq!(s.stop_reason, "duration");
    assert!(s.published > 1000 && s.published <= 2100, "{s:?}");
    assert!(s.consumed > 2 * s.published, "{s:?}");
    let json: serde_json::Value = serde_json::from_str(&s.to_json()).expect("valid JSON");
    assert_eq!(json["config"]["exchange_type"], "fanout");

    // idle connections
    let s = run(args(
        &uri,
        &["--connections-only", "5", "--duration", "0.2"],
    ))
    .await
    .expect("connections");
    let c = s.connections.expect("connection summary");
    assert_eq!((c.opened, c.close_failures), (5, 0));

    // a broker error is reported, typed
    let e = run(args(
        &uri,
        &[
            "--predeclared",
            "--queue-pattern",
            "warren-perf-test-missing-%d",
            "--duration",
            "1",
        ],
    ))
    .await
    .expect_err("missing queue");
    assert!(
        matches!(e, warren_perf::PerfError::ChannelClosed { code: 404, .. }),
        "{e}"
    );
}
