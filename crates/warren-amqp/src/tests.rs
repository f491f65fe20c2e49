//! Crate-level tests: field tables, properties, frames, malformed input and
//! no-panic fuzzing. Per-method round trips live in `methods.rs` (generated).

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use crate::constants::*;
use crate::methods::strategies::arb_method;
use crate::properties::{self, flags};
use crate::table::MAX_DEPTH;
use crate::test_support::*;
use crate::wire::ShortString;
use crate::*;

fn arb_props() -> impl Strategy<Value = BasicProperties> {
    (
        (
            proptest::option::of(arb_shortstr()),
            proptest::option::of(arb_shortstr()),
            proptest::option::of(arb_table()),
            proptest::option::of(any::<u8>()),
            proptest::option::of(any::<u8>()),
            proptest::option::of(arb_shortstr()),
            proptest::option::of(arb_shortstr()),
        ),
        (
            proptest::option::of(arb_shortstr()),
            proptest::option::of(arb_shortstr()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(arb_shortstr()),
            proptest::option::of(arb_shortstr()),
            proptest::option::of(arb_shortstr()),
            proptest::option::of(arb_shortstr()),
        ),
    )
        .prop_map(|(a, b)| BasicProperties {
            content_type: a.0,
            content_encoding: a.1,
            headers: a.2,
            delivery_mode: a.3,
            priority: a.4,
            correlation_id: a.5,
            reply_to: a.6,
            expiration: b.0,
            message_id: b.1,
            timestamp: b.2,
            kind: b.3,
            user_id: b.4,
            app_id: b.5,
            cluster_id: b.6,
        })
}

/// Properties with exactly the fields selected by the 14-bit `mask` set.
fn props_for_mask(mask: u16) -> BasicProperties {
    let on = |i: u16| mask & (1 << i) != 0;
    let s = |i: u16, v: &str| on(i).then(|| v.to_string());
    let mut headers = FieldTable::new();
    headers.insert("x-match", FieldValue::from("all"));
    BasicProperties {
        content_type: s(0, "text/plain"),
        content_encoding: s(1, "gzip"),
        headers: on(2).then_some(headers),
        delivery_mode: on(3).then_some(2),
        priority: on(4).then_some(7),
        correlation_id: s(5, "corr"),
        reply_to: s(6, "amq.rabbitmq.reply-to"),
        expiration: s(7, "60000"),
        message_id: s(8, "msg-1"),
        timestamp: on(9).then_some(1_700_000_000),
        kind: s(10, "kind"),
        user_id: s(11, "guest"),
        app_id: s(12, "app"),
        cluster_id: s(13, "cluster"),
    }
}

fn encoded_table(t: &FieldTable) -> BytesMut {
    let mut out = BytesMut::new();
    t.encode(&mut out);
    out
}

proptest! {
    #[test]
    fn field_value_roundtrip(v in arb_value()) {
        let mut out = BytesMut::new();
        v.encode(&mut out);
        prop_assert_eq!(out.len(), v.encoded_len());
        let mut buf = &out[..];
        let back = FieldValue::decode(&mut buf).unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(&back, &v);
        let mut again = BytesMut::new();
        back.encode(&mut again);
        prop_assert_eq!(&again[..], &out[..]);
    }

    #[test]
    fn field_table_roundtrip(t in arb_table()) {
        let out = encoded_table(&t);
        prop_assert_eq!(out.len(), t.encoded_len());
        let mut buf = &out[..];
        let back = FieldTable::decode(&mut buf).unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(&back, &t);
        prop_assert_eq!(&encoded_table(&back)[..], &out[..]);
        for cut in 0..out.len() {
            let mut short = &out[..cut];
            prop_assert_eq!(FieldTable::decode(&mut short), Err(DecodeError::Truncated));
        }
    }

    #[test]
    fn basic_properties_roundtrip(p in arb_props()) {
        let raw = p.to_bytes();
        let back = BasicProperties::decode(&raw).unwrap();
        prop_assert_eq!(&back, &p);
        prop_assert_eq!(&back.to_bytes()[..], &raw[..]);
        prop_assert_eq!(properties::peek_delivery_mode(&raw), p.delivery_mode);
        prop_assert_eq!(properties::peek_priority(&raw), p.priority);
        prop_assert_eq!(properties::peek_expiration(&raw), p.expiration.clone());
        prop_assert_eq!(properties::peek_headers(&raw), p.headers.clone());
        prop_assert_eq!(properties::peek_timestamp(&raw), p.timestamp);
        prop_assert_eq!(properties::peek_user_id(&raw), p.user_id.clone());
    }

    #[test]
    fn method_frame_roundtrip(m in arb_method(), channel in any::<u16>()) {
        let mut out = BytesMut::new();
        encode_method_frame(&mut out, channel, &m);
        let total = out.len();
        // Every strict prefix needs more bytes.
        for cut in 0..total {
            let mut partial = BytesMut::from(&out[..cut]);
            prop_assert_eq!(decode_frame(&mut partial, 0), Ok(None));
            prop_assert_eq!(partial.len(), cut);
        }
        out.put_slice(b"\x08\x00"); // start of the next frame stays in the buffer
        let f = decode_frame(&mut out, total as u32).unwrap().unwrap();
        prop_assert_eq!(f.frame_type, FRAME_METHOD);
        prop_assert_eq!(f.channel, channel);
        prop_assert_eq!(&out[..], b"\x08\x00");
        prop_assert_eq!(Method::decode(&f.payload).unwrap(), m);
    }

    #[test]
    fn body_split_roundtrip(len in 0usize..3000, frame_max in prop_oneof![Just(0u32), 9u32..600], channel in any::<u16>()) {
        let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut out = BytesMut::new();
        encode_body_frames(&mut out, channel, &body, frame_max);
        let mut got = Vec::new();
        let mut frames = 0usize;
        while let Some(f) = decode_frame(&mut out, frame_max).unwrap() {
            prop_assert_eq!(f.frame_type, FRAME_BODY);
            prop_assert_eq!(f.channel, channel);
            prop_assert!(!f.payload.is_empty());
            if frame_max != 0 {
                prop_assert!(f.payload.len() + 8 <= frame_max as usize);
            }
            got.extend_from_slice(&f.payload);
            frames += 1;
        }
        prop_assert!(out.is_empty());
        prop_assert_eq!(got, body);
        let expected = if len == 0 { 0 } else if frame_max == 0 { 1 } else { len.div_ceil(frame_max as usize - 8) };
        prop_assert_eq!(frames, expected);
    }

    #[test]
    fn header_frame_roundtrip(p in arb_props(), body_size in any::<u64>(), channel in any::<u16>()) {
        let raw = p.to_bytes();
        let mut out = BytesMut::new();
        encode_header_frame(&mut out, channel, 60, body_size, &raw);
        let f = decode_frame(&mut out, 0).unwrap().unwrap();
        prop_assert_eq!(f.frame_type, FRAME_HEADER);
        prop_assert_eq!(f.channel, channel);
        let h = ContentHeader::decode(f.payload.clone()).unwrap();
        prop_assert_eq!(h.class_id, 60);
        prop_assert_eq!(h.weight, 0);
        prop_assert_eq!(h.body_size, body_size);
        prop_assert_eq!(&h.properties_raw, &raw);
        let mut re = BytesMut::new();
        h.encode(&mut re);
        prop_assert_eq!(&re[..], &f.payload[..]);
    }

    // ---- no panics on arbitrary input ----

    #[test]
    fn fuzz_decode_frame(data in proptest::collection::vec(any::<u8>(), 0..300), frame_max in prop_oneof![Just(0u32), any::<u32>()]) {
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(_)) = decode_frame(&mut buf, frame_max) {}
    }

    #[test]
    fn fuzz_method_decode(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Method::decode(&data);
    }

    #[test]
    fn fuzz_method_decode_known_ids(m in arb_method(), noise in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut payload = BytesMut::new();
        payload.put_u16(m.class_id());
        payload.put_u16(m.method_id());
        payload.put_slice(&noise);
        let _ = Method::decode(&payload);
    }

    #[test]
    fn fuzz_table_decode(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = FieldTable::decode(&mut &data[..]);
        // With a plausible length prefix so the body parser is exercised.
        let mut framed = (data.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&data);
        let _ = FieldTable::decode(&mut &framed[..]);
    }

    #[test]
    fn fuzz_properties_decode(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = BasicProperties::decode(&data);
        let _ = properties::peek_delivery_mode(&data);
        let _ = properties::peek_priority(&data);
        let _ = properties::peek_expiration(&data);
        let _ = properties::peek_headers(&data);
        let _ = ContentHeader::decode(Bytes::from(data));
    }
}

