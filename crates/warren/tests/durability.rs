//! Durability: crash (kill -9) and restart semantics, damaged data directories, space
//! reclamation and queues larger than their memory limit. These tests start, kill and restart
//! the real `warren` binary on one data directory (see `Node` in `common`), so they are
//! skipped when `WARREN_TEST_URL` points at an external broker.
//!
//! Knobs (environment): `DURABILITY_SEED` (crash test PRNG seed, printed by every run),
//! `DURABILITY_ROUNDS` (crash rounds, default 20), `DURABILITY_LTM_MIB` (MiB published by the
//! larger-than-memory test, default 150), `WARREN_KEEP_DATA=1` (keep the data directories).
mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures_lite::StreamExt;
use lapin::{options::*, types::FieldTable, BasicProperties, Confirmation, ExchangeKind};

macro_rules! needs_warren {
    () => {
        if external_broker() {
            eprintln!("skipped: durability tests need the Warren binary (WARREN_TEST_URL is set)");
            return;
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

fn transient() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(1)
}

/// xorshift64*: small, seeded, good enough to pick delays; failures reproduce from the seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform-ish in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

async fn open_channel(conn: &lapin::Connection) -> lapin::Channel {
    within("channel open", conn.create_channel())
        .await
        .expect("open channel")
}

async fn declare_durable(ch: &lapin::Channel, name: &str) -> u32 {
    declare_durable_with(ch, name, QueueDeclareOptions::default()).await
}

/// Declares a durable queue (idempotent) and returns its ready message count.
async fn declare_durable_with(ch: &lapin::Channel, name: &str, opts: QueueDeclareOptions) -> u32 {
    within(
        "durable queue.declare",
        ch.queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..opts
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("durable queue.declare")
    .message_count()
}

/// Ready count of an existing queue (passive declare).
async fn ready_count(ch: &lapin::Channel, name: &str) -> u32 {
    within(
        "passive queue.declare",
        ch.queue_declare(
            name.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("passive declare of {name}: {e:?}"))
    .message_count()
}

/// Whether a queue exists, checked on a throw-away channel (a 404 closes the channel).
async fn queue_exists(conn: &lapin::Connection, name: &str) -> bool {
    let ch = open_channel(conn).await;
    let res = within(
        "passive queue.declare",
        ch.queue_declare(
            name.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await;
    match res {
        Ok(_) => {
            let _ = ch.close(200, "bye".into()).await;
            true
        }
        Err(e) if reply_code(&e) == Some(404) => false,
        Err(e) => panic!("passive declare of queue {name}: {e:?}"),
    }
}

/// Whether an exchange exists, checked on a throw-away channel.
async fn exchange_exists(conn: &lapin::Connection, name: &str) -> bool {
    let ch = open_channel(conn).await;
    let res = within(
        "passive exchange.declare",
        ch.exchange_declare(
            name.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await;
    match res {
        Ok(()) => {
            let _ = ch.close(200, "bye".into()).await;
            true
        }
        Err(e) if reply_code(&e) == Some(404) => false,
        Err(e) => panic!("passive declare of exchange {name}: {e:?}"),
    }
}

/// Publishes on a channel in confirm mode and panics unless the broker acks.
async fn publish_confirmed(
    ch: &lapin::Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
) {
    let pc = within(
        "basic.publish",
        ch.basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            props,
        ),
    )
    .await
    .expect("basic.publish");
    let c = within("publisher confirm", pc).await.expect("confirm");
    assert!(
        matches!(c, Confirmation::Ack(_)),
        "expected an ack, got {c:?}"
    );
}

/// Publishes `bodies` in one confirm window and waits for all acks.
async fn publish_window(
    ch: &lapin::Channel,
    queue: &str,
    bodies: &[Vec<u8>],
    props: &BasicProperties,
) {
    let mut pending = Vec::with_capacity(bodies.len());
    for b in bodies {
        pending.push(
            within(
                "basic.publish",
                ch.basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    b,
                    props.clone(),
                ),
            )
            .await
            .expect("basic.publish"),
        );
    }
    for pc in pending {
        let c = within("publisher confirm", pc).await.expect("confirm");
        assert!(
            matches!(c, Confirmation::Ack(_)),
            "expected an ack, got {c:?}"
        );
    }
}

/// basic.get (ack mode: each message acked) until get-empty: (body, redelivered) in order.
async fn get_all(ch: &lapin::Channel, queue: &str) -> Vec<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    loop {
        let m = within(
            "basic.get",
            ch.basic_get(queue.into(), BasicGetOptions { no_ack: false }),
        )
        .await
        .expect("basic.get");
        let Some(m) = m else { return out };
        let d = m.delivery;
        within("basic.ack", d.acker.ack(BasicAckOptions::default()))
            .await
            .expect("basic.ack");
        out.push((d.data, d.redelivered));
    }
}

fn bodies_of(v: &[(Vec<u8>, bool)]) -> Vec<String> {
    v.iter()
        .map(|(b, _)| String::from_utf8_lossy(b).into_owned())
        .collect()
}

/// Files of a directory, sorted by name.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for p in files_in(dir) {
        if let Ok(m) = std::fs::metadata(&p) {
            if m.is_dir() {
                total += dir_size(&p);
            } else {
                total += m.len();
            }
        }
    }
    total
}

fn segment_files(store: &Path) -> Vec<PathBuf> {
    files_in(&store.join("segments"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect()
}

fn index_files(store: &Path) -> Vec<PathBuf> {
    files_in(&store.join("queues"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect()
}

/// Records of a segment file (layout in docs/architecture.md §3): (offset, payload len).
/// Stops at the first record that does not fit in the file.
fn segment_records(data: &[u8]) -> Vec<(usize, usize)> {
    assert!(
        data.len() >= 16 && (&data[..8] == b"WRNSEG02" || &data[..8] == b"WRNSEG01"),
        "not a segment file"
    );
    let mut out = Vec::new();
    let mut at = 16;
    while at + 8 <= data.len() {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        if at + 8 + len > data.len() {
            break;
        }
        out.push((at, len));
        at += 8 + len;
    }
    out
}

/// Removes terminal colour sequences (the broker's log is coloured).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Fails the test if the node's stderr shows a panic.
fn assert_no_panic(node: &Node) {
    let log = node.stderr_text();
    assert!(
        !log.contains("panicked"),
        "the broker panicked; its stderr:\n{log}"
    );
}

/// The broker process is alive and serves a new client end to end (declare, publish with
/// confirm, get).
async fn assert_serves_new_clients(node: &mut Node) {
    assert!(node.broker_mut().is_alive(), "the broker process died");
    let (_c, ch) = connect_channel(node.broker()).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let q = unique("alive");
    declare_durable(&ch, &q).await;
    publish_confirmed(&ch, "", &q, b"still alive", persistent()).await;
    assert_eq!(
        get_body(&ch, &q).await.as_deref(),
        Some(&b"still alive"[..])
    );
    assert!(node.broker_mut().is_alive(), "the broker process died");
}

// ---------------------------------------------------------------------------------------------
// 1. Crash test: publishers with confirms and consumers with manual acks, kill -9 at random.
// ---------------------------------------------------------------------------------------------

const CRASH_QUEUE: &str = "durability-crash";
/// An ack sent this long (or longer) before the kill must have reached the disk: the store
/// flushes unrequested data 20 ms after it appears (and at once while publishers wait for
/// confirms); the rest is slack for a loaded debug build on a shared disk.
const ACK_DURABLE_AFTER: Duration = Duration::from_millis(1000);

/// Body of message `id`: the id, then a 56-byte block derived from it, repeated up to `size`
/// (checked on every delivery).
fn crash_body(id: u64, size: usize) -> Vec<u8> {
    let mut block = [0u8; 56];
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in block.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut body = Vec::with_capacity(size.max(8));
    body.extend_from_slice(&id.to_be_bytes());
    while body.len() < size {
        let k = (size - body.len()).min(block.len());
        body.extend_from_slice(&block[..k]);
    }
    body
}

fn crash_id(body: &[u8]) -> Option<u64> {
    let id = u64::from_be_bytes(body.get(..8)?.try_into().ok()?);
    (crash_body(id, body.len()) == body).then_some(id)
}

/// One flavour of the crash test.
struct CrashConfig {
    name: &'static str,
    rounds: usize,
    body_size: usize,
    args: &'static [&'static str],
    /// The broker is killed this many ms (uniform) after the round's clients are connected.
    kill_ms: (u64, u64),
    consumer_delay_ms: (u64, u64),
    /// Every Nth delivery is nacked with requeue instead of acked (0: never).
    requeue_every: u64,
}

#[derive(Default)]
struct CrashState {
    body_size: usize,
    published: HashSet<u64>,
    confirmed: HashSet<u64>,
    nacked: u64,
    /// id -> (round, when the client's ack call returned) of its LAST ack.
    acked: HashMap<u64, (usize, Instant)>,
    /// Every id a consumer received, and how many deliveries had redelivered=true.
    delivered: HashSet<u64>,
    redelivered_deliveries: u64,
    deliveries: u64,
    requeued: u64,
    /// Ids delivered twice within one broker lifetime without being requeued in between
    /// (a bug: nothing else sends a message twice while the broker runs).
    dup_in_round: Vec<(usize, u64)>,
    /// Messages nacked with requeue that came back with redelivered=false.
    requeued_not_flagged: Vec<(usize, u64)>,
    /// Deliveries whose body did not match any id.
    bad_bodies: u64,
}

async fn crash_publisher(
    ch: lapin::Channel,
    st: Arc<Mutex<CrashState>>,
    round: usize,
    window: u64,
) {
    let size = st.lock().unwrap().body_size;
    let mut n = 0u64;
    loop {
        let mut pending = Vec::new();
        let mut stop = false;
        for _ in 0..window {
            let id = ((round as u64) << 32) | n;
            n += 1;
            st.lock().unwrap().published.insert(id);
            let res = tokio::time::timeout(
                Duration::from_secs(3),
                ch.basic_publish(
                    "".into(),
                    CRASH_QUEUE.into(),
                    BasicPublishOptions::default(),
                    &crash_body(id, size),
                    persistent(),
                ),
            )
            .await;
            match res {
                Ok(Ok(pc)) => pending.push((id, pc)),
                _ => {
                    stop = true;
                    break;
                }
            }
        }
        for (id, pc) in pending {
            match tokio::time::timeout(Duration::from_secs(3), pc).await {
                Ok(Ok(Confirmation::Ack(_))) => {
                    st.lock().unwrap().confirmed.insert(id);
                }
                Ok(Ok(Confirmation::Nack(_))) => st.lock().unwrap().nacked += 1,
                _ => stop = true,
            }
        }
        if stop {
            return;
        }
    }
}

async fn crash_consumer(
    url: String,
    st: Arc<Mutex<CrashState>>,
    round: usize,
    start_delay: Duration,
    multiple: bool,
    requeue_every: u64,
) {
    tokio::time::sleep(start_delay).await;
    let Ok(Ok(conn)) = tokio::time::timeout(
        Duration::from_secs(3),
        lapin::Connection::connect(&url, lapin::ConnectionProperties::default()),
    )
    .await
    else {
        return;
    };
    let Ok(ch) = conn.create_channel().await else {
        return;
    };
    if ch.basic_qos(64, BasicQosOptions::default()).await.is_err() {
        return;
    }
    let Ok(mut consumer) = ch
        .basic_consume(
            CRASH_QUEUE.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
    else {
        return;
    };
    let mut seen = HashSet::new();
    let mut requeued = HashSet::new();
    let mut unacked: Vec<u64> = Vec::new();
    let mut count = 0u64;
    loop {
        let d = match tokio::time::timeout(Duration::from_secs(3), consumer.next()).await {
            Ok(Some(Ok(d))) => d,
            _ => return,
        };
        let Some(id) = crash_id(&d.data) else {
            st.lock().unwrap().bad_bodies += 1;
            continue;
        };
        count += 1;
        {
            let mut s = st.lock().unwrap();
            s.deliveries += 1;
            s.delivered.insert(id);
            if d.redelivered {
                s.redelivered_deliveries += 1;
            }
            if !seen.insert(id) && !requeued.contains(&id) {
                s.dup_in_round.push((round, id));
            }
            if requeued.contains(&id) && !d.redelivered {
                s.requeued_not_flagged.push((round, id));
            }
        }
        if requeue_every > 0 && count.is_multiple_of(requeue_every) && !requeued.contains(&id) {
            let opts = BasicNackOptions {
                multiple: false,
                requeue: true,
            };
            if d.acker.nack(opts).await.is_err() {
                return;
            }
            requeued.insert(id);
            st.lock().unwrap().requeued += 1;
            continue;
        }
        unacked.push(id);
        if multiple && unacked.len() < 8 {
            continue;
        }
        let opts = BasicAckOptions { multiple };
        if d.acker.ack(opts).await.is_err() {
            return;
        }
        let now = Instant::now();
        let mut s = st.lock().unwrap();
        for id in unacked.drain(..) {
            s.acked.insert(id, (round, now));
        }
    }
}

fn segments_summary(store: &Path) -> String {
    let segs = segment_files(store);
    let total: u64 = segs
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    // next_id starts with the id as a little-endian u32 (it exists once a segment rolled).
    let next_id = std::fs::read(store.join("segments").join("next_id"))
        .ok()
        .and_then(|b| Some(u32::from_le_bytes(b.get(..4)?.try_into().ok()?)));
    let ids: Vec<String> = segs
        .iter()
        .filter_map(|p| {
            Some(
                p.file_stem()?
                    .to_string_lossy()
                    .trim_start_matches('0')
                    .to_string(),
            )
        })
        .collect();
    format!(
        "{} segment files {ids:?}, {total} B, next_id {next_id:?}",
        segs.len()
    )
}

async fn run_crash_rounds(cfg: CrashConfig) {
    let seed = env_u64("DURABILITY_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let rounds = env_u64("DURABILITY_ROUNDS").map_or(cfg.rounds, |r| r as usize);
    let name = cfg.name;
    println!(
        "{name}: seed {seed} (rerun with DURABILITY_SEED={seed}), {rounds} rounds, {} B bodies, \
         args {:?}",
        cfg.body_size, cfg.args
    );
    let mut rng = Rng::new(seed);
    let st = Arc::new(Mutex::new(CrashState {
        body_size: cfg.body_size,
        ..Default::default()
    }));
    let mut node = Node::start(name, cfg.args);
    let mut kill_times = Vec::new();
    let started = Instant::now();
    for round in 0..rounds {
        if round > 0 {
            node.restart();
        }
        let url = node.broker().url();
        let pconn = connect(node.broker()).await;
        let pch = open_channel(&pconn).await;
        pch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let backlog = declare_durable(&pch, CRASH_QUEUE).await;
        let window = rng.range(1, 128);
        let with_consumer = rng.range(0, 9) < 8;
        let consumer_delay =
            Duration::from_millis(rng.range(cfg.consumer_delay_ms.0, cfg.consumer_delay_ms.1));
        let multiple = rng.range(0, 1) == 1;
        let kill_after = Duration::from_millis(rng.range(cfg.kill_ms.0, cfg.kill_ms.1));
        let publisher = tokio::spawn(crash_publisher(pch.clone(), st.clone(), round, window));
        let consumer = with_consumer.then(|| {
            tokio::spawn(crash_consumer(
                url.clone(),
                st.clone(),
                round,
                consumer_delay,
                multiple,
                cfg.requeue_every,
            ))
        });
        tokio::time::sleep(kill_after).await;
        kill_times.push(Instant::now());
        tokio::task::block_in_place(|| node.kill9());
        println!(
            "{name} round {round:2}: backlog at start {backlog:5}, window {window:3}, consumer {}, \
             kill after {kill_after:?}; {}",
            if with_consumer {
                format!("after {consumer_delay:?} (multiple acks: {multiple})")
            } else {
                "none".into()
            },
            segments_summary(&node.store()),
        );
        for h in std::iter::once(publisher).chain(consumer) {
            let abort = h.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), h)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        drop(pch);
        drop(pconn);
    }

    // Final drain on a fresh run: everything left in the queue, each id at most once.
    node.restart();
    let (conn, ch) = connect_channel(node.broker()).await;
    let left = declare_durable(&ch, CRASH_QUEUE).await;
    ch.basic_qos(500, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            CRASH_QUEUE.into(),
            "drain".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let drain_started = Instant::now();
    let mut drained: Vec<(u64, bool)> = Vec::new();
    let mut bad_in_drain = 0u64;
    while let Ok(item) = tokio::time::timeout(Duration::from_millis(1500), consumer.next()).await {
        let d = item.expect("consumer stream ended").expect("delivery");
        match crash_id(&d.data) {
            Some(id) => drained.push((id, d.redelivered)),
            None => bad_in_drain += 1,
        }
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    let drain_time = drain_started
        .elapsed()
        .saturating_sub(Duration::from_millis(1500));
    assert_eq!(
        ready_count(&ch, CRASH_QUEUE).await,
        0,
        "drain left messages"
    );
    drop(consumer);
    drop(ch);
    drop(conn);

    let s = std::mem::take(&mut *st.lock().unwrap());
    let mut counts: HashMap<u64, u32> = HashMap::new();
    for (id, _) in &drained {
        *counts.entry(*id).or_default() += 1;
    }
    let dups: Vec<u64> = counts
        .iter()
        .filter(|(_, &c)| c > 1)
        .map(|(&i, _)| i)
        .collect();
    let never_published: Vec<u64> = counts
        .keys()
        .filter(|i| !s.published.contains(i))
        .copied()
        .collect();
    let mut missing: Vec<u64> = s
        .confirmed
        .iter()
        .filter(|i| !s.acked.contains_key(i) && !counts.contains_key(i))
        .copied()
        .collect();
    missing.sort_unstable();
    let resurrected: Vec<u64> = counts
        .keys()
        .filter(|i| s.acked.contains_key(i))
        .copied()
        .collect();
    // How long before its round's kill was the last ack of each resurrected id sent?
    let ages: Vec<Duration> = resurrected
        .iter()
        .map(|i| {
            let (round, at) = s.acked[i];
            kill_times[round].saturating_duration_since(at)
        })
        .collect();
    let max_age = ages.iter().max().copied().unwrap_or_default();
    let unconfirmed_recovered = counts.keys().filter(|i| !s.confirmed.contains(i)).count();
    let redelivered_never_seen = drained
        .iter()
        .filter(|(i, r)| *r && !s.delivered.contains(i))
        .count();
    let seen_not_flagged = drained
        .iter()
        .filter(|(i, r)| !*r && s.delivered.contains(i))
        .count();
    let confirmed_not_acked = s
        .confirmed
        .iter()
        .filter(|i| !s.acked.contains_key(i))
        .count();
    println!(
        "{name} summary: seed {seed}, rounds {rounds}, published {}, confirmed {}, nacked {}, \
         acked {}, deliveries {} ({} redelivered, {} nacked with requeue), confirmed-not-acked \
         {confirmed_not_acked}, recovered {} (queue reported {left}, drained in {drain_time:?}), \
         resurrected acks {} (last ack at most {max_age:?} before the kill), \
         recovered-but-unconfirmed {unconfirmed_recovered}, in {:?}",
        s.published.len(),
        s.confirmed.len(),
        s.nacked,
        s.acked.len(),
        s.deliveries,
        s.redelivered_deliveries,
        s.requeued,
        drained.len(),
        resurrected.len(),
        started.elapsed(),
    );
    println!(
        "{name} summary: drained redelivered=true but never seen by a consumer \
         {redelivered_never_seen} (delivered in flight at the kill), seen by a consumer but \
         redelivered=false {seen_not_flagged} (delivered mark not yet flushed at the kill)"
    );
    assert!(s.confirmed.len() > 100, "too few confirms to mean anything");
    assert_eq!(
        s.bad_bodies + bad_in_drain,
        0,
        "deliveries with wrong content"
    );
    assert!(
        s.dup_in_round.is_empty(),
        "ids delivered twice within one broker run: {:?}",
        &s.dup_in_round[..s.dup_in_round.len().min(20)]
    );
    assert!(
        s.requeued_not_flagged.is_empty(),
        "requeued messages redelivered with redelivered=false: {:?}",
        &s.requeued_not_flagged[..s.requeued_not_flagged.len().min(20)]
    );
    assert!(dups.is_empty(), "duplicates in the final drain: {dups:?}");
    assert!(
        never_published.is_empty(),
        "ids that were never published: {never_published:?}"
    );
    assert!(
        missing.is_empty(),
        "{} confirmed and never acked ids are lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert_eq!(left as usize, drained.len(), "queue count vs drained");
    assert!(
        max_age < ACK_DURABLE_AFTER,
        "an ack sent {max_age:?} before the kill was lost (bound {ACK_DURABLE_AFTER:?})"
    );

    // A graceful stop keeps the drain's acks: nothing comes back, and with nothing live the
    // restart deletes every segment (no leak across the crashes).
    tokio::task::block_in_place(|| node.terminate());
    node.restart();
    let (_c, ch) = connect_channel(node.broker()).await;
    assert_eq!(declare_durable(&ch, CRASH_QUEUE).await, 0);
    let summary = segments_summary(&node.store());
    println!("{name}: after the drain and a restart: {summary}");
    let seg_bytes: u64 = segment_files(&node.store())
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    assert_eq!(seg_bytes, 0, "segments left with nothing live: {summary}");
    assert_no_panic(&node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_kill9_rounds_lose_no_confirmed_message() {
    needs_warren!();
    run_crash_rounds(CrashConfig {
        name: "crash",
        rounds: 20,
        body_size: 64,
        args: &[],
        kill_ms: (10, 300),
        consumer_delay_ms: (0, 150),
        requeue_every: 0,
    })
    .await;
}

/// Bigger bodies (32 KiB), most of them paged out (1 MiB queue memory limit), longer rounds
/// so that 64 MiB segments fill, roll and get deleted while the broker runs and crashes, and
/// consumers that requeue every 50th delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_kill9_rounds_paged_rolling_segments_requeues() {
    needs_warren!();
    run_crash_rounds(CrashConfig {
        name: "crash-big",
        rounds: 6,
        body_size: 32 * 1024,
        args: &["--queue-memory-limit", "1048576"],
        kill_ms: (300, 1500),
        consumer_delay_ms: (0, 300),
        requeue_every: 50,
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 2. Restart semantics, after SIGTERM and after kill -9.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stop {
    Graceful,
    Kill9,
}

fn stop(node: &mut Node, how: Stop) {
    match how {
        Stop::Graceful => {
            let status = node.terminate();
            assert!(
                status.success(),
                "warren exited with {status} after SIGTERM"
            );
        }
        Stop::Kill9 => node.kill9(),
    }
}

async fn restart_semantics(how: Stop) {
    let mut node = Node::start("restart", &[]);
    let conn = connect(node.broker()).await;
    let ch = open_channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let durable_x = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    // Durable exchange, queue and binding.
    ch.exchange_declare(
        "dur-x".into(),
        ExchangeKind::Direct,
        durable_x,
        FieldTable::default(),
    )
    .await
    .unwrap();
    declare_durable(&ch, "dur-q").await;
    ch.queue_bind(
        "dur-q".into(),
        "dur-x".into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    // Transient exchange and queue (the queue is also bound to the durable exchange).
    ch.exchange_declare(
        "tmp-x".into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        "tmp-q".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        "tmp-q".into(),
        "dur-x".into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    // Durable but exclusive: dies with its connection (here: with the broker).
    declare_durable_with(
        &ch,
        "excl-q",
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
    )
    .await;
    // Durable auto-delete queue that never had a consumer, holding a persistent message.
    declare_durable_with(
        &ch,
        "ad-q",
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
    )
    .await;
    publish_confirmed(&ch, "", "ad-q", b"ad-1", persistent()).await;
    // Exchange-to-exchange binding between durable exchanges.
    ch.exchange_declare(
        "e2e-src".into(),
        ExchangeKind::Fanout,
        durable_x,
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.exchange_declare(
        "e2e-dst".into(),
        ExchangeKind::Direct,
        durable_x,
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.exchange_bind(
        "e2e-dst".into(),
        "e2e-src".into(),
        "".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    declare_durable(&ch, "e2e-q").await;
    ch.queue_bind(
        "e2e-q".into(),
        "e2e-dst".into(),
        "rk".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    // A policy set through `warren ctl`, checked by its effect (max-length 2, drop-head).
    declare_durable(&ch, "pol-q").await;
    warren_ctl(
        &node.data_dir(),
        &[
            "set_policy",
            "--apply-to",
            "queues",
            "maxlen",
            "^pol-q$",
            r#"{"max-length":2}"#,
        ],
    )
    .expect("warren ctl set_policy");
    for b in ["pol-1", "pol-2", "pol-3"] {
        publish_confirmed(&ch, "", "pol-q", b.as_bytes(), persistent()).await;
    }
    assert_eq!(
        ready_count(&ch, "pol-q").await,
        2,
        "policy max-length not in effect"
    );

    // Messages: a1 acked, a2 delivered and not acked, then persistent and transient mixed.
    for (b, p) in [
        ("a1", persistent()),
        ("a2", persistent()),
        ("p1", persistent()),
        ("t1", transient()),
        ("p2", persistent()),
        ("t2", transient()),
        ("p3", persistent()),
    ] {
        publish_confirmed(&ch, "dur-x", "k", b.as_bytes(), p).await;
    }
    let a1 = ch
        .basic_get("dur-q".into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .expect("a1");
    assert_eq!(a1.delivery.data, b"a1");
    a1.delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    let a2 = ch
        .basic_get("dur-q".into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .expect("a2");
    assert_eq!(a2.delivery.data, b"a2");
    assert!(!a2.delivery.redelivered);
    // Barrier: a confirmed persistent publish on the same channel, after the ack and the
    // delivery, forces a store round that covers the ack and the delivered mark (the flusher
    // syncs everything buffered before the confirm's generation).
    declare_durable(&ch, "barrier-q").await;
    publish_confirmed(&ch, "", "barrier-q", b"barrier", persistent()).await;

    tokio::task::block_in_place(|| stop(&mut node, how));
    drop(a2);
    drop(ch);
    drop(conn);
    node.restart();

    let conn = connect(node.broker()).await;
    let ch = open_channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    // Definitions.
    assert!(
        exchange_exists(&conn, "dur-x").await,
        "durable exchange lost"
    );
    assert!(queue_exists(&conn, "dur-q").await, "durable queue lost");
    assert!(
        !exchange_exists(&conn, "tmp-x").await,
        "transient exchange survived"
    );
    assert!(
        !queue_exists(&conn, "tmp-q").await,
        "transient queue survived"
    );
    assert!(
        !queue_exists(&conn, "excl-q").await,
        "durable exclusive queue survived"
    );
    // Assumption (RabbitMQ): auto-delete only acts when the last consumer goes away, so a
    // durable auto-delete queue that never had one is recovered like any durable queue.
    assert!(
        queue_exists(&conn, "ad-q").await,
        "durable auto-delete queue lost"
    );
    assert_eq!(ready_count(&ch, "ad-q").await, 1);
    // Binding dur-x -> dur-q still routes; the messages: a2 (delivered, unacked) first and
    // redelivered, then the persistent ones in order, never delivered; no transient ones,
    // and not a1 (acked).
    publish_confirmed(&ch, "dur-x", "k", b"after", persistent()).await;
    let got = get_all(&ch, "dur-q").await;
    assert_eq!(
        got,
        vec![
            (b"a2".to_vec(), true),
            (b"p1".to_vec(), false),
            (b"p2".to_vec(), false),
            (b"p3".to_vec(), false),
            (b"after".to_vec(), false),
        ],
        "dur-q after {how:?}: {:?}",
        bodies_of(&got)
    );
    // Exchange-to-exchange binding.
    publish_confirmed(&ch, "e2e-src", "rk", b"via-e2e", persistent()).await;
    assert_eq!(bodies_of(&get_all(&ch, "e2e-q").await), vec!["via-e2e"]);
    // The policy is back: still max-length 2 (the two newest).
    assert_eq!(ready_count(&ch, "pol-q").await, 2);
    for b in ["pol-4", "pol-5", "pol-6"] {
        publish_confirmed(&ch, "", "pol-q", b.as_bytes(), persistent()).await;
    }
    assert_eq!(
        bodies_of(&get_all(&ch, "pol-q").await),
        vec!["pol-5", "pol-6"],
        "policy lost after {how:?}"
    );
    let policies = warren_ctl(&node.data_dir(), &["list_policies"]).expect("list_policies");
    assert!(policies.contains("maxlen"), "policy not listed: {policies}");
    assert_no_panic(&node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_semantics_after_sigterm() {
    needs_warren!();
    restart_semantics(Stop::Graceful).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_semantics_after_kill9() {
    needs_warren!();
    restart_semantics(Stop::Kill9).await;
}

/// Acks sent by a consumer (no publisher forcing a sync) reach the disk by themselves:
/// after a kill -9 a second later they do not come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unforced_acks_are_durable_within_a_second() {
    needs_warren!();
    let mut node = Node::start("acks", &[]);
    let (c, ch) = connect_channel(node.broker()).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    declare_durable(&ch, "ack-q").await;
    let bodies: Vec<Vec<u8>> = (0..20).map(|i| format!("m{i:02}").into_bytes()).collect();
    publish_window(&ch, "ack-q", &bodies, &persistent()).await;
    for _ in 0..15 {
        let m = ch
            .basic_get("ack-q".into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
            .unwrap();
        m.delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| node.kill9());
    drop(ch);
    drop(c);
    node.restart();
    let (_c, ch) = connect_channel(node.broker()).await;
    let got = get_all(&ch, "ack-q").await;
    assert_eq!(
        bodies_of(&got),
        vec!["m15", "m16", "m17", "m18", "m19"],
        "acked messages came back (or unacked ones were lost)"
    );
    assert!(
        got.iter().all(|(_, r)| !r),
        "never delivered, yet redelivered"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Damaged data directories (broker stopped with SIGTERM first).
// ---------------------------------------------------------------------------------------------

/// A fresh node with `n` persistent messages `"{prefix}-{i:04}"` padded to 200 bytes in the
/// durable queue `queue`; stopped with SIGTERM.
async fn node_with_messages(name: &str, queue: &str, n: usize) -> (Node, Vec<Vec<u8>>) {
    let mut node = Node::start(name, &[]);
    let bodies: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut b = format!("{queue}-{i:04}-").into_bytes();
            b.resize(200, b'.');
            b
        })
        .collect();
    {
        let (_c, ch) = connect_channel(node.broker()).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        declare_durable(&ch, queue).await;
        publish_window(&ch, queue, &bodies, &persistent()).await;
    }
    tokio::task::block_in_place(|| stop(&mut node, Stop::Graceful));
    (node, bodies)
}

/// The only segment file holding records (the tests write one small segment).
fn only_segment(node: &Node) -> (PathBuf, Vec<u8>) {
    let segs: Vec<PathBuf> = segment_files(&node.store())
        .into_iter()
        .filter(|p| std::fs::metadata(p).map(|m| m.len() > 16).unwrap_or(false))
        .collect();
    assert_eq!(segs.len(), 1, "expected one segment with records: {segs:?}");
    let data = std::fs::read(&segs[0]).unwrap();
    (segs[0].clone(), data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_torn_last_segment_record() {
    needs_warren!();
    let (mut node, bodies) = node_with_messages("torn", "torn-q", 50).await;
    let (seg, data) = only_segment(&node);
    let recs = segment_records(&data);
    assert_eq!(recs.len(), 50, "one record per message");
    let (off, len) = *recs.last().unwrap();
    let cut = off + 8 + len / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(cut as u64)
        .unwrap();
    println!(
        "torn: {} cut from {} to {cut} bytes",
        seg.display(),
        data.len()
    );
    node.restart();
    // Consume (the dispatch path) rather than basic.get.
    let (_c, ch) = connect_channel(node.broker()).await;
    let reported = ready_count(&ch, "torn-q").await;
    let mut consumer = ch
        .basic_consume(
            "torn-q".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Ok(Some(Ok(d))) =
        tokio::time::timeout(Duration::from_millis(1000), consumer.next()).await
    {
        got.push(d.data);
    }
    println!(
        "torn: queue reported {reported} ready after restart, {} delivered",
        got.len()
    );
    assert_eq!(
        got,
        bodies[..49].to_vec(),
        "the 49 whole messages, in order, and not the torn one"
    );
    assert_eq!(ready_count(&ch, "torn-q").await, 0);
    assert_serves_new_clients(&mut node).await;
    // The torn record is forgotten for good: another restart delivers nothing more.
    tokio::task::block_in_place(|| stop(&mut node, Stop::Graceful));
    node.restart();
    let (_c, ch) = connect_channel(node.broker()).await;
    assert_eq!(get_all(&ch, "torn-q").await.len(), 0);
    assert_no_panic(&node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_flipped_bytes_in_one_record() {
    needs_warren!();
    let (mut node, bodies) = node_with_messages("flip", "flip-q", 20).await;
    let (seg, mut data) = only_segment(&node);
    let recs = segment_records(&data);
    assert_eq!(recs.len(), 20);
    let (off, len) = recs[10];
    // Flip a few bytes inside the body (the end of the payload is the body).
    for at in [off + 8 + len - 5, off + 8 + len - 50, off + 8 + len - 100] {
        data[at] ^= 0x5A;
    }
    std::fs::write(&seg, &data).unwrap();
    node.restart();
    let (_c, ch) = connect_channel(node.broker()).await;
    let reported = ready_count(&ch, "flip-q").await;
    let got = get_all(&ch, "flip-q").await;
    println!(
        "flip: queue reported {reported} ready after restart, {} delivered",
        got.len()
    );
    let mut expected = bodies.clone();
    expected.remove(10);
    let got_bodies: Vec<Vec<u8>> = got.iter().map(|(b, _)| b.clone()).collect();
    assert_eq!(
        got_bodies, expected,
        "every other message, in order; never the corrupt one"
    );
    assert!(
        node.stderr_text().contains("checksum"),
        "the corrupt record should be logged"
    );
    assert_serves_new_clients(&mut node).await;
    assert_no_panic(&node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_deleted_queue_index() {
    needs_warren!();
    let mut node = Node::start("noidx", &[]);
    let keep: Vec<Vec<u8>> = (0..10).map(|i| format!("keep-{i}").into_bytes()).collect();
    let lose: Vec<Vec<u8>> = (0..10).map(|i| format!("lose-{i}").into_bytes()).collect();
    let lose_idx;
    {
        let (_c, ch) = connect_channel(node.broker()).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        declare_durable(&ch, "keep-q").await;
        let before: HashSet<PathBuf> = index_files(&node.store()).into_iter().collect();
        declare_durable(&ch, "lose-q").await;
        let new: Vec<PathBuf> = index_files(&node.store())
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        assert_eq!(
            new.len(),
            1,
            "declaring a durable queue creates its index file"
        );
        lose_idx = new[0].clone();
        publish_window(&ch, "keep-q", &keep, &persistent()).await;
        publish_window(&ch, "lose-q", &lose, &persistent()).await;
    }
    tokio::task::block_in_place(|| stop(&mut node, Stop::Graceful));
    std::fs::remove_file(&lose_idx).unwrap();
    node.restart();
    let (c, ch) = connect_channel(node.broker()).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    assert!(
        queue_exists(&c, "lose-q").await,
        "the queue (metadata) must survive"
    );
    assert_eq!(
        ready_count(&ch, "lose-q").await,
        0,
        "its messages are gone with the index"
    );
    assert_eq!(ready_count(&ch, "keep-q").await, 10);
    // lose-q still works, durably: publish, restart, get.
    publish_confirmed(&ch, "", "lose-q", b"lose-new", persistent()).await;
    drop(ch);
    drop(c);
    tokio::task::block_in_place(|| stop(&mut node, Stop::Graceful));
    node.restart();
    let (_c, ch) = connect_channel(node.broker()).await;
    assert_eq!(bodies_of(&get_all(&ch, "lose-q").await), vec!["lose-new"]);
    let got: Vec<Vec<u8>> = get_all(&ch, "keep-q")
        .await
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    assert_eq!(got, keep);
    assert_serves_new_clients(&mut node).await;
    assert_no_panic(&node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_garbage_appended_to_queue_index() {
    needs_warren!();
    let (mut node, bodies) = node_with_messages("garbage", "garb-q", 10).await;
    let idx = index_files(&node.store());
    assert_eq!(idx.len(), 1, "{idx:?}");
    let mut rng = Rng::new(42);
    // Three whole garbage records and a torn tail of 4 bytes.
    let garbage: Vec<u8> = (0..100).map(|_| rng.next() as u8).collect();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&idx[0])
            .unwrap();
        f.write_all(&garbage).unwrap();
    }
    node.restart();
    {
        let (_c, ch) = connect_channel(node.broker()).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        assert_eq!(ready_count(&ch, "garb-q").await, 10);
        // New records after the garbage must still be readable after the next restart.
        let more: Vec<Vec<u8>> = (0..5).map(|i| format!("more-{i}").into_bytes()).collect();
        publish_window(&ch, "garb-q", &more, &persistent()).await;
    }
    tokio::task::block_in_place(|| stop(&mut node, Stop::Graceful));
    node.restart();
    let (_c, ch) = connect_channel(node.broker()).await;
    let got: Vec<Vec<u8>> = get_all(&ch, "garb-q")
        .await
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    let mut expected = bodies.clone();
    expected.extend((0..5).map(|i| format!("more-{i}").into_bytes()));
    assert_eq!(got, expected);
    assert_serves_new_clients(&mut node).await;
    assert_no_panic(&node);
}

// ---------------------------------------------------------------------------------------------
// 4. Space reclamation.
// ---------------------------------------------------------------------------------------------

/// Publishes (confirmed, persistent) and consumes (manual acks) `n` messages of `size` bytes
/// through `queue`, concurrently; returns the elapsed time.
async fn pump(broker: &Broker, queue: &str, n: usize, size: usize, window: usize) -> Duration {
    let started = Instant::now();
    let (pc, pch) = connect_channel(broker).await;
    pch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    declare_durable(&pch, queue).await;
    let (cc, cch) = connect_channel(broker).await;
    cch.basic_qos(1000, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = cch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let consume = tokio::spawn(async move {
        let mut next = 0usize;
        while next < n {
            let d = match tokio::time::timeout(Duration::from_secs(10), consumer.next()).await {
                Ok(Some(Ok(d))) => d,
                other => panic!("consumer: expected message {next}, got {other:?}"),
            };
            let i = u64::from_be_bytes(d.data[..8].try_into().unwrap()) as usize;
            assert_eq!(i, next, "out of order");
            assert_eq!(d.data.len(), size);
            next += 1;
            if next.is_multiple_of(100) || next == n {
                d.acker
                    .ack(BasicAckOptions { multiple: true })
                    .await
                    .unwrap();
            }
        }
        drop(cc);
    });
    let mut i = 0usize;
    while i < n {
        let k = window.min(n - i);
        let bodies: Vec<Vec<u8>> = (i..i + k)
            .map(|j| {
                let mut b = (j as u64).to_be_bytes().to_vec();
                b.resize(size, (j % 251) as u8);
                b
            })
            .collect();
        publish_window(&pch, queue, &bodies, &persistent()).await;
        i += k;
    }
    tokio::time::timeout(Duration::from_secs(60), consume)
        .await
        .expect("consumer finished")
        .unwrap();
    drop(pc);
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn space_is_reclaimed_after_acks() {
    needs_warren!();
    let mut node = Node::start("space", &[]);
    // 72k x 1 KiB: past one 64 MiB segment (records are ~1.06 KiB with their headers), so
    // the first segment is sealed and, once fully acked, deleted while the broker runs.
    let n = 72_000usize;
    let size = 1024usize;
    let elapsed = pump(node.broker(), "space-q", n, size, 500).await;
    let written = (n * size) as u64;
    // Let the flusher make the last acks durable and unlink the emptied segment.
    let store = node.store();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut total;
    loop {
        total = dir_size(&store);
        if total < written / 4 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let segs: Vec<(String, u64)> = segment_files(&store)
        .iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            )
        })
        .collect();
    let idx_bytes: u64 = index_files(&store)
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    println!(
        "space: {n} x {size} B through one durable queue in {elapsed:?} ({:.0} msg/s); \
         body bytes written {written}, store now {total} B ({:.1}%), segments {segs:?}, \
         index files {idx_bytes} B (uncompacted would be ~{} B)",
        n as f64 / elapsed.as_secs_f64(),
        total as f64 * 100.0 / written as f64,
        (n as u64) * 2 * 32,
    );
    assert!(
        total < written / 4,
        "store holds {total} B after {written} B were written and all acked"
    );
    // A log compacts once it holds 32768 records (1 MiB) and mostly dead ones, so it stays
    // under that plus what one round adds.
    assert!(
        idx_bytes < 2 << 20,
        "queue index not compacted: {idx_bytes} B"
    );
    // After a restart the run's last segment (fully acked) goes too.
    tokio::task::block_in_place(|| stop(&mut node, Stop::Graceful));
    node.restart();
    let (_c, ch) = connect_channel(node.broker()).await;
    assert_eq!(declare_durable(&ch, "space-q").await, 0);
    let after = dir_size(&store);
    println!("space: after a restart the store holds {after} B");
    // Left: the queue's index (below its 1 MiB compaction threshold, see above) and the
    // definitions log. Every segment is gone.
    assert!(
        after < 3 << 20,
        "store holds {after} B after a restart with nothing live"
    );
    assert_no_panic(&node);
}

// ---------------------------------------------------------------------------------------------
// 5. A queue larger than its memory limit.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_larger_than_memory_limit() {
    needs_warren!();
    let mib = env_u64("DURABILITY_LTM_MIB").unwrap_or(150) as usize;
    let size = 1024usize;
    let n = mib * 1024;
    let node = Node::start("ltm", &["--queue-memory-limit", "8388608"]);
    let pid = node.broker().pid().unwrap();
    let idle_rss = rss_kib_of(pid).unwrap_or(0);
    // Sample the broker's RSS every 20 ms until told to stop.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(kib) = rss_kib_of(pid) {
                    peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let (_pc, pch) = connect_channel(node.broker()).await;
    pch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    declare_durable(&pch, "ltm-q").await;
    let t0 = Instant::now();
    let mut i = 0usize;
    while i < n {
        let k = 1000.min(n - i);
        let bodies: Vec<Vec<u8>> = (i..i + k)
            .map(|j| {
                let mut b = (j as u64).to_be_bytes().to_vec();
                b.resize(size, (j % 251) as u8);
                b
            })
            .collect();
        publish_window(&pch, "ltm-q", &bodies, &persistent()).await;
        i += k;
    }
    let publish_time = t0.elapsed();
    let peak_publish = peak.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_full = rss_kib_of(pid).unwrap_or(0);
    assert_eq!(ready_count(&pch, "ltm-q").await as usize, n);

    let t1 = Instant::now();
    let (_cc, cch) = connect_channel(node.broker()).await;
    cch.basic_qos(1000, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = cch
        .basic_consume(
            "ltm-q".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut next = 0usize;
    while next < n {
        let d = match tokio::time::timeout(Duration::from_secs(10), consumer.next()).await {
            Ok(Some(Ok(d))) => d,
            other => panic!("expected message {next} of {n}, got {other:?}"),
        };
        let j = u64::from_be_bytes(d.data[..8].try_into().unwrap()) as usize;
        assert_eq!(j, next, "out of order");
        assert_eq!(d.data.len(), size);
        assert!(
            d.data[8..].iter().all(|&b| b == (j % 251) as u8),
            "body of {j} damaged"
        );
        next += 1;
        if next.is_multiple_of(500) || next == n {
            d.acker
                .ack(BasicAckOptions { multiple: true })
                .await
                .unwrap();
        }
    }
    let drain_time = t1.elapsed();
    assert_eq!(ready_count(&cch, "ltm-q").await, 0);
    // Everything is acked: sealed segments go once the acks are durable; only the segment
    // being written (at most 64 MiB) may stay.
    let store = node.store();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut store_bytes;
    loop {
        store_bytes = dir_size(&store);
        if store_bytes <= 70 << 20 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "larger than memory: after the drain the store holds {store_bytes} B ({})",
        segments_summary(&store)
    );
    assert!(
        store_bytes <= 70 << 20,
        "store still holds {store_bytes} B after everything was acked"
    );
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let peak_all = peak.load(std::sync::atomic::Ordering::Relaxed);
    let rss_end = rss_kib_of(pid).unwrap_or(0);
    println!(
        "larger than memory: {n} x {size} B persistent into one durable queue (limit 8 MiB): \
         publish {publish_time:?} ({:.0} msg/s), drain {drain_time:?} ({:.0} msg/s); RSS idle \
         {} MiB, peak while publishing {} MiB, full queue {} MiB, peak overall {} MiB, after \
         drain {} MiB",
        n as f64 / publish_time.as_secs_f64(),
        n as f64 / drain_time.as_secs_f64(),
        idle_rss / 1024,
        peak_publish / 1024,
        rss_full / 1024,
        peak_all / 1024,
        rss_end / 1024,
    );
    assert!(
        peak_all < 150 * 1024,
        "broker RSS peaked at {} MiB with a {mib} MiB queue and an 8 MiB limit",
        peak_all / 1024
    );
    assert_no_panic(&node);
}

// ---------------------------------------------------------------------------------------------
// 6. More restart semantics: what an -ok promises, settlements, TTL, priorities, properties.
// ---------------------------------------------------------------------------------------------

/// declare-ok / bind-ok / unbind-ok / delete-ok of durable entities promise the change is on
/// disk: a kill -9 right after each reply must not undo it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definition_changes_are_durable_when_acknowledged() {
    needs_warren!();
    let mut node = Node::start("defs", &[]);
    let durable_x = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    // declare + bind, kill -9 at once.
    {
        let (_c, ch) = connect_channel(node.broker()).await;
        ch.exchange_declare(
            "d-x".into(),
            ExchangeKind::Topic,
            durable_x,
            FieldTable::default(),
        )
        .await
        .unwrap();
        declare_durable(&ch, "d-q").await;
        ch.queue_bind(
            "d-q".into(),
            "d-x".into(),
            "a.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        tokio::task::block_in_place(|| node.kill9());
    }
    node.restart();
    {
        let (c, ch) = connect_channel(node.broker()).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        assert!(exchange_exists(&c, "d-x").await);
        assert!(queue_exists(&c, "d-q").await);
        publish_confirmed(&ch, "d-x", "a.b", b"routed", persistent()).await;
        assert_eq!(ready_count(&ch, "d-q").await, 1, "binding lost");
        ch.queue_unbind(
            "d-q".into(),
            "d-x".into(),
            "a.#".into(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        tokio::task::block_in_place(|| node.kill9());
    }
    node.restart();
    {
        let (_c, ch) = connect_channel(node.broker()).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        publish_confirmed(&ch, "d-x", "a.b", b"unroutable", persistent()).await;
        assert_eq!(
            bodies_of(&get_all(&ch, "d-q").await),
            vec!["routed"],
            "unbind undone by the crash"
        );
        ch.queue_delete("d-q".into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        ch.exchange_delete("d-x".into(), ExchangeDeleteOptions::default())
            .await
            .unwrap();
        tokio::task::block_in_place(|| node.kill9());
    }
    node.restart();
    let (c, _ch) = connect_channel(node.broker()).await;
    assert!(
        !queue_exists(&c, "d-q").await,
        "queue.delete undone by the crash"
    );
    assert!(
        !exchange_exists(&c, "d-x").await,
        "exchange.delete undone by the crash"
    );
    assert_no_panic(&node);
}

/// tx.commit-ok of persistent publishes promises they are on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_commit_is_durable() {
    needs_warren!();
    let mut node = Node::start("tx", &[]);
    let bodies: Vec<String> = (0..200).map(|i| format!("tx-{i:03}")).collect();
    {
        let (_c, ch) = connect_channel(node.broker()).await;
        declare_durable(&ch, "tx-q").await;
        ch.tx_select().await.unwrap();
        for b in &bodies {
            ch.basic_publish(
                "".into(),
                "tx-q".into(),
                BasicPublishOptions::default(),
                b.as_bytes(),
                persistent(),
            )
            .await
            .unwrap();
        }
        within("tx.commit", ch.tx_commit()).await.unwrap();
        tokio::task::block_in_place(|| node.kill9());
    }
    node.restart();
    {
        let (_c, ch) = connect_channel(node.broker()).await;
        assert_eq!(declare_durable(&ch, "tx-q").await, 200);
        // Acks committed in a transaction (no publish in it), then kill -9 at once: AMQP does
        // not say these must be on disk at commit-ok; report what happens.
        ch.tx_select().await.unwrap();
        for _ in 0..50 {
            let m = ch
                .basic_get("tx-q".into(), BasicGetOptions { no_ack: false })
                .await
                .unwrap()
                .unwrap();
            m.delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .unwrap();
        }
        within("tx.commit", ch.tx_commit()).await.unwrap();
        tokio::task::block_in_place(|| node.kill9());
    }
    node.restart();
    let (_c, ch) = connect_channel(node.broker()).await;
    let got = bodies_of(&get_all(&ch, "tx-q").await);
    println!(
        "tx: after committing 50 acks (no publishes) and kill -9 at once, {} of 200 remain \
         (150 if the committed acks were durable at commit-ok)",
        got.len()
    );
    // Warren syncs committed acks of persistent messages before commit-ok.
    assert_eq!(got.len(), 150, "committed acks must survive kill -9");
    assert_eq!(
        got[..],
        bodies[200 - got.len()..],
        "order or content changed"
    );
    assert_no_panic(&node);
}

/// Purge, reject (dead-lettered), nack with requeue: their effects survive a restart, with a
/// forced store round (barrier) before kill -9.
async fn settlements_survive(how: Stop) {
    let mut node = Node::start("settle", &[]);
    {
        let (_c, ch) = connect_channel(node.broker()).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let mut dlx_args = FieldTable::default();
        dlx_args.insert(
            "x-dead-letter-exchange".into(),
            lapin::types::AMQPValue::LongString("".into()),
        );
        dlx_args.insert(
            "x-dead-letter-routing-key".into(),
            lapin::types::AMQPValue::LongString("s-dlq".into()),
        );
        declare_durable(&ch, "s-dlq").await;
        ch.queue_declare(
            "s-rej".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            dlx_args,
        )
        .await
        .unwrap();
        declare_durable(&ch, "s-purge").await;
        for i in 0..5 {
            publish_confirmed(&ch, "", "s-rej", format!("r{i}").as_bytes(), persistent()).await;
            publish_confirmed(&ch, "", "s-purge", format!("p{i}").as_bytes(), persistent()).await;
        }
        let purged = ch
            .queue_purge("s-purge".into(), QueuePurgeOptions::default())
            .await
            .unwrap();
        assert_eq!(purged, 5);
        let r0 = ch
            .basic_get("s-rej".into(), BasicGetOptions::default())
            .await
            .unwrap()
            .unwrap();
        r0.delivery
            .acker
            .reject(BasicRejectOptions { requeue: false })
            .await
            .unwrap();
        let r1 = ch
            .basic_get("s-rej".into(), BasicGetOptions::default())
            .await
            .unwrap()
            .unwrap();
        r1.delivery
            .acker
            .nack(BasicNackOptions {
                requeue: true,
                multiple: false,
            })
            .await
            .unwrap();
        // Barrier (see restart_semantics).
        declare_durable(&ch, "s-barrier").await;
        publish_confirmed(&ch, "", "s-barrier", b"barrier", persistent()).await;
        assert_eq!(ready_count(&ch, "s-dlq").await, 1);
        // A dead-lettered message is acked in its source queue's log one flush round after
        // its copy in the target is durable (at least once, never lost): a kill within that
        // round finds it in both. Give the round time; the crash suite covers the window.
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::task::block_in_place(|| stop(&mut node, how));
    }
    node.restart();
    let (_c, ch) = connect_channel(node.broker()).await;
    assert_eq!(
        ready_count(&ch, "s-purge").await,
        0,
        "purged messages came back ({how:?})"
    );
    let dlq = get_all(&ch, "s-dlq").await;
    assert_eq!(
        bodies_of(&dlq),
        vec!["r0"],
        "dead-lettered message ({how:?})"
    );
    let rej = get_all(&ch, "s-rej").await;
    assert_eq!(bodies_of(&rej), vec!["r1", "r2", "r3", "r4"], "{how:?}");
    assert!(
        rej[0].1,
        "nacked-with-requeue message must come back redelivered ({how:?})"
    );
    assert!(rej[1..].iter().all(|(_, r)| !r), "{how:?}: {rej:?}");
    assert_no_panic(&node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlements_survive_sigterm() {
    needs_warren!();
    settlements_survive(Stop::Graceful).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlements_survive_kill9() {
    needs_warren!();
    settlements_survive(Stop::Kill9).await;
}

/// Priorities, properties, exchange/routing key and a multi-frame body survive a kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_and_properties_survive_kill9() {
    needs_warren!();
    let mut node = Node::start("props", &[]);
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let mut headers = FieldTable::default();
    headers.insert(
        "x-trace".into(),
        lapin::types::AMQPValue::LongString("abc".into()),
    );
    headers.insert("n".into(), lapin::types::AMQPValue::LongLongInt(-7));
    let props = |prio: u8, id: &str| {
        persistent()
            .with_priority(prio)
            .with_message_id(id.into())
            .with_content_type("text/plain".into())
            .with_correlation_id("corr".into())
            .with_headers(headers.clone())
    };
    let sent = [(1u8, "m1"), (5, "m2"), (3, "m3"), (5, "m4"), (0, "m5")];
    {
        let (_c, ch) = connect_channel(node.broker()).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let mut args = FieldTable::default();
        args.insert(
            "x-max-priority".into(),
            lapin::types::AMQPValue::ShortShortUInt(5),
        );
        ch.queue_declare(
            "prio-q".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
        ch.exchange_declare(
            "prio-x".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            "prio-q".into(),
            "prio-x".into(),
            "rk".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        for (p, id) in sent {
            publish_confirmed(&ch, "prio-x", "rk", id.as_bytes(), props(p, id)).await;
        }
        declare_durable(&ch, "big-q").await;
        publish_confirmed(&ch, "", "big-q", &big, persistent()).await;
        tokio::task::block_in_place(|| node.kill9());
    }
    node.restart();
    let (_c, ch) = connect_channel(node.broker()).await;
    let mut got = Vec::new();
    while let Some(m) = ch
        .basic_get("prio-q".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        got.push(m.delivery);
    }
    let order: Vec<String> = got
        .iter()
        .map(|d| String::from_utf8_lossy(&d.data).into_owned())
        .collect();
    assert_eq!(
        order,
        vec!["m2", "m4", "m3", "m1", "m5"],
        "priority order after recovery"
    );
    for d in &got {
        let id = String::from_utf8_lossy(&d.data).into_owned();
        let prio = sent.iter().find(|(_, i)| *i == id).unwrap().0;
        assert_eq!(d.exchange.as_str(), "prio-x");
        assert_eq!(d.routing_key.as_str(), "rk");
        assert_eq!(d.properties, props(prio, &id), "properties of {id}");
    }
    let b = ch
        .basic_get("big-q".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("big message");
    assert!(b.delivery.data == big, "3 MiB body changed");
    assert_no_panic(&node);
}

/// A persistent message's own `expiration` still applies after a restart, counted from its
/// publication (RabbitMQ stores the absolute expiry with the message; Warren's queue log keeps
/// each entry's deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_message_expiration_survives_restart() {
    needs_warren!();
    let mut node = Node::start("msgttl", &[]);
    let published = Instant::now();
    {
        let (_c, ch) = connect_channel(node.broker()).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        declare_durable(&ch, "mttl-q").await;
        publish_confirmed(
            &ch,
            "",
            "mttl-q",
            b"expires",
            persistent().with_expiration("1500".into()),
        )
        .await;
        publish_confirmed(&ch, "", "mttl-q", b"stays", persistent()).await;
        tokio::task::block_in_place(|| stop(&mut node, Stop::Graceful));
    }
    node.restart();
    let (_c, ch) = connect_channel(node.broker()).await;
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(published.elapsed())).await;
    assert_eq!(
        bodies_of(&get_all(&ch, "mttl-q").await),
        vec!["stays"],
        "a message with expiration 1500 ms delivered 2.5 s after its publication"
    );
}

/// Queue TTL counts from publication, not from the restart: a message published 1.5 s
/// before a restart into a queue with x-message-ttl 3000 is gone 3.5 s after publication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_ttl_counts_from_publication_across_restart() {
    needs_warren!();
    let mut node = Node::start("qttl", &[]);
    let published = Instant::now();
    {
        let (_c, ch) = connect_channel(node.broker()).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let mut args = FieldTable::default();
        args.insert(
            "x-message-ttl".into(),
            lapin::types::AMQPValue::LongInt(3000),
        );
        ch.queue_declare(
            "qttl-q".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
        publish_confirmed(&ch, "", "qttl-q", b"m", persistent()).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tokio::task::block_in_place(|| stop(&mut node, Stop::Graceful));
    }
    node.restart();
    let (_c, ch) = connect_channel(node.broker()).await;
    tokio::time::sleep(Duration::from_millis(3500).saturating_sub(published.elapsed())).await;
    assert_eq!(
        ready_count(&ch, "qttl-q").await,
        0,
        "message still there {:?} after publication with x-message-ttl 3000",
        published.elapsed()
    );
}

/// A persistent message held by a durable delayed-message exchange across a restart, and
/// routed into a durable queue after it, must survive the next restart as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_message_recovered_then_routed_survives_next_restart() {
    needs_warren!();
    let mut node = Node::start("delayed", &[]);
    {
        let (_c, ch) = connect_channel(node.broker()).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let mut args = FieldTable::default();
        args.insert(
            "x-delayed-type".into(),
            lapin::types::AMQPValue::LongString("direct".into()),
        );
        ch.exchange_declare(
            "dly-x".into(),
            ExchangeKind::Custom("x-delayed-message".into()),
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
        declare_durable(&ch, "dly-q").await;
        ch.queue_bind(
            "dly-q".into(),
            "dly-x".into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        let mut headers = FieldTable::default();
        headers.insert("x-delay".into(), lapin::types::AMQPValue::LongInt(1500));
        publish_confirmed(
            &ch,
            "dly-x",
            "k",
            b"delayed",
            persistent().with_headers(headers),
        )
        .await;
        assert_eq!(ready_count(&ch, "dly-q").await, 0, "held, not routed yet");
        tokio::task::block_in_place(|| stop(&mut node, Stop::Graceful));
    }
    // Held across the first restart, routed after it.
    node.restart();
    {
        let (_c, ch) = connect_channel(node.broker()).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while ready_count(&ch, "dly-q").await == 0 {
            assert!(
                Instant::now() < deadline,
                "the delayed message was never routed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::task::block_in_place(|| stop(&mut node, Stop::Graceful));
    }
    // Now it lives in the durable queue: it must survive this restart.
    node.restart();
    let (_c, ch) = connect_channel(node.broker()).await;
    let got = get_all(&ch, "dly-q").await;
    let log = strip_ansi(&node.stderr_text());
    let interesting: Vec<&str> = log
        .lines()
        .filter(|l| (l.contains("WARN") || l.contains("ERROR")) && !l.contains("CONNECTION_FORCED"))
        .collect();
    println!("delayed: broker warnings: {interesting:#?}");
    assert_eq!(
        bodies_of(&got),
        vec!["delayed"],
        "delayed message lost after routing"
    );
    assert_no_panic(&node);
}

/// SIGTERM while a consumer holds unacked deliveries (prefetch 10 of 30): after the restart
/// those 10 come first with redelivered=true, the other 20 after them with false.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_unacked_consumer_deliveries() {
    needs_warren!();
    let mut node = Node::start("inflight", &[]);
    let bodies: Vec<Vec<u8>> = (0..30).map(|i| format!("f{i:02}").into_bytes()).collect();
    let (c, ch) = connect_channel(node.broker()).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    declare_durable(&ch, "inflight-q").await;
    publish_window(&ch, "inflight-q", &bodies, &persistent()).await;
    let cch = open_channel(&c).await;
    cch.basic_qos(10, BasicQosOptions::default()).await.unwrap();
    let mut consumer = cch
        .basic_consume(
            "inflight-q".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for b in &bodies[..10] {
        let d = next_delivery(&mut consumer).await;
        assert_eq!(&d.data, b);
    }
    expect_no_delivery(&mut consumer, 100).await;
    tokio::task::block_in_place(|| stop(&mut node, Stop::Graceful));
    drop(consumer);
    drop(cch);
    drop(ch);
    drop(c);
    node.restart();
    let (_c, ch) = connect_channel(node.broker()).await;
    let got = get_all(&ch, "inflight-q").await;
    let expected: Vec<(Vec<u8>, bool)> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| (b.clone(), i < 10))
        .collect();
    assert_eq!(got, expected, "{:?}", bodies_of(&got));
    assert_no_panic(&node);
}

/// One broker per data directory: a second warren on the same `--data-dir` does not come up
/// (the store's LOCK), and the first keeps serving, `warren ctl` included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_broker_on_the_same_data_dir_is_refused() {
    needs_warren!();
    let mut node = Node::start("twice", &[]);
    let log = node.dir.path.join("second.log");
    let second =
        tokio::task::block_in_place(|| Broker::try_start_logged(&node.data_dir(), &[], Some(&log)));
    match second {
        Err(e) => println!("second broker refused: {e}"),
        Ok(mut b) => {
            let deadline = Instant::now() + Duration::from_secs(10);
            while b.is_alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(
                !b.is_alive(),
                "a second broker runs on the same data directory"
            );
        }
    }
    println!(
        "second broker's stderr: {}",
        strip_ansi(&std::fs::read_to_string(&log).unwrap_or_default()).trim()
    );
    assert_serves_new_clients(&mut node).await;
    warren_ctl(&node.data_dir(), &["list_policies"]).expect("warren ctl reaches the first broker");
}

/// One record shared by two durable queues (fanout): acking everything in one queue must not
/// delete segments the other still needs, across rolled 64 MiB segments and a kill -9; once
/// both are drained every segment goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_records_survive_acks_in_the_other_queue() {
    needs_warren!();
    let mut node = Node::start("shared", &["--queue-memory-limit", "1048576"]);
    let n = 2500usize; // x 32 KiB = 80 MiB: the first segment fills and is sealed
    let size = 32 * 1024;
    {
        let (_c, ch) = connect_channel(node.broker()).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        ch.exchange_declare(
            "share-x".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        for q in ["share-a", "share-b"] {
            declare_durable(&ch, q).await;
            ch.queue_bind(
                q.into(),
                "share-x".into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        }
        for start in (0..n).step_by(250) {
            let mut pending = Vec::new();
            for id in start..(start + 250).min(n) {
                pending.push(
                    ch.basic_publish(
                        "share-x".into(),
                        "".into(),
                        BasicPublishOptions::default(),
                        &crash_body(id as u64, size),
                        persistent(),
                    )
                    .await
                    .unwrap(),
                );
            }
            for pc in pending {
                assert!(matches!(pc.await.unwrap(), Confirmation::Ack(_)));
            }
        }
        // Drain share-a completely (acked).
        ch.basic_qos(500, BasicQosOptions::default()).await.unwrap();
        let mut consumer = ch
            .basic_consume(
                "share-a".into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        for i in 0..n {
            let d = next_delivery(&mut consumer).await;
            assert_eq!(crash_id(&d.data), Some(i as u64));
            if (i + 1).is_multiple_of(100) || i + 1 == n {
                d.acker
                    .ack(BasicAckOptions { multiple: true })
                    .await
                    .unwrap();
            }
        }
        // Barrier, then give the flusher time to delete whatever it (wrongly) would.
        declare_durable(&ch, "share-barrier").await;
        publish_confirmed(&ch, "", "share-barrier", b"b", persistent()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        println!(
            "shared: share-a drained, share-b full: {}",
            segments_summary(&node.store())
        );
        tokio::task::block_in_place(|| node.kill9());
    }
    node.restart();
    let (_c, ch) = connect_channel(node.broker()).await;
    assert_eq!(
        ready_count(&ch, "share-a").await,
        0,
        "acked messages came back"
    );
    assert_eq!(ready_count(&ch, "share-b").await as usize, n);
    ch.basic_qos(500, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            "share-b".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..n {
        let d = next_delivery(&mut consumer).await;
        assert_eq!(crash_id(&d.data), Some(i as u64), "message {i} of share-b");
        if (i + 1).is_multiple_of(100) || i + 1 == n {
            d.acker
                .ack(BasicAckOptions { multiple: true })
                .await
                .unwrap();
        }
    }
    get_all(&ch, "share-barrier").await;
    tokio::task::block_in_place(|| stop(&mut node, Stop::Graceful));
    node.restart();
    let summary = segments_summary(&node.store());
    println!("shared: both drained, after a restart: {summary}");
    assert!(
        segment_files(&node.store()).is_empty(),
        "segments left: {summary}"
    );
    assert_no_panic(&node);
}

/// Transient messages paged out to the store (a 64 KiB queue memory limit) are still
/// transient: after a restart only the persistent ones are back, in order, and the pages of
/// the transient ones do not keep segments alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_transient_messages_do_not_survive_restart() {
    needs_warren!();
    let mut node = Node::start("paged", &["--queue-memory-limit", "65536"]);
    let mut persistent_bodies = Vec::new();
    {
        let (_c, ch) = connect_channel(node.broker()).await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        declare_durable(&ch, "paged-q").await;
        for i in 0..400 {
            let mut body = format!("m{i:03}-").into_bytes();
            body.resize(1024, b'x');
            let props = if i % 40 == 39 {
                persistent_bodies.push(body.clone());
                persistent()
            } else {
                transient()
            };
            ch.basic_publish(
                "".into(),
                "paged-q".into(),
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await
            .unwrap();
        }
        within("confirms", ch.wait_for_confirms()).await.unwrap();
        assert_eq!(ready_count(&ch, "paged-q").await, 400);
        tokio::task::block_in_place(|| stop(&mut node, Stop::Graceful));
    }
    node.restart();
    let (_c, ch) = connect_channel(node.broker()).await;
    let got: Vec<Vec<u8>> = get_all(&ch, "paged-q")
        .await
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    assert_eq!(got.len(), 10, "only the 10 persistent messages");
    assert_eq!(got, persistent_bodies);
    tokio::task::block_in_place(|| stop(&mut node, Stop::Graceful));
    node.restart();
    let summary = segments_summary(&node.store());
    assert!(
        segment_files(&node.store()).is_empty(),
        "segments left: {summary}"
    );
    assert_no_panic(&node);
}

// ---------------------------------------------------------------------------------------------
// Every path, under kill -9 and under simulated power loss
// ---------------------------------------------------------------------------------------------

#[path = "durability/paths.rs"]
mod paths;

// ---------------------------------------------------------------------------------------------
// Definition changes that cannot be made durable
// ---------------------------------------------------------------------------------------------

/// `chattr +i` (or `-i`) on a file: an immutable file refuses writes even through a
/// descriptor opened before, which is how these tests make the definitions log fail.
fn set_immutable(path: &Path, on: bool) {
    let flag = if on { "+i" } else { "-i" };
    let status = std::process::Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .expect("run chattr (e2fsprogs)");
    assert!(
        status.success(),
        "chattr {flag} {} failed: the data directory must be on ext4 or similar",
        path.display()
    );
}

/// A declare or bind whose definitions record cannot be written fails with 541
/// INTERNAL_ERROR (RabbitMQ's answer to an internal failure) and changes nothing: the queue
/// or binding does not exist afterwards, in this run or after a restart; once the disk
/// works again, the same calls succeed and survive kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definition_change_that_cannot_be_saved_fails_with_541_and_changes_nothing() {
    needs_warren!();
    let mut node = Node::start("meta-fail", &[]);
    let log = node.store().join("metadata.log");
    {
        let (_c, ch) = connect_channel(node.broker()).await;
        ch.exchange_declare(
            "mf-x".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("exchange.declare");
        declare_durable(&ch, "mf-bound").await;
    }
    set_immutable(&log, true);
    // queue.declare: refused, and the queue does not exist.
    let (_c, ch) = connect_channel(node.broker()).await;
    let res = ch
        .queue_declare(
            "mf-q".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    let text = expect_code(res, 541);
    assert!(text.contains("cannot make the change durable"), "{text}");
    // queue.bind: refused too.
    let (_c, ch) = connect_channel(node.broker()).await;
    let res = ch
        .queue_bind(
            "mf-bound".into(),
            "mf-x".into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await;
    expect_code(res, 541);
    set_immutable(&log, false);
    let (_c, ch) = connect_channel(node.broker()).await;
    assert!(
        !queue_exists(&_c, "mf-q").await,
        "a refused declare left a queue"
    );
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let pc = ch
        .basic_publish(
            "mf-x".into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"x",
            persistent(),
        )
        .await
        .unwrap();
    pc.await.unwrap();
    assert_eq!(
        ready_count(&ch, "mf-bound").await,
        0,
        "a refused bind left a binding"
    );
    // With the disk back, the same definitions work and are durable.
    declare_durable(&ch, "mf-q").await;
    ch.queue_bind(
        "mf-bound".into(),
        "mf-x".into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    tokio::task::block_in_place(|| node.kill9());
    node.restart();
    let (c, ch) = connect_channel(node.broker()).await;
    assert!(queue_exists(&c, "mf-q").await);
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    publish_confirmed(&ch, "mf-x", "k", b"y", persistent()).await;
    assert_eq!(ready_count(&ch, "mf-bound").await, 1);
    assert_no_panic(&node);
}

/// Declaring one more durable queue among many writes one record: the definitions log
/// grows by about the same few hundred bytes per queue, however many exist (no rewrite of
/// the whole set), and everything comes back after kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declares_append_one_record_each_and_survive_kill9() {
    needs_warren!();
    let mut node = Node::start("meta-many", &[]);
    let log = node.store().join("metadata.log");
    let size = || std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let (_c, ch) = connect_channel(node.broker()).await;
    let mut growth = Vec::new();
    for i in 0..600 {
        let before = size();
        declare_durable(&ch, &format!("mm-{i:04}")).await;
        growth.push(size() - before);
    }
    let (first, last) = (growth[0], growth[599]);
    assert!(
        last <= first + 8 && last < 200,
        "the 600th declare wrote {last} bytes, the first {first}"
    );
    drop(ch);
    drop(_c);
    tokio::task::block_in_place(|| node.kill9());
    node.restart();
    let (c, _ch) = connect_channel(node.broker()).await;
    for i in [0, 299, 599] {
        assert!(queue_exists(&c, &format!("mm-{i:04}")).await);
    }
    assert_no_panic(&node);
}
