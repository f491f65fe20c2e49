//! Micro-benchmarks of routing and of the in-memory queue.
//!
//! Routing runs once per published message under the vhost's read lock, and
//! the queue's publish/get pair runs once per message per queue, so these are
//! the per-message CPU costs of the broker model, free of sockets and framing.
//!
//! * `topic_10k`: [`TopicIndex::matches`] over 10,000 bindings mixing `*` and
//!   `#` (`region.{i%50}.*.#`, `#.event{i}`, `app{i}.*`), for keys that match
//!   many bindings, one binding, or none.
//! * `vhost_route`: [`VHost::route`] through a direct exchange with 1,000
//!   bound queues (and through the default exchange), i.e. the full lookup a
//!   publish does, lock and `Arc` clones included.
//! * `headers_match`: [`headers_match`] of a 10-entry message headers table
//!   against 3-key `x-match` bindings (all/any, hit/miss), and the pre-sorted
//!   form a headers exchange with many bindings uses.
//! * `queue`: [`Queue::publish`] + [`Queue::get`] of in-memory messages, one at
//!   a time (empty queue) and 1,000 deep (publish all, then get + ack all).
//!
//! Run with `cargo bench -p warren-core --bench routing`.

use std::hint::black_box;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use warren_amqp::{BasicProperties, FieldTable, FieldValue};
use warren_core::queue::DeadLetterRouter;
use warren_core::routing::{headers_match, headers_match_sorted, SortedHeaders, TopicIndex};
use warren_core::timers::Timers;
use warren_core::{
    Destination, ExchangeKind, ExchangeSpec, Message, Queue, QueueConfig, QueueSpec, VHost,
};

const TOPIC_BINDINGS: usize = 10_000;
const QUEUES: usize = 1_000;
const DEPTH: usize = 1_000;

fn topic_pattern(i: usize) -> String {
    match i % 3 {
        0 => format!("region.{}.*.#", i % 50),
        1 => format!("#.event{i}"),
        _ => format!("app{i}.*"),
    }
}

fn bench_topic(c: &mut Criterion) {
    let mut index = TopicIndex::new();
    for i in 0..TOPIC_BINDINGS {
        index.insert(&topic_pattern(i), Destination::Queue(format!("q{i}")));
    }
    assert_eq!(index.len(), TOPIC_BINDINGS);
    // (label, key, expected number of destinations)
    let keys = [
        // i ≡ 0 (mod 3) and i ≡ 7 (mod 50): 67 bindings share `region.7.*.#`.
        ("region_fanout_67", "region.7.eu.orders.created", 67),
        // `app1001.*` only.
        ("app_one", "app1001.login", 1),
        // `#.event4` only; the root `#` keeps every word in play.
        ("hash_suffix_one", "billing.invoice.paid.event4", 1),
        ("no_match", "unrelated.key.with.five.words", 0),
    ];
    let mut g = c.benchmark_group("topic_10k");
    let mut out: Vec<Destination> = Vec::with_capacity(128);
    for (label, key, expected) in keys {
        out.clear();
        index.matches(key, &mut out);
        assert_eq!(out.len(), expected, "{key}");
        g.bench_with_input(BenchmarkId::new("matches", label), key, |b, key| {
            b.iter(|| {
                out.clear();
                index.matches(black_box(key), &mut out);
                out.len()
            })
        });
    }
    g.finish();
}

fn vhost_with_direct_queues() -> Arc<VHost> {
    let vhost = VHost::new("bench", Timers::new(), None);
    vhost
        .declare_exchange(
            ExchangeSpec {
                name: "bench.direct".into(),
                kind: ExchangeKind::Direct,
                durable: false,
                auto_delete: false,
                internal: false,
                arguments: FieldTable::default(),
            },
            false,
        )
        .expect("declare exchange");
    for i in 0..QUEUES {
        let name = format!("q{i}");
        vhost
            .declare_queue(queue_spec(&name), false, 1)
            .expect("declare queue");
        vhost
            .bind(
                "bench.direct",
                Destination::Queue(name),
                &format!("rk.{i}"),
                FieldTable::default(),
                1,
            )
            .expect("bind");
    }
    vhost
}

fn queue_spec(name: &str) -> QueueSpec {
    QueueSpec {
        name: name.into(),
        durable: false,
        exclusive_owner: None,
        auto_delete: false,
        arguments: FieldTable::default(),
    }
}