#[test]
fn every_property_subset_roundtrips() {
    for mask in 0u16..(1 << 14) {
        let p = props_for_mask(mask);
        let raw = p.to_bytes();
        assert_eq!(u16::from_be_bytes([raw[0], raw[1]]), mask.reverse_bits());
        assert_eq!(BasicProperties::decode(&raw).unwrap(), p, "mask {mask:#x}");
        assert_eq!(properties::peek_delivery_mode(&raw), p.delivery_mode);
        assert_eq!(properties::peek_priority(&raw), p.priority);
        assert_eq!(properties::peek_expiration(&raw), p.expiration);
        assert_eq!(properties::peek_headers(&raw), p.headers);
    }
}

#[test]
fn property_flags_continuation_rejected() {
    assert_eq!(
        BasicProperties::decode(&[0x00, 0x01]),
        Err(DecodeError::BadPropertyFlags)
    );
    assert_eq!(
        BasicProperties::decode(&[0x10, 0x01, 2]),
        Err(DecodeError::BadPropertyFlags)
    );
    assert_eq!(properties::peek_delivery_mode(&[0x10, 0x01, 2]), None);
    assert_eq!(properties::peek_delivery_mode(&[0x10, 0x00, 2]), Some(2));
    assert_eq!(
        BasicProperties::decode(&[0x10]),
        Err(DecodeError::Truncated)
    );
    assert_eq!(
        BasicProperties::decode(&[0x80, 0x00, 5, b'a']),
        Err(DecodeError::Truncated)
    );
    assert_eq!(
        BasicProperties::decode(&[0x00, 0x00]).unwrap(),
        BasicProperties::default()
    );
    assert_eq!(flags::CLUSTER_ID, 4);
}

