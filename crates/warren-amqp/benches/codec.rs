//! Micro-benchmarks of the AMQP codec's hot paths.
//!
//! Every published message crosses the codec at least twice: the inbound
//! `basic.publish` method + content header + body frames are split and
//! decoded, and each delivery encodes a `basic.deliver` method frame. The
//! broker keeps properties raw and only peeks at the few it needs
//! (`delivery-mode` for persistence, `headers` for headers exchanges), so
//! those peeks are measured next to a full [`BasicProperties::decode`].
//!
//! * `frame_decode`: split a buffer holding 1,000 publishes (a method, a
//!   content header and a body frame each) with [`decode_frame`], alone and
//!   followed by [`Method::decode`] / [`ContentHeader::decode`]; bodies of
//!   16 B and 1 KiB. Throughput is per message (3 frames).
//! * `method`: [`Method::decode`] / [`Method::encode`] of `basic.publish` and
//!   `basic.deliver`.
//! * `field_table`: decode / encode of a realistic 10-entry headers table.
//! * `properties`: [`BasicProperties::decode`] of realistic raw properties
//!   versus [`peek_headers`] and [`peek_delivery_mode`] on the same bytes.
//!
//! Run with `cargo bench -p warren-amqp --bench codec`.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use warren_amqp::constants::{FRAME_HEADER, FRAME_METHOD};
use warren_amqp::{
    decode_frame, encode_body_frames, encode_header_frame, encode_method_frame, peek_delivery_mode,
    peek_headers, BasicDeliver, BasicProperties, BasicPublish, ContentHeader, FieldTable,
    FieldValue, Method,
};

/// Messages in the frame buffer.
const MESSAGES: usize = 1_000;
/// RabbitMQ's default negotiated frame_max.
const FRAME_MAX: u32 = 131_072;

/// A 10-entry headers table with the mix of types applications send.
fn headers_table() -> FieldTable {
    let mut origin = FieldTable::new();
    origin.insert("host", FieldValue::LongString(Bytes::from_static(b"web-7")));
    origin.insert("pid", FieldValue::I32(31_337));
    let mut t = FieldTable::new();
    t.insert(
        "x-trace-id",
        FieldValue::LongString(Bytes::from_static(b"4bf92f3577b34da6a3ce929d0e0e4736")),
    );
    t.insert("x-retry-count", FieldValue::I32(2));
    t.insert("x-first-seen", FieldValue::Timestamp(1_764_000_000));
    t.insert(
        "tenant",
        FieldValue::LongString(Bytes::from_static(b"acme")),
    );
    t.insert("priority-class", FieldValue::U8(3));
    t.insert("sampled", FieldValue::Bool(true));
    t.insert("score", FieldValue::F64(0.875));
    t.insert("content-length", FieldValue::I64(1024));
    t.insert(
        "tags",
        FieldValue::Array(vec![
            FieldValue::LongString(Bytes::from_static(b"orders")),
            FieldValue::LongString(Bytes::from_static(b"eu")),
            FieldValue::LongString(Bytes::from_static(b"priority")),
        ]),
    );
    t.insert("origin", FieldValue::Table(origin));
    t
}

/// Properties as a typical JSON-publishing client sets them.
fn properties() -> BasicProperties {
    BasicProperties {
        content_type: Some("application/json".into()),
        headers: Some(headers_table()),
        delivery_mode: Some(2),
        priority: Some(1),
        correlation_id: Some("c0ffee-1234".into()),
        message_id: Some("msg-000000042".into()),
        timestamp: Some(1_764_000_000),
        app_id: Some("order-service".into()),
        ..BasicProperties::default()
    }
}

fn publish_method() -> Method {
    Method::BasicPublish(BasicPublish {
        reserved_1: 0,
        exchange: "amq.topic".into(),
        routing_key: "region.eu.orders.created".into(),
        mandatory: false,
        immediate: false,
    })
}

fn deliver_method() -> Method {
    Method::BasicDeliver(BasicDeliver {
        consumer_tag: "amq.ctag-Wd1sPq3nZr7x9yKf2LhBvA".into(),
        delivery_tag: 123_456,
        redelivered: false,
        exchange: "amq.topic".into(),
        routing_key: "region.eu.orders.created".into(),
    })
}

