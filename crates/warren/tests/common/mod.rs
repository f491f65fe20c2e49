//! Shared harness for integration tests: starts a real `warren` binary on an ephemeral
//! loopback port (or points at an external broker given by `WARREN_TEST_URL`, which is how
//! the same tests are run against RabbitMQ as the oracle) and hands out its AMQP URL.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A broker under test. Killed (by PID, the one we started) when dropped.
pub struct Broker {
    child: Option<Child>,
    /// e.g. `127.0.0.1:40123`
    pub addr: String,
    /// The AMQPS listener's address, when the broker was started with `--tls-listen`.
    pub tls_addr: Option<String>,
    /// The MQTT listener's address, when started with `--mqtt-listen`.
    pub mqtt_addr: Option<String>,
    pub data_dir: Option<std::path::PathBuf>,
}

impl Broker {
    /// Starts a fresh broker, or uses the external one named by `WARREN_TEST_URL`
    /// (`amqp://guest:guest@127.0.0.1:5673/%2f`, for example).
    pub fn start() -> Broker {
        Self::start_with_args(&[])
    }

    pub fn start_with_args(extra: &[&str]) -> Broker {
        if let Ok(url) = std::env::var("WARREN_TEST_URL") {
            let addr = url
                .trim_start_matches("amqp://")
                .rsplit('@')
                .next()
                .unwrap_or("")
                .split('/')
                .next()
                .unwrap_or("")
                .to_string();
            return Broker {
                child: None,
                addr,
                tls_addr: None,
                mqtt_addr: None,
                data_dir: None,
            };
        }
        let data_dir = std::env::temp_dir().join(format!(
            "warren-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        let mut child = Command::new(warren_binary())
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra)
            .env(
                "WARREN_LOG",
                std::env::var("WARREN_LOG").unwrap_or_else(|_| "warn".into()),
            )
            // Many brokers run at once: the management API only where a test asks for it
            // (a --management-listen flag wins over this).
            .env("WARREN_MANAGEMENT_LISTEN", "none")
            .env("WARREN_PROMETHEUS_LISTEN", "none")
            .env("WARREN_MQTT_LISTEN", "none")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn warren");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut reader = BufReader::new(stdout);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut addr = None;
        let mut tls_addr = None;
        let mut mqtt_addr = None;
        let mut line = String::new();
        while Instant::now() < deadline {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if let Some(rest) = line.trim().strip_prefix("warren: listening for AMQP on ") {
                addr = Some(rest.to_string());
            }
            if let Some(rest) = line.trim().strip_prefix("warren: listening for AMQPS on ") {
                tls_addr = Some(rest.to_string());
            }
            if let Some(rest) = line.trim().strip_prefix("warren: listening for MQTT on ") {
                mqtt_addr = Some(rest.to_string());
            }
            // Printed after every listening line.
            if line.starts_with("warren: data directory") {
                break;
            }
        }
        // Keep draining stdout so the broker never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        let addr = addr.expect("warren did not report its listening address");
        Broker {
            child: Some(child),
            addr,
            tls_addr,
            mqtt_addr,
            data_dir: Some(data_dir),
        }
    }

    /// AMQP URL for the default vhost with guest credentials.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    pub fn host(&self) -> String {
        self.addr
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(5672)
    }

    /// True when running against an external broker (RabbitMQ as oracle).
    pub fn is_external(&self) -> bool {
        self.child.is_none()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    u64::from(nanos) ^ (COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed) << 32)
}

/// A unique name for queues/exchanges so tests sharing one external broker never collide.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", rand_suffix())
}

/// The binary under test: cargo's own path when these tests run inside the `warren` package,
/// else `WARREN_BIN`, else `target/debug/warren`.
pub fn warren_binary() -> String {
    if let Some(path) = option_env!("CARGO_BIN_EXE_warren") {
        return path.to_string();
    }
    std::env::var("WARREN_BIN").unwrap_or_else(|_| "target/debug/warren".to_string())
}