#[test]
fn content_header_validation() {
    assert_eq!(
        ContentHeader::decode(Bytes::from_static(&[0; 13])),
        Err(DecodeError::Truncated)
    );
    let h = ContentHeader::decode(Bytes::from_static(&[
        0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0x10, 0, 2,
    ]))
    .unwrap();
    assert_eq!(h.class_id, 60);
    assert_eq!(h.body_size, 256);
    assert_eq!(&h.properties_raw[..], &[0x10, 0, 2]);
    assert_eq!(properties::peek_delivery_mode(&h.properties_raw), Some(2));
}

#[test]
fn table_api() {
    let mut t = FieldTable::new();
    assert!(t.is_empty());
    t.insert("a", FieldValue::U8(1));
    t.insert("b", FieldValue::Bool(true));
    t.insert("a", FieldValue::I64(-5));
    assert_eq!(t.len(), 2);
    assert_eq!(t.get("a").and_then(FieldValue::as_i64), Some(-5));
    assert_eq!(t.get("b").and_then(FieldValue::as_bool), Some(true));
    assert_eq!(t.iter().next().unwrap().0, "a");
    assert_eq!(FieldValue::from("hi").as_str(), Some("hi"));
    assert_eq!(FieldValue::U32(u32::MAX).as_i64(), Some(u32::MAX as i64));
    assert_eq!(
        FieldValue::LongString(Bytes::from_static(b"\xff")).as_str(),
        None
    );
    assert_eq!(FieldValue::I64(1).type_name(), "long");
    assert_eq!(FieldValue::Table(FieldTable::new()).type_name(), "table");
    assert_eq!(FieldValue::from("x").type_name(), "longstr");
    assert_eq!(t.remove("a"), Some(FieldValue::I64(-5)));
    assert_eq!(t.len(), 1);
}

