//! Round trips of every packet in both protocol versions, fixed byte vectors from the spec,
//! and arbitrary bytes into the decoder (which must answer, never panic).

use super::*;
use proptest::prelude::*;

fn round_trip(p: &Packet, v: Version) {
    let mut out = BytesMut::new();
    p.encode(v.is_v5(), &mut out);
    let version = if matches!(p, Packet::Connect(_)) {
        None
    } else {
        Some(v)
    };
    let back = decode(&mut out, version, usize::MAX).unwrap().unwrap();
    assert_eq!(&back, p);
    assert!(out.is_empty());
}

fn v5_props() -> Properties {
    Properties {
        message_expiry: Some(60),
        content_type: Some("text/plain".into()),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(vec![1, 2, 3]),
        user: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
        subscription_ids: vec![7, 300_000],
        topic_alias: Some(3),
        ..Default::default()
    }
}

#[test]
fn every_packet_round_trips_in_both_versions() {
    for v in [Version::V3_1_1, Version::V5] {
        let props = if v.is_v5() {
            v5_props()
        } else {
            Properties::default()
        };
        let (connect_props, will_props) = if v.is_v5() {
            (
                Properties {
                    session_expiry: Some(60),
                    receive_maximum: Some(10),
                    maximum_packet_size: Some(1 << 20),
                    user: vec![("k".into(), "v".into())],
                    ..Default::default()
                },
                Properties {
                    will_delay: Some(5),
                    subscription_ids: Vec::new(),
                    topic_alias: None,
                    ..v5_props()
                },
            )
        } else {
            Default::default()
        };
        let connect = Connect {
            version: v,
            clean: true,
            keep_alive: 30,
            client_id: "dev-1".into(),
            will: Some(Will {
                topic: "will/t".into(),
                payload: Bytes::from_static(b"bye"),
                qos: 1,
                retain: true,
                props: will_props,
            }),
            username: Some("u".into()),
            password: Some(b"p".to_vec()),
            props: connect_props,
        };
        round_trip(&Packet::Connect(Box::new(connect)), v);
        let packets = vec![
            Packet::Publish(Publish {
                dup: true,
                qos: 2,
                retain: true,
                topic: "a/b".into(),
                pid: Some(9),
                props: props.clone(),
                payload: Bytes::from_static(b"hello"),
            }),
            Packet::Publish(Publish {
                dup: false,
                qos: 0,
                retain: false,
                topic: "a".into(),
                pid: None,
                props: props.clone(),
                payload: Bytes::new(),
            }),
            Packet::Ack {
                kind: AckKind::PubRel,
                pid: 5,
                reason: 0,
                props: Properties::default(),
            },
            Packet::Subscribe {
                pid: 1,
                props: Properties::default(),
                filters: vec![(
                    "a/+/#".into(),
                    SubOptions {
                        qos: 2,
                        ..Default::default()
                    },
                )],
            },
            Packet::Unsubscribe {
                pid: 2,
                props: Properties::default(),
                filters: vec!["a/#".into()],
            },
            Packet::PingReq,
            Packet::Disconnect {
                reason: 0,
                props: Properties::default(),
            },
        ];
        for p in &packets {
            round_trip(p, v);
        }
    }
}

#[test]
fn a_property_the_packet_does_not_allow_is_malformed() {
    // Section 2.2.2.2: a topic alias belongs in PUBLISH, not in SUBSCRIBE, and a will
    // delay in the will properties, not in PUBLISH.
    let cases = [
        Packet::Subscribe {
            pid: 1,
            props: Properties {
                topic_alias: Some(1),
                ..Default::default()
            },
            filters: vec![("a".into(), SubOptions::default())],
        },
        Packet::Publish(Publish {
            dup: false,
            qos: 0,
            retain: false,
            topic: "a".into(),
            pid: None,
            props: Properties {
                will_delay: Some(1),
                ..Default::default()
            },
            payload: Bytes::new(),
        }),
        Packet::Disconnect {
            reason: 0,
            props: Properties {
                content_type: Some("x".into()),
                ..Default::default()
            },
        },
    ];
    for p in cases {
        let mut out = BytesMut::new();
        p.encode(true, &mut out);
        match decode(&mut out, Some(Version::V5), usize::MAX) {
            Err(DecodeError::Malformed(why)) => assert!(why.contains("not allowed"), "{why}"),
            other => panic!("{p:?} decoded as {other:?}"),
        }
    }
}