// ---------------------------------------------------------------------------------------------
// Client helpers shared by the lapin-based test files.
// ---------------------------------------------------------------------------------------------

/// Default bound for any single wait in a test.
pub const WAIT: Duration = Duration::from_secs(5);

/// Runs `fut` with the default timeout and panics with `what` if it does not finish in time.
pub async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// Opens a lapin connection to the broker (default vhost, guest/guest).
pub async fn connect(broker: &Broker) -> lapin::Connection {
    connect_url(&broker.url()).await.expect("connect to broker")
}

pub async fn connect_url(url: &str) -> lapin::Result<lapin::Connection> {
    within(
        "lapin connect",
        lapin::Connection::connect(url, lapin::ConnectionProperties::default()),
    )
    .await
}

/// Opens a connection and one channel on it.
pub async fn connect_channel(broker: &Broker) -> (lapin::Connection, lapin::Channel) {
    let conn = connect(broker).await;
    let ch = within("channel open", conn.create_channel())
        .await
        .expect("open channel");
    (conn, ch)
}

/// The AMQP reply code carried by a lapin error (channel.close / connection.close sent by the
/// broker), if any.
pub fn reply_code(err: &lapin::Error) -> Option<u16> {
    match err.kind() {
        lapin::ErrorKind::ProtocolError(e) => Some(e.get_id()),
        _ => None,
    }
}

/// The reply text carried by a lapin protocol error.
pub fn reply_text(err: &lapin::Error) -> Option<String> {
    match err.kind() {
        lapin::ErrorKind::ProtocolError(e) => Some(e.get_message().to_string()),
        _ => None,
    }
}

/// Asserts that `res` failed with a broker-sent close carrying `code`; returns the reply text.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(res: lapin::Result<T>, code: u16) -> String {
    match res {
        Ok(v) => panic!("expected AMQP error {code}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(reply_code(&e), Some(code), "unexpected error: {e:?}");
            reply_text(&e).unwrap_or_default()
        }
    }
}

/// True if the broker error is channel-level (soft) rather than connection-level (hard).
pub fn is_soft(err: &lapin::Error) -> bool {
    err.is_amqp_soft_error()
}

/// Declares a fresh, auto-named-by-us, non-durable queue and returns its name.
pub async fn declare_queue(ch: &lapin::Channel, prefix: &str) -> String {
    let name = unique(prefix);
    within(
        "queue.declare",
        ch.queue_declare(
            name.as_str().into(),
            lapin::options::QueueDeclareOptions::default(),
            lapin::types::FieldTable::default(),
        ),
    )
    .await
    .expect("queue.declare");
    name
}

/// Publishes `body` to `exchange` with `routing_key` (no confirms awaited).
pub async fn publish(ch: &lapin::Channel, exchange: &str, routing_key: &str, body: &[u8]) {
    within(
        "basic.publish",
        ch.basic_publish(
            exchange.into(),
            routing_key.into(),
            lapin::options::BasicPublishOptions::default(),
            body,
            lapin::BasicProperties::default(),
        ),
    )
    .await
    .expect("basic.publish");
}

/// basic.get with no-ack; returns the body, or None on get-empty.
pub async fn get_body(ch: &lapin::Channel, queue: &str) -> Option<Vec<u8>> {
    within(
        "basic.get",
        ch.basic_get(
            queue.into(),
            lapin::options::BasicGetOptions { no_ack: true },
        ),
    )
    .await
    .expect("basic.get")
    .map(|m| m.delivery.data)
}

/// `queue.declare` passive: the queue's counts, or the broker's error.
pub async fn passive_declare(ch: &lapin::Channel, queue: &str) -> lapin::Result<lapin::Queue> {
    ch.queue_declare(
        queue.into(),
        lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        lapin::types::FieldTable::default(),
    )
    .await
}

