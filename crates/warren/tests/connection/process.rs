//! The broker process itself: the allocator setting it starts with (see `allocator.rs` in
//! the binary).

use super::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The environment a process was executed with (`/proc/PID/environ`), as `NAME=value` byte
/// strings.
fn environ_of(pid: u32) -> Vec<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(<[u8]>::to_vec)
        .collect()
}

/// The value of `name` in the environment a process was executed with.
fn env_of(pid: u32, name: &str) -> Option<Vec<u8>> {
    let prefix = format!("{name}=");
    environ_of(pid)
        .into_iter()
        .find_map(|kv| kv.strip_prefix(prefix.as_bytes()).map(<[u8]>::to_vec))
}

/// The marker the binary sets on its second execution (`allocator.rs`).
const MARKER: &str = "WARREN_MALLOC_REEXECUTED";

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
        env_of(pid, "GLIBC_TUNABLES").as_deref(),
        Some(&b"glibc.malloc.tcache_count=512"[..])
    );
    assert_eq!(env_of(pid, MARKER).as_deref(), Some(&b"1"[..]));
    // Still the process we started, serving.
    let conn = connect(&broker).await;
    assert!(conn.status().connected());
}

/// Starts the binary with `envs` added, waits until it listens (or 20 s), and returns
/// whether it came up and the environment its running image was executed with.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn start_with(tag: &str, envs: &[(&str, std::ffi::OsString)]) -> (bool, Vec<Vec<u8>>) {
    let data_dir = DataDir::temp(tag);
    let mut command = Command::new(warren_binary());
    command
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir.path)
        .env_remove("GLIBC_TUNABLES")
        .env_remove(MARKER)
        .env("WARREN_LOG", "warn")
        .env("WARREN_MANAGEMENT_LISTEN", "none")
        .env("WARREN_PROMETHEUS_LISTEN", "none")
        .env("WARREN_MQTT_LISTEN", "none")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (name, value) in envs {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn warren");
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
    let environ = environ_of(child.id());
    let _ = child.kill();
    let _ = child.wait();
    (listening, environ)
}

/// An operator's own tcache setting wins: the binary does not execute itself again (no
/// marker). Other tunables, also when not UTF-8, are kept with the cache setting added after
/// them, and the binary executes itself once and comes up. (glibc 2.36 shows only the first
/// of several tunables in `/proc/PID/environ`, hence the prefix comparison.)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn an_operators_tunables_are_kept() {
    use std::os::unix::ffi::OsStringExt;
    if external_broker() {
        return;
    }
    let cases: [(&[u8], bool); 3] = [
        (b"glibc.malloc.tcache_count=7", false),
        (b"glibc.malloc.trim_threshold=600000", true),
        (b"glibc.malloc.trim_threshold=600000:x\xff=1", true),
    ];
    for (given, reexecuted) in cases {
        let value = std::ffi::OsString::from_vec(given.to_vec());
        let (listening, environ) = start_with("tunables", &[("GLIBC_TUNABLES", value)]);
        let shown = String::from_utf8_lossy(given);
        assert!(listening, "the broker came up with GLIBC_TUNABLES={shown}");
        let tunables = environ
            .iter()
            .find_map(|kv| kv.strip_prefix(b"GLIBC_TUNABLES="))
            .expect("GLIBC_TUNABLES kept");
        let first = given.split(|b| *b == b':').next().unwrap_or_default();
        assert!(tunables.starts_with(first), "given {shown}");
        let marked = environ.iter().any(|kv| kv.starts_with(MARKER.as_bytes()));
        assert_eq!(marked, reexecuted, "given {shown}");
    }
}

/// The binary executes itself at most once, whatever glibc leaves of `GLIBC_TUNABLES` (in
/// secure mode it strips the tunable): with the marker already set it does not execute
/// again, and comes up with the environment it was given.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_binary_executes_itself_at_most_once() {
    if external_broker() {
        return;
    }
    let (listening, environ) = start_with("reexec-once", &[(MARKER, "1".into())]);
    assert!(listening, "the broker came up");
    assert!(!environ.iter().any(|kv| kv.starts_with(b"GLIBC_TUNABLES=")));
}
