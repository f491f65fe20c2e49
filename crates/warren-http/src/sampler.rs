//! Message rates: a sampler reads every object's counters once per statistics interval
//! (RabbitMQ's `collect_statistics_interval`, 5 s by default) and keeps the last few
//! samples; a rate is the change over that sliding window. The hot path never sees this:
//! it only bumps counters (`warren_core::stats`), which the sampler reads.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use warren_core::connections::ConnectionState;
use warren_core::queue::QueueSnapshot;
use warren_core::stats::{ChannelStats, MessageCounts};
use warren_core::storage::IoStats;
use warren_core::vhost::ExchangeView;
use warren_core::Broker;

/// The counters a point holds, by index.
pub const FIELDS: [&str; 19] = [
    "publish",
    "publish_in",
    "publish_out",
    "confirm",
    "deliver",
    "deliver_no_ack",
    "get",
    "get_no_ack",
    "get_empty",
    "deliver_get",
    "redeliver",
    "ack",
    "return_unroutable",
    "drop_unroutable",
    "messages",
    "messages_ready",
    "messages_unacknowledged",
    "recv_oct",
    "send_oct",
];

pub mod f {
    pub const PUBLISH: usize = 0;
    pub const PUBLISH_IN: usize = 1;
    pub const PUBLISH_OUT: usize = 2;
    pub const CONFIRM: usize = 3;
    pub const DELIVER: usize = 4;
    pub const DELIVER_NO_ACK: usize = 5;
    pub const GET: usize = 6;
    pub const GET_NO_ACK: usize = 7;
    pub const GET_EMPTY: usize = 8;
    pub const DELIVER_GET: usize = 9;
    pub const REDELIVER: usize = 10;
    pub const ACK: usize = 11;
    pub const RETURN_UNROUTABLE: usize = 12;
    pub const DROP_UNROUTABLE: usize = 13;
    pub const MESSAGES: usize = 14;
    pub const MESSAGES_READY: usize = 15;
    pub const MESSAGES_UNACKED: usize = 16;
    pub const RECV_OCT: usize = 17;
    pub const SEND_OCT: usize = 18;
}

/// The message-flow counters of a queue, channel, vhost or the broker.
pub const DELIVERY_FIELDS: [usize; 11] = [
    f::PUBLISH,
    f::CONFIRM,
    f::DELIVER,
    f::DELIVER_NO_ACK,
    f::GET,
    f::GET_NO_ACK,
    f::GET_EMPTY,
    f::DELIVER_GET,
    f::REDELIVER,
    f::ACK,
    f::RETURN_UNROUTABLE,
];
pub const QUEUE_FIELDS: [usize; 8] = [
    f::PUBLISH,
    f::DELIVER,
    f::DELIVER_NO_ACK,
    f::GET,
    f::GET_NO_ACK,
    f::DELIVER_GET,
    f::REDELIVER,
    f::ACK,
];
pub const EXCHANGE_FIELDS: [usize; 2] = [f::PUBLISH_IN, f::PUBLISH_OUT];
pub const TOTALS_FIELDS: [usize; 3] = [f::MESSAGES, f::MESSAGES_READY, f::MESSAGES_UNACKED];

pub type Point = [u64; FIELDS.len()];

/// What a sample is of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Broker,
    VHost(String),
    Queue(String, String),
    Exchange(String, String),
    Connection(u64),
    Channel(u64, u16),
}

pub fn counts_point(c: &MessageCounts) -> Point {
    let mut p = [0; FIELDS.len()];
    p[f::PUBLISH] = c.publish;
    p[f::CONFIRM] = c.confirm;
    p[f::DELIVER] = c.deliver;
    p[f::DELIVER_NO_ACK] = c.deliver_no_ack;
    p[f::GET] = c.get;
    p[f::GET_NO_ACK] = c.get_no_ack;
    p[f::GET_EMPTY] = c.get_empty;
    p[f::DELIVER_GET] = c.deliver + c.deliver_no_ack + c.get + c.get_no_ack;
    p[f::REDELIVER] = c.redeliver;
    p[f::ACK] = c.ack;
    p[f::RETURN_UNROUTABLE] = c.return_unroutable;
    p[f::DROP_UNROUTABLE] = c.drop_unroutable;
    p
}

pub fn queue_point(s: &QueueSnapshot) -> Point {
    let mut p = counts_point(&s.stats.into());
    p[f::MESSAGES_READY] = s.ready;
    p[f::MESSAGES_UNACKED] = s.unacked;
    p[f::MESSAGES] = s.ready + s.unacked;
    p
}

pub fn channel_point(s: &ChannelStats) -> Point {
    counts_point(&s.counts())
}

pub fn exchange_point(x: &ExchangeView) -> Point {
    let mut p = [0; FIELDS.len()];
    p[f::PUBLISH_IN] = x.stats.publish_in.sum();
    p[f::PUBLISH_OUT] = x.stats.publish_out.sum();
    p
}

pub fn connection_point(s: &ConnectionState) -> Point {
    let mut p = [0; FIELDS.len()];
    p[f::RECV_OCT] = warren_core::stats::get(&s.stats.recv_oct);
    p[f::SEND_OCT] = warren_core::stats::get(&s.stats.send_oct);
    p
}