/// Waits (bounded) until `queue` holds `n` ready messages, polling with a passive declare.
pub async fn wait_ready(ch: &lapin::Channel, queue: &str, n: u32) {
    let deadline = Instant::now() + WAIT;
    loop {
        let q = passive_declare(ch, queue)
            .await
            .expect("passive queue.declare");
        if q.message_count() == n {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "queue {queue} has {} ready messages, expected {n}",
                q.message_count()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Next delivery from a lapin consumer (panics on timeout, stream end or error).
pub async fn next_delivery(consumer: &mut lapin::Consumer) -> lapin::message::Delivery {
    use futures_lite::StreamExt;
    match within("delivery", consumer.next()).await {
        Some(Ok(d)) => d,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

/// Asserts no delivery arrives on `consumer` within `ms` milliseconds.
pub async fn expect_no_delivery(consumer: &mut lapin::Consumer, ms: u64) {
    use futures_lite::StreamExt;
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(ms), consumer.next()).await {
        panic!("expected no delivery, got {item:?}");
    }
}

/// Starts a consumer on a private server-named queue on `ch`. lapin reports a broker-sent
/// channel.close that is not the reply to a synchronous method (e.g. after basic.ack of an
/// unknown tag) through the channel's consumer streams, so this is how tests observe it.
pub async fn watch_channel(ch: &lapin::Channel) -> lapin::Consumer {
    let q = within(
        "watch queue.declare",
        ch.queue_declare(
            "".into(),
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        ),
    )
    .await
    .expect("declare watch queue");
    within(
        "watch basic.consume",
        ch.basic_consume(
            q.name().clone(),
            "".into(),
            lapin::options::BasicConsumeOptions::default(),
            lapin::types::FieldTable::default(),
        ),
    )
    .await
    .expect("consume watch queue")
}

/// Waits for the broker to close the channel being watched by `watch` and returns its code.
pub async fn channel_closed_code(watch: &mut lapin::Consumer) -> u16 {
    let e = channel_close_error(watch).await;
    reply_code(&e).unwrap_or_else(|| panic!("not a protocol error: {e:?}"))
}

/// The error the broker closed a channel with, seen through a consumer on it (its reply
/// code and text: [`reply_code`], [`reply_text`]). Unlike the next call on the channel, this
/// does not race with lapin's own close handshake.
pub async fn channel_close_error(watch: &mut lapin::Consumer) -> lapin::Error {
    use futures_lite::StreamExt;
    loop {
        match within("channel.close from broker", watch.next()).await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => return e,
            None => panic!("consumer ended without an error"),
        }
    }
}

/// Waits for the broker to close the connection (subscribe with `conn.events_listener()`
/// BEFORE provoking the error) and returns the reply code.
pub async fn connection_closed_code(
    events: &mut (impl futures_lite::Stream<Item = lapin::Event> + Unpin),
) -> u16 {
    let e = connection_close_error(events).await;
    reply_code(&e).unwrap_or_else(|| panic!("not a protocol error: {e:?}"))
}

/// The error the broker closed the connection with (subscribe with `conn.events_listener()`
/// BEFORE provoking it).
pub async fn connection_close_error(
    events: &mut (impl futures_lite::Stream<Item = lapin::Event> + Unpin),
) -> lapin::Error {
    use futures_lite::StreamExt;
    loop {
        match within("connection.close from broker", events.next()).await {
            Some(lapin::Event::Error(e)) => return e,
            Some(_) => continue,
            None => panic!("event stream ended without an error"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Policies: `rabbitmqctl set_policy` against an external RabbitMQ, `warren ctl set_policy`
// against the Warren started by the test (same argument order as rabbitmqctl).
// ---------------------------------------------------------------------------------------------

/// True when policy tests can run: against RabbitMQ through rabbitmqctl, against Warren
/// through `warren ctl`.
pub fn policies_supported(_broker: &Broker) -> bool {
    true
}

fn policy_command(broker: &Broker) -> Command {
    if broker.is_external() {
        let mut cmd = Command::new("rabbitmqctl");
        cmd.arg("-n").arg(
            std::env::var("WARREN_TEST_RABBIT_NODE").unwrap_or_else(|_| "rabbit@localhost".into()),
        );
        cmd
    } else {
        let mut cmd = Command::new(warren_binary());
        cmd.arg("ctl").arg("--data-dir").arg(
            broker
                .data_dir
                .as_ref()
                .expect("a Warren started by the test has a data dir"),
        );
        cmd
    }
}

/// Runs a policy command. Warren opens its control socket just after it reports its AMQP
/// port, so a command that cannot reach the broker yet is retried (bounded).
fn run_policy_command(broker: &Broker, make: impl Fn() -> Command) {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut cmd = make();
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        if out.status.success() {
            return;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !broker.is_external() && stderr.contains("cannot reach") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        panic!(
            "{cmd:?} failed ({}):\n{}\n{stderr}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
        );
    }
}

/// Removes the policy when dropped (so a failing test does not leave it behind on a shared
/// RabbitMQ).
pub struct PolicyGuard {
    name: String,
    cmd: Option<Command>,
}

impl Drop for PolicyGuard {
    fn drop(&mut self) {
        if let Some(mut cmd) = self.cmd.take() {
            cmd.arg("clear_policy").arg(&self.name);
            let _ = cmd.stdin(Stdio::null()).output();
        }
    }
}

/// `set_policy --priority P --apply-to A NAME PATTERN DEFINITION` on the default vhost.
pub fn set_policy(
    broker: &Broker,
    name: &str,
    pattern: &str,
    definition_json: &str,
    apply_to: &str,
    priority: i32,
) -> PolicyGuard {
    run_policy_command(broker, || {
        let mut cmd = policy_command(broker);
        cmd.arg("set_policy")
            .arg("--priority")
            .arg(priority.to_string())
            .arg("--apply-to")
            .arg(apply_to)
            .arg(name)
            .arg(pattern)
            .arg(definition_json);
        cmd
    });
    PolicyGuard {
        name: name.to_string(),
        cmd: Some(policy_command(broker)),
    }
}

/// Runs `warren ctl ARGS...` (or `rabbitmqctl ARGS...` against RabbitMQ), retrying while the
/// broker's control socket is not up yet.
/// Runs a ctl command (`warren ctl`, or `rabbitmqctl` against an external RabbitMQ) and
/// returns its output, success or not.
pub fn ctl_output(broker: &Broker, args: &[&str]) -> std::process::Output {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut cmd = policy_command(broker);
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !broker.is_external() && stderr.contains("cannot reach") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        return out;
    }
}

pub fn ctl(broker: &Broker, args: &[&str]) {
    run_policy_command(broker, || {
        let mut cmd = policy_command(broker);
        cmd.args(args);
        cmd
    });
}

/// `clear_policy NAME` on the default vhost (disarms the guard).
pub fn clear_policy(broker: &Broker, mut guard: PolicyGuard) {
    guard.cmd = None;
    run_policy_command(broker, || {
        let mut cmd = policy_command(broker);
        cmd.arg("clear_policy").arg(&guard.name);
        cmd
    });
}

// ---------------------------------------------------------------------------------------------
// Restartable brokers on a fixed data directory (durability tests). These only make sense
// against the Warren binary, never against an external broker.
// ---------------------------------------------------------------------------------------------

/// True when the tests run against an external broker (`WARREN_TEST_URL`): crash and restart
/// tests then skip themselves.
pub fn external_broker() -> bool {
    std::env::var("WARREN_TEST_URL").is_ok()
}

/// Spawns `warren --listen 127.0.0.1:0 --data-dir DIR EXTRA...` and waits (bounded) for it to
/// report its listening address. Errors if it exits or stays silent.
fn spawn_warren_in(
    data_dir: &std::path::Path,
    extra: &[String],
    stderr_log: Option<&std::path::Path>,
) -> Result<(Child, String, Option<String>), String> {
    let stderr = match stderr_log {
        Some(path) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("open {}: {e}", path.display()))?,
        ),
        None => Stdio::inherit(),
    };
    let mut child = Command::new(warren_binary())
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env(
            "WARREN_LOG",
            std::env::var("WARREN_LOG").unwrap_or_else(|_| "warn".into()),
        )
        // Many brokers run at once: the management API only where a test asks for it
        // (a --management-listen flag wins over this).
        .env("WARREN_MANAGEMENT_LISTEN", "none")
        .env("WARREN_PROMETHEUS_LISTEN", "none")
        .env("WARREN_MQTT_LISTEN", "none")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("spawn warren: {e}"))?;
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel::<(String, Option<String>)>();
    // Reads the listening lines (up to the data-directory line that follows them all), then
    // keeps draining stdout so the broker never blocks.
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let (mut amqp, mut mqtt) = (None, None);
        let mut sent = false;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if sent {
                continue;
            }
            if let Some(rest) = line.trim().strip_prefix("warren: listening for AMQP on ") {
                amqp = Some(rest.to_string());
            }
            if let Some(rest) = line.trim().strip_prefix("warren: listening for MQTT on ") {
                mqtt = Some(rest.to_string());
            }
            if line.starts_with("warren: data directory") {
                if let Some(addr) = amqp.take() {
                    let _ = tx.send((addr, mqtt.take()));
                    sent = true;
                }
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok((addr, mqtt)) => Ok((child, addr, mqtt)),
        Err(_) => {
            let status = child.try_wait().ok().flatten();
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "warren did not report its listening address (exit status: {status:?})"
            ))
        }
    }
}

impl Broker {
    /// Starts a Warren on `data_dir`, which it does NOT delete when dropped (the caller owns
    /// it: see [`DataDir`]). Panics if it does not come up.
    pub fn start_in(data_dir: &std::path::Path, extra: &[&str]) -> Broker {
        Self::try_start_in(data_dir, extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`Broker::start_in`], but returns an error if the broker does not come up.
    pub fn try_start_in(data_dir: &std::path::Path, extra: &[&str]) -> Result<Broker, String> {
        Self::try_start_logged(data_dir, extra, None)
    }

    /// As [`Broker::try_start_in`], appending the broker's stderr to `stderr_log` if given.
    pub fn try_start_logged(
        data_dir: &std::path::Path,
        extra: &[&str],
        stderr_log: Option<&std::path::Path>,
    ) -> Result<Broker, String> {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, addr, mqtt_addr) = spawn_warren_in(data_dir, &extra, stderr_log)?;
        Ok(Broker {
            child: Some(child),
            addr,
            tls_addr: None,
            mqtt_addr,
            data_dir: None,
        })
    }

    /// PID of the broker process we started.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL (by the PID we started; `Child::kill` is SIGKILL on Unix) and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (bounded, 20 s) for a clean exit; returns the exit status. Panics (after
    /// a SIGKILL) if the broker does not stop in time.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("a broker started by the test");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("warren did not exit within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// True while the process we started is running.
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Resident set size of the broker process (VmRSS from /proc), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib_of(self.pid()?)
    }
}

