//! The MQTT decoder (warren-mqtt's codec) over arbitrary bytes, before CONNECT and in each
//! protocol version: it answers a packet, "more bytes" or an error, never panics and never
//! reads past its input; and every packet it accepts encodes back to bytes that decode to
//! the same packet.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren_mqtt::codec::{decode, Packet, Version};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, input)) = data.split_first() else {
        return;
    };
    let version = match pick % 4 {
        0 => None,
        1 => Some(Version::V3_1),
        2 => Some(Version::V3_1_1),
        _ => Some(Version::V5),
    };
    let max = if pick & 0x80 != 0 { 256 } else { 1 << 20 };
    let mut buf = BytesMut::from(input);
    for _ in 0..64 {
        let before = buf.len();
        let packet = match decode(&mut buf, version, max) {
            Ok(Some(p)) => p,
            _ => break,
        };
        assert!(buf.len() < before);
        let v = match (&packet, version) {
            (Packet::Connect(c), _) => c.version,
            (_, Some(v)) => v,
            (_, None) => unreachable!("only CONNECT decodes before CONNECT"),
        };
        let mut again = BytesMut::new();
        packet.encode(v.is_v5(), &mut again);
        let expect = if matches!(packet, Packet::Connect(_)) { None } else { Some(v) };
        let back = decode(&mut again, expect, usize::MAX)
            .expect("what we encode decodes")
            .expect("a whole packet");
        assert_eq!(back, packet);
        if version.is_none() {
            break;
        }
    }
});
