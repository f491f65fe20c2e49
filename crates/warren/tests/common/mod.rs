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
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn warren");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut reader = BufReader::new(stdout);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut addr = None;
        let mut line = String::new();
        while Instant::now() < deadline {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if let Some(rest) = line.trim().strip_prefix("warren: listening for AMQP on ") {
                addr = Some(rest.to_string());
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

/// Waits (bounded) until `queue` holds `n` ready messages, polling with a passive declare.
pub async fn wait_ready(ch: &lapin::Channel, queue: &str, n: u32) {
    let deadline = Instant::now() + WAIT;
    loop {
        let q = ch
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
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
    use futures_lite::StreamExt;
    loop {
        match within("channel.close from broker", watch.next()).await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                return reply_code(&e).unwrap_or_else(|| panic!("not a protocol error: {e:?}"))
            }
            None => panic!("consumer ended without an error"),
        }
    }
}

/// Waits for the broker to close the connection (subscribe with `conn.events_listener()`
/// BEFORE provoking the error) and returns the reply code.
pub async fn connection_closed_code(
    events: &mut (impl futures_lite::Stream<Item = lapin::Event> + Unpin),
) -> u16 {
    use futures_lite::StreamExt;
    loop {
        match within("connection.close from broker", events.next()).await {
            Some(lapin::Event::Error(e)) => {
                return reply_code(&e).unwrap_or_else(|| panic!("not a protocol error: {e:?}"))
            }
            Some(_) => continue,
            None => panic!("event stream ended without an error"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Policies: `rabbitmqctl set_policy` against an external RabbitMQ, `warren ctl set_policy`
// against the Warren started by the test (same argument order as rabbitmqctl).
// ---------------------------------------------------------------------------------------------

/// True when policy tests can run: always against RabbitMQ; against Warren only once its
/// `warren ctl` command exists (signalled with `WARREN_CTL_READY=1`).
pub fn policies_supported(broker: &Broker) -> bool {
    broker.is_external() || std::env::var("WARREN_CTL_READY").as_deref() == Ok("1")
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

fn run_policy_command(mut cmd: Command) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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
    let mut cmd = policy_command(broker);
    cmd.arg("set_policy")
        .arg("--priority")
        .arg(priority.to_string())
        .arg("--apply-to")
        .arg(apply_to)
        .arg(name)
        .arg(pattern)
        .arg(definition_json);
    run_policy_command(cmd);
    PolicyGuard {
        name: name.to_string(),
        cmd: Some(policy_command(broker)),
    }
}

/// `clear_policy NAME` on the default vhost (disarms the guard).
pub fn clear_policy(broker: &Broker, mut guard: PolicyGuard) {
    guard.cmd = None;
    let mut cmd = policy_command(broker);
    cmd.arg("clear_policy").arg(&guard.name);
    run_policy_command(cmd);
}