#[test]
fn table_errors() {
    // Unknown field type.
    let raw = [0, 0, 0, 3, 1, b'k', b'Z'];
    assert_eq!(
        FieldTable::decode(&mut &raw[..]),
        Err(DecodeError::BadFieldType(b'Z'))
    );
    // Table length past the end.
    let raw = [0, 0, 0, 10, 1, b'k', b'V'];
    assert_eq!(
        FieldTable::decode(&mut &raw[..]),
        Err(DecodeError::Truncated)
    );
    // Long string length past the end of the table body.
    let raw = [0, 0, 0, 8, 1, b'k', b'S', 0, 0, 0, 9, b'x'];
    assert_eq!(
        FieldTable::decode(&mut &raw[..]),
        Err(DecodeError::Truncated)
    );
    // Huge length with little input: no allocation, just Truncated.
    let raw = [0xff, 0xff, 0xff, 0xff, 1, b'k', b'V'];
    assert_eq!(
        FieldTable::decode(&mut &raw[..]),
        Err(DecodeError::Truncated)
    );
    // Invalid UTF-8 key.
    let raw = [0, 0, 0, 3, 1, 0xff, b'V'];
    assert_eq!(
        FieldTable::decode(&mut &raw[..]),
        Err(DecodeError::InvalidUtf8)
    );
    // RabbitMQ letters: 'l' is i64, 'I' is i32, 'i' is u32.
    let raw = [
        0, 0, 0, 25, 1, b'a', b'l', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 1, b'b', b'I',
        0xff, 0xff, 0xff, 0xff, 1, b'c', b'i', 0xff, 0xff, 0xff, 0xff,
    ];
    let t = FieldTable::decode(&mut &raw[..]).unwrap();
    assert_eq!(t.get("a"), Some(&FieldValue::I64(-2)));
    assert_eq!(t.get("b"), Some(&FieldValue::I32(-1)));
    assert_eq!(t.get("c"), Some(&FieldValue::U32(u32::MAX)));
}