pub fn add(into: &mut Point, p: &Point) {
    for (a, b) in into.iter_mut().zip(p) {
        *a += b;
    }
}

/// One of a node's `io_*` counts, read from the store's statistics.
type IoCount = fn(&IoStats) -> u64;
/// An operation count and the nanoseconds those operations took.
type IoTimed = fn(&IoStats) -> (u64, u64);

/// Samples in the window: the rate spans the oldest to the newest.
const WINDOW: usize = 3;

pub struct Rates {
    pub interval: Duration,
    samples: Mutex<HashMap<Key, VecDeque<(Instant, Point)>>>,
    /// When the previous sample was taken.
    last_at: Mutex<Option<Instant>>,
    churn: Mutex<VecDeque<(Instant, [u64; CHURN_FIELDS.len()])>>,
    io: Mutex<VecDeque<(Instant, IoStats)>>,
}

/// RabbitMQ's `churn_rates` fields, in [`churn_now`]'s order.
pub const CHURN_FIELDS: [&str; 7] = [
    "connection_created",
    "connection_closed",
    "channel_created",
    "channel_closed",
    "queue_declared",
    "queue_created",
    "queue_deleted",
];

pub fn churn_now() -> [u64; CHURN_FIELDS.len()] {
    use warren_core::stats::{get, CHURN};
    [
        get(&CHURN.connection_created),
        get(&CHURN.connection_closed),
        get(&CHURN.channel_created),
        get(&CHURN.channel_closed),
        get(&CHURN.queue_declared),
        get(&CHURN.queue_created),
        get(&CHURN.queue_deleted),
    ]
}

impl Rates {
    pub fn new(interval: Duration) -> Rates {
        Rates {
            interval,
            samples: Mutex::new(HashMap::new()),
            last_at: Mutex::new(None),
            churn: Mutex::new(VecDeque::new()),
            io: Mutex::new(VecDeque::new()),
        }
    }

    fn record_io(&self, at: Instant, stats: IoStats) {
        let mut io = self.io.lock();
        if io.len() == WINDOW {
            io.pop_front();
        }
        io.push_back((at, stats));
    }

    /// A node's `io_*` fields (RabbitMQ's names), each with a `_details` rate over the
    /// window: counts and byte totals, and the average time of one operation in
    /// milliseconds. RabbitMQ 3.10: the average is over every operation since the start
    /// (its read average was exactly its total read time over its read count), not over
    /// the last interval as its documentation says. Warren never seeks (it reads and writes
    /// at an offset) nor reopens a file, so those counts are always zero.
    pub fn io_json(&self, now: IoStats) -> Map<String, Value> {
        let io = self.io.lock();
        let window = match (io.front(), io.back()) {
            (Some((t0, a)), Some((t1, b))) if t1 > t0 => {
                Some((t1.duration_since(*t0).as_secs_f64(), *a, *b))
            }
            _ => None,
        };
        let rate = |f: &dyn Fn(&IoStats) -> f64| {
            round(window.map_or(0.0, |(secs, a, b)| (f(&b) - f(&a)) / secs))
        };
        let mut m = Map::new();
        let counts: [(&str, IoCount); 7] = [
            ("io_read_count", |s| s.read_ops),
            ("io_read_bytes", |s| s.read_bytes),
            ("io_write_count", |s| s.write_ops),
            ("io_write_bytes", |s| s.write_bytes),
            ("io_sync_count", |s| s.sync_ops),
            ("io_seek_count", |_| 0),
            ("io_reopen_count", |_| 0),
        ];
        for (name, count) in counts {
            m.insert(name.to_string(), json!(count(&now)));
            let r = rate(&|s| count(s) as f64);
            m.insert(format!("{name}_details"), json!({ "rate": r }));
        }
        let avg_ms = |ops: u64, nanos: u64| {
            if ops == 0 {
                0.0
            } else {
                nanos as f64 / 1e6 / ops as f64
            }
        };
        let averages: [(&str, IoTimed); 4] = [
            ("io_read_avg_time", |s| (s.read_ops, s.read_nanos)),
            ("io_write_avg_time", |s| (s.write_ops, s.write_nanos)),
            ("io_sync_avg_time", |s| (s.sync_ops, s.sync_nanos)),
            ("io_seek_avg_time", |_| (0, 0)),
        ];
        for (name, parts) in averages {
            let avg = |s: &IoStats| {
                let (ops, nanos) = parts(s);
                avg_ms(ops, nanos)
            };
            m.insert(name.to_string(), json!(avg(&now)));
            m.insert(format!("{name}_details"), json!({ "rate": rate(&avg) }));
        }
        m
    }

    fn record_churn(&self, at: Instant) {
        let mut churn = self.churn.lock();
        if churn.len() == WINDOW {
            churn.pop_front();
        }
        churn.push_back((at, churn_now()));
    }