fn message(exchange: &str, routing_key: &str) -> Arc<Message> {
    let props = BasicProperties {
        content_type: Some("application/json".into()),
        delivery_mode: Some(1),
        ..BasicProperties::default()
    }
    .to_bytes();
    Arc::new(Message::new(
        exchange,
        routing_key,
        props,
        Bytes::from(vec![0x5a; 16]),
    ))
}

fn bench_vhost_route(c: &mut Criterion) {
    let vhost = vhost_with_direct_queues();
    let mut g = c.benchmark_group("vhost_route");
    let mut out: Vec<Arc<Queue>> = Vec::with_capacity(4);
    for (label, msg, expected) in [
        ("direct_1k_queues_hit", message("bench.direct", "rk.500"), 1),
        (
            "direct_1k_queues_miss",
            message("bench.direct", "rk.none"),
            0,
        ),
        ("default_exchange_hit", message("", "q500"), 1),
    ] {
        out.clear();
        vhost.route(&msg, &mut out).expect("route");
        assert_eq!(out.len(), expected, "{label}");
        g.bench_function(label, |b| {
            b.iter(|| {
                out.clear();
                vhost.route(black_box(&msg), &mut out).expect("route");
                out.len()
            })
        });
    }
    g.finish();
}

fn message_headers() -> FieldTable {
    let mut t = FieldTable::new();
    let s = |v: &'static [u8]| FieldValue::LongString(Bytes::from_static(v));
    t.insert("x-trace-id", s(b"4bf92f3577b34da6a3ce929d0e0e4736"));
    t.insert("x-retry-count", FieldValue::I32(2));
    t.insert("x-first-seen", FieldValue::Timestamp(1_764_000_000));
    t.insert("tenant", s(b"acme"));
    t.insert("priority-class", FieldValue::U8(3));
    t.insert("sampled", FieldValue::Bool(true));
    t.insert("score", FieldValue::F64(0.875));
    t.insert("content-length", FieldValue::I64(1024));
    t.insert("region", s(b"eu"));
    t.insert("format", s(b"json"));
    t
}

fn binding(x_match: &'static [u8], tenant: &'static [u8]) -> FieldTable {
    let mut t = FieldTable::new();
    t.insert(
        "x-match",
        FieldValue::LongString(Bytes::from_static(x_match)),
    );
    t.insert("tenant", FieldValue::LongString(Bytes::from_static(tenant)));
    t.insert("region", FieldValue::LongString(Bytes::from_static(b"eu")));
    t.insert("priority-class", FieldValue::I32(3));
    t
}

fn bench_headers(c: &mut Criterion) {
    let headers = message_headers();
    let mut g = c.benchmark_group("headers_match");
    for (label, args, expected) in [
        ("all_3_keys_hit", binding(b"all", b"acme"), true),
        ("all_3_keys_miss", binding(b"all", b"other"), false),
        ("any_3_keys_hit", binding(b"any", b"other"), true),
    ] {
        assert_eq!(headers_match(&args, Some(&headers)), expected, "{label}");
        g.bench_function(label, |b| {
            b.iter(|| headers_match(black_box(&args), Some(black_box(&headers))))
        });
        let sorted = SortedHeaders::new(Some(&headers));
        g.bench_function(format!("{label}_presorted"), |b| {
            b.iter(|| headers_match_sorted(black_box(&args), black_box(&sorted)))
        });
    }
    g.finish();
}

fn new_queue(name: &str) -> Arc<Queue> {
    let router: Weak<dyn DeadLetterRouter> = Weak::<VHost>::new();
    Queue::new(
        "bench",
        queue_spec(name),
        QueueConfig::default(),
        Timers::new(),
        router,
        None,
    )
}

fn bench_queue(c: &mut Criterion) {
    let msg = message("", "bench");
    let mut g = c.benchmark_group("queue");

    let q = new_queue("single");
    g.throughput(Throughput::Elements(1));
    g.bench_function("publish_get_noack_single", |b| {
        b.iter(|| {
            q.publish(Arc::clone(&msg));
            q.get(true).expect("message")
        })
    });

    let q = new_queue("deep");
    g.throughput(Throughput::Elements(DEPTH as u64));
    g.bench_function("publish_1k_then_get_ack_1k", |b| {
        b.iter(|| {
            for _ in 0..DEPTH {
                q.publish(Arc::clone(&msg));
            }
            for _ in 0..DEPTH {
                let (entry, m, _) = q.get(false).expect("message");
                black_box(m);
                q.settle(vec![entry]);
            }
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_topic,
    bench_vhost_route,
    bench_headers,
    bench_queue
);
criterion_main!(benches);