#[test]
fn v5_acks_carry_reasons_and_short_forms_mean_success() {
    let ack = Packet::Ack {
        kind: AckKind::PubAck,
        pid: 3,
        reason: reason::NO_MATCHING_SUBSCRIBERS,
        props: Properties::default(),
    };
    round_trip(&ack, Version::V5);
    // Remaining length 2: reason success, no properties (section 3.4.2.1).
    let mut short = BytesMut::from(&[0x40, 0x02, 0x00, 0x03][..]);
    assert_eq!(
        decode(&mut short, Some(Version::V5), 1 << 20).unwrap(),
        Some(Packet::Ack {
            kind: AckKind::PubAck,
            pid: 3,
            reason: 0,
            props: Properties::default()
        })
    );
}

#[test]
fn spec_vectors_decode() {
    // CONNECT, MQTT 3.1.1, clean session, keep alive 60, client id "a".
    let mut connect = BytesMut::from(
        &[
            0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, b'a',
        ][..],
    );
    let Some(Packet::Connect(c)) = decode(&mut connect, None, 1 << 20).unwrap() else {
        panic!("not a CONNECT");
    };
    assert_eq!(
        (c.version, c.clean, c.keep_alive),
        (Version::V3_1_1, true, 60)
    );
    assert_eq!(c.client_id, "a");
    // A remaining length of 321 is 0xC1 0x02 (section 1.5.5).
    let mut out = BytesMut::new();
    put_varint(&mut out, 321);
    assert_eq!(&out[..], &[0xC1, 0x02]);
}

#[test]
fn bad_input_is_refused_with_the_right_error() {
    let check = |bytes: &[u8], version: Option<Version>| {
        decode(&mut BytesMut::from(bytes), version, 1024).unwrap_err()
    };
    // A five-byte remaining length.
    assert!(matches!(
        check(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], Some(Version::V3_1_1)),
        DecodeError::Malformed(_)
    ));
    // Over the maximum size, refused from the header alone.
    assert!(matches!(
        check(&[0x30, 0xFF, 0x7F], Some(Version::V3_1_1)),
        DecodeError::TooLarge(_)
    ));
    // PUBLISH before CONNECT.
    assert!(matches!(
        check(&[0x30, 0x03, 0, 1, b'a'], None),
        DecodeError::Protocol(_)
    ));
    // A second CONNECT.
    assert!(matches!(
        check(&[0x10, 0x00], Some(Version::V3_1_1)),
        DecodeError::Protocol(_)
    ));
    // QoS 3.
    assert!(matches!(
        check(&[0x36, 0x05, 0, 1, b'a', 0, 1], Some(Version::V3_1_1)),
        DecodeError::Malformed(_)
    ));
    // SUBSCRIBE with the wrong reserved flags.
    assert!(matches!(
        check(&[0x80, 0x06, 0, 1, 0, 1, b'a', 0], Some(Version::V3_1_1)),
        DecodeError::Malformed(_)
    ));
    // Unknown protocol level.
    assert!(matches!(
        check(
            &[0x10, 10, 0, 4, b'M', b'Q', b'T', b'T', 9, 2, 0, 0, 0, 0],
            None
        ),
        DecodeError::UnsupportedProtocol(_)
    ));
    // A topic that is not UTF-8.
    assert!(matches!(
        check(&[0x30, 0x04, 0, 2, 0xC3, 0x28], Some(Version::V3_1_1)),
        DecodeError::Malformed(_)
    ));
    // A v5 property given twice.
    assert!(matches!(
        check(
            &[0x30, 0x0E, 0, 1, b'a', 10, 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2],
            Some(Version::V5)
        ),
        DecodeError::Protocol(_)
    ));
}

#[test]
fn a_partial_packet_asks_for_more() {
    let mut buf = BytesMut::from(&[0x30, 0x05, 0, 1][..]);
    assert_eq!(decode(&mut buf, Some(Version::V3_1_1), 1024).unwrap(), None);
    assert_eq!(buf.len(), 4);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), v in 0u8..4) {
        let version = match v { 0 => None, 1 => Some(Version::V3_1), 2 => Some(Version::V3_1_1), _ => Some(Version::V5) };
        let mut buf = BytesMut::from(&bytes[..]);
        for _ in 0..64 {
            match decode(&mut buf, version, 4096) {
                Ok(Some(_)) => continue,
                _ => break,
            }
        }
    }
}