/// Build `depth` nested tables `{"n": {"n": ... {}}}` directly as bytes
/// (outermost first, so this is linear in the output size).
fn nested_tables(depth: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(7 * depth);
    for k in (2..=depth).rev() {
        out.extend_from_slice(&((7 * (k - 1)) as u32).to_be_bytes());
        out.extend_from_slice(&[1, b'n', b'F']);
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

/// Build `depth` nested arrays inside one table entry.
fn nested_arrays(depth: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 * depth + 6);
    out.extend_from_slice(&((5 * depth + 2) as u32).to_be_bytes());
    out.extend_from_slice(&[1, b'a']);
    for k in (2..=depth).rev() {
        out.push(b'A');
        out.extend_from_slice(&((5 * (k - 1)) as u32).to_be_bytes());
    }
    out.extend_from_slice(&[b'A', 0, 0, 0, 0]);
    out
}

#[test]
fn nesting_depth_limit() {
    let ok = nested_tables(MAX_DEPTH);
    let t = FieldTable::decode(&mut &ok[..]).unwrap();
    assert_eq!(&encoded_table(&t)[..], &ok[..]);
    let too_deep = nested_tables(MAX_DEPTH + 1);
    assert!(matches!(
        FieldTable::decode(&mut &too_deep[..]),
        Err(DecodeError::Other(_))
    ));
    // Hostile: very deep nesting must fail fast, not overflow the stack.
    let hostile = nested_tables(100_000);
    assert!(matches!(
        FieldTable::decode(&mut &hostile[..]),
        Err(DecodeError::Other(_))
    ));
    let hostile = nested_arrays(100_000);
    assert!(matches!(
        FieldTable::decode(&mut &hostile[..]),
        Err(DecodeError::Other(_))
    ));
    let ok = nested_arrays(MAX_DEPTH - 1);
    assert!(FieldTable::decode(&mut &ok[..]).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Fuzz-style: random mutations of deeply nested tables never panic.
    #[test]
    fn fuzz_nested_mutations(depth in 1usize..200, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8)) {
        let mut data = if depth % 2 == 0 { nested_tables(depth) } else { nested_arrays(depth) };
        for (pos, byte) in flips {
            let len = data.len();
            data[pos % len] = byte;
        }
        let _ = FieldTable::decode(&mut &data[..]);
    }
}

#[test]
fn frame_errors() {
    // Bad frame end.
    let mut buf = BytesMut::from(&[1, 0, 0, 0, 0, 0, 1, 9, 0xCD][..]);
    assert_eq!(
        decode_frame(&mut buf, 0),
        Err(FrameError::BadFrameEnd(0xCD))
    );
    // Unknown type.
    let mut buf = BytesMut::from(&[4, 0, 0, 0, 0, 0, 0, 0xCE][..]);
    assert_eq!(decode_frame(&mut buf, 0), Err(FrameError::UnknownType(4)));
    // Oversize header rejected immediately, before the body arrives.
    let mut buf = BytesMut::from(&[3, 0, 1, 0xff, 0xff, 0xff, 0xff][..]);
    assert_eq!(
        decode_frame(&mut buf, 131_072),
        Err(FrameError::TooLarge {
            size: u32::MAX,
            max: 131_072
        })
    );
    let mut buf = BytesMut::from(&[3, 0, 1, 0, 0, 0x10, 0x00][..]);
    assert_eq!(
        decode_frame(&mut buf, FRAME_MIN_SIZE),
        Err(FrameError::TooLarge {
            size: 4096 + 8,
            max: 4096
        })
    );
    // Exactly frame_max is fine (needs more bytes).
    let mut buf = BytesMut::from(&[3, 0, 1, 0, 0, 0x0f, 0xf8][..]);
    assert_eq!(decode_frame(&mut buf, FRAME_MIN_SIZE), Ok(None));
    // Truncated: need more.
    for n in 0..7 {
        let mut buf = BytesMut::from(&[1, 0, 0, 0, 0, 0, 4][..n]);
        assert_eq!(decode_frame(&mut buf, 0), Ok(None));
    }
}

#[test]
fn heartbeat_and_empty_body() {
    let mut out = BytesMut::new();
    encode_heartbeat(&mut out);
    assert_eq!(&out[..], &[8, 0, 0, 0, 0, 0, 0, 0xCE]);
    let f = decode_frame(&mut out, FRAME_MIN_SIZE).unwrap().unwrap();
    assert_eq!(
        (f.frame_type, f.channel, f.payload.len()),
        (FRAME_HEARTBEAT, 0, 0)
    );
    encode_body_frames(&mut out, 1, b"", 4096);
    assert!(out.is_empty());
}

#[test]
fn body_split_exact_boundaries() {
    let fm = FRAME_MIN_SIZE;
    let cap = (fm - 8) as usize;
    for (len, frames) in [
        (cap - 1, 1),
        (cap, 1),
        (cap + 1, 2),
        (2 * cap, 2),
        (2 * cap + 1, 3),
    ] {
        let body = vec![7u8; len];
        let mut out = BytesMut::new();
        encode_body_frames(&mut out, 3, &body, fm);
        assert_eq!(out.len(), len + frames * 8);
        let mut n = 0;
        let mut total = 0;
        while let Some(f) = decode_frame(&mut out, fm).unwrap() {
            assert!(f.payload.len() <= cap);
            total += f.payload.len();
            n += 1;
        }
        assert_eq!((n, total), (frames, len));
    }
}

#[test]
fn method_errors() {
    assert_eq!(Method::decode(&[0, 10]), Err(DecodeError::Truncated));
    assert_eq!(
        Method::decode(&[0, 99, 0, 1]),
        Err(DecodeError::UnknownMethod {
            class_id: 99,
            method_id: 1
        })
    );
    assert_eq!(
        Method::decode(&[0, 60, 0, 41]),
        Err(DecodeError::UnknownMethod {
            class_id: 60,
            method_id: 41
        })
    );
    // basic.publish with an exchange shortstr claiming 200 bytes.
    assert_eq!(
        Method::decode(&[0, 60, 0, 40, 0, 0, 200, b'x']),
        Err(DecodeError::Truncated)
    );
    // queue.declare with an arguments table length past the end.
    let mut p = vec![0, 50, 0, 10, 0, 0, 1, b'q', 0x02, 0, 0, 1, 0];
    assert_eq!(Method::decode(&p), Err(DecodeError::Truncated));
    p.truncate(9);
    p.extend_from_slice(&[0, 0, 0, 0]);
    let m = Method::decode(&p).unwrap();
    assert_eq!(
        m,
        Method::QueueDeclare(QueueDeclare {
            queue: "q".into(),
            durable: true,
            ..Default::default()
        })
    );
    // Invalid UTF-8 in a shortstr field.
    assert_eq!(
        Method::decode(&[0, 20, 0, 10, 1, 0xff]),
        Err(DecodeError::InvalidUtf8)
    );
}

#[test]
fn known_wire_bytes() {
    // basic.publish(exchange="", routing_key="q", mandatory) on channel 1.
    let m = Method::from(BasicPublish {
        reserved_1: 0,
        exchange: ShortString::default(),
        routing_key: "q".into(),
        mandatory: true,
        immediate: false,
    });
    let mut out = BytesMut::new();
    encode_method_frame(&mut out, 1, &m);
    assert_eq!(
        &out[..],
        &[1, 0, 1, 0, 0, 0, 10, 0, 60, 0, 40, 0, 0, 0, 1, b'q', 0x01, 0xCE]
    );
    assert!(m.has_content());
    assert_eq!(m.name(), "basic.publish");
    // Bits pack LSB first: basic.nack(multiple=false, requeue=true).
    let mut out = BytesMut::new();
    Method::from(BasicNack {
        delivery_tag: 5,
        multiple: false,
        requeue: true,
    })
    .encode(&mut out);
    assert_eq!(&out[..], &[0, 60, 0, 120, 0, 0, 0, 0, 0, 0, 0, 5, 0x02]);
    // Over-long shortstr is truncated, not a panic.
    let mut out = BytesMut::new();
    Method::from(QueueBindOk {}).encode(&mut out);
    Method::from(ChannelOpen {
        reserved_1: "x".repeat(300),
    })
    .encode(&mut out);
    assert_eq!(out.len(), 4 + 4 + 1 + 255);
    assert_eq!(PROTOCOL_HEADER, *b"AMQP\x00\x00\x09\x01");
    assert_eq!(ConnectionStartOk::NAME, "connection.start-ok");
    assert_eq!(ConfirmSelect::CLASS_ID, 85);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// The allocation-free scan agrees with the decoder: every encoded table scans to its
    /// exact length, and any mutation the decoder accepts the scan accepts too (the scan
    /// does not check UTF-8 in keys, so it may accept a little more; it never refuses what
    /// the decoder takes).
    #[test]
    fn scan_table_agrees_with_decode(
        table in arb_table(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let mut encoded = BytesMut::new();
        table.encode(&mut encoded);
        let mut data = encoded.to_vec();
        data.extend_from_slice(b"rest");
        let mut at = &data[..];
        prop_assert!(crate::table::scan_table(&mut at).is_ok());
        prop_assert_eq!(at, &b"rest"[..]);
        for (pos, byte) in flips {
            let len = data.len();
            data[pos % len] = byte;
        }
        let (mut a, mut b) = (&data[..], &data[..]);
        if FieldTable::decode(&mut a).is_ok() {
            prop_assert!(crate::table::scan_table(&mut b).is_ok());
            prop_assert_eq!(a.len(), b.len());
        }
    }
}

#[test]
fn scan_table_refuses_unknown_types_and_deep_nesting() {
    // {"k": <type 'Z'>}
    let bad = [0, 0, 0, 3, 1, b'k', b'Z'];
    assert!(matches!(
        crate::table::scan_table(&mut &bad[..]),
        Err(DecodeError::BadFieldType(b'Z'))
    ));
    let deep = nested_tables(MAX_DEPTH + 5);
    assert!(crate::table::scan_table(&mut &deep[..]).is_err());
}

#[test]
fn publish_keys_are_read_inline_up_to_24_bytes() {
    use crate::wire::read_shortstr_inline;
    let mut frame = Vec::new();
    for key in ["", "perf-s1-0", "orders.created.eu-west-1"] {
        frame.clear();
        frame.push(key.len() as u8);
        frame.extend_from_slice(key.as_bytes());
        let mut buf = &frame[..];
        let s = read_shortstr_inline(&mut buf).unwrap();
        assert_eq!(s, key);
        assert!(!s.is_heap_allocated(), "{key:?} is held inline");
        assert!(buf.is_empty());
    }
    let long = "k".repeat(255);
    frame.clear();
    frame.push(255);
    frame.extend_from_slice(long.as_bytes());
    assert_eq!(read_shortstr_inline(&mut &frame[..]).unwrap(), long);
    assert_eq!(
        read_shortstr_inline(&mut &[2u8, 0xff, 0xfe][..]),
        Err(DecodeError::InvalidUtf8)
    );
    assert!(read_shortstr_inline(&mut &[3u8, b'a'][..]).is_err());
}
