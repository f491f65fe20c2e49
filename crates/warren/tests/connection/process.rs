//! The broker process itself: the allocator setting it starts with (see `allocator.rs` in
//! the binary).

use super::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The process's `GLIBC_TUNABLES`, read from `/proc/PID/environ`.
fn tunables_of(pid: u32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("GLIBC_TUNABLES=").map(str::to_string))
}

/// The broker runs with glibc's per-thread cache raised to 512 chunks per size class: it
/// executes itself again once with the tunable set (the tunable is only read at start).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test]
async fn the_broker_runs_with_a_larger_malloc_thread_cache() {
    if external_broker() {
        return;
    }
    let broker = Broker::start();
    let pid = broker.pid().expect("a broker we started");
    assert_eq!(
        tunables_of(pid).as_deref(),
        Some("glibc.malloc.tcache_count=512")
    );
    // Still the process we started, serving.
    let conn = connect(&broker).await;
    assert!(conn.status().connected());
}

/// An operator's own tcache setting wins: the binary does not execute itself again. Other
/// tunables are kept, the cache setting added after them, and the binary executes itself
/// only once: it comes up. (glibc 2.36 shows only the first of several tunables in
/// `/proc/PID/environ`, so the second case checks that the broker serves.)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn an_operators_tunables_are_kept() {
    if external_broker() {
        return;
    }
    for (given, shown) in [
        ("glibc.malloc.tcache_count=7", "glibc.malloc.tcache_count=7"),
        (
            "glibc.malloc.trim_threshold=600000",
            "glibc.malloc.trim_threshold=600000",
        ),
    ] {
        let data_dir = DataDir::temp("tunables");
        let mut child = Command::new(warren_binary())
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir.path)
            .env("GLIBC_TUNABLES", given)
            .env("WARREN_LOG", "warn")
            .env("WARREN_MANAGEMENT_LISTEN", "none")
            .env("WARREN_PROMETHEUS_LISTEN", "none")
            .env("WARREN_MQTT_LISTEN", "none")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn warren");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if line.contains("listening for AMQP on") {
                    let _ = tx.send(());
                }
                line.clear();
            }
        });
        // A binary that kept executing itself would never get this far.
        let listening = rx.recv_timeout(Duration::from_secs(20)).is_ok();
        let seen = tunables_of(child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(listening, "the broker came up with GLIBC_TUNABLES={given}");
        assert_eq!(seen.as_deref(), Some(shown), "given {given}");
    }
}