    /// `churn_rates`: each count now, with its rate over the window.
    pub fn churn_json(&self) -> Value {
        let now = churn_now();
        let churn = self.churn.lock();
        let mut m = Map::new();
        for (i, name) in CHURN_FIELDS.iter().enumerate() {
            let rate = match (churn.front(), churn.back()) {
                (Some((t0, a)), Some((t1, b))) if t1 > t0 => {
                    b[i].saturating_sub(a[i]) as f64 / t1.duration_since(*t0).as_secs_f64()
                }
                _ => 0.0,
            };
            m.insert(name.to_string(), json!(now[i]));
            m.insert(format!("{name}_details"), json!({"rate": round(rate)}));
        }
        Value::Object(m)
    }

    /// Adds one sample per object; objects not sampled this time are forgotten.
    pub fn record(&self, at: Instant, points: Vec<(Key, Point)>) {
        let mut samples = self.samples.lock();
        let mut next: HashMap<Key, VecDeque<(Instant, Point)>> =
            HashMap::with_capacity(points.len());
        let previous = self.last_at.lock().replace(at);
        for (key, point) in points {
            let mut ring = samples.remove(&key).unwrap_or_else(|| {
                // Made since the previous sample, with every counter at zero then: what it
                // did before its first sample is part of its first rate.
                previous
                    .map(|t| VecDeque::from([(t, [0; FIELDS.len()])]))
                    .unwrap_or_default()
            });
            if ring.len() == WINDOW {
                ring.pop_front();
            }
            ring.push_back((at, point));
            next.insert(key, ring);
        }
        *samples = next;
    }

    /// Per-second rates of every field over the window (zero before two samples exist).
    pub fn rates(&self, key: &Key) -> [f64; FIELDS.len()] {
        let mut out = [0.0; FIELDS.len()];
        let samples = self.samples.lock();
        let Some(ring) = samples.get(key) else {
            return out;
        };
        let (Some((t0, first)), Some((t1, last))) = (ring.front(), ring.back()) else {
            return out;
        };
        let secs = t1.duration_since(*t0).as_secs_f64();
        if secs <= 0.0 {
            return out;
        }
        for i in 0..FIELDS.len() {
            out[i] = last[i].saturating_sub(first[i]) as f64 / secs;
        }
        out
    }
}

/// `{field: n, field_details: {rate: r}}` for the chosen fields.
pub fn with_details(
    point: &Point,
    rates: &[f64; FIELDS.len()],
    fields: &[usize],
) -> Map<String, Value> {
    let mut m = Map::new();
    for &i in fields {
        m.insert(FIELDS[i].to_string(), json!(point[i]));
        m.insert(
            format!("{}_details", FIELDS[i]),
            json!({"rate": round(rates[i])}),
        );
    }
    m
}

fn round(r: f64) -> f64 {
    (r * 10.0).round() / 10.0
}

/// Reads every object's counters once (what one sampling pass records).
pub fn collect(broker: &Broker) -> Vec<(Key, Point)> {
    let mut out = Vec::new();
    let mut total = [0; FIELDS.len()];
    let mut vhost_points: HashMap<String, Point> = HashMap::new();
    for vhost in broker.vhosts() {
        let mut vp = counts_point(&vhost.retired_counts());
        for q in vhost.queues() {
            let p = queue_point(&q.snapshot());
            // A vhost's and the broker's queue totals; message flow comes from channels.
            for i in TOTALS_FIELDS {
                vp[i] += p[i];
            }
            out.push((Key::Queue(vhost.name.clone(), q.name().to_string()), p));
        }
        for x in vhost.exchanges() {
            out.push((
                Key::Exchange(vhost.name.clone(), x.spec.name.clone()),
                exchange_point(&x),
            ));
        }
        vhost_points.insert(vhost.name.clone(), vp);
    }
    for c in broker.connections().list() {
        let mut cp = connection_point(&c.state);
        for (number, stats) in c.state.channels() {
            let p = channel_point(&stats);
            add(&mut cp, &p);
            if let Some(vp) = vhost_points.get_mut(&c.info.vhost) {
                for i in DELIVERY_FIELDS.iter().chain(&[f::DROP_UNROUTABLE]) {
                    vp[*i] += p[*i];
                }
            }
            out.push((Key::Channel(c.id, number), p));
        }
        out.push((Key::Connection(c.id), cp));
    }
    for (name, vp) in vhost_points {
        add(&mut total, &vp);
        out.push((Key::VHost(name), vp));
    }
    out.push((Key::Broker, total));
    out
}

/// The store's file operations so far (zeros without a disk store).
pub fn io_stats(broker: &Broker) -> IoStats {
    broker
        .persistence()
        .map(|p| p.io_stats())
        .unwrap_or_default()
}

/// Samples the broker every interval until the task is dropped.
pub async fn run(broker: Arc<Broker>, rates: Arc<Rates>) {
    let mut tick = tokio::time::interval(rates.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let sampled = Arc::clone(&broker);
        let Ok(points) = tokio::task::spawn_blocking(move || collect(&sampled)).await else {
            continue;
        };
        let now = Instant::now();
        rates.record(now, points);
        rates.record_churn(now);
        rates.record_io(now, io_stats(&broker));
    }
}