/// VmRSS of a process from `/proc/<pid>/status`, in KiB.
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A data directory that outlives broker restarts; removed on drop unless `keep()` was called
/// (or the `WARREN_KEEP_DATA` environment variable is set, for post-mortems).
pub struct DataDir {
    pub path: std::path::PathBuf,
    owned: bool,
}

impl DataDir {
    /// A fresh directory under the system temp dir.
    pub fn temp(prefix: &str) -> DataDir {
        let path = std::env::temp_dir().join(format!(
            "warren-{prefix}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&path).expect("create data dir");
        DataDir {
            path,
            owned: std::env::var("WARREN_KEEP_DATA").is_err(),
        }
    }

    /// Keeps the directory when dropped.
    pub fn keep(&mut self) {
        self.owned = false;
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A Warren that can be killed and restarted on the same data directory (a new port each
/// time): `--data-dir` is `<dir>/data`, and stderr of every run is appended to
/// `<dir>/stderr.log`. The broker is killed before the directory is removed.
pub struct Node {
    pub broker: Option<Broker>,
    pub args: Vec<String>,
    pub dir: DataDir,
}

impl Node {
    /// Starts a Warren on a fresh temp data dir.
    pub fn start(prefix: &str, extra: &[&str]) -> Node {
        let mut node = Node {
            broker: None,
            args: extra.iter().map(|s| s.to_string()).collect(),
            dir: DataDir::temp(prefix),
        };
        node.restart();
        node
    }

    /// Starts (again) on the same directory; the previous process must be stopped.
    pub fn restart(&mut self) {
        self.try_restart().unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn try_restart(&mut self) -> Result<(), String> {
        assert!(
            self.broker.as_mut().is_none_or(|b| !b.is_alive()),
            "restart of a running broker"
        );
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let log = self.stderr_path();
        self.broker = Some(Broker::try_start_logged(
            &self.data_dir(),
            &args,
            Some(&log),
        )?);
        Ok(())
    }

    /// The broker's `--data-dir` (`<dir>/data`).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path.join("data")
    }

    /// Where the stderr of every run of this node is appended.
    pub fn stderr_path(&self) -> std::path::PathBuf {
        self.dir.path.join("stderr.log")
    }

    /// Everything the node's runs wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    pub fn broker(&self) -> &Broker {
        self.broker.as_ref().expect("broker running")
    }

    pub fn broker_mut(&mut self) -> &mut Broker {
        self.broker.as_mut().expect("broker running")
    }

    pub fn kill9(&mut self) {
        if let Some(b) = self.broker.as_mut() {
            b.kill9();
        }
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.broker_mut().terminate()
    }

    /// `<data-dir>/store`.
    pub fn store(&self) -> std::path::PathBuf {
        self.data_dir().join("store")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Kill before the DataDir field is dropped (fields drop after this body).
        self.kill9();
    }
}

/// Runs `warren ctl --data-dir DIR ARGS...`; Ok(stdout) on success, Err(stderr) otherwise.
/// Retried (bounded) while the broker's control socket is not up yet (it opens just after the
/// AMQP port is reported).
pub fn warren_ctl(data_dir: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = Command::new(warren_binary())
            .arg("ctl")
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run warren ctl: {e}"))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("cannot reach") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        return Err(format!(
            "warren ctl {args:?} failed ({}): {}{stderr}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
        ));
    }
}

/// `queue.bind` with arguments; panics (with the reply) if the broker refuses.
pub async fn bind_args(
    ch: &lapin::Channel,
    q: &str,
    x: &str,
    key: &str,
    args: lapin::types::FieldTable,
) {
    within(
        "queue.bind",
        ch.queue_bind(
            q.into(),
            x.into(),
            key.into(),
            lapin::options::QueueBindOptions::default(),
            args,
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("bind {q} to {x} with {key}: {e:?}"));
}

/// `exchange.bind` (`dest` receives from `src`); panics if the broker refuses.
pub async fn bind_exchange(
    ch: &lapin::Channel,
    dest: &str,
    src: &str,
    key: &str,
    args: lapin::types::FieldTable,
) {
    within(
        "exchange.bind",
        ch.exchange_bind(
            dest.into(),
            src.into(),
            key.into(),
            lapin::options::ExchangeBindOptions::default(),
            args,
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("bind exchange {dest} to {src} with {key}: {e:?}"));
}