/// `MESSAGES` publishes (method, header, body frames) on channel 1.
fn publish_frames(body_len: usize) -> BytesMut {
    let props = BasicProperties {
        content_type: Some("application/json".into()),
        delivery_mode: Some(2),
        ..BasicProperties::default()
    }
    .to_bytes();
    let body = vec![0x5a; body_len];
    let method = publish_method();
    let mut out = BytesMut::new();
    for _ in 0..MESSAGES {
        encode_method_frame(&mut out, 1, &method);
        encode_header_frame(&mut out, 1, 60, body_len as u64, &props);
        encode_body_frames(&mut out, 1, &body, FRAME_MAX);
    }
    out
}

fn bench_frame_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_decode");
    g.throughput(Throughput::Elements(MESSAGES as u64));
    for (label, body_len) in [("16B", 16usize), ("1KiB", 1024)] {
        let buf = publish_frames(body_len);
        g.bench_function(format!("split_publish_{label}"), |b| {
            b.iter_batched(
                || buf.clone(),
                |mut buf| {
                    let mut frames = 0usize;
                    while let Some(f) = decode_frame(&mut buf, FRAME_MAX).expect("valid frames") {
                        black_box(&f);
                        frames += 1;
                    }
                    assert_eq!(frames, 3 * MESSAGES);
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_function(format!("split_and_parse_publish_{label}"), |b| {
            b.iter_batched(
                || buf.clone(),
                |mut buf| {
                    while let Some(f) = decode_frame(&mut buf, FRAME_MAX).expect("valid frames") {
                        match f.frame_type {
                            FRAME_METHOD => {
                                black_box(Method::decode(&f.payload).expect("method"));
                            }
                            FRAME_HEADER => {
                                black_box(ContentHeader::decode(f.payload).expect("header"));
                            }
                            _ => {
                                black_box(f.payload);
                            }
                        }
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn bench_method(c: &mut Criterion) {
    let mut g = c.benchmark_group("method");
    for (name, method) in [
        ("basic_publish", publish_method()),
        ("basic_deliver", deliver_method()),
    ] {
        let mut encoded = BytesMut::new();
        method.encode(&mut encoded);
        let encoded = encoded.freeze();
        g.bench_function(format!("decode_{name}"), |b| {
            b.iter(|| Method::decode(black_box(&encoded)).expect("decode"))
        });
        let mut out = BytesMut::with_capacity(256);
        g.bench_function(format!("encode_{name}"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&method).encode(&mut out);
                black_box(out.len())
            })
        });
        // What a delivery really writes: the whole method frame.
        g.bench_function(format!("encode_frame_{name}"), |b| {
            b.iter(|| {
                out.clear();
                encode_method_frame(&mut out, 1, black_box(&method));
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn bench_field_table(c: &mut Criterion) {
    let table = headers_table();
    let mut encoded = BytesMut::new();
    table.encode(&mut encoded);
    let encoded = encoded.freeze();
    let mut g = c.benchmark_group("field_table");
    g.bench_function("decode_headers_10", |b| {
        b.iter(|| {
            let mut buf: &[u8] = black_box(&encoded);
            FieldTable::decode(&mut buf).expect("decode")
        })
    });
    let mut out = BytesMut::with_capacity(512);
    g.bench_function("encode_headers_10", |b| {
        b.iter(|| {
            out.clear();
            black_box(&table).encode(&mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

fn bench_properties(c: &mut Criterion) {
    let raw = properties().to_bytes();
    let mut g = c.benchmark_group("properties");
    g.bench_function("decode_full", |b| {
        b.iter(|| BasicProperties::decode(black_box(&raw)).expect("decode"))
    });
    g.bench_function("peek_headers", |b| {
        b.iter(|| peek_headers(black_box(&raw)).expect("headers"))
    });
    g.bench_function("peek_delivery_mode", |b| {
        b.iter(|| peek_delivery_mode(black_box(&raw)).expect("delivery-mode"))
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_frame_decode,
    bench_method,
    bench_field_table,
    bench_properties
);
criterion_main!(benches);
